//! Retry with backoff for lake calls that fail because storage is briefly
//! unreachable (an object store outage, a throttled account). Anything else
//! fails at once.

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a lake call keeps retrying before the error surfaces.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(300);
const FIRST_DELAY: Duration = Duration::from_millis(200);
const MAX_DELAY: Duration = Duration::from_secs(5);

/// True if the error text says storage could not be reached or was busy,
/// as object_store and delta-rs word it after their own retries.
pub fn is_transient(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "error sending request",
        "connection refused",
        "connection reset",
        "connection closed",
        "broken pipe",
        "timed out",
        "timeout",
        "service unavailable",
        "server busy",
        "internal server error",
        "bad gateway",
        "too many requests",
        "dns error",
        "client error (connect)",
        "retry error",
        "max_retries",
        "eof",
        // EMFILE/ENFILE: file descriptors run out under a flood of
        // connections and come back as they close.
        "too many open files",
    ]
    .iter()
    .any(|marker| m.contains(marker))
}

/// Told the table's name each time a call is retried; set once by the host
/// (its metrics), since the lake knows nothing of how retries are counted.
static ON_RETRY: OnceLock<fn(&str)> = OnceLock::new();

/// Registers what to call on each retried storage call (first call wins).
pub fn on_retry(hook: fn(&str)) {
    let _ = ON_RETRY.set(hook);
}

/// Reports one retried call on `table` to the registered hook, if any.
pub(crate) fn report(table: &str) {
    if let Some(hook) = ON_RETRY.get() {
        hook(table);
    }
}

/// Backoff delays: 200 ms doubling to 5 s.
pub fn delays() -> impl Iterator<Item = Duration> {
    std::iter::successors(Some(FIRST_DELAY), |d| Some((*d * 2).min(MAX_DELAY)))
}

/// Runs `call` until it succeeds, fails for a non-transient reason, or
/// [`GIVE_UP_AFTER`] has passed, sleeping between attempts.
pub async fn transient<T, E, F, Fut>(table: &str, what: &str, mut call: F) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let start = Instant::now();
    let mut delays = delays();
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(e) if is_transient(&e.to_string()) && start.elapsed() < GIVE_UP_AFTER => {
                let delay = delays.next().unwrap_or(MAX_DELAY);
                tracing::warn!(table, what, error = %e, ?delay, "storage unreachable; retrying");
                report(table);
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_are_transient_and_logic_errors_are_not() {
        assert!(is_transient(
            "Generic MicrosoftAzure error: error sending request for url"
        ));
        assert!(is_transient("Connection refused (os error 111)"));
        assert!(is_transient(
            "Generic LocalFileSystem error: Too many open files (os error 24)"
        ));
        assert!(!is_transient("Not a Delta table: no log files"));
        assert!(!is_transient("Schema mismatch: column x"));
    }

    #[test]
    fn backoff_grows_to_a_ceiling() {
        let d: Vec<_> = delays().take(7).collect();
        assert_eq!(d[0], Duration::from_millis(200));
        assert_eq!(d[1], Duration::from_millis(400));
        assert_eq!(d[6], MAX_DELAY);
    }
}
