//! Terraform state locks, and the lease Tendril keeps beside a state.
//!
//! The rule: **a lock is released by Tendril only when the Terraform that
//! took it is provably dead; a lock that may be alive is never touched, and
//! is always named in plain words.**
//!
//! A holder is provably dead when it is:
//!
//! 1. **This job's own Terraform, ended.** The command has returned, so its
//!    process was reaped (it exited, or was killed). A lock it left (the one
//!    its lease names, or else one Terraform wrote for this command's
//!    operation and state, from this host, while it ran) is released, after
//!    an `errored.tfstate` is pushed, and the job says so.
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
//!    is proof: a worker that cannot renew its lease stops its Terraform
//!    (SIGINT, the grace) before the lease can expire, and a Terraform dies
//!    with its worker (see `tools::process`). A cancelled job is not taken as
//!    over: its worker may still be winding its Terraform down.
//! 3. **A restarted worker's.** See [`release_after_restart`].
//!
//! Never released: a lock no lease covers (a person's `terraform apply`,
//! another tool, a Terraform that died before its lease named the lock), and
//! a lock under a live lease. Tendril waits for those up to the lock timeout,
//! names the holder in the job's log while it waits, and if it gives up says
//! who holds the lock, since when, and the `terraform force-unlock` an
//! operator would run.
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
use crate::units::format_duration;
use bucket_state::BucketState;
use lease::Lease;
use lock_info::LockInfo;

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

/// What became of a lock the command left, for its error.
enum LockNote {
    Released(String),
    Kept { id: String, problem: String },
    Unchecked(String),
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
    /// Why the lease was lost, once it was (its Terraform is then stopped).
    lost: Mutex<Option<String>>,
}

impl HeldLease {
    fn lease(&self) -> Lease {
        self.lease.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_lease(&self, lease: Lease) {
        *self.lease.lock().unwrap_or_else(|e| e.into_inner()) = lease;
    }

    /// Whether `lock` is the one this lease's command took.
    fn owns(&self, lock: &LockInfo) -> bool {
        self.lease()
            .took(lock, &self.state.lock_path(), SystemTime::now())
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
    /// lease for local state). The command must run under `stop`, which
    /// is also cancelled if the lease is lost.
    pub async fn begin(
        context: &'a JobContext,
        state_key: &str,
        operation: Operation,
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
        let (lease, waited) = waiting::take_lease(context, &state, operation).await?;
        // In whole seconds, as Terraform's -lock-timeout says it.
        run.lock_timeout = run
            .lock_timeout
            .saturating_sub(Duration::from_secs(waited.as_secs()));
        let held = HeldLease {
            state,
            endpoint: storage.endpoint.clone(),
            lease: Mutex::new(lease),
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

    /// After the command: the lock it took, if it is still there.
    pub async fn left_lock(&self, deadline: Instant) -> LeftLock {
        let Some(held) = &self.held else {
            return LeftLock::Nothing;
        };
        match timeout_at(deadline, held.state.lock()).await {
            Ok(Ok(Some(lock))) if held.owns(&lock) => LeftLock::Ours(lock),
            Ok(Ok(_)) => LeftLock::Nothing,
            Ok(Err(error)) => LeftLock::Unchecked(error.to_string()),
            Err(_) => LeftLock::Unchecked(not_in_time()),
        }
    }

    /// After the command (and the push of its `errored.tfstate`): releases
    /// the lock it `left`, removes the lease, and puts the outcome in words.
    pub async fn end<T>(
        self,
        result: Result<T, ToolError>,
        left: LeftLock,
        deadline: Instant,
    ) -> Result<T, JobError> {
        let note = match &self.held {
            Some(held) => self.settle(held, left, deadline).await,
            None => None,
        };
        let lost = self.held.as_ref().and_then(HeldLease::lost);
        self.outcome(result, note, lost)
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
            LeftLock::Nothing => None,
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
                    id: lock.id,
                    problem: error.to_string(),
                }),
                Err(_) => Some(LockNote::Kept {
                    id: lock.id,
                    problem: not_in_time(),
                }),
            },
        };
        if matches!(note, None | Some(LockNote::Released(_))) {
            let lease_id = held.lease().lease_id;
            let removed = timeout_at(deadline, held.state.remove_lease(Some(&lease_id))).await;
            let problem = match removed {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(error.to_string()),
                Err(_) => Some(not_in_time()),
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

    /// The command's result, with what became of its lock in words.
    fn outcome<T>(
        &self,
        result: Result<T, ToolError>,
        note: Option<LockNote>,
        lost: Option<String>,
    ) -> Result<T, JobError> {
        let operation = self.operation.name();
        let lock_words = note.as_ref().map(|note| self.note_words(note));
        let error = match result {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if let Some(why) = lost {
            return Err(JobError::StateLock(with_note(
                format!(
                    "the lease on the state could not be kept ({why}): the {operation} was stopped so that it \
                     never works behind an expired lease"
                ),
                lock_words,
            )));
        }
        match (&error, note) {
            (ToolError::Stopped { ended, .. }, Some(LockNote::Released(id))) => {
                Err(JobError::StoppedLeaving(format!(
                    "the {operation} was stopped{}; its state lock {id} was released",
                    ended.as_ref().map(|e| format!(" ({e})")).unwrap_or_default()
                )))
            }
            (ToolError::Stopped { .. }, Some(_)) => Err(JobError::StoppedLeaving(
                lock_words.unwrap_or_default(),
            )),
            (ToolError::Stopped { .. }, None) => Err(JobError::Stopped),
            (ToolError::Failed { stderr_tail, .. }, _) if could_not_take_lock(stderr_tail) => {
                match LockInfo::from_terraform_error(stderr_tail) {
                    Some(lock) => Err(JobError::StateLock(self.held_by_another(&lock))),
                    None => Err(error.into()),
                }
            }
            (ToolError::Failed { status, .. }, Some(LockNote::Released(id))) => {
                match killing_signal(status) {
                    Some(signal) => Err(JobError::StateLock(format!(
                        "the {operation} was killed (signal {signal}); its state lock {id} was released"
                    ))),
                    None => Err(JobError::StateLock(with_note(
                        error.to_string(),
                        lock_words,
                    ))),
                }
            }
            (_, Some(_)) => Err(JobError::StateLock(with_note(
                error.to_string(),
                lock_words,
            ))),
            (_, None) => Err(error.into()),
        }
    }

    fn note_words(&self, note: &LockNote) -> String {
        let operation = self.operation.name();
        let location = self
            .held
            .as_ref()
            .map(|held| held.state.lock_location())
            .unwrap_or_default();
        match note {
            LockNote::Released(id) => {
                format!("it left its state lock {id}, which was released: the {operation} has ended")
            }
            LockNote::Kept { id, problem } => format!(
                "the {operation} left its state lock {id} at {location}, and Tendril could not release it \
                 ({problem}): the next job on this state releases it (its holder has ended), or release it with \
                 `terraform force-unlock {id}`"
            ),
            LockNote::Unchecked(problem) => format!(
                "Tendril could not check whether the {operation} left its state lock at {location} ({problem}): \
                 the next job on this state releases a lock it left (its holder has ended)"
            ),
        }
    }

    /// Terraform gave up on a lock someone else holds.
    fn held_by_another(&self, lock: &LockInfo) -> String {
        let waited = format_duration(self.context.settings.terraform_lock_timeout);
        match &self.held {
            Some(held) => format!(
                "the state lock at {} is held by {}, and this job gave up waiting for it after {waited} \
                 (TENDRIL_TERRAFORM_LOCK_TIMEOUT). Tendril releases a lock only when its holder is provably dead, \
                 and no Tendril lease covers this one, so it may be alive. If no one is running Terraform on this \
                 state, release it with `terraform force-unlock {}` and run the job again",
                held.state.lock_location(),
                lock.holder(),
                lock.id
            ),
            None => format!(
                "the state at {} is locked by {}, and this job gave up waiting for it after {waited} \
                 (TENDRIL_TERRAFORM_LOCK_TIMEOUT). A local state's lock is held by a running process and ends \
                 with it: run the job again once that process has ended",
                lock.path,
                lock.holder()
            ),
        }
    }
}

/// Whether Terraform's last error lines say it could not take the lock
/// (its heading may be past the lines kept; its closing words are not).
fn could_not_take_lock(stderr_tail: &[String]) -> bool {
    stderr_tail.iter().any(|line| {
        line.contains("Error acquiring the state lock")
            || line.contains("Terraform acquires a state lock to protect the state")
    })
}

fn with_note(message: String, note: Option<String>) -> String {
    match note {
        Some(note) => format!("{message}\n{note}"),
        None => message,
    }
}

fn not_in_time() -> String {
    "the state bucket did not answer in time".into()
}
