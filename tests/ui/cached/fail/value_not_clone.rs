use cache_core::cached;

struct User {
    id: u64,
}

#[cached]
async fn get_user(id: u64) -> User {
    User { id }
}

#[cached]
fn find_user(id: u64) -> Result<User, String> {
    Ok(User { id })
}

fn main() {}
