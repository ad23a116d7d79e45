use cache_core::cached;

#[cached(ttl = 60, cache = "squares")]
fn square(x: u64) -> u64 {
    x * x
}

#[cached(key = "greeting:{name:lower}")]
pub fn greet(name: &str) -> String {
    format!("hello, {name}")
}

fn main() {
    assert_eq!(square(3), 9);
    assert_eq!(square(3), 9);
    assert_eq!(greet("Ada"), "hello, Ada");
}
