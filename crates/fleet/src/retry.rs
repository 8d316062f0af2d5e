//! Retrying through transient failures (a server restarting, a cluster
//! electing a leader) with exponential backoff and a deadline.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::FleetError;

/// The delay before attempt `n` (0-based): 100 ms doubling, at most `cap`.
pub(crate) fn backoff(n: u32, cap: Duration) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << n.min(10))).min(cap)
}

/// Run `f` until it succeeds, fails with a non-transient error, or
/// `deadline()` (asked after each failure) has passed since the first
/// attempt (then its last error).
pub(crate) async fn until<T, F, Fut>(
    deadline: impl Fn() -> Duration,
    what: &str,
    mut f: F,
) -> Result<T, FleetError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, FleetError>>,
{
    let start = Instant::now();
    let mut attempt = 0;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && start.elapsed() < deadline() => {
                let wait = backoff(attempt, Duration::from_secs(2));
                tracing::debug!(error = %e, ?wait, "{what}: retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
