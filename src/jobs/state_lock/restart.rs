//! After a restart on the same work dir: a job that was running a
//! Terraform command when Tendril died left `state-hold.json` in its outbox
//! entry, naming the state and its lease. Its Terraform is dead (it died with
//! its worker, see `tools::process`, and this process holds the work dir's
//! lock, so the old one is gone): before anything is claimed, the lock it
//! left is released by the same rule as for a dead lease in a job, its lease
//! removed, and the job's FAILED status says so.

use std::time::Duration;

use super::bucket_state::{lock_location, BucketState, FoundLock};
use super::lease::Lease;
use super::lock_info::LockInfo;
use super::words::NEXT_JOB_RELEASES;
use super::StateHold;
use crate::cloud::state_bucket::BucketError;
use crate::delivery::job_report::KILLED_MESSAGE;
use crate::delivery::{Outbox, OutboxEntry};
use crate::settings::JobSettings;
use crate::trellis::StatusUpdate;

/// The most time one interrupted job's state may take to check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// Releases what the jobs an earlier run of this worker was running left
/// on their states, and records it in their terminal statuses.
pub async fn release_after_restart(outbox: &Outbox, settings: &JobSettings) {
    let entries = match outbox.pending() {
        Ok(entries) => entries,
        Err(error) => {
            tracing::error!("cannot read the outbox for interrupted Terraform commands: {error}");
            return;
        }
    };
    for entry in entries {
        let Some(hold) = entry.state_hold() else {
            continue;
        };
        let note = match serde_json::from_value::<StateHold>(hold) {
            Ok(hold) => checked(hold, settings).await,
            Err(error) => format!("its record of the state it held cannot be read ({error})"),
        };
        tracing::warn!(
            "job {} was interrupted by Tendril's end while running Terraform: {note}",
            entry.job_id()
        );
        record(&entry, &note);
    }
}

/// What became of the lock of `hold`, checked within [`CHECK_TIMEOUT`]; in
/// a task of its own, so that whatever the bucket holds, a failure there
/// never stops the worker from starting.
async fn checked(hold: StateHold, settings: &JobSettings) -> String {
    let location = lock_location(&hold.state_key);
    let settings = settings.clone();
    let check = tokio::spawn(async move {
        tokio::time::timeout(CHECK_TIMEOUT, release(&hold, &settings)).await
    });
    match check.await {
        Ok(Ok(note)) => note,
        Ok(Err(_)) => format!(
            "the state bucket did not answer in time, so the state lock it may have left at {location} was not \
             checked: {NEXT_JOB_RELEASES}"
        ),
        Err(failure) => format!(
            "Tendril failed while checking the state lock it may have left at {location} ({failure}): \
             {NEXT_JOB_RELEASES}"
        ),
    }
}

/// The terminal status of the interrupted job says what became of its lock.
fn record(entry: &OutboxEntry, note: &str) {
    if entry.terminal().is_none() {
        let update = StatusUpdate::failed(format!("{KILLED_MESSAGE}; {note}"));
        if let Err(error) = entry.save_terminal(&update) {
            tracing::error!("cannot write job {}'s status: {error}", entry.job_id());
            return;
        }
    }
    entry.clear_state_hold();
}

/// Releases the lock an interrupted command left; says what was done.
async fn release(hold: &StateHold, settings: &JobSettings) -> String {
    let storage = match &settings.state_storage {
        Some(storage) if storage.endpoint == hold.endpoint => storage,
        _ => {
            return format!(
                "its state was in the bucket at {}, which this worker no longer uses, so a lock it left there \
                 was not checked",
                hold.endpoint
            )
        }
    };
    let outcome = async {
        let state = BucketState::new(storage, &hold.state_key)?;
        // The lease in the bucket, while it is still this command's, is the
        // latest word on the lock it took.
        let current = state
            .lease()
            .await?
            .and_then(|found| found.lease)
            .filter(|lease| lease.lease_id == hold.lease.lease_id);
        let lease = current.as_ref().unwrap_or(&hold.lease);
        let released = match state.lock().await? {
            Some(FoundLock::Readable(lock))
                if left_by(lease, &lock, &state.lock_path(), current.is_some()) =>
            {
                state.release(&lock).await?.then_some(lock.id)
            }
            _ => None,
        };
        if current.is_some() {
            state.remove_lease(Some(&hold.lease.lease_id)).await?;
        }
        Ok::<_, BucketError>(released)
    };
    let operation = &hold.lease.operation;
    match outcome.await {
        Ok(Some(id)) => format!(
            "after the restart, the state lock {id} its terraform {operation} left was released (that \
             Terraform died with Tendril)"
        ),
        Ok(None) => format!("its terraform {operation} left no state lock"),
        Err(error) => format!(
            "the state lock its terraform {operation} may have left at {} could not be checked ({error}): \
             {NEXT_JOB_RELEASES}",
            lock_location(&hold.state_key)
        ),
    }
}

/// Whether the dead command of `lease` left `lock`, by the rule of a dead
/// holder (see [`Lease::took`]): the lock its lease named; any other only
/// while its lease is still there (`ours`: no other job took over).
fn left_by(lease: &Lease, lock: &LockInfo, path: &str, ours: bool) -> bool {
    (ours || lease.lock_id.is_some()) && lease.took(lock, path, lease.last_alive())
}
