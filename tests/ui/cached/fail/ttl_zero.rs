use cache_core::cached;

#[cached(ttl = 0)]
fn zero(x: u32) -> u32 {
    x
}

#[cached(ttl = "0s")]
fn zero_string(x: u32) -> u32 {
    x
}

fn main() {}
