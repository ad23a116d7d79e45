use cache_core::cached;

#[cached(cache_none = true)]
fn not_option(x: u32) -> Result<u32, String> {
    Ok(x)
}

fn main() {}
