use cache_core::{cached, invalidates};

#[cached(key = "user:{id}")]
fn get_user(id: u64) -> u64 {
    id
}

#[invalidates(cache = "users", tags = ["user:{id}"], get_user(id))]
fn update(id: u64) {
    let _ = id;
}

fn main() {}
