//! Retrying calls to Trellis: exponential backoff with full jitter, capped,
//! for an outage (connection errors, timeouts, 502/503/504, 429, answers
//! that are not Trellis's own) as long as the policy allows; a refusal of
//! Trellis's own (a 5xx with its JSON error: its database refused the
//! request) a few times at most, as it repeats on every attempt unless the
//! database failed for a moment; anything else not at all.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use super::TrellisError;

/// How a call is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, including the first; `None` retries until the error
    /// is permanent (the caller bounds the time if it must).
    pub max_attempts: Option<u32>,
    /// The first retry waits up to this long.
    pub base_delay: Duration,
    /// No retry waits longer than this.
    pub max_delay: Duration,
    /// Attempts in all a request Trellis refuses gets (1: not retried).
    pub refusal_attempts: u32,
}

/// Attempts a refused request gets by default: enough for a database that
/// failed for a moment, few for one that refuses the request itself.
const REFUSAL_ATTEMPTS: u32 = 3;

impl RetryPolicy {
    /// A few quick attempts, for calls that are repeated on a timer anyway
    /// (heartbeat, claim, ownership checks).
    pub fn few(max_delay: Duration) -> Self {
        RetryPolicy {
            max_attempts: Some(3),
            base_delay: Duration::from_millis(500),
            max_delay,
            refusal_attempts: REFUSAL_ATTEMPTS,
        }
    }

    /// Until Trellis accepts it: for data that must not be lost (logs,
    /// statuses).
    pub fn until_accepted(max_delay: Duration) -> Self {
        RetryPolicy {
            max_attempts: None,
            base_delay: Duration::from_millis(500),
            max_delay,
            refusal_attempts: REFUSAL_ATTEMPTS,
        }
    }

    /// The same, with a refusal not retried: for a request that a retry
    /// cannot help once Trellis refused it (a registration refused on a
    /// constraint).
    pub fn refusals_not_retried(self) -> Self {
        RetryPolicy {
            refusal_attempts: 1,
            ..self
        }
    }

    /// The wait before retry number `retry` (0 for the first retry): a
    /// uniformly random time up to `base * 2^retry`, capped ("full jitter").
    pub fn delay(&self, retry: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry.min(20)))
            .min(self.max_delay);
        let millis = ceiling.as_millis() as u64;
        Duration::from_millis(rand::thread_rng().gen_range(0..=millis))
    }
}

/// Runs `call` until it succeeds, fails permanently, or runs out of
/// attempts; every transient failure is logged with what was being done.
pub async fn retry<T, F, Fut>(
    policy: RetryPolicy,
    what: &str,
    mut call: F,
) -> Result<T, TrellisError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, TrellisError>>,
{
    let (mut retries, mut refusals) = (0, 0);
    loop {
        let error = match call().await {
            Ok(value) => {
                if retries > 0 {
                    tracing::info!("{what}: succeeded after {retries} retries");
                }
                return Ok(value);
            }
            Err(error) => error,
        };
        let attempts = retries + 1;
        let refused = matches!(error, TrellisError::Refused { .. });
        refusals += u32::from(refused);
        let retried = (error.is_transient() || refused)
            && policy.max_attempts.is_none_or(|max| attempts < max)
            && refusals < policy.refusal_attempts;
        if !retried {
            return Err(error);
        }
        let delay = policy.delay(retries);
        tracing::warn!(
            "{what}: {error}; retrying in {} (attempt {attempts})",
            crate::units::format_duration(delay)
        );
        tokio::time::sleep(delay).await;
        retries += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn quick(max_attempts: Option<u32>) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            refusal_attempts: REFUSAL_ATTEMPTS,
        }
    }

    #[test]
    fn delays_are_capped_and_jittered() {
        let policy = RetryPolicy::until_accepted(Duration::from_secs(30));
        for retry in 0..40 {
            assert!(policy.delay(retry) <= Duration::from_secs(30));
        }
        let distinct: std::collections::HashSet<_> = (0..50).map(|_| policy.delay(10)).collect();
        assert!(distinct.len() > 1, "full jitter gives different delays");
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let result = retry(quick(None), "test", || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0..=2 => Err(TrellisError::Unavailable {
                    status: 503,
                    message: "down".into(),
                }),
                _ => Ok("done"),
            }
        })
        .await;
        assert_eq!(result.unwrap(), "done");
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry(quick(None), "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(TrellisError::Rejected {
                status: 400,
                what: "the request",
                message: "bad".into(),
            })
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_refusal_gets_a_few_attempts_even_where_an_outage_gets_more() {
        let refused = || TrellisError::Refused {
            status: 500,
            what: "the registration",
            message: "Failed to register tendril: duplicate key".into(),
        };
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry(quick(None), "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(refused())
        })
        .await;
        assert!(matches!(result, Err(TrellisError::Refused { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), REFUSAL_ATTEMPTS);
        calls.store(0, Ordering::SeqCst);
        let _ = retry(quick(None).refusals_not_retried(), "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(refused())
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "not retried");
        // A database that failed for a moment: the next attempt passes.
        calls.store(0, Ordering::SeqCst);
        let result = retry(quick(None), "test", || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(refused()),
                _ => Ok("stored"),
            }
        })
        .await;
        assert_eq!(result.unwrap(), "stored");
    }

    #[tokio::test]
    async fn attempts_are_bounded_when_asked() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry(quick(Some(3)), "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(TrellisError::Transport("refused".into()))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
