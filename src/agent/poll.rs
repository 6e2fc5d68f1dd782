//! The poll loop of `tendril start`: claim a job, run it, claim again at
//! once after a job, else after the (jittered) poll interval. No job is
//! claimed while the work dir cannot take one.

use std::time::{Duration, Instant};

use rand::Rng;

use super::heartbeat::Heartbeats;
use super::running_job::JobEnd;
use super::{timer, Agent, Exit};
use crate::health::JobOutcome;
use crate::trellis::retry::{retry, RetryPolicy};
use crate::trellis::{Claim, TrellisError};

/// What the loop does after a claim.
enum Next {
    /// Claim again at once.
    ClaimNow,
    /// Claim again after the poll interval.
    Wait,
    /// Stop claiming.
    Stop,
}

impl Agent {
    /// Claims and runs jobs until a drain, `--once`'s one job, or the idle
    /// limit.
    pub(super) async fn work(&self, heartbeats: &Heartbeats) -> Exit {
        let mut exit = Exit::Drained;
        let mut claim_now = true;
        let mut not_ready: Option<String> = None;
        let mut idle_since = Instant::now();
        loop {
            if !claim_now {
                tokio::select! {
                    _ = timer::sleep(jittered(self.settings.poll_interval)) => {}
                    _ = self.shutdown.drain.cancelled() => break,
                }
            }
            if self.shutdown.drain.is_cancelled() {
                break;
            }
            claim_now = false;
            if !self.ready_for_a_job(&mut not_ready) {
                continue;
            }
            let next = match self.claim().await {
                Ok(None) => self.after_no_job(idle_since),
                Ok(Some(claim)) => {
                    let end = self.run_claimed(claim, heartbeats).await;
                    idle_since = Instant::now();
                    self.after_a_job(end, &mut exit)
                }
                Err(error) => self.after_a_failed_claim(error, &mut exit).await,
            };
            match next {
                Next::ClaimNow => claim_now = true,
                Next::Wait => {}
                Next::Stop => break,
            }
        }
        exit
    }

    /// Whether the work dir can take a job; says so once when that changes.
    fn ready_for_a_job(&self, not_ready: &mut Option<String>) -> bool {
        let settings = &self.services.settings;
        match crate::work_dir::ready_for_a_job(&settings.work_dir, settings.min_free_space) {
            Err(problem) => {
                if not_ready.as_ref() != Some(&problem) {
                    tracing::warn!("not claiming jobs: {problem}");
                }
                *not_ready = Some(problem);
                false
            }
            Ok(()) => {
                if not_ready.take().is_some() {
                    tracing::info!("the work dir can take jobs again: claiming");
                }
                true
            }
        }
    }

    /// An empty claim: the idle limit is decided right after one, never
    /// during one.
    fn after_no_job(&self, idle_since: Instant) -> Next {
        match self.settings.exit_after_idle {
            Some(limit) if idle_since.elapsed() >= limit => {
                tracing::info!(
                    "no job for {}: exiting (TENDRIL_EXIT_AFTER_IDLE)",
                    crate::units::format_duration(limit)
                );
                Next::Stop
            }
            _ => Next::Wait,
        }
    }

    /// A claim that ran (or failed at once): claim again at once, unless
    /// `--once`.
    fn after_a_job(&self, end: Option<JobEnd>, exit: &mut Exit) -> Next {
        let Some(end) = end else {
            return Next::ClaimNow;
        };
        if end.interrupted {
            *exit = Exit::Interrupted;
        }
        if !self.settings.once {
            return Next::ClaimNow;
        }
        if end.outcome != JobOutcome::Success && *exit == Exit::Drained {
            *exit = Exit::JobFailed;
        }
        Next::Stop
    }

    /// A claim that failed. A job Trellis gave that cannot be read, but whose
    /// id is known, is failed in Trellis rather than left claimed.
    async fn after_a_failed_claim(&self, error: TrellisError, exit: &mut Exit) -> Next {
        match error {
            TrellisError::Unauthorized(message) => {
                // It was accepted at the announcement: a blip (Trellis
                // redeploying) is no reason to stop for good.
                tracing::error!(
                    "Trellis rejected the worker ID or token when claiming ({message}); trying again at the next poll"
                );
                Next::Wait
            }
            ref error @ (TrellisError::TooLarge {
                job_id: Some(ref job_id),
                ..
            }
            | TrellisError::UnreadableJob {
                job_id: Some(ref job_id),
                ..
            }) => {
                self.fail_unrun(job_id, &error.to_string()).await;
                if self.settings.once {
                    *exit = Exit::JobFailed;
                    return Next::Stop;
                }
                Next::ClaimNow
            }
            error => {
                tracing::warn!("claiming a job failed: {error}; trying again at the next poll");
                Next::Wait
            }
        }
    }

    /// Asks for a job. A claim is not idempotent: it is tried again only
    /// when the request surely claimed nothing (it was not sent, a 503 or a
    /// 429 turned it away), never after a timeout, a gateway's 502 or 504,
    /// or an answer that could not be read, which may each have claimed a
    /// job: that job stays CLAIMED in Trellis (this worker's heartbeat keeps
    /// the stale-job recovery away), and an error says so. A claim Trellis
    /// refuses waits for the next poll.
    async fn claim(&self) -> Result<Option<Claim>, TrellisError> {
        let policy = RetryPolicy::few(self.settings.retry_max_delay)
            .not_idempotent()
            .refusals_not_retried();
        retry(policy, "claiming a job", || self.client.claim())
            .await
            .inspect_err(|error| {
                if error.is_transient() && !error.surely_not_carried_out() {
                    tracing::error!(
                        "claiming a job: {error}; Trellis may have claimed a job for this worker whose answer was \
                         lost: it stays CLAIMED in Trellis until someone requeues or cancels it there"
                    );
                }
            })
    }
}

/// The poll interval, ±10 %, so that a fleet started together does not
/// claim in step.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(rand::thread_rng().gen_range(0.9..=1.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_jitter_stays_within_ten_percent() {
        for _ in 0..100 {
            let delay = jittered(Duration::from_secs(10));
            assert!(delay >= Duration::from_secs(9) && delay <= Duration::from_secs(11));
        }
    }
}
