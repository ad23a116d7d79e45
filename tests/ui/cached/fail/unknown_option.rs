use cache_core::cached;

#[cached(tll = 60)]
fn typo(x: u32) -> u32 {
    x
}

#[cached(expires = 60)]
fn unknown(x: u32) -> u32 {
    x
}

fn main() {}
