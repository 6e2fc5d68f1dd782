//! One claimed job, from its claim to its last delivery, in the steps of
//! the Buildkite agent's job runner (`Run`, `runJob`, `cleanup`):
//! [`Agent::run_claimed`] accepts the claim (checks its id and opens its
//! outbox entry), then the [`RunningJob`] supervises the job beside the
//! delivery of its log and progress, the watch on its ownership, its
//! timeout and the shutdown signals, and finishes it: its terminal status
//! delivered, or left to the backlog.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use super::heartbeat::Heartbeats;
use super::Agent;
use crate::delivery::send::{confirm_gone, DeliveryError, DeliveryPolicy};
use crate::delivery::JobReport;
use crate::health::JobOutcome;
use crate::jobs::{self, JobStop, Outcome, StopReason};
use crate::logs::JobLog;
use crate::trellis::retry::{retry, RetryPolicy};
use crate::trellis::{Claim, ClaimedJob, Hold, JobStatus, JobType, StatusUpdate, WorkerStatus};

/// How a claimed job ended, for the poll loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct JobEnd {
    /// What became of it (a job failed at once counts as failed).
    pub outcome: JobOutcome,
    /// The worker's shutdown stopped it, or its delivery was cut short.
    pub interrupted: bool,
}

/// What taking on a claim gave.
enum Accepted<'a> {
    /// The job, and the claim it runs (or why it cannot run: it is then
    /// failed with the reason).
    Taken(Box<(RunningJob<'a>, Result<ClaimedJob, String>)>),
    /// The job could not be taken on: it was failed at once, or, when its
    /// id cannot even be addressed, left to Trellis.
    NotRun,
    NoJob,
}

/// A job the agent has taken on: its outbox entry exists, its PROCESSING
/// update is queued, and its log writes into the entry.
struct RunningJob<'a> {
    agent: &'a Agent,
    job_id: String,
    /// Unknown also when the claim was malformed.
    job_type: JobType,
    report: JobReport,
    log: JobLog,
    stop: JobStop,
    started: Instant,
}

/// The delivery of a job's log and progress.
enum Delivery<'a> {
    /// Still going when the job ended.
    Going(Pin<Box<dyn Future<Output = Result<(), DeliveryError>> + Send + 'a>>),
    /// Ended while the job ran (taken away, or cancelled).
    Ended(Result<(), DeliveryError>),
}

impl Agent {
    /// Runs one claimed job: accept it, supervise it, finish its delivery.
    /// `None` when the claim held no job.
    pub(super) async fn run_claimed(
        &self,
        claim: Claim,
        heartbeats: &Heartbeats,
    ) -> Option<JobEnd> {
        let unprotected = self.protect(true).await;
        let end = match self.accept(claim).await {
            Accepted::Taken(taken) => {
                let (job, claimed) = *taken;
                Some(job.run(claimed, heartbeats, unprotected).await)
            }
            Accepted::NotRun => Some(JobEnd {
                outcome: JobOutcome::Failed,
                interrupted: false,
            }),
            Accepted::NoJob => None,
        };
        crate::health::metrics().set_outbox_entries(self.backlog.entries());
        self.protect(false).await;
        end
    }

    /// Takes a claimed job on: checks its id and opens its outbox entry. A
    /// job that cannot be taken on is failed at once, with the reason,
    /// rather than left claimed (but for one whose id cannot be addressed).
    async fn accept(&self, claim: Claim) -> Accepted<'_> {
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
        // An id that is no safe name (Trellis's are UUIDs) cannot be put in
        // a path or a URL: `..` would address another route, a long one get
        // a 431. Such a job is neither run nor reported, and its id is
        // logged only escaped and cut.
        if let Err(problem) = crate::safe_name::check("the job id", &job_id) {
            tracing::error!(
                "Trellis gave a job that cannot be run or reported: {problem}; it stays CLAIMED in Trellis"
            );
            return Accepted::NotRun;
        }
        tracing::info!("claimed job {job_id}");
        // The entry is this job's report's from before it exists.
        self.backlog.hold(&job_id).await;
        let report = match JobReport::open(
            &self.client,
            &self.outbox,
            &job_id,
            self.settings.retry_max_delay,
        ) {
            Ok(report) => report,
            Err(error) => {
                self.backlog.release(&job_id);
                let problem = format!(
                    "Tendril could not record this job in its work dir ({error}), so it was not run"
                );
                self.fail_unrun(&job_id, &problem).await;
                return Accepted::NotRun;
            }
        };
        let settings = &self.services.settings;
        let log = JobLog::new(
            report.log_destination(),
            settings.log_limit,
            settings.progress_interval,
        );
        let job = RunningJob {
            agent: self,
            job_type: match &claimed {
                Ok(claimed) => claimed.job.job_type.clone(),
                Err(_) => JobType::Unknown(String::new()),
            },
            job_id,
            report,
            log,
            stop: JobStop::default(),
            started: Instant::now(),
        };
        Accepted::Taken(Box::new((job, claimed)))
    }
}

impl<'a> RunningJob<'a> {
    /// Supervises the job and finishes it, the worker showing it as its
    /// current job meanwhile.
    async fn run(
        self,
        claimed: Result<ClaimedJob, String>,
        heartbeats: &Heartbeats,
        unprotected: Option<String>,
    ) -> JobEnd {
        let metrics = crate::health::metrics();
        heartbeats.set_job(Some(self.job_id.clone()));
        metrics.set_current_job(Some(&self.job_id));
        if let Some(problem) = unprotected {
            self.log.system(&format!(
                "warning: ECS task protection could not be turned on ({problem}); ECS may stop this task during the job"
            ));
        }
        let (outcome, delivery) = self.supervise(claimed, heartbeats).await;
        let interrupted = matches!(self.stop.reason(), Some(StopReason::Shutdown));
        let counted = match &outcome {
            Outcome::Report(update) if update.status == JobStatus::Success => JobOutcome::Success,
            Outcome::Report(_) => JobOutcome::Failed,
            Outcome::Abandon(StopReason::Cancelled) => JobOutcome::Cancelled,
            Outcome::Abandon(_) => JobOutcome::Abandoned,
        };
        metrics.job_finished(self.job_type.label(), counted, self.started.elapsed());
        let finished = self.finish(outcome, delivery).await;
        metrics.set_current_job(None);
        heartbeats.set_job(None);
        self.agent.backlog.release(&self.job_id);
        JobEnd {
            outcome: counted,
            interrupted: interrupted || !finished,
        }
    }

    /// The job itself, to its outcome (a malformed claim fails at once).
    async fn execute(&self, claimed: Result<ClaimedJob, String>) -> Outcome {
        match claimed {
            Ok(claimed) => {
                let services = &self.agent.services;
                let reporter = crate::report::Reporter::Trellis(self.report.reporter());
                jobs::run(claimed, services, reporter, self.log.clone(), &self.stop).await
            }
            Err(reason) => {
                self.log
                    .system(&format!("==> this job cannot run: {reason}"));
                Outcome::Report(StatusUpdate::failed(reason))
            }
        }
    }

    /// Runs the job beside the delivery of its log and progress, the watch
    /// on its ownership, its timeout and the shutdown signals, any of which
    /// can stop it (the first reason given decides what is reported).
    async fn supervise(
        &self,
        claimed: Result<ClaimedJob, String>,
        heartbeats: &Heartbeats,
    ) -> (Outcome, Delivery<'_>) {
        let agent = self.agent;
        let job_timeout = agent.services.settings.job_timeout;
        let job = self.execute(claimed);
        let mut delivery = Box::pin(self.report.deliver());
        let ownership = self.watch_ownership();
        let timeout = tokio::time::sleep(job_timeout);
        tokio::pin!(job, ownership, timeout);

        let mut delivered: Option<Result<(), DeliveryError>> = None;
        let (mut draining, mut stopping) = (false, false);
        let outcome = loop {
            tokio::select! {
                outcome = &mut job => break outcome,
                result = &mut delivery, if delivered.is_none() => {
                    match &result {
                        Err(DeliveryError::Gone(message)) => self.stop.stop(StopReason::Reassigned(message.clone())),
                        Err(DeliveryError::Cancelled) => self.stop.stop(StopReason::Cancelled),
                        _ => {}
                    }
                    delivered = Some(result);
                }
                reason = &mut ownership, if !stopping => {
                    stopping = true;
                    self.stop.stop(reason);
                }
                _ = &mut timeout, if !stopping => {
                    stopping = true;
                    self.stop.stop(StopReason::Timeout(job_timeout));
                }
                _ = agent.shutdown.drain.cancelled(), if !draining => {
                    draining = true;
                    crate::health::metrics().set_draining();
                    heartbeats.set_status(WorkerStatus::Draining);
                    self.log.system("the worker is shutting down: this job may finish first (TENDRIL_DRAIN_GRACE)");
                }
                _ = agent.shutdown.hard.cancelled(), if !stopping => {
                    stopping = true;
                    self.stop.stop(StopReason::Shutdown);
                }
            }
        };
        let delivery = match delivered {
            Some(result) => Delivery::Ended(result),
            None => Delivery::Going(delivery),
        };
        (outcome, delivery)
    }

    /// The job has ended: records its outcome, delivers its last log lines
    /// and its terminal status. What cannot be delivered now is left to the
    /// backlog; after a hard stop, the final delivery timeout bounds it.
    /// Returns false when the final delivery timeout cut it short.
    async fn finish(&self, outcome: Outcome, delivery: Delivery<'_>) -> bool {
        let job_id = &self.job_id;
        let terminal = match outcome {
            Outcome::Report(update) => Some(update),
            Outcome::Abandon(_) => None,
        };
        self.report.close(terminal.as_ref());
        let deliver_all = async {
            let delivered = match delivery {
                Delivery::Ended(result) => result,
                Delivery::Going(going) => going.await,
            };
            let sent = match delivered {
                Ok(()) => self.report.send_terminal(terminal.as_ref()).await,
                Err(DeliveryError::Gone(message)) => {
                    tracing::warn!(
                        "job {job_id} is no longer this worker's ({message}); nothing more is sent"
                    );
                    self.report.abandon();
                    Ok(())
                }
                Err(DeliveryError::Cancelled) => {
                    tracing::warn!("job {job_id} was cancelled in Trellis; nothing more is sent");
                    self.report.abandon();
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
            self.agent.shutdown.hard.cancelled().await;
            tokio::time::sleep(self.agent.settings.final_delivery_timeout).await;
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
    async fn watch_ownership(&self) -> StopReason {
        let (client, job_id) = (&self.agent.client, self.job_id.as_str());
        let interval = self.agent.settings.heartbeat_interval;
        let policy = RetryPolicy::few(interval);
        let confirm = DeliveryPolicy::new(self.agent.settings.retry_max_delay);
        loop {
            tokio::time::sleep(interval).await;
            let read = retry(policy, "checking the running job in Trellis", || {
                client.get_job(job_id)
            })
            .await;
            match read {
                Ok(None) if confirm_gone(client, job_id, &confirm).await => {
                    return StopReason::Reassigned("the job no longer exists in Trellis".into())
                }
                Ok(None) => tracing::warn!("job {job_id} was missing in Trellis, then there again"),
                Ok(Some(row)) => match Hold::of(&row, client.worker_id()) {
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
