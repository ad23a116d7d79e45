use cache_core::cached;

#[derive(Debug)]
struct Slow;

impl From<cache_core::TimedOut> for Slow {
    fn from(_: cache_core::TimedOut) -> Self {
        Slow
    }
}

// The soft timeout can never fire when the hard one ends the wait first (or together).
#[cached(ttl = 60, fail_safe = 600, soft_timeout = "2s", timeout = "2s")]
async fn same(x: u32) -> Result<u32, Slow> {
    Ok(x)
}

#[cached(ttl = 60, fail_safe = 600, soft_timeout = 3, timeout = "500ms")]
async fn longer(x: u32) -> Result<u32, Slow> {
    Ok(x)
}

fn main() {}
