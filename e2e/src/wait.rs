//! Polling helper for conditions that become true eventually.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` every 50 ms until it returns `Some`, or panics after `timeout` with
/// `what` and the last value `describe` gives.
#[track_caller]
pub fn eventually<'a, T, F, Fut>(what: &'a str, timeout: Duration, mut check: F) -> impl Future<Output = T> + 'a
where
    F: FnMut() -> Fut + 'a,
    Fut: Future<Output = Option<T>> + 'a,
{
    let caller = std::panic::Location::caller();
    async move {
        let start = Instant::now();
        loop {
            if let Some(v) = check().await {
                return v;
            }
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what} (at {caller})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
