//! The state-lock outcomes in words, for a job's error: what became of a
//! lock a command left, who holds a lock a job gave up on, and what an
//! operator can do about it. A lock's and a lease's words come from the
//! bucket: they are printable and bounded by the time they get here (see
//! `lock_info`), and a lock's ID is put in a command to copy only when it
//! reads as one.

use std::time::Duration;

use super::bucket_state::FoundLock;
use super::lease::FoundLease;
use super::lock_info::LockInfo;
use crate::cloud::state_bucket::BucketError;
use crate::units::format_duration;

/// What becomes of a lock Tendril knows the holder of is dead but could not
/// release.
pub const NEXT_JOB_RELEASES: &str = "the next job on this state releases it (its holder has ended)";

/// A bucket request that did not end within its bound.
pub fn not_in_time() -> String {
    "the state bucket did not answer in time".into()
}

/// How an operator releases `lock`, once sure its holder is gone.
pub fn release_by_hand(lock: &LockInfo, location: &str) -> String {
    match lock.has_plain_id() {
        true => format!("release it with `terraform force-unlock {}`", lock.id),
        false => format!(
            "look at the lock object at {location} and remove it by hand (its ID is not one Terraform writes, so \
             no command to copy is given)"
        ),
    }
}

/// What became of a lock a command left, for its error.
pub enum LockNote {
    Released(String),
    Kept { lock: LockInfo, problem: String },
    Unchecked(String),
}

impl LockNote {
    /// The note in words, for the command `operation` and the lock at
    /// `location`.
    pub fn words(&self, operation: &str, location: &str) -> String {
        match self {
            LockNote::Released(id) => {
                format!("it left its state lock {id}, which was released: the {operation} has ended")
            }
            LockNote::Kept { lock, problem } => format!(
                "the {operation} left its state lock {} at {location}, and Tendril could not release it \
                 ({problem}): {NEXT_JOB_RELEASES}, or {}",
                lock.id,
                release_by_hand(lock, location)
            ),
            LockNote::Unchecked(problem) => format!(
                "Tendril could not check whether the {operation} left its state lock at {location} ({problem}); \
                 if it did, {NEXT_JOB_RELEASES}"
            ),
        }
    }
}

/// The `operation` was stopped (`ended`: how it ended) and its lock `id`
/// released.
pub fn stopped_and_released(operation: &str, ended: Option<&str>, id: &str) -> String {
    let ended = ended.map(|ended| format!(" ({ended})")).unwrap_or_default();
    format!("the {operation} was stopped{ended}; its state lock {id} was released")
}

/// The `operation`'s Terraform was killed by `signal` and its lock `id`
/// released.
pub fn killed_and_released(operation: &str, signal: i32, id: &str) -> String {
    format!("the {operation} was killed (signal {signal}); its state lock {id} was released")
}

/// The lease could not be kept (`why`), so the `operation` was stopped.
pub fn lease_lost(operation: &str, why: &str) -> String {
    format!(
        "the lease on the state could not be kept ({why}): the {operation} was stopped so that it never works \
         behind an expired lease"
    )
}

/// Terraform gave up on `lock` in the bucket, which no lease covers.
pub fn held_by_another(lock: &LockInfo, location: &str, waited: Duration) -> String {
    format!(
        "the state lock at {location} is held by {}, and this job gave up waiting for it after {} \
         (TENDRIL_TERRAFORM_LOCK_TIMEOUT). Tendril releases a lock only when its holder is provably dead, and no \
         Tendril lease covers this one, so it may be alive. If no one is running Terraform on this state, {} and \
         run the job again",
        lock.holder(),
        format_duration(waited),
        release_by_hand(lock, location)
    )
}

/// Terraform gave up on an object at the lock's place that Tendril cannot
/// read (`why`).
pub fn unreadable_lock(why: &str, waited: Duration) -> String {
    format!(
        "Terraform could not take the state lock within {} (TENDRIL_TERRAFORM_LOCK_TIMEOUT): {why}. Tendril \
         leaves an object it cannot read alone; if no one is running Terraform on this state, look at it, remove \
         it by hand and run the job again",
        format_duration(waited)
    )
}

/// Terraform gave up on a local state's `lock`.
pub fn locked_locally(lock: &LockInfo, waited: Duration) -> String {
    format!(
        "the state at {} is locked by {}, and this job gave up waiting for it after {} \
         (TENDRIL_TERRAFORM_LOCK_TIMEOUT). A local state's lock is held by a running process and ends with it: \
         run the job again once that process has ended",
        lock.path,
        lock.holder(),
        format_duration(waited)
    )
}

/// A live lease in words: `it is in use by ..., so it may still be running`.
pub fn live_lease(found: &FoundLease) -> String {
    format!(
        "it is in use by {}, whose lease was renewed {} ago, so it may still be running",
        lease_holder(found),
        format_duration(found.age)
    )
}

/// Who holds a lease found in the bucket.
pub fn lease_holder(found: &FoundLease) -> String {
    found
        .lease
        .as_ref()
        .map_or("a lease Tendril cannot read".to_string(), |lease| {
            lease.holder()
        })
}

/// What the job gave up on after `waited`: the state at `location` under
/// the live lease `found`, and its `lock` as it was read; when the lease
/// can end.
pub fn gave_up_on_live_lease(
    location: &str,
    found: &FoundLease,
    lock: Result<Option<FoundLock>, BucketError>,
    waited: Duration,
    expiry: Duration,
) -> String {
    let lock = match lock {
        Ok(Some(FoundLock::Readable(lock))) => {
            format!("Its state lock is held by {}.", lock.holder())
        }
        Ok(Some(FoundLock::Unreadable(why))) => format!("As for its state lock, {why}."),
        Ok(None) => "It holds no state lock yet.".into(),
        Err(error) => format!("Its state lock could not be read ({error})."),
    };
    let ended = match found
        .lease
        .as_ref()
        .and_then(|lease| lease.worker_id.as_ref())
    {
        Some(_) => " (sooner once Trellis shows that job ended)",
        None => "",
    };
    format!(
        "the state at {location} {}. This job waited {} (TENDRIL_TERRAFORM_LOCK_TIMEOUT) and gave up: Tendril \
         releases a lock only when its holder is provably dead. {lock} If that job has died, its lease expires in \
         about {}{ended} (TENDRIL_LOCK_LEASE_EXPIRY), and the next job on this state after that releases its lock \
         by itself: run this job again then.",
        live_lease(found).trim_start_matches("it "),
        format_duration(waited),
        format_duration(expiry.saturating_sub(found.age).max(Duration::from_secs(1)))
    )
}

/// The lease on the state at `location` was taken and given back by others
/// for all of `waited`.
pub fn lease_kept_changing_hands(location: &str, waited: Duration) -> String {
    format!(
        "the lease on the state at {location} kept changing hands for {} (TENDRIL_TERRAFORM_LOCK_TIMEOUT)",
        format_duration(waited)
    )
}

/// The lease on the state at `location` could not be taken within
/// `waited`: the bucket's `problem`.
pub fn lease_not_taken(location: &str, waited: Duration, problem: &str) -> String {
    format!(
        "cannot take the lease on the state at {location} within {} (TENDRIL_TERRAFORM_LOCK_TIMEOUT): {problem}",
        format_duration(waited)
    )
}
