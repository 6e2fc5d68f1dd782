//! The agent: `tendril start`. It announces the worker, delivers what an
//! earlier run left in the outbox, then claims and runs jobs one at a time
//! until a signal drains it.
//!
//! While a job runs the agent watches four things besides the job: the
//! delivery of its logs and progress, the job's ownership in Trellis (a user's
//! Cancel, or a requeue to another worker), the job timeout, and a hard
//! shutdown. Any of them can stop the job; the first reason given decides
//! what is reported.

pub mod heartbeat;
pub mod protection;
pub mod shutdown;

use std::time::Duration;

use rand::Rng;
use serde_json::Value;

use crate::config::AgentSettings;
use crate::jobs::{self, JobServices, JobStop, Outcome, StopReason};
use crate::logs::spool::DeliveryError;
use crate::logs::JobLog;
use crate::outbox::Outbox;
use crate::report::trellis::{recover, JobReport};
use crate::tools::process::supervisors;
use crate::tools::versions::tool_versions;
use crate::trellis::retry::{retry, RetryPolicy};
use crate::trellis::{
    Announcement, Claim, Heartbeat, StatusUpdate, TrellisClient, TrellisError, WorkerStatus,
};
use heartbeat::{Heartbeats, OFFLINE_BUDGET};
use protection::TaskProtection;
use shutdown::Shutdown;

/// How `tendril start` ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// Drained cleanly: exit 0.
    Drained,
    /// A job was interrupted, or something owed to Trellis was left in the
    /// outbox: exit 1.
    Interrupted,
    /// Trellis refused the worker's credentials: exit 2.
    Rejected(String),
}

/// The worker.
pub struct Agent {
    settings: AgentSettings,
    services: JobServices,
    client: TrellisClient,
    outbox: Outbox,
    shutdown: Shutdown,
    protection: Option<TaskProtection>,
}

impl Agent {
    pub fn new(
        settings: AgentSettings,
        services: JobServices,
        client: TrellisClient,
        outbox: Outbox,
        shutdown: Shutdown,
    ) -> Self {
        let protection = TaskProtection::from_agent_uri(
            services.host.get("ECS_AGENT_URI"),
            services.settings.job_timeout,
        );
        Agent {
            settings,
            services,
            client,
            outbox,
            shutdown,
            protection,
        }
    }

    /// Turns ECS task protection on or off, when on ECS; returns the
    /// problem, if any (a warning, never a failed job).
    async fn protect(&self, enabled: bool) -> Option<String> {
        let protection = self.protection.as_ref()?;
        let state = if enabled { "on" } else { "off" };
        match protection.set(enabled).await {
            Ok(()) => {
                tracing::info!("ECS task protection {state}");
                None
            }
            Err(problem) => {
                tracing::warn!("cannot turn ECS task protection {state}: {problem}");
                Some(problem)
            }
        }
    }

    /// Runs the worker until it is drained or stopped.
    pub async fn run(&self) -> Exit {
        crate::workspace::remove_leftovers(&self.services.settings.work_dir);
        match self.announce().await {
            Ok(true) => {}
            Ok(false) => return Exit::Drained,
            Err(message) => return Exit::Rejected(message),
        }
        let heartbeats = Heartbeats::start(
            self.client.clone(),
            self.settings.heartbeat_interval,
            self.settings.retry_max_delay,
        );
        let mut exit = self.deliver_outbox().await;
        if exit == Exit::Drained {
            exit = self.work(&heartbeats).await;
        }
        if !self.shutdown.drain.is_cancelled() {
            self.shutdown.drain.cancel();
        }
        heartbeats.set_status(WorkerStatus::Draining);
        heartbeats.stop().await;
        supervisors().close();
        if tokio::time::timeout(Duration::from_secs(5), supervisors().wait())
            .await
            .is_err()
        {
            tracing::warn!("some tool processes had not ended at exit");
        }
        exit
    }

    /// The first heartbeat: ONLINE, with what this worker is. Retried while
    /// Trellis is unreachable; `Ok(false)` if a signal came first.
    async fn announce(&self) -> Result<bool, String> {
        let tools = tool_versions(&std::env::var("PATH").unwrap_or_default()).await;
        let heartbeat = Heartbeat {
            version: crate::VERSION.to_string(),
            status: WorkerStatus::Online,
            current_job_id: None,
            announcement: Some(Announcement {
                hostname: hostname(),
                mode: self.services.settings.mode.as_str().to_string(),
                tools,
            }),
        };
        let policy = RetryPolicy::until_accepted(self.settings.retry_max_delay);
        let announce = retry(policy, "announcing the worker to Trellis", || {
            self.client.heartbeat(&heartbeat)
        });
        tokio::pin!(announce);
        let result = tokio::select! {
            result = &mut announce => result,
            _ = self.shutdown.drain.cancelled() => {
                // An announcement in flight may already have reached Trellis:
                // let it land, so that Trellis also hears DRAINING and OFFLINE
                // rather than seeing an ONLINE worker fall silent.
                match tokio::time::timeout(OFFLINE_BUDGET, announce).await {
                    Ok(Ok(())) => Ok(()),
                    _ => return Ok(false),
                }
            }
        };
        match result {
            Ok(()) => {
                tracing::info!(
                    "announced to Trellis as worker {} (Tendril {})",
                    self.client.worker_id(),
                    crate::VERSION
                );
                Ok(true)
            }
            Err(TrellisError::Unauthorized(_)) => {
                Err("Trellis rejected the worker ID or token".into())
            }
            Err(error) => Err(format!(
                "Trellis refused the worker's announcement: {error}"
            )),
        }
    }

    /// Delivers every entry an earlier run left, before anything is claimed.
    async fn deliver_outbox(&self) -> Exit {
        let entries = match self.outbox.pending() {
            Ok(entries) => entries,
            Err(error) => {
                tracing::error!("cannot read the outbox: {error}");
                return Exit::Drained;
            }
        };
        for entry in entries {
            tokio::select! {
                _ = recover(&self.client, &entry, self.settings.retry_max_delay) => {}
                _ = self.shutdown.hard.cancelled() => return Exit::Interrupted,
            }
        }
        Exit::Drained
    }

    /// The poll loop: claim, run, claim again at once after a job.
    async fn work(&self, heartbeats: &Heartbeats) -> Exit {
        let mut exit = Exit::Drained;
        let mut claim_now = true;
        loop {
            if !claim_now {
                tokio::select! {
                    _ = tokio::time::sleep(jittered(self.settings.poll_interval)) => {}
                    _ = self.shutdown.drain.cancelled() => break,
                }
            }
            if self.shutdown.drain.is_cancelled() {
                break;
            }
            claim_now = false;
            match retry(
                RetryPolicy::few(self.settings.retry_max_delay),
                "claiming a job",
                || self.client.claim(),
            )
            .await
            {
                Ok(None) => {}
                Ok(Some(claim)) => {
                    if self.run_claimed(claim, heartbeats).await == Exit::Interrupted {
                        exit = Exit::Interrupted;
                    }
                    claim_now = true;
                }
                Err(TrellisError::Unauthorized(_)) => {
                    return Exit::Rejected("Trellis rejected the worker ID or token".into());
                }
                Err(error) => {
                    tracing::warn!("claiming a job failed: {error}; trying again at the next poll")
                }
            }
        }
        exit
    }

    /// Runs one claimed job and delivers all it owes.
    async fn run_claimed(&self, claim: Claim, heartbeats: &Heartbeats) -> Exit {
        let (claimed, job_id) = match claim.into_job() {
            Ok(Some(claimed)) => {
                let id = claimed.job.id.clone();
                (Ok(claimed), id)
            }
            Ok(None) => return Exit::Drained,
            Err(malformed) => match malformed.id {
                Some(id) => (Err(malformed.reason), id),
                None => {
                    tracing::error!(
                        "Trellis gave a job without an id ({}); it cannot be run or reported",
                        malformed.reason
                    );
                    return Exit::Drained;
                }
            },
        };
        tracing::info!("claimed job {job_id}");
        let unprotected = self.protect(true).await;
        let report = match JobReport::open(
            &self.client,
            &self.outbox,
            &job_id,
            self.settings.retry_max_delay,
        ) {
            Ok(report) => report,
            Err(error) => {
                tracing::error!(
                    "cannot open job {job_id}'s outbox entry: {error}; the job is not run"
                );
                self.protect(false).await;
                return Exit::Drained;
            }
        };
        heartbeats.set_job(Some(job_id.clone()));
        let settings = &self.services.settings;
        let log = JobLog::new(
            report.log_destination(),
            settings.log_limit,
            settings.progress_interval,
        );
        if let Some(problem) = unprotected {
            log.system(&format!(
                "warning: ECS task protection could not be turned on ({problem}); ECS may stop this task during the job"
            ));
        }
        let stop = JobStop::default();
        let job = async {
            match claimed {
                Ok(claimed) => {
                    jobs::run(
                        claimed,
                        &self.services,
                        report.reporter(),
                        log.clone(),
                        &stop,
                    )
                    .await
                }
                Err(reason) => {
                    log.system(&format!("==> this job cannot run: {reason}"));
                    Outcome::Report(StatusUpdate::failed(reason))
                }
            }
        };
        let delivery = report.deliver();
        let ownership = watch_ownership(&self.client, &job_id, self.settings.heartbeat_interval);
        let timeout = tokio::time::sleep(settings.job_timeout);
        tokio::pin!(job, delivery, ownership, timeout);

        let mut delivered: Option<Result<(), DeliveryError>> = None;
        let (mut draining, mut stopping) = (false, false);
        let outcome = loop {
            tokio::select! {
                outcome = &mut job => break outcome,
                result = &mut delivery, if delivered.is_none() => {
                    if let Err(DeliveryError::Trellis(TrellisError::JobGone(message))) = &result {
                        stop.stop(StopReason::Reassigned(message.clone()));
                    }
                    delivered = Some(result);
                }
                reason = &mut ownership, if !stopping => {
                    stopping = true;
                    stop.stop(reason);
                }
                _ = &mut timeout, if !stopping => {
                    stopping = true;
                    stop.stop(StopReason::Timeout(settings.job_timeout));
                }
                _ = self.shutdown.drain.cancelled(), if !draining => {
                    draining = true;
                    heartbeats.set_status(WorkerStatus::Draining);
                    log.system("the worker is shutting down: this job may finish first (TENDRIL_DRAIN_GRACE)");
                }
                _ = self.shutdown.hard.cancelled(), if !stopping => {
                    stopping = true;
                    stop.stop(StopReason::Shutdown);
                }
            }
        };

        let terminal = match &outcome {
            Outcome::Report(update) => Some(update.clone()),
            Outcome::Abandon(_) => None,
        };
        report.close(terminal.as_ref());
        let finish = async {
            let delivered = match delivered {
                Some(result) => result,
                None => delivery.await,
            };
            match delivered {
                Ok(()) => report.send_terminal(terminal.as_ref()).await,
                Err(DeliveryError::Trellis(TrellisError::JobGone(message))) => {
                    tracing::warn!(
                        "job {job_id} is no longer this worker's ({message}); nothing more is sent"
                    );
                    report.abandon();
                }
                Err(error) => tracing::error!(
                    "delivering job {job_id}'s log failed: {error}; kept in the outbox"
                ),
            }
        };
        let deadline = async {
            self.shutdown.hard.cancelled().await;
            tokio::time::sleep(self.settings.final_delivery_timeout).await;
        };
        let mut exit = match stop.reason() {
            Some(StopReason::Shutdown) => Exit::Interrupted,
            _ => Exit::Drained,
        };
        tokio::select! {
            _ = finish => {}
            _ = deadline => {
                tracing::warn!(
                    "Trellis has not taken all of job {job_id}'s log and status before the final delivery \
                     timeout; they stay in the outbox and are sent at the next start"
                );
                exit = Exit::Interrupted;
            }
        }
        heartbeats.set_job(None);
        self.protect(false).await;
        exit
    }
}

/// Reads the job in Trellis every interval and returns when it must stop:
/// cancelled by a user, or no longer this worker's.
async fn watch_ownership(client: &TrellisClient, job_id: &str, interval: Duration) -> StopReason {
    let policy = RetryPolicy::few(interval);
    loop {
        tokio::time::sleep(interval).await;
        match retry(policy, "checking the running job in Trellis", || {
            client.get_job(job_id)
        })
        .await
        {
            Ok(None) => {
                return StopReason::Reassigned("the job no longer exists in Trellis".into())
            }
            Ok(Some(row)) => {
                if row.get("status").and_then(Value::as_str) == Some("CANCELLED") {
                    return StopReason::Cancelled;
                }
                match row.get("worker_id").and_then(Value::as_str) {
                    Some(owner) if owner != client.worker_id() => {
                        return StopReason::Reassigned(format!(
                            "the job now belongs to worker {owner}"
                        ))
                    }
                    _ => {}
                }
            }
            Err(error) => tracing::warn!("cannot check job {job_id} in Trellis: {error}"),
        }
    }
}

/// The poll interval, ±10 %, so that a fleet started together does not
/// claim in step.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(rand::thread_rng().gen_range(0.9..=1.1))
}

/// This host's name, for the announcement.
pub fn hostname() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length, and gethostname
    // writes at most that many bytes.
    let result = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if result != 0 {
        return "unknown".into();
    }
    let end = buffer.iter().position(|b| *b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
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
