//! A function that returns a future only makes it: invalidating when it returns would remove the
//! entries before the work runs, and whether or not it succeeds.
use std::future::Future;
use std::pin::Pin;

use cache_core::invalidates;

#[invalidates(key = "user:{id}")]
fn save(id: u64) -> impl Future<Output = Result<(), String>> {
    async move {
        let _ = id;
        Ok(())
    }
}

// What `#[async_trait]` makes of an `async fn` in a trait impl.
#[invalidates(tags = ["user:{id}"])]
fn boxed(id: u64) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> {
    Box::pin(async move {
        let _ = id;
        Ok(())
    })
}

// A future of its own that it awaits is fine in an `async fn`.
#[invalidates(key = "user:{id}")]
async fn saved(id: u64) -> Result<(), String> {
    save(id).await
}

fn main() {
    let _ = (save(1), boxed(1), saved(1));
}
