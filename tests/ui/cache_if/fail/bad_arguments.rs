use cache_core::{cache_if, cached};

#[cached(key = "user:{id}")]
#[cache_if(reslt = |v: &u64| *v > 0)]
fn misspelt_result(id: u64) -> u64 {
    id
}

#[cached(key = "user:{id}")]
#[cache_if(id > 0, id < 100)]
fn two_conditions(id: u64) -> u64 {
    id
}

#[cached(key = "user:{id}")]
#[cache_if]
fn empty(id: u64) -> u64 {
    id
}

#[cache_if()]
#[cached(key = "user:{id}")]
fn empty_parens(id: u64) -> u64 {
    id
}

#[cached(key = "user:{id}")]
#[cache_if(result = |a: &u64| *a > 0, result = |b: &u64| *b > 1)]
fn two_results(id: u64) -> u64 {
    id
}

fn main() {}
