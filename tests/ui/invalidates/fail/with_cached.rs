use cache_core::{cached, invalidates};

#[cached(key = "a:{id}")]
#[invalidates(key = "b:{id}")]
fn cached_above(id: u64) -> u64 {
    id
}

#[invalidates(key = "b:{id}")]
#[cached(key = "a:{id}")]
fn invalidates_above(id: u64) -> u64 {
    id
}

fn main() {
    cached_above(1);
    invalidates_above(1);
}
