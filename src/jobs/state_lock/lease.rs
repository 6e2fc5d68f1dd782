//! The lease: Tendril's record beside a state in the bucket
//! (`<state key>.tendril-lease`) that one of its Terraform commands works
//! on that state: which job, worker, host and process, which command, what
//! its Terraform writes as a lock's `Who`, since when, the lock that was
//! there before it (never its own) and, once Terraform took it, the ID of
//! the state lock. Its holder renews it while the command runs; a lease's
//! age is read from the store's own clock.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::lock_info::{
    field, parse_rfc3339, printable, readable_time, rfc3339, LockInfo, RunWindow,
};
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
    /// The holder's PID, for a person looking for it on its host.
    pub pid: u32,
    /// The holder process among all others (see [`this_process`]).
    pub process_id: String,
    /// What the command's Terraform writes as its lock's `Who`.
    pub who: String,
    /// The command: `plan`, `apply` or `destroy`.
    pub operation: String,
    /// The operation Terraform writes in its lock for that command.
    pub lock_operation: String,
    /// RFC 3339, by the holder's clock.
    pub started: String,
    /// RFC 3339, by the holder's clock.
    pub renewed: String,
    pub renew_every_seconds: u64,
    /// The state lock there when the lease was taken: another's.
    #[serde(default)]
    pub lock_before: Option<String>,
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

/// What a command that takes the state lock is, for its lease.
pub struct Command<'a> {
    pub job_id: &'a str,
    pub worker_id: Option<&'a str>,
    pub operation: Operation,
    /// The user its Terraform names in a lock's `Who` (`user@host`).
    pub terraform_user: &'a str,
}

/// This process among all others, made once (random): two Tendrils with
/// the same host name and PID (containers, where Tendril is often PID 1)
/// still tell their leases apart.
fn this_process() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(random_id)
}

fn random_id() -> String {
    let id: [u8; 16] = rand::random();
    id.iter().map(|b| format!("{b:02x}")).collect()
}

impl Lease {
    /// A new lease of this process for `command`, started now, while
    /// `lock_before` (if any) locks the state.
    pub fn new(command: &Command, renew_every: Duration, lock_before: Option<&str>) -> Lease {
        let now = rfc3339(SystemTime::now());
        let host = crate::jobs::environment::hostname();
        Lease {
            lease_id: random_id(),
            job_id: command.job_id.to_string(),
            worker_id: command.worker_id.map(String::from),
            who: format!("{}@{host}", command.terraform_user),
            host,
            pid: std::process::id(),
            process_id: this_process().to_string(),
            operation: command.operation.name().to_string(),
            lock_operation: command.operation.lock_operation().to_string(),
            started: now.clone(),
            renewed: now,
            renew_every_seconds: renew_every.as_secs().max(1),
            lock_before: lock_before.map(String::from),
            lock_id: None,
            tendril_version: crate::VERSION.to_string(),
        }
    }

    /// Whether this process holds it: the same worker and process (which
    /// runs one command at a time).
    pub fn of_this_process(&self, worker_id: Option<&str>) -> bool {
        self.worker_id.as_deref() == worker_id && self.process_id == this_process()
    }

    /// The job to ask Trellis about, when its ID is one Tendril would run
    /// (see `safe_name`): what else a lease says is never put in a request.
    pub fn job_to_ask(&self) -> Option<&str> {
        crate::safe_name::is_safe(&self.job_id).then_some(self.job_id.as_str())
    }

    /// The holder in words, on one line (a lease is read from the bucket).
    pub fn holder(&self) -> String {
        let worker = match &self.worker_id {
            Some(worker) => format!("worker {}", field(worker)),
            None => "tendril exec".to_string(),
        };
        let since = parse_rfc3339(&self.started)
            .map(|time| format!(" since {}", readable_time(time)))
            .unwrap_or_default();
        printable(&format!(
            "Tendril job {} on {worker} (host {}), running terraform {}{since}",
            field(&self.job_id),
            field(&self.host),
            field(&self.operation)
        ))
    }

    /// Whether `lock` is the one this lease's command took, judged with
    /// what the holder can have done by `until`: the lock the lease names;
    /// else one its command's Terraform (its operation, state and `Who`)
    /// wrote between the lease's start and `until`, and that was not there
    /// before the lease. For a command that may still run, `until` is now;
    /// for a dead holder, [`Lease::last_alive`].
    pub fn took(&self, lock: &LockInfo, lock_path: &str, until: SystemTime) -> bool {
        if let Some(id) = &self.lock_id {
            return *id == lock.id;
        }
        if self.lock_before.as_deref() == Some(lock.id.as_str()) {
            return false;
        }
        let Some(from) = parse_rfc3339(&self.started) else {
            return false;
        };
        lock.taken_in(&RunWindow {
            operation: &self.lock_operation,
            path: lock_path,
            who: &self.who,
            from,
            to: until,
        })
    }

    /// The latest a dead holder can have taken a lock: its last renewal,
    /// and the renewal that did not come. The Unix epoch when the lease's
    /// times cannot be read (then only the lock it names is its own).
    pub fn last_alive(&self) -> SystemTime {
        parse_rfc3339(&self.renewed)
            .and_then(|renewed| renewed.checked_add(Duration::from_secs(self.renew_every_seconds)))
            .unwrap_or(SystemTime::UNIX_EPOCH)
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
    use proptest::prelude::*;

    const PATH: &str = "vine-terraform-state/k";

    fn lock(id: &str, created: SystemTime) -> LockInfo {
        LockInfo {
            id: id.into(),
            operation: "OperationTypeApply".into(),
            who: format!("root@{}", crate::jobs::environment::hostname()),
            version: "1.11.4".into(),
            created: rfc3339(created),
            path: PATH.into(),
        }
    }

    fn lease(lock_before: Option<&str>) -> Lease {
        let command = Command {
            job_id: "job-1",
            worker_id: Some("w-1"),
            operation: Operation::Apply,
            terraform_user: "root",
        };
        Lease::new(&command, Duration::from_secs(30), lock_before)
    }

    #[test]
    fn a_lease_owns_the_lock_it_names_or_else_one_its_command_took_while_alive() {
        let lease = lease(None);
        let started = parse_rfc3339(&lease.started).unwrap();
        let taken = lock("L1", started + Duration::from_secs(1));
        assert!(lease.took(&taken, PATH, SystemTime::now()));
        assert!(lease.took(&taken, PATH, lease.last_alive()));
        let later = lock("L2", started + Duration::from_secs(600));
        assert!(
            !lease.took(&later, PATH, lease.last_alive()),
            "taken after the renewal that did not come"
        );
        let someone_else = LockInfo {
            who: format!("alice@{}", crate::jobs::environment::hostname()),
            ..taken.clone()
        };
        assert!(!lease.took(&someone_else, PATH, SystemTime::now()));
        let named = lease.renewed_now(Some("L1"));
        assert_eq!(named.lock_id.as_deref(), Some("L1"));
        assert!(named.took(&taken, PATH, SystemTime::now()));
        let other = lock("L3", started + Duration::from_secs(1));
        assert!(
            !named.took(&other, PATH, SystemTime::now()),
            "a lease naming its lock owns no other"
        );
        assert!(lease.of_this_process(Some("w-1")));
        assert!(!lease.of_this_process(Some("w-2")));
        assert!(lease
            .holder()
            .starts_with("Tendril job job-1 on worker w-1 (host "));
    }

    #[test]
    fn the_lock_there_before_the_lease_is_never_its_commands() {
        let lease = lease(Some("L0"));
        // Even with its clock behind: what was there before is another's.
        let started = parse_rfc3339(&lease.started).unwrap();
        let before = lock("L0", started + Duration::from_secs(1));
        assert!(!lease.took(&before, PATH, SystemTime::now()));
        assert!(lease.took(
            &lock("L1", started + Duration::from_secs(1)),
            PATH,
            SystemTime::now()
        ));
    }

    #[test]
    fn a_lease_of_another_process_with_this_host_pid_and_worker_is_not_this_ones() {
        // Two containers of one worker, both PID 1 on one host name.
        let replica = Lease {
            process_id: random_id(),
            ..lease(None)
        };
        assert_eq!(
            (replica.host.as_str(), replica.pid),
            (
                crate::jobs::environment::hostname().as_str(),
                std::process::id()
            )
        );
        assert!(!replica.of_this_process(Some("w-1")));
    }

    #[test]
    fn a_lease_with_a_huge_renewal_interval_owns_only_the_lock_it_names() {
        let damaged = Lease {
            renew_every_seconds: u64::MAX,
            ..lease(None)
        };
        assert_eq!(damaged.last_alive(), SystemTime::UNIX_EPOCH);
        let started = parse_rfc3339(&damaged.started).unwrap();
        let taken = lock("L1", started + Duration::from_secs(1));
        assert!(!damaged.took(&taken, PATH, damaged.last_alive()));
        let named = Lease {
            lock_id: Some("L1".into()),
            ..damaged
        };
        assert!(named.took(&taken, PATH, named.last_alive()));
    }

    #[test]
    fn only_a_job_id_tendril_would_run_is_asked_about() {
        assert_eq!(lease(None).job_to_ask(), Some("job-1"));
        for odd in ["", "../workers/w-1", "a/b", "x?y=1", "a b", "-x"] {
            let odd_lease = Lease {
                job_id: odd.into(),
                ..lease(None)
            };
            assert_eq!(odd_lease.job_to_ask(), None, "{odd:?}");
        }
    }

    proptest! {
        /// Whatever a lease in the bucket holds, judging it neither panics
        /// nor lets an unprintable character into its holder's words.
        #[test]
        fn any_lease_is_judged_safely(
            job_id in any::<String>(), host in any::<String>(), started in any::<String>(),
            renewed in any::<String>(), renew_every_seconds in any::<u64>(), worker in any::<Option<String>>(),
        ) {
            let lease = Lease { job_id, host, started, renewed, renew_every_seconds, worker_id: worker, ..lease(None) };
            let text = serde_json::to_vec(&lease).unwrap();
            let read: Lease = serde_json::from_slice(&text).unwrap();
            prop_assert!(read.holder().chars().all(|c| !c.is_control()));
            let _ = read.took(&lock("L", SystemTime::now()), PATH, read.last_alive());
            let _ = read.job_to_ask();
        }
    }
}
