//! The lease: Tendril's record beside a state in the bucket
//! (`<state key>.tendril-lease`) that one of its Terraform commands works
//! on that state: which job, worker, host and process, which command, since
//! when, and (once Terraform took it) the ID of the state lock. Its holder
//! renews it while the command runs; a lease's age is read from the store's
//! own clock.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::lock_info::{parse_rfc3339, printable, readable_time, rfc3339, LockInfo, RunWindow};
use super::Operation;

/// A lease, as written in the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// This lease among all others (random).
    pub lease_id: String,
    pub job_id: String,
    /// The worker running the job (none for `tendril exec`).
    #[serde(default)]
    pub worker_id: Option<String>,
    pub host: String,
    pub pid: u32,
    /// The command: `plan`, `apply` or `destroy`.
    pub operation: String,
    /// The operation Terraform writes in its lock for that command.
    pub lock_operation: String,
    /// RFC 3339, by the holder's clock.
    pub started: String,
    /// RFC 3339, by the holder's clock.
    pub renewed: String,
    pub renew_every_seconds: u64,
    /// The state lock the command's Terraform took, once seen.
    #[serde(default)]
    pub lock_id: Option<String>,
    pub tendril_version: String,
}

/// A lease found in the bucket: `None` when the object there is not a
/// lease Tendril can read; how long ago it was last written.
#[derive(Debug)]
pub struct FoundLease {
    pub lease: Option<Lease>,
    pub age: Duration,
}

impl Lease {
    /// A new lease of this process, started now.
    pub fn new(
        job_id: &str,
        worker_id: Option<&str>,
        operation: Operation,
        renew_every: Duration,
    ) -> Lease {
        let now = rfc3339(SystemTime::now());
        let id: [u8; 16] = rand::random();
        Lease {
            lease_id: id.iter().map(|b| format!("{b:02x}")).collect(),
            job_id: job_id.to_string(),
            worker_id: worker_id.map(String::from),
            host: crate::jobs::environment::hostname(),
            pid: std::process::id(),
            operation: operation.name().to_string(),
            lock_operation: operation.lock_operation().to_string(),
            started: now.clone(),
            renewed: now,
            renew_every_seconds: renew_every.as_secs().max(1),
            lock_id: None,
            tendril_version: crate::VERSION.to_string(),
        }
    }

    /// Whether this process holds it: the same worker, host and process
    /// (which runs one command at a time).
    pub fn of_this_process(&self, worker_id: Option<&str>) -> bool {
        self.worker_id.as_deref() == worker_id
            && self.host == crate::jobs::environment::hostname()
            && self.pid == std::process::id()
    }

    /// The holder in words, on one line (a lease is read from the bucket).
    pub fn holder(&self) -> String {
        let worker = match &self.worker_id {
            Some(worker) => format!("worker {worker}"),
            None => "tendril exec".to_string(),
        };
        let since = parse_rfc3339(&self.started)
            .map(|time| format!(" since {}", readable_time(time)))
            .unwrap_or_default();
        printable(&format!(
            "Tendril job {} on {worker} (host {}), running terraform {}{since}",
            self.job_id, self.host, self.operation
        ))
    }

    /// Whether `lock` is the one this lease's command took, judged at
    /// `now` while the command may still run: the lock the lease names, or
    /// one its command's Terraform wrote from its host since it started.
    pub fn took(&self, lock: &LockInfo, lock_path: &str, until: SystemTime) -> bool {
        if let Some(id) = &self.lock_id {
            return *id == lock.id;
        }
        let Some(from) = parse_rfc3339(&self.started) else {
            return false;
        };
        lock.taken_in(&RunWindow {
            operation: &self.lock_operation,
            path: lock_path,
            host: &self.host,
            from,
            to: until,
        })
    }

    /// Whether `lock` is the one this lease's command took, for a holder
    /// that is dead: it cannot have taken one after its last renewal and
    /// the renewal that did not come.
    pub fn took_before_dying(&self, lock: &LockInfo, lock_path: &str) -> bool {
        let last_alive = parse_rfc3339(&self.renewed)
            .map(|renewed| renewed + Duration::from_secs(self.renew_every_seconds));
        match last_alive {
            Some(until) => self.took(lock, lock_path, until),
            None => self.lock_id.as_deref() == Some(lock.id.as_str()),
        }
    }

    /// The lease renewed now, naming `lock_id` if given.
    pub fn renewed_now(&self, lock_id: Option<&str>) -> Lease {
        Lease {
            renewed: rfc3339(SystemTime::now()),
            lock_id: lock_id.map(String::from).or_else(|| self.lock_id.clone()),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(id: &str, created: SystemTime) -> LockInfo {
        LockInfo {
            id: id.into(),
            operation: "OperationTypeApply".into(),
            who: format!("root@{}", crate::jobs::environment::hostname()),
            version: "1.11.4".into(),
            created: rfc3339(created),
            path: "vine-terraform-state/k".into(),
        }
    }

    #[test]
    fn a_lease_owns_the_lock_it_names_or_else_one_its_command_took_while_alive() {
        let lease = Lease::new(
            "job-1",
            Some("w-1"),
            Operation::Apply,
            Duration::from_secs(30),
        );
        let started = parse_rfc3339(&lease.started).unwrap();
        let path = "vine-terraform-state/k";
        let taken = lock("L1", started + Duration::from_secs(1));
        assert!(lease.took(&taken, path, SystemTime::now()));
        assert!(lease.took_before_dying(&taken, path));
        let later = lock("L2", started + Duration::from_secs(600));
        assert!(
            !lease.took_before_dying(&later, path),
            "taken after the renewal that did not come"
        );
        let named = lease.renewed_now(Some("L1"));
        assert_eq!(named.lock_id.as_deref(), Some("L1"));
        assert!(named.took(&taken, path, SystemTime::now()));
        let other = lock("L3", started + Duration::from_secs(1));
        assert!(
            !named.took(&other, path, SystemTime::now()),
            "a lease naming its lock owns no other"
        );
        assert!(lease.of_this_process(Some("w-1")));
        assert!(!lease.of_this_process(Some("w-2")));
        assert!(lease
            .holder()
            .starts_with("Tendril job job-1 on worker w-1 (host "));
    }
}
