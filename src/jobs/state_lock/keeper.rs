//! Keeping the lease while its command runs: looking for the lock the
//! command's Terraform takes (every second until the lease names one, then
//! at each renewal, in case the lock it names is gone and the command took
//! another), naming in the log a lock someone else holds that Terraform
//! waits for, renewing the lease every renewal interval, and stopping the
//! command when the lease cannot be kept.
//!
//! The bound that makes an expired lease proof of a dead holder: the
//! command is stopped `stop_after` after the start of the last write of the
//! lease that got through, at the latest (each round of looking and
//! renewing races that deadline, so no slow answer pushes it back), and a
//! renewal that finds the lease older than `stop_after` by the store's clock
//! stops it too (this host's clock stood still meanwhile: a suspended VM).

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::bucket_state::{FoundLock, Renewal};
use super::{words, HeldLease, JobContext};
use crate::units::format_duration;

/// How often the lock is looked for until the command's own is seen.
const LOOK_FOR_LOCK: Duration = Duration::from_secs(1);

/// Keeps `held` until it is lost; then cancels `stop` (the command's) and
/// returns. `lock_timeout` is how long Terraform waits for a lock.
pub(super) async fn keep(
    context: &JobContext,
    held: &HeldLease,
    stop: &CancellationToken,
    lock_timeout: Duration,
) {
    let stop_after = context.settings.state_lease.stop_after;
    let mut keeper = Keeper {
        context,
        held,
        lock_timeout,
        renewed: held.written,
        failing: None,
        named: None,
    };
    let why = loop {
        match tokio::time::timeout_at(keeper.renewed + stop_after, keeper.round()).await {
            Ok(Ok(())) => {}
            Ok(Err(why)) => break why,
            Err(_) => {
                let problem = keeper.failing.take().unwrap_or_else(words::not_in_time);
                break format!(
                    "it could not be renewed for {}: {problem}",
                    format_duration(stop_after)
                );
            }
        }
    };
    context.log.system(&format!(
        "the lease on the state is lost ({why}): stopping terraform"
    ));
    held.lose(why);
    stop.cancel();
}

struct Keeper<'a> {
    context: &'a JobContext,
    held: &'a HeldLease,
    lock_timeout: Duration,
    /// When the last write of the lease that got through began.
    renewed: Instant,
    /// Why renewals fail, while they do.
    failing: Option<String>,
    /// The lock of another last named in the log.
    named: Option<String>,
}

impl Keeper<'_> {
    /// One round: a wait, a look at the lock when due, a renewal when due
    /// (or when the command's lock was just seen). Why the lease is no
    /// longer this job's, if it is not.
    async fn round(&mut self) -> Result<(), String> {
        let settings = self.context.settings.state_lease;
        let lock_known = self.held.lease().lock_id.is_some();
        let tick = match lock_known {
            true => settings.renew_every,
            false => LOOK_FOR_LOCK.min(settings.renew_every),
        };
        tokio::time::sleep(tick).await;
        let due = self.renewed.elapsed() >= settings.renew_every;
        let lock_seen = match !lock_known || due {
            true => self.look_for_lock(lock_known).await,
            false => None,
        };
        if lock_seen.is_none() && !due {
            return Ok(());
        }
        let began = Instant::now();
        // A renewal never takes longer than the time between two.
        let attempt = tokio::time::timeout(
            settings.renew_every.max(LOOK_FOR_LOCK),
            self.held.renew(lock_seen.as_deref(), settings.stop_after),
        )
        .await;
        match attempt {
            Ok(Ok(Renewal::Renewed)) => {
                self.renewed = began;
                if lock_seen.is_some() {
                    self.held.record(self.context);
                }
                if self.failing.take().is_some() {
                    self.context
                        .log
                        .system("the lease on the state is renewed again");
                }
                Ok(())
            }
            Ok(Ok(Renewal::Replaced)) => {
                Err("another job removed it, judging its holder dead".into())
            }
            Ok(Ok(Renewal::TooOld(age))) => Err(format!(
                "by the state bucket's clock it was last renewed {} ago, longer than the {} a worker may go \
                 without renewing it; this host's clock stood still meanwhile (was it suspended?)",
                format_duration(age),
                format_duration(settings.stop_after)
            )),
            Ok(Err(error)) => {
                self.fail(error.to_string());
                Ok(())
            }
            Err(_) => {
                self.fail(words::not_in_time());
                Ok(())
            }
        }
    }

    /// Looks at the state's lock: its ID when it is the command's own and
    /// not yet the one the lease names; a lock of another's that Terraform
    /// waits for (`lock_known`: none, it took its own) is named in the log
    /// once.
    async fn look_for_lock(&mut self, lock_known: bool) -> Option<String> {
        let (id, holder) = match self.held.state.lock().await {
            Ok(Some(FoundLock::Readable(lock))) => {
                if self.held.lease().lock_id.as_deref() == Some(lock.id.as_str()) {
                    return None;
                }
                if self.held.owns(&lock) {
                    return Some(lock.id);
                }
                let holder = format!(
                    "the state lock held by {}: no Tendril lease covers it",
                    lock.holder()
                );
                (lock.id, holder)
            }
            Ok(Some(FoundLock::Unreadable(why))) => (why.clone(), format!("the state lock: {why}")),
            _ => return None,
        };
        if !lock_known && self.named.as_ref() != Some(&id) {
            self.context.log.system(&format!(
                "Terraform waits (up to {}) for {holder}, so it may be alive and Tendril leaves it alone",
                format_duration(self.lock_timeout)
            ));
            self.named = Some(id);
        }
        None
    }

    /// A renewal failed: said once, until one gets through again.
    fn fail(&mut self, problem: String) {
        if self.failing.is_none() {
            self.context.log.system(&format!(
                "cannot renew the lease on the state ({problem}); if it cannot be renewed within {}, Terraform is \
                 stopped so that it never works behind an expired lease",
                format_duration(self.context.settings.state_lease.stop_after)
            ));
        }
        self.failing = Some(problem);
    }
}
