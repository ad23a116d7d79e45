//! The invalidating future is `Send` whenever the function's own would be: only rendered keys
//! and, after the body, the `Ok` value are held across an `.await`, never the error.

use cache_core::invalidates;

fn assert_send<T: Send>(_: &T) {}

#[invalidates(key = "user:{id}")]
async fn boxed_error(id: u64) -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = "1".parse()?;
    let _ = id + n;
    tokio::task::yield_now().await;
    Ok(())
}

#[invalidates(key = "user:{id}", before = true)]
async fn before(id: &str) -> Result<String, Box<dyn std::error::Error>> {
    tokio::task::yield_now().await;
    Ok(id.to_owned())
}

fn main() {
    let fut = boxed_error(1);
    assert_send(&fut);
    drop(fut);
    let fut = before("a");
    assert_send(&fut);
    drop(fut);
}
