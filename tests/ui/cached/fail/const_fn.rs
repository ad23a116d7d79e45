use cache_core::cached;

#[cached]
const fn constant(x: u32) -> u32 {
    x
}

#[cached]
extern "C" fn foreign(x: u32) -> u32 {
    x
}

fn main() {}
