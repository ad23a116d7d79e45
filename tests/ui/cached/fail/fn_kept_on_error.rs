use cache_core::cached;

// The attribute is wrong, but the function is still emitted as written: its callers compile and
// the only error is the attribute's.
#[cached(ttl = 0)]
fn still_here(x: u32) -> u32 {
    x
}

#[cached(key = "{nope}")]
async fn still_here_async(x: u32) -> u32 {
    x
}

fn main() {
    let y: u32 = still_here(1);
    let _ = y + 1;
    let _future = still_here_async(2);
}
