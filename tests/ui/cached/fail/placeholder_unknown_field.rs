use cache_core::cached;

struct User {
    id: u64,
}

#[cached(key = "user:{user.uid}")]
fn by_field(user: User) -> u64 {
    user.id
}

fn main() {}
