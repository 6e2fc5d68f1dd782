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
mod timer;

use std::time::Duration;

use rand::Rng;

use crate::config::AgentSettings;
use crate::delivery::send::{confirm_gone, send_terminal, DeliveryError, DeliveryPolicy};
use crate::delivery::{Backlog, JobReport, Outbox};
use crate::health::JobOutcome;
use crate::jobs::{self, JobServices, JobStop, Outcome, StopReason};
use crate::logs::JobLog;
use crate::shutdown::Shutdown;
use crate::tools::process::supervisors;
use crate::tools::versions::tool_versions;
use crate::trellis::retry::{retry, RetryPolicy};
use crate::trellis::{
    Announcement, Claim, ClaimedJob, Heartbeat, Hold, JobStatus, StatusUpdate, TrellisClient,
    TrellisError, WorkerStatus,
};
use heartbeat::{Heartbeats, OFFLINE_BUDGET};
use protection::TaskProtection;

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
    /// `--once`: the one job did not succeed: exit 1.
    JobFailed,
}

/// What became of a claim.
#[derive(Debug, PartialEq, Eq)]
enum ClaimRun {
    /// There was no job to run (an empty claim, or one without an id).
    NoJob,
    /// A job was taken on and reported (or given up, when it was taken away).
    Finished {
        succeeded: bool,
        /// The worker's shutdown stopped it, or its delivery was cut short.
        interrupted: bool,
    },
}

/// The worker.
pub struct Agent {
    settings: AgentSettings,
    services: JobServices,
    client: TrellisClient,
    backlog: Backlog,
    outbox: Outbox,
    shutdown: Shutdown,
    protection: Option<TaskProtection>,
}

/// What taking on a claim gave.
enum Accepted {
    Taken(Box<TakenJob>),
    /// The job could not be taken on and was reported FAILED at once.
    FailedAtOnce,
    NoJob,
}

/// A claimed job the agent has taken on: its outbox entry exists and its
/// PROCESSING update is queued.
struct TakenJob {
    job_id: String,
    job_type: String,
    /// The job, or why it cannot run (it is then failed with the reason).
    claimed: Result<ClaimedJob, String>,
    report: JobReport,
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
        let backlog = Backlog::new(client.clone(), outbox.clone(), settings.retry_max_delay);
        Agent {
            settings,
            services,
            client,
            backlog,
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
        let mut exit = self.deliver_leftovers().await;
        let backlog = self.backlog.clone();
        let background = tokio::spawn(async move { backlog.run().await });
        if exit == Exit::Drained {
            exit = self.work(&heartbeats).await;
        }
        if !self.shutdown.drain.is_cancelled() {
            self.shutdown.drain.cancel();
        }
        crate::health::metrics().set_draining();
        heartbeats.set_status(WorkerStatus::Draining);
        // One hand at a time: the background rounds end before the last.
        background.abort();
        let _ = background.await;
        if self.settle_backlog().await && exit == Exit::Drained {
            exit = Exit::Interrupted;
        }
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

    /// Delivers what an earlier run left in the outbox before anything is
    /// claimed (one round; what fails stays for the backlog).
    async fn deliver_leftovers(&self) -> Exit {
        tokio::select! {
            _ = self.backlog.deliver_round() => Exit::Drained,
            // Draining with no job running: what is left stays in the outbox.
            _ = self.shutdown.drain.cancelled() => Exit::Drained,
            _ = self.shutdown.hard.cancelled() => Exit::Interrupted,
        }
    }

    /// At exit: gives the backlog the final delivery timeout to empty the
    /// outbox; returns whether something is left in it.
    async fn settle_backlog(&self) -> bool {
        if self.backlog.entries() == 0 {
            return false;
        }
        // After a hard stop the last job's delivery had the final delivery
        // timeout already: what is left waits for the next start.
        let budget = match self.shutdown.hard.is_cancelled() {
            true => Duration::ZERO,
            false => self.settings.final_delivery_timeout,
        };
        let settle = async {
            while !self.backlog.deliver_round().await {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        };
        if tokio::time::timeout(budget, settle).await.is_ok() {
            return false;
        }
        tracing::warn!(
            "{} jobs' logs or statuses could not be delivered before exit: they stay in the outbox ({}) and \
             are sent at the next start",
            self.backlog.entries(),
            self.services.settings.work_dir.join("outbox").display()
        );
        true
    }

    /// The poll loop: claim, run, claim again at once after a job. No job is
    /// claimed while the work dir cannot take one.
    async fn work(&self, heartbeats: &Heartbeats) -> Exit {
        let mut exit = Exit::Drained;
        let mut claim_now = true;
        let mut not_ready: Option<String> = None;
        let mut idle_since = std::time::Instant::now();
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
            let settings = &self.services.settings;
            match crate::work_dir::ready_for_a_job(&settings.work_dir, settings.min_free_space) {
                Err(problem) => {
                    if not_ready.as_ref() != Some(&problem) {
                        tracing::warn!("not claiming jobs: {problem}");
                    }
                    not_ready = Some(problem);
                    continue;
                }
                Ok(()) => {
                    if not_ready.take().is_some() {
                        tracing::info!("the work dir can take jobs again: claiming");
                    }
                }
            }
            match self.claim().await {
                Ok(None) => {
                    // Decided right after an empty claim, never during one.
                    if let Some(limit) = self.settings.exit_after_idle {
                        if idle_since.elapsed() >= limit {
                            tracing::info!(
                                "no job for {}: exiting (TENDRIL_EXIT_AFTER_IDLE)",
                                crate::units::format_duration(limit)
                            );
                            break;
                        }
                    }
                }
                Ok(Some(claim)) => {
                    let ran = self.run_claimed(claim, heartbeats).await;
                    idle_since = std::time::Instant::now();
                    claim_now = true;
                    if let ClaimRun::Finished {
                        succeeded,
                        interrupted,
                    } = ran
                    {
                        if interrupted {
                            exit = Exit::Interrupted;
                        }
                        if self.settings.once {
                            if !succeeded && exit == Exit::Drained {
                                exit = Exit::JobFailed;
                            }
                            break;
                        }
                    }
                }
                Err(TrellisError::Unauthorized(message)) => {
                    // It was accepted at the announcement: a blip (Trellis
                    // redeploying) is no reason to stop for good.
                    tracing::error!(
                        "Trellis rejected the worker ID or token when claiming ({message}); trying again at the next poll"
                    );
                }
                Err(
                    ref error @ (TrellisError::TooLarge {
                        job_id: Some(ref job_id),
                        ..
                    }
                    | TrellisError::UnreadableJob {
                        job_id: Some(ref job_id),
                        ..
                    }),
                ) => {
                    self.fail_unrecorded(job_id, &error.to_string()).await;
                    claim_now = true;
                    if self.settings.once {
                        exit = Exit::JobFailed;
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!("claiming a job failed: {error}; trying again at the next poll")
                }
            }
        }
        exit
    }

    /// Asks for a job. A claim is not idempotent: it is tried again only
    /// when the request surely did not claim anything (it was not sent, or
    /// Trellis answered an error), never after a timeout or an answer that
    /// could not be read, which may each have claimed a job.
    async fn claim(&self) -> Result<Option<Claim>, TrellisError> {
        let policy = RetryPolicy::few(self.settings.retry_max_delay);
        let mut attempt = 0;
        loop {
            match self.client.claim().await {
                Err(error @ (TrellisError::Unsent(_) | TrellisError::Unavailable { .. }))
                    if attempt + 1 < policy.max_attempts.unwrap_or(1) =>
                {
                    tracing::warn!("claiming a job: {error}; retrying");
                    tokio::time::sleep(policy.delay(attempt)).await;
                    attempt += 1;
                }
                Err(error @ (TrellisError::Transport(_) | TrellisError::InvalidResponse(_))) => {
                    tracing::error!(
                        "claiming a job: {error}; Trellis may have claimed a job for this worker whose answer was \
                         lost: it stays CLAIMED until Trellis requeues it"
                    );
                    return Err(error);
                }
                other => return other,
            }
        }
    }

    /// Runs one claimed job: accept it, supervise it, deliver what it owes.
    async fn run_claimed(&self, claim: Claim, heartbeats: &Heartbeats) -> ClaimRun {
        let unprotected = self.protect(true).await;
        let metrics = crate::health::metrics();
        let ran = match self.accept(claim).await {
            Accepted::Taken(accepted) => {
                let job_id = accepted.job_id.clone();
                heartbeats.set_job(Some(job_id.clone()));
                metrics.set_current_job(Some(&job_id));
                let ran = self.supervise(*accepted, heartbeats, unprotected).await;
                metrics.set_current_job(None);
                heartbeats.set_job(None);
                self.backlog.release(&job_id);
                ran
            }
            Accepted::FailedAtOnce => ClaimRun::Finished {
                succeeded: false,
                interrupted: false,
            },
            Accepted::NoJob => ClaimRun::NoJob,
        };
        metrics.set_outbox_entries(self.backlog.entries());
        self.protect(false).await;
        ran
    }

    /// Takes a claimed job on: checks its id and opens its outbox entry. A
    /// job that cannot be taken on is reported FAILED at once, with the
    /// reason, rather than left claimed.
    async fn accept(&self, claim: Claim) -> Accepted {
        let (claimed, job_id) = match claim.into_job() {
            Ok(Some(claimed)) => {
                let id = claimed.job.id.clone();
                (Ok(claimed), id)
            }
            Ok(None) => return Accepted::NoJob,
            Err(malformed) => match malformed.id {
                Some(id) => (Err(malformed.reason), id),
                None => {
                    tracing::error!(
                        "Trellis gave a job without an id ({}); it cannot be run or reported",
                        malformed.reason
                    );
                    return Accepted::NoJob;
                }
            },
        };
        // The id is not checked yet: printed quoted, it cannot forge a line.
        tracing::info!("claimed job {job_id:?}");
        if let Err(problem) = crate::safe_name::check("the job id", &job_id) {
            self.fail_unrecorded(&job_id, &problem).await;
            return Accepted::FailedAtOnce;
        }
        let job_type = match &claimed {
            Ok(claimed) => claimed.job.job_type.clone(),
            Err(_) => "unknown".to_string(),
        };
        // The entry is this job's report's from before it exists.
        self.backlog.hold(&job_id).await;
        match JobReport::open(
            &self.client,
            &self.outbox,
            &job_id,
            self.settings.retry_max_delay,
        ) {
            Ok(report) => Accepted::Taken(Box::new(TakenJob {
                job_id,
                job_type,
                claimed,
                report,
            })),
            Err(error) => {
                self.backlog.release(&job_id);
                let problem = format!(
                    "Tendril could not record this job in its work dir ({error}), so it was not run"
                );
                self.fail_unrecorded(&job_id, &problem).await;
                Accepted::FailedAtOnce
            }
        }
    }

    /// Reports FAILED for a job that has no outbox entry, until Trellis takes
    /// it (or a hard stop).
    async fn fail_unrecorded(&self, job_id: &str, problem: &str) {
        tracing::error!("job {job_id} is not run: {problem}");
        let policy = DeliveryPolicy::new(self.settings.retry_max_delay);
        let update = StatusUpdate::failed(problem);
        tokio::select! {
            sent = send_terminal(&self.client, job_id, &update, &policy) => if let Err(error) = sent {
                tracing::error!("cannot report job {job_id} FAILED: {error}");
            },
            _ = self.shutdown.hard.cancelled() => {}
        }
    }

    /// Runs the job beside the delivery of its log and progress, the
    /// watch on its ownership, its timeout and the shutdown signals; then
    /// finishes its delivery.
    async fn supervise(
        &self,
        taken: TakenJob,
        heartbeats: &Heartbeats,
        unprotected: Option<String>,
    ) -> ClaimRun {
        let TakenJob {
            job_id,
            job_type,
            claimed,
            report,
        } = taken;
        let started = std::time::Instant::now();
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
        let ownership = self.watch_ownership(&job_id);
        let timeout = tokio::time::sleep(settings.job_timeout);
        tokio::pin!(job, delivery, ownership, timeout);

        let mut delivered: Option<Result<(), DeliveryError>> = None;
        let (mut draining, mut stopping) = (false, false);
        let outcome = loop {
            tokio::select! {
                outcome = &mut job => break outcome,
                result = &mut delivery, if delivered.is_none() => {
                    match &result {
                        Err(DeliveryError::Gone(message)) => stop.stop(StopReason::Reassigned(message.clone())),
                        Err(DeliveryError::Cancelled) => stop.stop(StopReason::Cancelled),
                        _ => {}
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
                    crate::health::metrics().set_draining();
                    heartbeats.set_status(WorkerStatus::Draining);
                    log.system("the worker is shutting down: this job may finish first (TENDRIL_DRAIN_GRACE)");
                }
                _ = self.shutdown.hard.cancelled(), if !stopping => {
                    stopping = true;
                    stop.stop(StopReason::Shutdown);
                }
            }
        };
        let interrupted = matches!(stop.reason(), Some(StopReason::Shutdown));
        let (succeeded, counted) = match &outcome {
            Outcome::Report(update) if update.status == JobStatus::Success => {
                (true, JobOutcome::Success)
            }
            Outcome::Report(_) => (false, JobOutcome::Failed),
            Outcome::Abandon(StopReason::Cancelled) => (false, JobOutcome::Cancelled),
            Outcome::Abandon(_) => (false, JobOutcome::Abandoned),
        };
        crate::health::metrics().job_finished(&job_type, counted, started.elapsed());
        let finished = self
            .finish(&job_id, &report, outcome, delivered, delivery)
            .await;
        ClaimRun::Finished {
            succeeded,
            interrupted: interrupted || !finished,
        }
    }

    /// The job has ended: records its outcome, delivers its last log lines
    /// and its terminal status. What cannot be delivered now is left to the
    /// backlog; after a hard stop, the final delivery timeout bounds it.
    /// Returns false when the final delivery timeout cut it short.
    async fn finish(
        &self,
        job_id: &str,
        report: &JobReport,
        outcome: Outcome,
        delivered: Option<Result<(), DeliveryError>>,
        delivery: impl std::future::Future<Output = Result<(), DeliveryError>>,
    ) -> bool {
        let terminal = match &outcome {
            Outcome::Report(update) => Some(update.clone()),
            Outcome::Abandon(_) => None,
        };
        report.close(terminal.as_ref());
        let deliver_all = async {
            let delivered = match delivered {
                Some(result) => result,
                None => delivery.await,
            };
            let sent = match delivered {
                Ok(()) => report.send_terminal(terminal.as_ref()).await,
                Err(DeliveryError::Gone(message)) => {
                    tracing::warn!(
                        "job {job_id} is no longer this worker's ({message}); nothing more is sent"
                    );
                    report.abandon();
                    Ok(())
                }
                Err(DeliveryError::Cancelled) => {
                    tracing::warn!("job {job_id} was cancelled in Trellis; nothing more is sent");
                    report.abandon();
                    Ok(())
                }
                Err(error) => Err(error),
            };
            if let Err(error) = sent {
                tracing::error!(
                    "delivering job {job_id}'s log and status failed: {error}; the backlog goes on trying"
                );
            }
        };
        let deadline = async {
            self.shutdown.hard.cancelled().await;
            tokio::time::sleep(self.settings.final_delivery_timeout).await;
        };
        tokio::select! {
            _ = deliver_all => true,
            _ = deadline => {
                tracing::warn!(
                    "Trellis has not taken all of job {job_id}'s log and status before the final delivery \
                     timeout; they stay in the outbox and are sent at the next start"
                );
                false
            }
        }
    }

    /// Reads the job in Trellis every heartbeat interval and returns when it
    /// must stop: cancelled by a user, or no longer this worker's (when a
    /// second read a few seconds later agrees).
    async fn watch_ownership(&self, job_id: &str) -> StopReason {
        let interval = self.settings.heartbeat_interval;
        let policy = RetryPolicy::few(interval);
        let confirm = DeliveryPolicy::new(self.settings.retry_max_delay);
        loop {
            tokio::time::sleep(interval).await;
            let read = retry(policy, "checking the running job in Trellis", || {
                self.client.get_job(job_id)
            })
            .await;
            match read {
                Ok(None) if confirm_gone(&self.client, job_id, &confirm).await => {
                    return StopReason::Reassigned("the job no longer exists in Trellis".into())
                }
                Ok(None) => tracing::warn!("job {job_id} was missing in Trellis, then there again"),
                Ok(Some(row)) => match Hold::of(&row, self.client.worker_id()) {
                    Hold::Ours => {}
                    Hold::Cancelled => return StopReason::Cancelled,
                    Hold::TakenBy(owner) => {
                        return StopReason::Reassigned(format!(
                            "the job now belongs to worker {owner}"
                        ))
                    }
                },
                Err(error) => tracing::warn!("cannot check job {job_id} in Trellis: {error}"),
            }
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
