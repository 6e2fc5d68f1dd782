//! Taking the lease on a state before a command: at once when there is
//! none; after releasing a dead holder's lock when the lease there is dead;
//! else waiting, the holder named in the log, up to the lock timeout.

use std::time::Duration;

use tokio::time::Instant;

use super::bucket_state::{BucketState, FoundLock};
use super::lease::{Command, FoundLease, Lease};
use super::{words, JobContext, JobError};
use crate::trellis::JobStatus;
use crate::units::format_duration;

/// The longest wait between two looks at a lease held by another.
const MAX_POLL: Duration = Duration::from_secs(5);

/// A lease taken.
pub(super) struct TakenLease {
    pub lease: Lease,
    /// When the write that created it began.
    pub written: Instant,
    /// How long taking it took.
    pub waited: Duration,
}

/// Whether the holder of a lease found on the state is alive.
enum Verdict {
    /// Dead, and why that is known.
    Dead(String),
    Alive,
}

/// Why the lease is not ours yet.
enum Waiting {
    Busy(Box<FoundLease>),
    Unreachable(String),
    /// The lease there was removed between two looks.
    Vanished,
    /// A dead holder's lease was just removed: look again at once.
    Freed,
}

/// Takes the lease on `state` for `command`.
pub(super) async fn take_lease(
    context: &JobContext,
    state: &BucketState,
    command: &Command<'_>,
) -> Result<TakenLease, JobError> {
    let settings = &context.settings;
    let lock_timeout = settings.terraform_lock_timeout;
    let poll = settings.state_lease.renew_every.min(MAX_POLL);
    let began = Instant::now();
    let mut named: Option<String> = None;
    loop {
        let waiting = match attempt(context, state, command).await {
            Ok((lease, written)) => {
                return Ok(TakenLease {
                    lease,
                    written,
                    waited: began.elapsed(),
                })
            }
            Err(waiting) => waiting,
        };
        let waited = began.elapsed();
        if waited >= lock_timeout {
            return Err(give_up(context, state, waiting).await);
        }
        // Said once per holder (its lease), not at every look.
        let (seen, description) = match &waiting {
            Waiting::Busy(found) => (
                found
                    .lease
                    .as_ref()
                    .map_or("unreadable", |l| &l.lease_id)
                    .to_string(),
                words::live_lease(found),
            ),
            Waiting::Unreachable(problem) => (
                "unreachable".to_string(),
                format!("the state bucket cannot be used now ({problem})"),
            ),
            Waiting::Vanished => (String::new(), String::new()),
            Waiting::Freed => continue,
        };
        if !seen.is_empty() && named.as_deref() != Some(seen.as_str()) {
            let lock = match (&waiting, state.lock().await) {
                (Waiting::Busy(_), Ok(Some(FoundLock::Readable(lock)))) => {
                    format!("; its state lock is held by {}", lock.holder())
                }
                (Waiting::Busy(_), Ok(Some(FoundLock::Unreadable(why)))) => format!("; {why}"),
                _ => String::new(),
            };
            context.log.system(&format!(
                "waiting for the state at {}: {description}{lock}; this job waits up to {} \
                 (TENDRIL_TERRAFORM_LOCK_TIMEOUT)",
                state.location(),
                format_duration(lock_timeout)
            ));
            named = Some(seen);
        }
        tokio::select! {
            _ = tokio::time::sleep(poll.min(lock_timeout - waited)) => {}
            _ = context.stop.cancelled() => return Err(JobError::Stopped),
        }
    }
}

/// One try at the lease: it, and when the write that created it began; or
/// why it is not ours yet. The lock there before is named in the lease as
/// another's.
async fn attempt(
    context: &JobContext,
    state: &BucketState,
    command: &Command<'_>,
) -> Result<(Lease, Instant), Waiting> {
    let unreachable =
        |error: crate::cloud::state_bucket::BucketError| Waiting::Unreachable(error.to_string());
    let lock_before = state.readable_lock().await.map_err(unreachable)?;
    let renew_every = context.settings.state_lease.renew_every;
    let lease = Lease::new(
        command,
        renew_every,
        lock_before.as_ref().map(|lock| lock.id.as_str()),
    );
    let written = Instant::now();
    if state.create_lease(&lease).await.map_err(unreachable)? {
        return Ok((lease, written));
    }
    let Some(found) = state.lease().await.map_err(unreachable)? else {
        return Err(Waiting::Vanished);
    };
    match judge(context, &found).await {
        Verdict::Dead(why) => match release_dead(context, state, &found, &why).await {
            Ok(()) => Err(Waiting::Freed),
            Err(problem) => Err(Waiting::Unreachable(problem)),
        },
        Verdict::Alive => Err(Waiting::Busy(Box::new(found))),
    }
}

/// Whether the holder of `found` is dead, and why.
async fn judge(context: &JobContext, found: &FoundLease) -> Verdict {
    let expiry = context.settings.state_lease.expiry;
    if found.age >= expiry {
        return Verdict::Dead(format!(
            "its lease was last renewed {} ago, longer than the lease expiry of {} (TENDRIL_LOCK_LEASE_EXPIRY)",
            format_duration(found.age),
            format_duration(expiry)
        ));
    }
    let Some(lease) = &found.lease else {
        return Verdict::Alive;
    };
    if lease.of_this_process(context.reporter.worker_id()) {
        return Verdict::Dead(
            "it is this worker's own, from a Terraform command that has ended".into(),
        );
    }
    let (Some(worker), Some(job_id)) = (&lease.worker_id, lease.job_to_ask()) else {
        return Verdict::Alive;
    };
    let Some(row) = context.reporter.glance_at_job(job_id).await else {
        return Verdict::Alive;
    };
    let owner = row.get("worker_id").and_then(serde_json::Value::as_str);
    match JobStatus::of_row(&row) {
        Some(status @ (JobStatus::Success | JobStatus::Failed)) if owner == Some(worker) => {
            let ended = if status == JobStatus::Success {
                "SUCCESS"
            } else {
                "FAILED"
            };
            Verdict::Dead(format!("its job {job_id} ended {ended} on that worker"))
        }
        _ => Verdict::Alive,
    }
}

/// A dead holder's lock is released (when it is the one it took) and its
/// lease removed, each said in a SYSTEM line; the problem when the bucket
/// cannot be used.
async fn release_dead(
    context: &JobContext,
    state: &BucketState,
    found: &FoundLease,
    why: &str,
) -> Result<(), String> {
    let holder = words::lease_holder(found);
    let lock = state.lock().await.map_err(|e| e.to_string())?;
    let said = match (lock, &found.lease) {
        (Some(FoundLock::Readable(lock)), Some(lease))
            if lease.took(&lock, &state.lock_path(), lease.last_alive()) =>
        {
            if !state.release(&lock).await.map_err(|e| e.to_string())? {
                // The lock changed in the meantime: look again.
                return Ok(());
            }
            format!(
                "released the state lock {} of {holder}: its holder is dead ({why})",
                lock.id
            )
        }
        (Some(FoundLock::Readable(lock)), _) => format!(
            "the lease of {holder} is dead ({why}), but the state lock there is not its own (held by {}): \
             Tendril leaves that lock alone",
            lock.holder()
        ),
        (Some(FoundLock::Unreadable(unreadable)), _) => format!(
            "the lease of {holder} is dead ({why}), but {unreadable}: Tendril leaves it alone"
        ),
        (None, _) => format!("the lease of {holder} is dead ({why}); it left no state lock"),
    };
    context.log.system(&said);
    let lease_id = found.lease.as_ref().map(|lease| lease.lease_id.as_str());
    state
        .remove_lease(lease_id)
        .await
        .map_err(|e| e.to_string())
}

/// The error of a job that waited the whole lock timeout.
async fn give_up(context: &JobContext, state: &BucketState, waiting: Waiting) -> JobError {
    let settings = &context.settings;
    let waited = settings.terraform_lock_timeout;
    JobError::StateLock(match waiting {
        Waiting::Busy(found) => words::gave_up_on_live_lease(
            &state.location(),
            &found,
            state.lock().await,
            waited,
            settings.state_lease.expiry,
        ),
        Waiting::Vanished | Waiting::Freed => {
            words::lease_kept_changing_hands(&state.location(), waited)
        }
        Waiting::Unreachable(problem) => {
            words::lease_not_taken(&state.location(), waited, &problem)
        }
    })
}
