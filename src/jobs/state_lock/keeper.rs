//! Keeping the lease while its command runs: looking for the lock the
//! command's Terraform takes (every second until it is seen, so that the
//! lease names it), naming in the log a lock someone else holds that
//! Terraform waits for, renewing the lease every renewal interval, and
//! stopping the command when the lease cannot be kept.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{HeldLease, JobContext};
use crate::units::format_duration;

/// How often the lock is looked for until the command's own is seen.
const LOOK_FOR_LOCK: Duration = Duration::from_secs(1);

/// Why a renewal did not happen.
enum Renewal {
    /// The lease there is no longer this one: someone judged its holder dead.
    Lost,
    Failed(String),
}

/// Keeps `held` until it is lost; then cancels `stop` (the command's) and
/// returns. `lock_timeout` is how long Terraform waits for a lock.
pub(super) async fn keep(
    context: &JobContext,
    held: &HeldLease,
    stop: &CancellationToken,
    lock_timeout: Duration,
) {
    let lease_settings = context.settings.state_lease;
    let mut renewed = Instant::now();
    let mut failing: Option<String> = None;
    let mut named: Option<String> = None;
    loop {
        let lock_known = held.lease().lock_id.is_some();
        let tick = match lock_known {
            true => lease_settings.renew_every,
            false => LOOK_FOR_LOCK.min(lease_settings.renew_every),
        };
        tokio::time::sleep(tick).await;
        let mut lock_seen = None;
        if !lock_known {
            match held.state.lock().await {
                Ok(Some(lock)) if held.owns(&lock) => lock_seen = Some(lock.id),
                Ok(Some(lock)) if named.as_deref() != Some(lock.id.as_str()) => {
                    context.log.system(&format!(
                        "Terraform waits (up to {}) for the state lock held by {}: no Tendril lease covers it, \
                         so it may be alive and Tendril leaves it alone",
                        format_duration(lock_timeout),
                        lock.holder()
                    ));
                    named = Some(lock.id);
                }
                _ => {}
            }
        }
        if lock_seen.is_none() && renewed.elapsed() < lease_settings.renew_every {
            continue;
        }
        // A renewal never takes longer than the time between two.
        let attempt = tokio::time::timeout(
            lease_settings.renew_every.max(LOOK_FOR_LOCK),
            renew(held, lock_seen.as_deref()),
        )
        .await
        .unwrap_or_else(|_| {
            Err(Renewal::Failed(
                "the state bucket did not answer in time".into(),
            ))
        });
        match attempt {
            Ok(()) => {
                renewed = Instant::now();
                if lock_seen.is_some() {
                    held.record(context);
                }
                if failing.take().is_some() {
                    context
                        .log
                        .system("the lease on the state is renewed again");
                }
            }
            Err(Renewal::Lost) => {
                let why = "another job removed it, judging its holder dead".to_string();
                context.log.system(&format!(
                    "the lease on the state is no longer this job's ({why}): stopping terraform"
                ));
                held.lose(why);
                stop.cancel();
                return;
            }
            Err(Renewal::Failed(problem)) => {
                if failing.is_none() {
                    context.log.system(&format!(
                        "cannot renew the lease on the state ({problem}); if it cannot be renewed within {}, \
                         Terraform is stopped so that it never works behind an expired lease",
                        format_duration(lease_settings.stop_after)
                    ));
                }
                if renewed.elapsed() >= lease_settings.stop_after {
                    let why = format!(
                        "it could not be renewed for {}: {problem}",
                        format_duration(lease_settings.stop_after)
                    );
                    context.log.system(&format!(
                        "the lease on the state is lost ({why}): stopping terraform"
                    ));
                    held.lose(why);
                    stop.cancel();
                    return;
                }
                failing = Some(problem);
            }
        }
    }
}

/// Renews the lease (naming `lock_id`, when just seen), if it is still
/// this one.
async fn renew(held: &HeldLease, lock_id: Option<&str>) -> Result<(), Renewal> {
    let lease = held.lease().renewed_now(lock_id);
    match held.state.renew_lease(&lease).await {
        Ok(true) => {
            held.set_lease(lease);
            Ok(())
        }
        Ok(false) => Err(Renewal::Lost),
        Err(error) => Err(Renewal::Failed(error.to_string())),
    }
}
