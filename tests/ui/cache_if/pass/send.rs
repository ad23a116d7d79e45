//! A `#[cache_if]` condition does not change whether the future is `Send`.

use cache_core::{cache_if, cached};

fn assert_send<T: Send>(_: &T) {}

#[cached(key = "user:{id}")]
#[cache_if(id != 0, result = |r: &Result<String, String>| r.is_ok())]
async fn get_user(id: u64) -> Result<String, String> {
    tokio::task::yield_now().await;
    Ok(id.to_string())
}

fn main() {
    let fut = get_user(1);
    assert_send(&fut);
    drop(fut);
}
