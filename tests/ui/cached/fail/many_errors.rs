use cache_core::cached;

// Every mistake in the attribute is reported in one build.
#[cached(
    ttl = "soon",
    cache = 5,
    key = "user:{usr}",
    expires = 1,
    cache_none = "yes"
)]
fn many(id: u64) -> u64 {
    id
}

fn main() {}
