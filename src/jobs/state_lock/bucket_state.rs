//! A state in the bucket, and the two objects beside it that this module
//! reads and writes: Terraform's lock (`<key>.tflock`) and Tendril's lease
//! (`<key>.tendril-lease`).

use super::lease::{FoundLease, Lease};
use super::lock_info::LockInfo;
use crate::cloud::state_bucket::{BucketError, StateBucket, STATE_BUCKET};
use crate::settings::StateStorage;

pub struct BucketState {
    bucket: StateBucket,
    key: String,
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

    fn lock_key(&self) -> String {
        format!("{}.tflock", self.key)
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
        StateBucket::describe(&self.lock_key())
    }

    /// The state's lock, if it is locked. An object there that is not
    /// Terraform's lock is an error: nothing can be said of its holder.
    pub async fn lock(&self) -> Result<Option<LockInfo>, BucketError> {
        let Some(object) = self.bucket.get(&self.lock_key()).await? else {
            return Ok(None);
        };
        LockInfo::from_json(&object.body).map(Some).ok_or_else(|| {
            BucketError::new(format!(
                "{} is not a Terraform lock Tendril can read",
                self.lock_location()
            ))
        })
    }

    /// Releases `lock` if it is still the state's lock, as `terraform
    /// force-unlock` does (read, compare the ID, remove); returns whether it
    /// was released.
    pub async fn release(&self, lock: &LockInfo) -> Result<bool, BucketError> {
        match self.lock().await? {
            Some(current) if current.id == lock.id => {
                self.bucket.delete(&self.lock_key()).await?;
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
                lease: serde_json::from_slice(&object.body).ok(),
                age: object.age,
            }))
    }

    /// Writes `lease` unless there is a lease already; returns whether it
    /// was written.
    pub async fn create_lease(&self, lease: &Lease) -> Result<bool, BucketError> {
        self.bucket.create(&self.lease_key(), to_json(lease)).await
    }

    /// Renews `lease` if the lease there is still its own; returns whether
    /// it was.
    pub async fn renew_lease(&self, lease: &Lease) -> Result<bool, BucketError> {
        if !self.lease_is(Some(&lease.lease_id)).await? {
            return Ok(false);
        }
        self.bucket.put(&self.lease_key(), to_json(lease)).await?;
        Ok(true)
    }

    /// Removes the lease if it is still `lease_id`'s (`None`: still one
    /// Tendril cannot read).
    pub async fn remove_lease(&self, lease_id: Option<&str>) -> Result<(), BucketError> {
        if self.lease_is(lease_id).await? {
            self.bucket.delete(&self.lease_key()).await?;
        }
        Ok(())
    }

    async fn lease_is(&self, lease_id: Option<&str>) -> Result<bool, BucketError> {
        Ok(self.lease().await?.is_some_and(|found| {
            found.lease.as_ref().map(|lease| lease.lease_id.as_str()) == lease_id
        }))
    }
}

fn to_json(lease: &Lease) -> Vec<u8> {
    serde_json::to_vec_pretty(lease).unwrap_or_default()
}
