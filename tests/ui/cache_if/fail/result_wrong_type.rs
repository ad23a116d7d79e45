use cache_core::{cache_if, cached};

#[cached(key = "user:{id}")]
#[cache_if(result = |name: &String| !name.is_empty())]
fn wrong_parameter(id: u64) -> u64 {
    id
}

#[cached(key = "user:{id}")]
#[cache_if(result = |v: &u64| *v)]
fn not_bool(id: u64) -> u64 {
    id
}

#[cached(key = "user:{id}")]
#[cache_if(result = true)]
fn not_a_function(id: u64) -> u64 {
    id
}

fn main() {}
