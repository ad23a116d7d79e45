use cache_core::invalidates;

#[invalidates(key = "k")]
struct Config;

#[invalidates(key = "k")]
const fn constant() -> u32 {
    1
}

trait Store {
    #[invalidates(key = "k")]
    fn set(&self);
}

fn main() {}
