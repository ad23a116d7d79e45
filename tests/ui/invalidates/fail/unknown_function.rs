use cache_core::{cached, invalidates};

#[cached(key = "user:{id}")]
fn get_user(id: u64) -> u64 {
    id
}

fn not_cached(id: u64) -> u64 {
    id
}

mod users {}

#[invalidates(get_usr(id))]
fn misspelt(id: u64) {
    let _ = id;
}

#[invalidates(not_cached(id))]
fn plain_function(id: u64) {
    let _ = id;
}

#[invalidates(users::get_user(id))]
fn wrong_module(id: u64) {
    let _ = id;
}

fn main() {}
