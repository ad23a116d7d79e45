use cache_core::cached;

#[cached(ttl = 60, cache = "a", ttl = 120)]
fn twice(x: u32) -> u32 {
    x
}

fn main() {}
