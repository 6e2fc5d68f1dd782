//! The backlog: what finished jobs still owe Trellis, delivered in the
//! background from their outbox entries, a few jobs at a time (each job's
//! own log and status in order), while the worker goes on with the next
//! job. An entry whose delivery fails is tried again after a backoff; it is
//! removed only once Trellis took its terminal status (or the job is gone).
//!
//! At start-up the agent runs one round before it claims anything, so that
//! an earlier run's leftovers go first. An entry is delivered by one hand at
//! a time: the running job's is held by its own report (from before it
//! exists), and a round takes each entry it delivers, so that neither two
//! rounds nor a round and a report ever send the same entry.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use super::job_report::deliver_entry;
use super::outbox::Outbox;
use super::send::DeliveryPolicy;
use crate::trellis::TrellisClient;

/// Jobs delivered at once.
const CONCURRENCY: usize = 4;
/// How often a quiet backlog looks at the outbox again.
const RESCAN: Duration = Duration::from_secs(60);

impl Inner {
    fn busy(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.busy.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self, job_id: &str) -> bool {
        self.busy().insert(job_id.to_string())
    }

    fn release(&self, job_id: &str) {
        self.busy().remove(job_id);
    }
}

/// A round's hold on an entry, given back however its delivery ends.
struct Taken<'a>(&'a Inner, String);

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        self.0.release(&self.1);
    }
}

/// The backlog of one outbox; cheap to clone.
#[derive(Clone)]
pub struct Backlog {
    inner: Arc<Inner>,
}

struct Inner {
    client: TrellisClient,
    outbox: Outbox,
    policy: DeliveryPolicy,
    /// Jobs whose entries are being delivered: by their own report, or by
    /// a round.
    busy: Mutex<HashSet<String>>,
    limit: Arc<Semaphore>,
    wake: Notify,
}

impl Backlog {
    pub fn new(client: TrellisClient, outbox: Outbox, retry_max_delay: Duration) -> Backlog {
        Backlog {
            inner: Arc::new(Inner {
                client,
                outbox,
                policy: DeliveryPolicy::new(retry_max_delay),
                busy: Mutex::new(HashSet::new()),
                limit: Arc::new(Semaphore::new(CONCURRENCY)),
                wake: Notify::new(),
            }),
        }
    }

    /// Takes the job's entry for one hand; false when another has it.
    fn take(&self, job_id: &str) -> bool {
        self.inner.take(job_id)
    }

    /// The job's entry is its own report's until [`Self::release`], from
    /// before the entry exists. Waits while a round delivers an older entry
    /// of the same job (one an earlier run left).
    pub async fn hold(&self, job_id: &str) {
        while !self.take(job_id) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The job's report is done with its entry: whatever is left in it is
    /// the backlog's.
    pub fn release(&self, job_id: &str) {
        self.inner.release(job_id);
        self.inner.wake.notify_one();
    }

    /// How many entries are on disk (the running job's included).
    pub fn entries(&self) -> usize {
        self.inner.outbox.pending().map(|e| e.len()).unwrap_or(0)
    }

    /// Delivers every entry not held, a few at a time; returns whether all
    /// of them were delivered.
    pub async fn deliver_round(&self) -> bool {
        let entries = match self.inner.outbox.pending() {
            Ok(entries) => entries,
            Err(error) => {
                tracing::error!("cannot read the outbox: {error}");
                return false;
            }
        };
        let mut deliveries = JoinSet::new();
        for entry in entries.into_iter().filter(|e| self.take(e.job_id())) {
            let inner = self.inner.clone();
            deliveries.spawn(async move {
                let _taken = Taken(&inner, entry.job_id().to_string());
                let _permit = inner.limit.clone().acquire_owned().await;
                tracing::info!("delivering what job {} still owes Trellis", entry.job_id());
                match deliver_entry(&inner.client, &entry, &inner.policy).await {
                    Ok(()) => true,
                    Err(error) => {
                        tracing::error!(
                            "delivering job {}'s log and status failed: {error}; kept in the outbox and tried again",
                            entry.job_id()
                        );
                        false
                    }
                }
            });
        }
        let mut all = true;
        while let Some(done) = deliveries.join_next().await {
            all &= done.unwrap_or(false);
        }
        all
    }

    /// Delivers rounds until dropped: at once when a job's report releases
    /// its entry, after a capped backoff when a round failed, and now and
    /// then in case an entry appeared some other way.
    pub async fn run(&self) {
        let mut failed_rounds = 0u32;
        loop {
            let wait = if self.deliver_round().await {
                failed_rounds = 0;
                RESCAN
            } else {
                failed_rounds = failed_rounds.saturating_add(1);
                self.inner
                    .policy
                    .retry
                    .delay(failed_rounds)
                    .max(Duration::from_millis(200))
            };
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
