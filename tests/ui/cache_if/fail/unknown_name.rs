use cache_core::{cache_if, cached};

#[cached(key = "user:{id}")]
#[cache_if(user_id > 0)]
fn below(id: u64) -> u64 {
    id
}

#[cache_if(idd > 0)]
#[cached(key = "user:{id}")]
fn above(id: u64) -> u64 {
    id
}

fn main() {}
