//! Taking the lease on a state before a command: at once when there is
//! none; after releasing a dead holder's lock when the lease there is dead;
//! else waiting, the holder named in the log, up to the lock timeout.

use std::time::Duration;

use tokio::time::Instant;

use super::bucket_state::BucketState;
use super::lease::{FoundLease, Lease};
use super::{JobContext, JobError, Operation};
use crate::trellis::JobStatus;
use crate::units::format_duration;

/// The longest wait between two looks at a lease held by another.
const MAX_POLL: Duration = Duration::from_secs(5);

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
}

/// Takes the lease on `state` for `operation`; returns it and how long
/// that took.
pub(super) async fn take_lease(
    context: &JobContext,
    state: &BucketState,
    operation: Operation,
) -> Result<(Lease, Duration), JobError> {
    let settings = &context.settings;
    let lock_timeout = settings.terraform_lock_timeout;
    let poll = settings.state_lease.renew_every.min(MAX_POLL);
    let began = Instant::now();
    let mut named: Option<String> = None;
    loop {
        let lease = Lease::new(
            &context.job.id,
            context.reporter.worker_id(),
            operation,
            settings.state_lease.renew_every,
        );
        let waiting = match state.create_lease(&lease).await {
            Ok(true) => return Ok((lease, began.elapsed())),
            Ok(false) => match state.lease().await {
                Ok(None) => Waiting::Vanished,
                Ok(Some(found)) => match judge(context, &found).await {
                    Verdict::Dead(why) => match release_dead(context, state, &found, &why).await {
                        Ok(()) => continue,
                        Err(problem) => Waiting::Unreachable(problem),
                    },
                    Verdict::Alive => Waiting::Busy(Box::new(found)),
                },
                Err(error) => Waiting::Unreachable(error.to_string()),
            },
            Err(error) => Waiting::Unreachable(error.to_string()),
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
                describe_live(found),
            ),
            Waiting::Unreachable(problem) => (
                "unreachable".to_string(),
                format!("the state bucket cannot be used now ({problem})"),
            ),
            Waiting::Vanished => (String::new(), String::new()),
        };
        if !seen.is_empty() && named.as_deref() != Some(seen.as_str()) {
            let lock = match (&waiting, state.lock().await) {
                (Waiting::Busy(_), Ok(Some(lock))) => {
                    format!("; its state lock is held by {}", lock.holder())
                }
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
    let Some(worker) = &lease.worker_id else {
        return Verdict::Alive;
    };
    let Some(row) = context.reporter.glance_at_job(&lease.job_id).await else {
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
            Verdict::Dead(format!(
                "its job {} ended {ended} on that worker",
                lease.job_id
            ))
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
    let holder = found
        .lease
        .as_ref()
        .map_or("a lease Tendril cannot read".to_string(), Lease::holder);
    let lock = state.lock().await.map_err(|e| e.to_string())?;
    let said = match (lock, &found.lease) {
        (Some(lock), Some(lease)) if lease.took_before_dying(&lock, &state.lock_path()) => {
            if !state.release(&lock).await.map_err(|e| e.to_string())? {
                // The lock changed in the meantime: look again.
                return Ok(());
            }
            format!(
                "released the state lock {} of {holder}: its holder is dead ({why})",
                lock.id
            )
        }
        (Some(lock), _) => format!(
            "the lease of {holder} is dead ({why}), but the state lock there is not its own (held by {}): \
             Tendril leaves that lock alone",
            lock.holder()
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

/// A live lease in words, with the lock if there is one.
fn describe_live(found: &FoundLease) -> String {
    let holder = found
        .lease
        .as_ref()
        .map_or("a lease Tendril cannot read".to_string(), Lease::holder);
    format!(
        "it is in use by {holder}, whose lease was renewed {} ago, so it may still be running",
        format_duration(found.age)
    )
}

/// The error of a job that waited the whole lock timeout.
async fn give_up(context: &JobContext, state: &BucketState, waiting: Waiting) -> JobError {
    let waited = format_duration(context.settings.terraform_lock_timeout);
    let found = match waiting {
        Waiting::Busy(found) => found,
        Waiting::Vanished => {
            return JobError::StateLock(format!(
                "the lease on the state at {} kept changing hands for {waited} (TENDRIL_TERRAFORM_LOCK_TIMEOUT)",
                state.location()
            ))
        }
        Waiting::Unreachable(problem) => {
            return JobError::StateLock(format!(
                "cannot take the lease on the state at {} within {waited} (TENDRIL_TERRAFORM_LOCK_TIMEOUT): \
                 {problem}",
                state.location()
            ))
        }
    };
    let lock = match state.lock().await {
        Ok(Some(lock)) => format!(
            " Its state lock is held by {}; if that job is no longer running anywhere, release the lock with \
             `terraform force-unlock {}` and run this job again.",
            lock.holder(),
            lock.id
        ),
        Ok(None) => " It holds no state lock yet; run this job again once it has ended.".into(),
        Err(error) => format!(" Its state lock could not be read ({error})."),
    };
    JobError::StateLock(format!(
        "the state at {} {}. This job waited {waited} (TENDRIL_TERRAFORM_LOCK_TIMEOUT) and gave up: Tendril \
         releases a lock only when its holder is provably dead.{lock}",
        state.location(),
        describe_live(&found).trim_start_matches("it ")
    ))
}
