//! Reporting a job to Trellis, from its PROCESSING update to its terminal
//! status, through the outbox so that nothing is lost.
//!
//! The order is fixed: PROCESSING first; progress and log chunks while the
//! job runs; at the end the terminal status is written to the outbox, the
//! log is sealed and delivered to its last chunk, pending progress is
//! dropped, and only then is the terminal status sent, until Trellis takes
//! it. An entry left by an earlier run is finished by [`recover`].

use std::sync::Arc;
use std::time::Duration;

use super::status_queue::StatusQueue;
use super::{Reporter, TrellisReporter};
use crate::logs::spool::{self, DeliveryError, Spool};
use crate::logs::Destination;
use crate::outbox::{Outbox, OutboxEntry};
use crate::trellis::retry::{retry, RetryPolicy};
use crate::trellis::{StatusUpdate, TrellisClient, TrellisError};

/// What a job that was running when Tendril died is reported as.
pub const KILLED_MESSAGE: &str =
    "interrupted: Tendril stopped while running this job (it was killed or crashed); \
     check that no Terraform state lock was left before retrying";

/// The reporting side of one job.
pub struct JobReport {
    client: TrellisClient,
    entry: OutboxEntry,
    spool: Arc<Spool>,
    statuses: Arc<StatusQueue>,
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
            retry_max_delay,
        })
    }

    pub fn log_destination(&self) -> Destination {
        Destination::Trellis(self.spool.clone())
    }

    pub fn reporter(&self) -> Reporter {
        Reporter::Trellis(TrellisReporter {
            statuses: self.statuses.clone(),
            client: self.client.clone(),
            retry_max_delay: self.retry_max_delay,
        })
    }

    /// Delivers logs and progress while the job runs, and after [`Self::close`]
    /// until both are through. Ends early with `JobGone` when Trellis says
    /// the job is no longer this worker's.
    pub async fn deliver(&self) -> Result<(), DeliveryError> {
        let policy = RetryPolicy::until_accepted(self.retry_max_delay);
        let logs = spool::deliver(&self.client, &self.entry, Some(&self.spool), policy);
        let statuses = async {
            self.statuses
                .deliver(&self.client, self.entry.job_id(), policy)
                .await
                .map_err(DeliveryError::from)
        };
        futures::future::try_join(logs, statuses).await.map(|_| ())
    }

    /// The job has ended: records its terminal status (if it gets one) in
    /// the outbox, seals the log and drops pending progress.
    pub fn close(&self, terminal: Option<&StatusUpdate>) {
        if let Some(update) = terminal {
            if let Err(error) = self.entry.save_terminal(update) {
                tracing::error!(
                    "cannot write job {}'s status to the outbox: {error}",
                    self.entry.job_id()
                );
            }
        }
        self.spool.close();
        self.statuses.close();
    }

    /// After [`Self::deliver`] has finished: sends the terminal status until
    /// Trellis accepts it, and clears the outbox entry.
    pub async fn send_terminal(&self, terminal: Option<&StatusUpdate>) {
        match terminal {
            Some(update) => {
                send_terminal(&self.client, &self.entry, update, self.retry_max_delay).await
            }
            None => self.entry.remove(),
        }
    }

    /// Forgets the job: it is no longer this worker's, nothing is owed.
    pub fn abandon(&self) {
        self.entry.remove();
    }
}

async fn send_terminal(
    client: &TrellisClient,
    entry: &OutboxEntry,
    update: &StatusUpdate,
    max_delay: Duration,
) {
    let what = format!("reporting job {} {:?}", entry.job_id(), update.status);
    match retry(RetryPolicy::until_accepted(max_delay), &what, || {
        client.update_status(entry.job_id(), update)
    })
    .await
    {
        Ok(()) => tracing::info!("job {} reported {:?}", entry.job_id(), update.status),
        Err(TrellisError::JobGone(message)) => {
            tracing::warn!(
                "job {} is no longer this worker's ({message}); its status is not sent",
                entry.job_id()
            )
        }
        Err(error) => tracing::error!("{what}: {error}; giving up on this status"),
    }
    entry.remove();
}

/// Finishes an entry left by an earlier run: its log first, then its
/// terminal status (a job that never got one was cut short by a crash).
pub async fn recover(client: &TrellisClient, entry: &OutboxEntry, max_delay: Duration) {
    let terminal = entry
        .terminal()
        .unwrap_or_else(|| StatusUpdate::failed(KILLED_MESSAGE));
    tracing::info!(
        "delivering what an earlier run owed for job {}",
        entry.job_id()
    );
    match spool::deliver(client, entry, None, RetryPolicy::until_accepted(max_delay)).await {
        Ok(()) => send_terminal(client, entry, &terminal, max_delay).await,
        Err(DeliveryError::Trellis(TrellisError::JobGone(message))) => {
            tracing::warn!(
                "job {} is no longer this worker's ({message}); dropping what was owed",
                entry.job_id()
            );
            entry.remove();
        }
        Err(error) => tracing::error!(
            "cannot deliver job {}'s log: {error}; kept for the next start",
            entry.job_id()
        ),
    }
}
