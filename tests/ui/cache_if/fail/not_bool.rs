use cache_core::{cache_if, cached};

#[cached(key = "user:{id}")]
#[cache_if(id)]
fn integer(id: u64) -> u64 {
    id
}

#[cache_if(name.len())]
#[cached(key = "name:{name}")]
async fn length(name: &str) -> usize {
    name.len()
}

fn main() {}
