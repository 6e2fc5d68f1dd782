//! Retrying calls to Trellis: exponential backoff with full jitter, capped,
//! for an outage (connection errors, timeouts, 502/503/504, 429, answers
//! that are not Trellis's own) as long as the policy allows; a refusal of
//! Trellis's own (a 5xx with its JSON error: its database refused the
//! request) a few times at most, or for a while where it must be waited
//! out, each retry after at least half its backoff (a database that failed
//! for a moment gets that moment); anything else not at all. A request
//! that is not idempotent (a claim, a registration) is sent again only
//! after a failure that shows Trellis did not carry it out: never after a
//! timeout, a gateway's 502 or 504, or an answer that could not be read.

use std::future::Future;
use std::time::{Duration, Instant};

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
    /// How long a request Trellis refuses is tried again.
    pub refusals: RefusalRetries,
    /// Whether the request may be sent twice. One that may not (a
    /// registration, a claim) is sent again only after a failure that
    /// shows Trellis did not carry it out.
    pub idempotent: bool,
}

/// How long a request Trellis refuses (its own 5xx) is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalRetries {
    /// This many attempts in all (1: not retried).
    Attempts(u32),
    /// Until this long after the first refusal.
    For(Duration),
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
            refusals: RefusalRetries::Attempts(REFUSAL_ATTEMPTS),
            idempotent: true,
        }
    }

    /// Until Trellis accepts it: for data that must not be lost (logs,
    /// statuses).
    pub fn until_accepted(max_delay: Duration) -> Self {
        RetryPolicy {
            max_attempts: None,
            base_delay: Duration::from_millis(500),
            max_delay,
            refusals: RefusalRetries::Attempts(REFUSAL_ATTEMPTS),
            idempotent: true,
        }
    }

    /// The same, for a request that may not be sent twice: sent again only
    /// after a failure that shows Trellis did not carry it out (see
    /// [`TrellisError::surely_not_carried_out`]).
    pub fn not_idempotent(self) -> Self {
        RetryPolicy {
            idempotent: false,
            ..self
        }
    }

    /// The same, with a refusal not retried: for a request that a retry
    /// cannot help once Trellis refused it (a registration refused on a
    /// constraint).
    pub fn refusals_not_retried(self) -> Self {
        RetryPolicy {
            refusals: RefusalRetries::Attempts(1),
            ..self
        }
    }

    /// The same, with refusals retried for `budget` after the first: for a
    /// request that must wait out Trellis's database (a maintenance, a
    /// failover) before anything else can happen.
    pub fn refusals_retried_for(self, budget: Duration) -> Self {
        RetryPolicy {
            refusals: RefusalRetries::For(budget),
            ..self
        }
    }

    /// The wait before retry number `retry` (0 for the first retry): a
    /// uniformly random time up to `base * 2^retry`, capped ("full jitter").
    pub fn delay(&self, retry: u32) -> Duration {
        let millis = self.ceiling(retry).as_millis() as u64;
        Duration::from_millis(rand::thread_rng().gen_range(0..=millis))
    }

    /// The wait before retry number `retry` after a refusal: at least half
    /// of that ceiling ("equal jitter"), so that a few attempts span a
    /// moment of the database's rather than a few milliseconds.
    pub fn delay_after_refusal(&self, retry: u32) -> Duration {
        let half = self.ceiling(retry) / 2;
        half + self.delay(retry).min(half)
    }

    fn ceiling(&self, retry: u32) -> Duration {
        self.base_delay
            .saturating_mul(2u32.saturating_pow(retry.min(20)))
            .min(self.max_delay)
    }
}

/// Trellis's own refusals of one request so far, counted from the first
/// whatever their words (a database in trouble words its failures in many
/// ways).
#[derive(Default)]
pub(crate) struct Refusals {
    count: u32,
    first: Option<Instant>,
}

impl Refusals {
    /// Counts one more refusal; how many there have been, and how long
    /// since the first.
    pub(crate) fn one_more(&mut self) -> (u32, Duration) {
        self.count += 1;
        let first = *self.first.get_or_insert_with(Instant::now);
        (self.count, first.elapsed())
    }
}

impl RefusalRetries {
    /// Whether a request refused `count` times over `elapsed` is retried.
    fn retries(self, (count, elapsed): (u32, Duration)) -> bool {
        match self {
            RefusalRetries::Attempts(attempts) => count < attempts,
            RefusalRetries::For(budget) => elapsed < budget,
        }
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
    let mut retries = 0;
    let mut refusals = Refusals::default();
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
        let is_refusal = matches!(error, TrellisError::Refused { .. });
        let retried = match is_refusal {
            true => policy.refusals.retries(refusals.one_more()),
            false => error.is_transient() && (policy.idempotent || error.surely_not_carried_out()),
        } && policy.max_attempts.is_none_or(|max| attempts < max);
        if !retried {
            return Err(error);
        }
        let delay = match is_refusal {
            true => policy.delay_after_refusal(retries),
            false => policy.delay(retries),
        };
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
            refusals: RefusalRetries::Attempts(REFUSAL_ATTEMPTS),
            idempotent: true,
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
    async fn a_refusal_to_wait_out_is_retried_for_its_budget_not_a_few_times() {
        let calls = AtomicU32::new(0);
        let budget = Duration::from_millis(300);
        let started = Instant::now();
        let result = retry(quick(None).refusals_retried_for(budget), "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(TrellisError::Refused {
                status: 500,
                what: "the heartbeat",
                message: "Failed to update heartbeat: the database is starting up".into(),
            })
        })
        .await;
        assert!(matches!(result, Err(TrellisError::Refused { .. })));
        assert!(started.elapsed() >= budget, "{:?}", started.elapsed());
        assert!(calls.load(Ordering::SeqCst) > REFUSAL_ATTEMPTS);
    }

    #[test]
    fn a_retry_after_a_refusal_waits_at_least_half_its_backoff() {
        let policy = RetryPolicy::few(Duration::from_secs(30));
        for retry in 0..10 {
            let delay = policy.delay_after_refusal(retry);
            assert!(delay >= policy.ceiling(retry) / 2, "{delay:?}");
            assert!(delay <= policy.ceiling(retry));
        }
    }

    #[tokio::test]
    async fn a_request_that_is_not_idempotent_is_sent_again_only_when_surely_not_carried_out() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry(quick(None).not_idempotent(), "test", || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(TrellisError::Unsent("connection refused".into())),
                1 => Err(TrellisError::Unavailable {
                    status: 503,
                    message: "no backend".into(),
                }),
                _ => Err(TrellisError::Transport("timed out".into())),
            }
        })
        .await;
        assert!(matches!(result, Err(TrellisError::Transport(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 3, "not after the timeout");
        for maybe_carried_out in [502, 504, 500] {
            let calls = AtomicU32::new(0);
            let _ = retry(quick(None).not_idempotent(), "test", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(TrellisError::Unavailable {
                    status: maybe_carried_out,
                    message: "gateway".into(),
                })
            })
            .await;
            assert_eq!(calls.load(Ordering::SeqCst), 1, "{maybe_carried_out}");
        }
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
