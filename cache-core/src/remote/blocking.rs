//! Remote I/O for synchronous callers (sync `#[cached]` functions, `BlockingCache`): the future
//! runs on a small runtime owned by cache-core and the caller's thread waits for it. A sync
//! function is blocking by nature; this keeps it working whether or not it is called from inside
//! a tokio runtime, where `Handle::block_on` would panic.

use std::future::Future;
use std::sync::LazyLock;

/// A current-thread runtime driven by its own thread, so it needs no `rt-multi-thread` feature.
static RUNTIME: LazyLock<Option<tokio::runtime::Handle>> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| tracing::error!(error = %e, "cache-core could not start its I/O runtime; sync callers skip the remote tier"))
        .ok()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("cache-core-io".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))
        .map_err(|e| tracing::error!(error = %e, "cache-core could not start its I/O thread"))
        .ok()?;
    Some(handle)
});

/// Runs `fut` to completion on the cache-core I/O runtime; `None` if that runtime could not start.
pub(crate) fn run<F>(fut: F) -> Option<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let runtime = RUNTIME.as_ref()?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().ok()
}

/// Runs `fut` for a synchronous caller. Work that touches no remote tier (`remote == false`)
/// completes on its first poll, so it runs right here without a thread hop. Work that may reach
/// a remote tier goes to the I/O runtime without being polled here first: outside a runtime its
/// timeout would panic ("no reactor running"), and inside one its timer and its connection would
/// belong to the caller's runtime, which cannot drive them while this thread waits.
pub(crate) fn run_sync<F>(fut: F, remote: bool) -> Option<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if remote {
        return run(fut);
    }
    let mut fut = Box::pin(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => run(fut),
    }
}

/// Spawns a background task on the cache-core I/O runtime.
pub(crate) fn spawn<F: Future<Output = ()> + Send + 'static>(fut: F) {
    if let Some(runtime) = RUNTIME.as_ref() {
        runtime.spawn(fut);
    }
}
