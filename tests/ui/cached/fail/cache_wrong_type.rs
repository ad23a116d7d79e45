use cache_core::cached;

#[cached(cache = 5)]
fn number(x: u32) -> u32 {
    x
}

#[cached(cache = users)]
fn ident(x: u32) -> u32 {
    x
}

#[cached(cache = "")]
fn empty(x: u32) -> u32 {
    x
}

fn main() {}
