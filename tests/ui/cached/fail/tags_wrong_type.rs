use cache_core::cached;

#[cached(tags = "user:{id}")]
fn not_an_array(id: u64) -> u64 {
    id
}

#[cached(tags = ["user:{id}", 5])]
fn not_a_string(id: u64) -> u64 {
    id
}

fn main() {}
