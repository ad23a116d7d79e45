use cache_core::invalidates;

#[invalidates(key = "a:{id}", cache = "users", key = "b:{id}")]
fn twice(id: u64) {
    let _ = id;
}

fn main() {}
