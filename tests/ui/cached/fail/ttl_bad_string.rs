use cache_core::cached;

#[cached(ttl = "30min")]
fn unknown_unit(x: u32) -> u32 {
    x
}

#[cached(ttl = "90")]
fn no_unit(x: u32) -> u32 {
    x
}

fn main() {}
