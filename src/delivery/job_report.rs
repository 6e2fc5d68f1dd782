//! Reporting one job to Trellis, from its PROCESSING update to its terminal
//! status, through its outbox entry so that nothing is lost.
//!
//! The order is fixed: PROCESSING first; progress and log chunks while the
//! job runs; at the end the terminal status is written (durably) to the
//! entry, the log is sealed and synced, the log to its last chunk and the
//! progress already queued are delivered, and only then is the terminal
//! status sent.
//! The entry goes once Trellis took the status; what could not be delivered
//! stays for the backlog ([`deliver_entry`] finishes it from disk).

use std::sync::Arc;
use std::time::Duration;

use super::outbox::{Outbox, OutboxEntry};
use super::reporter::TrellisReporter;
use super::send::{current_row, deliver_chunks, send_terminal, DeliveryError, DeliveryPolicy};
use super::spool::Spool;
use super::status_queue::StatusQueue;
use crate::logs::Destination;
use crate::trellis::{Hold, JobStatus, StatusUpdate, TrellisClient, TrellisError};

/// What a job that was running when Tendril died is reported as.
/// (A lock its Terraform left is released at the restart, and the
/// message then says so: see `jobs::state_lock`.)
pub const KILLED_MESSAGE: &str =
    "interrupted: Tendril stopped while running this job (it was killed or crashed)";

/// The reporting side of one running job.
pub struct JobReport {
    client: TrellisClient,
    entry: OutboxEntry,
    spool: Arc<Spool>,
    statuses: Arc<StatusQueue>,
    policy: DeliveryPolicy,
    retry_max_delay: Duration,
}

impl JobReport {
    /// Opens the job's outbox entry and queues its PROCESSING update.
    pub fn open(
        client: &TrellisClient,
        outbox: &Outbox,
        job_id: &str,
        retry_max_delay: Duration,
    ) -> std::io::Result<Self> {
        let entry = outbox.create_entry(job_id)?;
        let spool = Arc::new(Spool::create(&entry)?);
        let statuses = Arc::new(StatusQueue::default());
        statuses.push(StatusUpdate::processing());
        Ok(JobReport {
            client: client.clone(),
            entry,
            spool,
            statuses,
            policy: DeliveryPolicy::new(retry_max_delay),
            retry_max_delay,
        })
    }

    pub fn log_destination(&self) -> Destination {
        Destination::Trellis(self.spool.clone())
    }

    pub fn reporter(&self) -> TrellisReporter {
        TrellisReporter {
            statuses: self.statuses.clone(),
            client: self.client.clone(),
            retry_max_delay: self.retry_max_delay,
            entry: Arc::new(self.entry.clone()),
        }
    }

    /// Delivers logs and progress while the job runs, and after
    /// [`Self::close`] until both are through. Ends early when the job is
    /// gone or Trellis refuses the worker.
    pub async fn deliver(&self) -> Result<(), DeliveryError> {
        let logs = deliver_chunks(&self.client, &self.entry, Some(&self.spool), &self.policy);
        let statuses = self
            .statuses
            .deliver(&self.client, self.entry.job_id(), &self.policy);
        futures::future::try_join(logs, statuses).await.map(|_| ())
    }

    /// The job has ended: records its terminal status (if it gets one) on
    /// disk, seals and syncs the log, and takes no more progress.
    pub fn close(&self, terminal: Option<&StatusUpdate>) {
        if let Some(update) = terminal {
            if let Err(error) = self.entry.save_terminal(update) {
                tracing::error!(
                    "cannot write job {}'s status to the outbox: {error}; it is sent from memory",
                    self.entry.job_id()
                );
            }
        }
        self.spool.close();
        self.statuses.close();
    }

    /// After [`Self::deliver`] has finished: sends the terminal status until
    /// Trellis takes one, and clears the entry. An error leaves the entry
    /// for the backlog.
    pub async fn send_terminal(
        &self,
        terminal: Option<&StatusUpdate>,
    ) -> Result<(), DeliveryError> {
        let Some(update) = terminal else {
            self.entry.remove();
            return Ok(());
        };
        finish_entry(
            send_terminal(&self.client, self.entry.job_id(), update, &self.policy).await,
            &self.entry,
        )
    }

    /// Forgets the job: it is no longer this worker's, nothing is owed.
    pub fn abandon(&self) {
        self.entry.remove();
    }
}

/// Removes the entry once its terminal status was taken (or the job is
/// gone); keeps it otherwise.
fn finish_entry(sent: Result<(), DeliveryError>, entry: &OutboxEntry) -> Result<(), DeliveryError> {
    match sent {
        Ok(()) => {
            crate::failpoint::kill_here("terminal-status-taken");
            entry.remove();
            Ok(())
        }
        Err(DeliveryError::Gone(message)) => {
            tracing::warn!(
                "job {} is no longer this worker's ({message}); nothing more is sent for it",
                entry.job_id()
            );
            entry.remove();
            Ok(())
        }
        Err(DeliveryError::Cancelled) => {
            tracing::warn!(
                "job {} was cancelled in Trellis; nothing more is sent for it",
                entry.job_id()
            );
            entry.remove();
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// Finishes an entry whose job is no longer running, from disk: its log
/// first, then its terminal status (a job that never got one was cut short
/// by a crash). A job whose row already shows a terminal status gets none
/// from the entry: Trellis took it before a kill or a lost answer (sending
/// it again would run its side effects again: a PLAN's SUCCESS sets its
/// vine back to DRAFT, a DEPLOY's finalises the vine once more), or a user
/// cancelled the job. An error leaves the entry for the next try.
pub async fn deliver_entry(
    client: &TrellisClient,
    entry: &OutboxEntry,
    policy: &DeliveryPolicy,
) -> Result<(), DeliveryError> {
    let terminal = entry
        .terminal()
        .unwrap_or_else(|| StatusUpdate::failed(KILLED_MESSAGE));
    match deliver_chunks(client, entry, None, policy).await {
        Ok(()) => {}
        Err(error @ DeliveryError::Gone(_)) => return finish_entry(Err(error), entry),
        Err(error) => return Err(error),
    }
    match status_in_trellis(client, entry.job_id(), policy).await {
        Ok(Some(status)) if status.is_terminal() => {
            tracing::info!(
                "job {} already shows {status:?} in Trellis: the terminal status in the outbox is not sent again",
                entry.job_id()
            );
            entry.remove();
            Ok(())
        }
        Ok(_) => finish_entry(
            send_terminal(client, entry.job_id(), &terminal, policy).await,
            entry,
        ),
        Err(error) => finish_entry(Err(error), entry),
    }
}

/// The job's status in Trellis (`None`: one Tendril does not know, or a
/// row that cannot be read, which does not stop the status being sent); a
/// job gone or taken by another worker is an error.
async fn status_in_trellis(
    client: &TrellisClient,
    job_id: &str,
    policy: &DeliveryPolicy,
) -> Result<Option<JobStatus>, DeliveryError> {
    let row = match current_row(client, job_id, policy).await {
        Ok(row) => row,
        Err(DeliveryError::Trellis(error)) if !matches!(error, TrellisError::Unauthorized(_)) => {
            tracing::warn!("cannot read job {job_id} before sending its terminal status: {error}");
            return Ok(None);
        }
        Err(error) => return Err(error),
    };
    if let Hold::TakenBy(owner) = Hold::of(&row, client.worker_id()) {
        return Err(DeliveryError::Gone(format!(
            "the job now belongs to worker {owner}"
        )));
    }
    Ok(JobStatus::of_row(&row))
}
