//! The agent: `tendril start`. It announces the worker, delivers what an
//! earlier run left in the outbox, then claims and runs jobs one at a time
//! until a signal drains it.
//!
//! While a job runs the agent watches four things besides the job: the
//! delivery of its logs and progress, the job's ownership in Trellis (a user's
//! Cancel, or a requeue to another worker), the job timeout, and a hard
//! shutdown. Any of them can stop the job; the first reason given decides
//! what is reported.

//!
//! The steps live in submodules: `poll` is the claim loop, `running_job`
//! one claimed job from its acceptance to its last delivery.

pub mod heartbeat;
mod poll;
pub mod protection;
mod running_job;
mod timer;

use std::time::Duration;

use crate::delivery::send::{send_terminal, DeliveryPolicy};
use crate::delivery::{Backlog, Outbox};
pub use crate::jobs::environment::hostname;
use crate::jobs::JobServices;
use crate::settings::AgentSettings;
use crate::shutdown::Shutdown;
use crate::tools::process::supervisors;
use crate::tools::versions::tool_versions;
use crate::trellis::retry::{retry, RetryPolicy};
use crate::trellis::{
    Announcement, Heartbeat, StatusUpdate, TrellisClient, TrellisError, WorkerStatus,
};
use heartbeat::{Heartbeats, OFFLINE_BUDGET};
use protection::TaskProtection;

/// For how many times `TENDRIL_RETRY_MAX_DELAY` (10 minutes by default)
/// `start` waits out Trellis refusing its announcement before it exits 1.
pub const ANNOUNCEMENT_REFUSALS_WAITED: u32 = 20;

/// How `tendril start` ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// Drained cleanly: exit 0.
    Drained,
    /// A job was interrupted, or something owed to Trellis was left in the
    /// outbox: exit 1.
    Interrupted,
    /// Trellis refused the worker's credentials, or its announcement for
    /// good (a 4xx): exit 2.
    Rejected(String),
    /// Trellis's database kept refusing the announcement (a 5xx of its
    /// own): exit 1, for the supervisor to start the worker again later.
    AnnouncementRefused(String),
    /// `--once`: the one job did not succeed: exit 1.
    JobFailed,
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
        // The tools are asked beside the first claim, never before it: some
        // take seconds to answer, and a worker scaled from zero has a job
        // waiting.
        let path = std::env::var("PATH").unwrap_or_default();
        let tools = tokio::spawn(async move { tool_versions(&path).await });
        crate::workspace::remove_leftovers(&self.services.settings.work_dir);
        let announcement = Announcement {
            hostname: hostname(),
            mode: self.services.settings.mode.as_str().to_string(),
            tools: None,
        };
        match self.announce(&announcement).await {
            Ok(true) => {}
            Ok(false) => return Exit::Drained,
            Err(exit) => return exit,
        }
        let heartbeats = Heartbeats::start(
            self.client.clone(),
            self.settings.heartbeat_interval,
            self.settings.retry_max_delay,
            announcement,
            tools,
        );
        // Before any claim: locks that an interrupted run's Terraform left.
        crate::jobs::state_lock::release_after_restart(&self.outbox, &self.services.settings).await;
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

    /// The first heartbeat: ONLINE, with who this worker is. Retried while
    /// Trellis is unreachable, and, when Trellis refuses it (its database:
    /// the route stores nothing but the version), for
    /// [`ANNOUNCEMENT_REFUSALS_WAITED`] times the longest retry delay, long
    /// enough for a database maintenance or failover; `Ok(false)` if a
    /// signal came first.
    async fn announce(&self, announcement: &Announcement) -> Result<bool, Exit> {
        let heartbeat = Heartbeat {
            version: crate::VERSION.to_string(),
            status: WorkerStatus::Online,
            current_job_id: None,
            announcement: Some(announcement.clone()),
        };
        let refusals_waited = self.settings.retry_max_delay * ANNOUNCEMENT_REFUSALS_WAITED;
        let policy = RetryPolicy::until_accepted(self.settings.retry_max_delay)
            .refusals_retried_for(refusals_waited);
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
            Err(TrellisError::Unauthorized(_)) => Err(Exit::Rejected(
                "Trellis rejected the worker ID or token".into(),
            )),
            Err(error @ TrellisError::Refused { .. }) => Err(Exit::AnnouncementRefused(format!(
                "{error}: Trellis kept refusing the worker's announcement for {}; Tendril exits 1 so that its \
                 supervisor starts it again later",
                crate::units::format_duration(refusals_waited)
            ))),
            Err(error) => Err(Exit::Rejected(format!(
                "Trellis refused the worker's announcement: {error}"
            ))),
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

    /// Fails a job that is not run (its claim could not be read, or its
    /// outbox entry not opened): its FAILED goes into an outbox entry of its
    /// own, which the backlog delivers through any outage and after a
    /// restart. Only when the work dir cannot take even that is it sent from
    /// memory, until Trellis takes it or a hard stop. `job_id` is a safe
    /// name.
    async fn fail_unrun(&self, job_id: &str, problem: &str) {
        tracing::error!("job {job_id} is not run: {problem}");
        let update = StatusUpdate::failed(problem);
        self.backlog.hold(job_id).await;
        let recorded = self
            .outbox
            .create_entry(job_id)
            .and_then(|entry| entry.save_terminal(&update).inspect_err(|_| entry.remove()));
        self.backlog.release(job_id);
        let Err(error) = recorded else {
            return;
        };
        tracing::warn!(
            "cannot record job {job_id}'s failure in the outbox ({error}); it is sent from memory"
        );
        let policy = DeliveryPolicy::new(self.settings.retry_max_delay);
        tokio::select! {
            sent = send_terminal(&self.client, job_id, &update, &policy) => if let Err(error) = sent {
                tracing::error!("cannot report job {job_id} FAILED: {error}");
            },
            _ = self.shutdown.hard.cancelled() => {}
        }
    }
}
