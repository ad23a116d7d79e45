//! An option written without its value is reported as that, not as a function to call.
use cache_core::invalidates;

#[invalidates(cache = "users", all)]
fn clear() {}

#[invalidates(key, tags = ["user:{id}"])]
fn no_key(id: u64) {
    let _ = id;
}

#[invalidates(key = "user:{id}", before)]
fn no_before(id: u64) {
    let _ = id;
}

#[invalidates(key = "user:{id}", crate)]
fn no_crate(id: u64) {
    let _ = id;
}

fn main() {}
