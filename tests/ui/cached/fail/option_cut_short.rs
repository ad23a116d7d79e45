//! An option or condition that ends too early is reported at its last token, not at the whole
//! attribute (nor at another attribute on the function).
use cache_core::{cache_if, cached, invalidates};

#[cached(ttl = 60, key = id +)]
fn sum(id: u64) -> u64 {
    id
}

#[cached]
#[cache_if(result =)]
fn below(id: u64) -> u64 {
    id
}

#[cache_if(id >)]
#[cached]
fn above(id: u64) -> u64 {
    id
}

#[invalidates(key = "user:{id}", tags = ["user:{id}"] +)]
fn save(id: u64) {
    let _ = id;
}

fn main() {}
