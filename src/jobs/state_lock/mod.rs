//! Terraform state locks, and the lease Tendril keeps beside a state.
//!
//! The rule: **a lock is released by Tendril only when the Terraform that
//! took it is provably dead; a lock that may be alive is never touched, and
//! is always named in plain words.**
//!
//! A holder is provably dead when it is:
//!
//! 1. **This job's own Terraform, ended.** The command has returned, so its
//!    process was reaped (it exited, or was killed). A lock it left is
//!    released, after an `errored.tfstate` is pushed, and the job says so:
//!    the lock its lease names, or else one Terraform wrote for this
//!    command's operation and state with the `Who` (user and host) Tendril's
//!    Terraform writes, after the lease was taken, and not the lock that was
//!    there before it. A lock Terraform says it could not take is never its
//!    own: Terraform held none.
//! 2. **Behind a dead lease.** Before a command that takes the state lock,
//!    Tendril creates a lease beside the state (`<key>.tendril-lease`, only
//!    when there is none), renews it with the heartbeat while the command
//!    runs (recording the lock's ID once Terraform took it) and removes it
//!    when the command ends. A job that finds another's lease waits while it
//!    lives; it is dead when it was not renewed for the lease expiry (by the
//!    store's own clock), when Trellis says its job ended (SUCCESS or FAILED)
//!    on the worker that holds it, or when it is this very process's own from
//!    a command that has ended. Then the lock it took is released, a SYSTEM
//!    line names the dead job, worker and lock, and the job goes on. Why that
//!    is proof: a worker stops its Terraform (SIGINT, the grace) at the
//!    latest `stop_after` after the start of the last renewal that got
//!    through, and the settings check that this, the grace and the cleanup
//!    after it (the `errored.tfstate` push) end well before the expiry (see
//!    `settings::LeaseSettings`); a Terraform dies with its worker (see
//!    `tools::process`). A cancelled job is not taken as over: its worker may
//!    still be winding its Terraform down.
//! 3. **A restarted worker's.** See [`release_after_restart`].
//!
//! Never released: a lock no lease covers (a person's `terraform apply`,
//! another tool, a Terraform that died before its lease named the lock), an
//! object at the lock's place that is not a Terraform lock Tendril can read,
//! and a lock under a live lease. Tendril waits for those up to the lock
//! timeout, names the holder in the job's log while it waits, and if it
//! gives up says who holds the lock, since when, and what an operator can do
//! (see `words`).
//!
//! Local state (`TENDRIL_STATE_DIR`) needs none of this: Terraform's local
//! lock is an OS lock on the state file, which the kernel drops when its
//! holder dies (a killed Terraform leaves only `.terraform.tfstate.lock.info`,
//! which the next run replaces), so it never outlives its holder. Tendril
//! keeps no lease there and releases nothing; a lock held by a live process is
//! named in the same plain words.

mod bucket_state;
mod keeper;
mod lease;
mod lock_info;
mod restart;
mod waiting;
mod words;

pub use restart::release_after_restart;

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::time::{timeout_at, Instant};
use tokio_util::sync::CancellationToken;

use super::{JobContext, JobError};
use crate::tools::process::killing_signal;
use crate::tools::ToolError;
use bucket_state::{BucketState, FoundLock, Renewal};
use lease::Lease;
use lock_info::{terraform_could_not_take_lock, LockInfo};
use words::LockNote;

/// A Terraform command that takes the state lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Plan,
    Apply,
    Destroy,
}

impl Operation {
    /// The command, in the words of a log line: `terraform <name>`.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Plan => "plan",
            Operation::Apply => "apply",
            Operation::Destroy => "destroy",
        }
    }

    /// The operation Terraform writes in the lock it takes for the command
    /// (a destroy is an apply to Terraform).
    pub fn lock_operation(self) -> &'static str {
        match self {
            Operation::Plan => "OperationTypePlan",
            Operation::Apply | Operation::Destroy => "OperationTypeApply",
        }
    }
}

/// What the job's outbox entry holds while one of its commands holds a
/// lease, for a restart after a crash.
#[derive(Debug, Serialize, Deserialize)]
struct StateHold {
    endpoint: String,
    state_key: String,
    lease: Lease,
}

/// What a command left in the bucket when it ended.
pub enum LeftLock {
    /// No lock of its own (or local state).
    Nothing,
    /// The lock it took, still there: its holder has ended.
    Ours(LockInfo),
    /// Terraform could not take the lock, so it held none: what holds the
    /// state is another's (`None`: Terraform did not say who, nor could
    /// Tendril read it), never released.
    Another(Option<FoundLock>),
    /// The bucket could not be read.
    Unchecked(String),
}

impl LeftLock {
    /// Whether the command's own lock is still in place (an
    /// `errored.tfstate` is then pushed without taking the lock again).
    pub fn is_ours(&self) -> bool {
        matches!(self, LeftLock::Ours(_))
    }
}

/// One Terraform command that takes the state lock, from before it starts
/// to after it ended: [`LockedRun::begin`] takes the lease (waiting for a
/// live one, releasing a dead one's lock), [`LockedRun::watch`] renews it
/// while the command runs, [`LockedRun::left_lock`] and [`LockedRun::end`]
/// release what the ended command left and put the outcome in words.
pub struct LockedRun<'a> {
    context: &'a JobContext,
    operation: Operation,
    stop: CancellationToken,
    lock_timeout: Duration,
    held: Option<HeldLease>,
}

/// This job's lease on a state in the bucket.
struct HeldLease {
    state: BucketState,
    endpoint: String,
    lease: Mutex<Lease>,
    /// When the last write of the lease that got through began.
    written: Instant,
    /// Why the lease was lost, once it was (its Terraform is then stopped).
    lost: Mutex<Option<String>>,
}

impl HeldLease {
    fn lease(&self) -> Lease {
        self.lease.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether `lock`, found now, is the one this lease's command took: the
    /// lock the lease names or, that one gone (another is there), one its
    /// Terraform took since the lease was taken. Once the lease is lost,
    /// only the lock it names: another job may hold the state by now, with
    /// a lock that reads like this command's (a worker on the same host).
    fn owns(&self, lock: &LockInfo) -> bool {
        let lease = self.lease();
        if lease.lock_id.as_deref() == Some(lock.id.as_str()) {
            return true;
        }
        let unnamed = Lease {
            lock_id: None,
            ..lease
        };
        self.lost().is_none() && unnamed.took(lock, &self.state.lock_path(), SystemTime::now())
    }

    /// Renews the lease, naming `lock_id` if given, unless it is no longer
    /// this one or is older than `too_old` by the store's clock.
    async fn renew(
        &self,
        lock_id: Option<&str>,
        too_old: Duration,
    ) -> Result<Renewal, crate::cloud::state_bucket::BucketError> {
        let lease = self.lease().renewed_now(lock_id);
        let renewal = self.state.renew_lease(&lease, too_old).await?;
        if matches!(renewal, Renewal::Renewed) {
            *self.lease.lock().unwrap_or_else(|e| e.into_inner()) = lease;
        }
        Ok(renewal)
    }

    fn lose(&self, why: String) {
        self.lost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(why);
    }

    fn lost(&self) -> Option<String> {
        self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records the hold in the job's outbox entry.
    fn record(&self, context: &JobContext) {
        let hold = StateHold {
            endpoint: self.endpoint.clone(),
            state_key: self.state.key().to_string(),
            lease: self.lease(),
        };
        if let Ok(hold) = serde_json::to_value(&hold) {
            context.reporter.record_state_hold(Some(&hold));
        }
    }
}

impl<'a> LockedRun<'a> {
    /// Before the command: takes the lease on the state at `state_key` (no
    /// lease for local state) for a Terraform that names `terraform_user`
    /// in a lock's `Who`. The command must run under `stop`, which is also
    /// cancelled if the lease is lost.
    pub async fn begin(
        context: &'a JobContext,
        state_key: &str,
        operation: Operation,
        terraform_user: &str,
        stop: CancellationToken,
    ) -> Result<LockedRun<'a>, JobError> {
        let settings = &context.settings;
        let mut run = LockedRun {
            context,
            operation,
            stop,
            lock_timeout: settings.terraform_lock_timeout,
            held: None,
        };
        let Some(storage) = &settings.state_storage else {
            return Ok(run);
        };
        let state =
            BucketState::new(storage, state_key).map_err(|e| JobError::StateLock(e.to_string()))?;
        let command = lease::Command {
            job_id: &context.job.id,
            worker_id: context.reporter.worker_id(),
            operation,
            terraform_user,
        };
        let taken = waiting::take_lease(context, &state, &command).await?;
        // In whole seconds, as Terraform's -lock-timeout says it.
        run.lock_timeout = run
            .lock_timeout
            .saturating_sub(Duration::from_secs(taken.waited.as_secs()));
        let held = HeldLease {
            state,
            endpoint: storage.endpoint.clone(),
            lease: Mutex::new(taken.lease),
            written: taken.written,
            lost: Mutex::new(None),
        };
        held.record(context);
        run.held = Some(held);
        Ok(run)
    }

    /// What is left of the lock timeout after waiting for the lease.
    pub fn lock_timeout(&self) -> Duration {
        self.lock_timeout
    }

    /// Runs the command, keeping the lease meanwhile.
    pub async fn watch<T>(
        &self,
        command: impl Future<Output = Result<T, ToolError>>,
    ) -> Result<T, ToolError> {
        let Some(held) = &self.held else {
            return command.await;
        };
        tokio::pin!(command);
        tokio::select! {
            result = &mut command => return result,
            _ = keeper::keep(self.context, held, &self.stop, self.lock_timeout) => {}
        }
        command.await
    }

    /// After the command ended with `result`: the lock it took, if it is
    /// still there, or the lock Terraform could not take.
    pub async fn left_lock<T>(&self, result: &Result<T, ToolError>, deadline: Instant) -> LeftLock {
        let could_not_take = match result {
            Err(ToolError::Failed { stderr_tail, .. }) => {
                terraform_could_not_take_lock(stderr_tail)
                    .then(|| LockInfo::from_terraform_error(stderr_tail))
            }
            _ => None,
        };
        let Some(held) = &self.held else {
            return match could_not_take {
                Some(named) => LeftLock::Another(named.map(FoundLock::Readable)),
                None => LeftLock::Nothing,
            };
        };
        match could_not_take {
            Some(Some(named)) => return LeftLock::Another(Some(FoundLock::Readable(named))),
            // Terraform did not say whose it is: as Tendril reads it.
            Some(None) => {
                return match timeout_at(deadline, held.state.lock()).await {
                    Ok(Ok(found)) => LeftLock::Another(found),
                    _ => LeftLock::Another(None),
                }
            }
            None => {}
        }
        match timeout_at(deadline, held.state.lock()).await {
            Ok(Ok(Some(FoundLock::Readable(lock)))) if held.owns(&lock) => LeftLock::Ours(lock),
            Ok(Ok(_)) => LeftLock::Nothing,
            Ok(Err(error)) => LeftLock::Unchecked(error.to_string()),
            Err(_) => LeftLock::Unchecked(words::not_in_time()),
        }
    }

    /// After the command (and the push of its `errored.tfstate`): releases
    /// the lock it `left` by `deadline`, removes the lease, and puts the
    /// outcome in words.
    pub async fn end<T>(
        self,
        result: Result<T, ToolError>,
        left: LeftLock,
        deadline: Instant,
    ) -> Result<T, JobError> {
        let (another, left) = match left {
            LeftLock::Another(found) => (Some(found), LeftLock::Nothing),
            left => (None, left),
        };
        let note = match &self.held {
            Some(held) => self.settle(held, left, deadline).await,
            None => None,
        };
        let lost = self.held.as_ref().and_then(HeldLease::lost);
        let error = match result {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        Err(match (lost, another) {
            (Some(why), _) => JobError::StateLock(with_note(
                words::lease_lost(self.operation.name(), &why),
                note.map(|note| self.note_words(&note)),
            )),
            (None, Some(found)) => self.held_by_another(error, found),
            (None, None) => self.outcome(error, note),
        })
    }

    /// Releases the ended command's lock and removes the lease; a lease
    /// whose lock could not be released stays, so that the next job finds
    /// the lock's holder dead.
    async fn settle(
        &self,
        held: &HeldLease,
        left: LeftLock,
        deadline: Instant,
    ) -> Option<LockNote> {
        let log = &self.context.log;
        let operation = self.operation.name();
        let note = match left {
            LeftLock::Nothing | LeftLock::Another(_) => None,
            LeftLock::Unchecked(problem) => Some(LockNote::Unchecked(problem)),
            LeftLock::Ours(lock) => match timeout_at(deadline, held.state.release(&lock)).await {
                Ok(Ok(true)) => {
                    log.system(&format!(
                        "terraform {operation} ended without releasing its state lock {}; it has ended, so \
                         Tendril released the lock",
                        lock.id
                    ));
                    Some(LockNote::Released(lock.id))
                }
                Ok(Ok(false)) => None,
                Ok(Err(error)) => Some(LockNote::Kept {
                    lock,
                    problem: error.to_string(),
                }),
                Err(_) => Some(LockNote::Kept {
                    lock,
                    problem: words::not_in_time(),
                }),
            },
        };
        if matches!(note, None | Some(LockNote::Released(_))) {
            let lease_id = held.lease().lease_id;
            let removed = timeout_at(deadline, held.state.remove_lease(Some(&lease_id))).await;
            let problem = match removed {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(error.to_string()),
                Err(_) => Some(words::not_in_time()),
            };
            if let Some(problem) = problem {
                log.system(&format!(
                    "the lease on the state could not be removed ({problem}); with no lock to cover, it is \
                     harmless and the next job removes it"
                ));
            }
        }
        self.context.reporter.record_state_hold(None);
        note
    }

    /// A failed command's error, with what became of its lock in words.
    fn outcome(&self, error: ToolError, note: Option<LockNote>) -> JobError {
        let operation = self.operation.name();
        let note_words = note.as_ref().map(|note| self.note_words(note));
        match (&error, note) {
            (ToolError::Stopped { ended, .. }, Some(LockNote::Released(id))) => {
                JobError::StoppedLeaving(words::stopped_and_released(
                    operation,
                    ended.as_deref(),
                    &id,
                ))
            }
            (ToolError::Stopped { .. }, Some(_)) => {
                JobError::StoppedLeaving(note_words.unwrap_or_default())
            }
            (ToolError::Stopped { .. }, None) => JobError::Stopped,
            (ToolError::Failed { status, .. }, Some(LockNote::Released(id))) => {
                match killing_signal(status) {
                    Some(signal) => {
                        JobError::StateLock(words::killed_and_released(operation, signal, &id))
                    }
                    None => JobError::StateLock(with_note(error.to_string(), note_words)),
                }
            }
            (_, Some(_)) => JobError::StateLock(with_note(error.to_string(), note_words)),
            (_, None) => error.into(),
        }
    }

    fn note_words(&self, note: &LockNote) -> String {
        note.words(self.operation.name(), &self.lock_location())
    }

    fn lock_location(&self) -> String {
        self.held
            .as_ref()
            .map(|held| held.state.lock_location())
            .unwrap_or_default()
    }

    /// Terraform gave up on a lock someone else holds (`found`: what
    /// holds the state, as far as it is known).
    fn held_by_another(&self, error: ToolError, found: Option<FoundLock>) -> JobError {
        let waited = self.context.settings.terraform_lock_timeout;
        JobError::StateLock(match (found, &self.held) {
            (Some(FoundLock::Readable(lock)), Some(_)) => {
                words::held_by_another(&lock, &self.lock_location(), waited)
            }
            (Some(FoundLock::Readable(lock)), None) => words::locked_locally(&lock, waited),
            (Some(FoundLock::Unreadable(why)), _) => words::unreadable_lock(&why, waited),
            (None, _) => return error.into(),
        })
    }
}

fn with_note(message: String, note: Option<String>) -> String {
    match note {
        Some(note) => format!("{message}\n{note}"),
        None => message,
    }
}
