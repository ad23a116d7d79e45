use cache_core::{cache_if, cached};

#[cached(key = "user:{id}")]
#[cache_if(id > 0)]
#[cache_if(id < 100)]
fn both_below(id: u64) -> u64 {
    id
}

#[cache_if(id > 0)]
#[cached(key = "user:{id}")]
#[cache_if(id < 100)]
fn around(id: u64) -> u64 {
    id
}

fn main() {}
