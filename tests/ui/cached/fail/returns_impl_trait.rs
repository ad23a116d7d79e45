use cache_core::cached;

#[cached]
async fn handler(id: u64) -> impl std::fmt::Display {
    id
}

#[cached]
fn nested(id: u64) -> Result<impl Clone, String> {
    Ok(id)
}

fn main() {}
