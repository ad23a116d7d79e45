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
        .spawn(move || {
            ON_IO_THREAD.set(true);
            runtime.block_on(std::future::pending::<()>())
        })
        .map_err(|e| tracing::error!(error = %e, "cache-core could not start its I/O thread"))
        .ok()?;
    Some(handle)
});

thread_local! {
    /// Set on the I/O runtime's own thread.
    static ON_IO_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `fut` to completion on the cache-core I/O runtime; `None` if that runtime could not start,
/// or if the caller is that runtime's own thread.
pub(crate) fn run<F>(fut: F) -> Option<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    // A task on the I/O runtime (a background refresh spawned where no tokio runtime was
    // current) whose body calls a sync cached function with a remote tier would wait here for
    // work only this thread can run: the runtime has one thread. Skipping the remote tier for
    // that call keeps it answering, as when the runtime could not start.
    if ON_IO_THREAD.get() {
        tracing::debug!("sync remote call on cache-core's I/O thread: remote tier skipped");
        return None;
    }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn a_sync_call_made_on_the_io_thread_answers_instead_of_waiting_for_itself() {
        let (tx, rx) = std::sync::mpsc::channel();
        super::spawn(async move {
            let _ = tx.send(super::run(async { 7 }));
        });
        let nested = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the I/O thread waited for itself");
        assert_eq!(nested, None, "the remote tier is skipped there");
        // Elsewhere the runtime still runs the work.
        assert_eq!(super::run(async { 7 }), Some(7));
    }
}
