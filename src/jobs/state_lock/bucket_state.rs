//! A state in the bucket, and the two objects beside it that this module
//! reads and writes: Terraform's lock (`<key>.tflock`) and Tendril's lease
//! (`<key>.tendril-lease`).

use std::time::Duration;

use super::lease::{FoundLease, Lease};
use super::lock_info::LockInfo;
use crate::cloud::state_bucket::{BucketError, StateBucket, STATE_BUCKET};
use crate::settings::StateStorage;

pub struct BucketState {
    bucket: StateBucket,
    key: String,
}

/// What locks a state.
pub enum FoundLock {
    /// Terraform's lock, read.
    Readable(LockInfo),
    /// An object Tendril cannot read as Terraform's lock (nothing can be
    /// said of its holder), and why, in words.
    Unreadable(String),
}

/// What became of a renewal of the lease.
pub enum Renewal {
    Renewed,
    /// The lease there is no longer this one: someone judged its holder
    /// dead.
    Replaced,
    /// The lease there is this one, but by the store's clock it was last
    /// written this long ago, longer than its holder may go without a
    /// renewal (the holder's own clock stood still: a suspended host). It
    /// is left as it is.
    TooOld(Duration),
}

/// The key of the lock of the state at `state_key`.
pub fn lock_key(state_key: &str) -> String {
    format!("{state_key}.tflock")
}

/// Where the lock of the state at `state_key` is, for a person.
pub fn lock_location(state_key: &str) -> String {
    StateBucket::describe(&lock_key(state_key))
}

impl BucketState {
    pub fn new(storage: &StateStorage, key: &str) -> Result<BucketState, BucketError> {
        Ok(BucketState {
            bucket: StateBucket::new(storage)?,
            key: key.to_string(),
        })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    fn lease_key(&self) -> String {
        format!("{}.tendril-lease", self.key)
    }

    /// The state's path as Terraform writes it in its lock.
    pub fn lock_path(&self) -> String {
        format!("{STATE_BUCKET}/{}", self.key)
    }

    /// Where the state is, for a person.
    pub fn location(&self) -> String {
        StateBucket::describe(&self.key)
    }

    /// Where the lock is, for a person.
    pub fn lock_location(&self) -> String {
        lock_location(&self.key)
    }

    /// What locks the state, if anything does.
    pub async fn lock(&self) -> Result<Option<FoundLock>, BucketError> {
        let Some(object) = self.bucket.get(&lock_key(&self.key)).await? else {
            return Ok(None);
        };
        let found = match object.body.as_deref().map(LockInfo::from_json) {
            Some(Some(lock)) => FoundLock::Readable(lock),
            Some(None) => FoundLock::Unreadable(format!(
                "the object at {} is not a Terraform lock Tendril can read",
                self.lock_location()
            )),
            None => FoundLock::Unreadable(format!(
                "the object at {} is larger than any Terraform lock, so Tendril does not read it",
                self.lock_location()
            )),
        };
        Ok(Some(found))
    }

    /// Terraform's lock on the state, if one Tendril can read is there.
    pub async fn readable_lock(&self) -> Result<Option<LockInfo>, BucketError> {
        Ok(match self.lock().await? {
            Some(FoundLock::Readable(lock)) => Some(lock),
            _ => None,
        })
    }

    /// Releases `lock` if it is still the state's lock, as `terraform
    /// force-unlock` does (read, compare the ID, remove); returns whether it
    /// was released.
    pub async fn release(&self, lock: &LockInfo) -> Result<bool, BucketError> {
        match self.readable_lock().await? {
            Some(current) if current.id == lock.id => {
                self.bucket.delete(&lock_key(&self.key)).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The lease beside the state, if there is one.
    pub async fn lease(&self) -> Result<Option<FoundLease>, BucketError> {
        Ok(self
            .bucket
            .get(&self.lease_key())
            .await?
            .map(|object| FoundLease {
                lease: object
                    .body
                    .and_then(|body| serde_json::from_slice(&body).ok()),
                age: object.age,
            }))
    }

    /// Writes `lease` unless there is a lease already; returns whether it
    /// was written.
    pub async fn create_lease(&self, lease: &Lease) -> Result<bool, BucketError> {
        self.bucket.create(&self.lease_key(), to_json(lease)).await
    }

    /// Renews `lease` if the lease there is still its own and was written
    /// less than `too_old` ago by the store's clock.
    pub async fn renew_lease(
        &self,
        lease: &Lease,
        too_old: Duration,
    ) -> Result<Renewal, BucketError> {
        let Some(found) = self
            .lease()
            .await?
            .filter(|found| is(found, Some(&lease.lease_id)))
        else {
            return Ok(Renewal::Replaced);
        };
        if found.age > too_old {
            return Ok(Renewal::TooOld(found.age));
        }
        self.bucket.put(&self.lease_key(), to_json(lease)).await?;
        Ok(Renewal::Renewed)
    }

    /// Removes the lease if it is still `lease_id`'s (`None`: still one
    /// Tendril cannot read).
    pub async fn remove_lease(&self, lease_id: Option<&str>) -> Result<(), BucketError> {
        if self
            .lease()
            .await?
            .is_some_and(|found| is(&found, lease_id))
        {
            self.bucket.delete(&self.lease_key()).await?;
        }
        Ok(())
    }
}

/// Whether `found` is the lease `lease_id` (`None`: one Tendril cannot
/// read).
fn is(found: &FoundLease, lease_id: Option<&str>) -> bool {
    found.lease.as_ref().map(|lease| lease.lease_id.as_str()) == lease_id
}

fn to_json(lease: &Lease) -> Vec<u8> {
    serde_json::to_vec_pretty(lease).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::state_bucket::test_store;
    use crate::jobs::state_lock::lease::Command;
    use crate::jobs::state_lock::Operation;

    /// A suspended host's clock stands still: the holder's own timer says
    /// little time passed, the store's clock says the lease is old.
    #[tokio::test]
    async fn a_renewal_that_finds_its_lease_older_than_the_stop_by_the_stores_clock_leaves_it() {
        let command = Command {
            job_id: "job-1",
            worker_id: Some("w-1"),
            operation: Operation::Apply,
            terraform_user: "root",
        };
        let lease = Lease::new(&command, Duration::from_secs(30), None);
        let body = serde_json::to_vec(&lease).unwrap();
        let head = format!(
            "HTTP/1.1 200 OK\r\nDate: Mon, 05 Jan 2026 10:04:00 GMT\r\nLast-Modified: Mon, 05 Jan 2026 10:00:00 \
             GMT\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let endpoint = test_store::answering(head, body).await;
        let state = BucketState::new(&test_store::storage(&endpoint), "k").unwrap();
        let renewal = state
            .renew_lease(&lease.renewed_now(None), Duration::from_secs(180))
            .await
            .unwrap();
        assert!(
            matches!(renewal, Renewal::TooOld(age) if age == Duration::from_secs(240)),
            "four minutes old, more than the three a holder may go without a renewal"
        );
        let fresh = state
            .renew_lease(&lease.renewed_now(None), Duration::from_secs(300))
            .await;
        assert!(matches!(fresh, Ok(Renewal::Renewed)), "young enough");
    }
}
