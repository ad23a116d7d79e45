use cache_core::cached;

#[cached(key = "user:{id")]
fn unclosed(id: u64) -> u64 {
    id
}

#[cached(key = "user:id}")]
fn unmatched(id: u64) -> u64 {
    id
}

fn main() {}
