use cache_core::cached;

// A hard timeout returns an error: the return type must be able to hold one.
#[cached(ttl = 60, timeout = "2s")]
async fn count(id: u64) -> u64 {
    id
}

#[cached(ttl = 60, timeout = "2s")]
async fn name(id: u64) -> Result<String, String> {
    Ok(id.to_string())
}

fn main() {}
