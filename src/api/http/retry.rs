//! How long to wait before sending an idempotent request again.
//!
//! Exponential backoff with *full jitter* (a uniformly random delay between zero and the exponential ceiling), as
//! in the AWS Architecture Blog's "Exponential Backoff and Jitter": many clients that failed together (a mount with
//! several readers, a server restart) then come back spread out instead of in waves. A server that says how long
//! to wait (`Retry-After` in seconds, on 429 and 503) is believed, up to a cap, so a confused or hostile server
//! cannot park a filesystem call for an hour.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// The ceiling of attempt `attempt` (0 for the first retry): `base * 2^attempt`, never above `max`.
fn ceiling(attempt: u32, base: Duration, max: Duration) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(max)
}

/// A full-jitter delay for retry number `attempt` (0-based): uniform in `[0, min(max, base * 2^attempt)]`.
pub(super) fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let ceiling_ms = u64::try_from(ceiling(attempt, base, max).as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(fastrand::u64(0..=ceiling_ms))
}

/// The `Retry-After` header in delta-seconds, capped at `cap`. The HTTP-date form is not used by the VM0 API and
/// is ignored (the caller falls back to backoff).
pub(super) fn retry_after(headers: &HeaderMap, cap: Duration) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    let secs: u64 = value.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(cap))
}

/// The delay before the next attempt: what the server asked for when it did, else a backoff.
pub(super) fn delay(
    attempt: u32,
    base: Duration,
    max: Duration,
    server_asked: Option<Duration>,
) -> Duration {
    server_asked.unwrap_or_else(|| backoff(attempt, base, max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    const BASE: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(5);

    #[test]
    fn ceiling_doubles_then_caps() {
        assert_eq!(ceiling(0, BASE, MAX), Duration::from_millis(200));
        assert_eq!(ceiling(1, BASE, MAX), Duration::from_millis(400));
        assert_eq!(ceiling(4, BASE, MAX), Duration::from_millis(3200));
        assert_eq!(ceiling(5, BASE, MAX), MAX);
        assert_eq!(ceiling(u32::MAX, BASE, MAX), MAX);
    }

    #[test]
    fn backoff_stays_under_its_ceiling() {
        for attempt in 0..10 {
            for _ in 0..100 {
                assert!(backoff(attempt, BASE, MAX) <= ceiling(attempt, BASE, MAX));
            }
        }
    }

    #[test]
    fn retry_after_seconds_are_capped_and_dates_ignored() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, MAX), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h, MAX), Some(Duration::from_secs(2)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("3600"));
        assert_eq!(retry_after(&h, MAX), Some(MAX));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h, MAX), None);
        assert_eq!(
            delay(0, BASE, MAX, Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
    }
}
