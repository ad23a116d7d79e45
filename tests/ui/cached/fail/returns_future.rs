//! A function that returns a future only makes it: the cache would hold the future, not its
//! output.
use std::future::Future;
use std::pin::Pin;

use cache_core::cached;

#[cached]
fn load(id: u64) -> impl Future<Output = u64> {
    async move { id }
}

// What `#[async_trait]` makes of an `async fn` in a trait impl.
#[cached(key = "user:{id}")]
fn boxed(id: u64) -> Pin<Box<dyn Future<Output = u64> + Send>> {
    Box::pin(async move { id })
}

fn main() {
    let _ = (load(1), boxed(1));
}
