use cache_core::cached;

#[cached(ttl = true)]
fn bool_ttl(x: u32) -> u32 {
    x
}

#[cached(ttl = 1.5)]
fn float_ttl(x: u32) -> u32 {
    x
}

#[cached(ttl = 1800ms)]
fn suffixed_ttl(x: u32) -> u32 {
    x
}

fn main() {}
