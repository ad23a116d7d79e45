use cache_core::cached;

#[derive(Debug, Clone)]
struct Timeout;

impl From<cache_core::TimedOut> for Timeout {
    fn from(_: cache_core::TimedOut) -> Self {
        Timeout
    }
}

#[cached(ttl = 60, timeout = "2s", soft_timeout = "100ms")]
fn report(id: u64) -> Result<u64, Timeout> {
    Ok(id)
}

fn main() {}
