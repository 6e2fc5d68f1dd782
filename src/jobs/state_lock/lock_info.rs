//! Terraform's lock info: what a state lock says of its holder, read from
//! the lock object (`{"ID", "Operation", "Info", "Who", "Version",
//! "Created", "Path"}`) or from the `Lock Info:` block Terraform prints when
//! it cannot take a lock; put in words for a person, and matched against a
//! run of Tendril's own Terraform.

use std::time::{Duration, SystemTime};

use aws_smithy_types::date_time::{DateTime, Format};
use serde::Deserialize;

/// How far a lock's creation time may fall outside a run's and still be
/// the run's (clock adjustments on the host while it ran).
const CLOCK_SLACK: Duration = Duration::from_secs(5);

/// One state lock, as Terraform records it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
pub struct LockInfo {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Operation", default)]
    pub operation: String,
    #[serde(rename = "Who", default)]
    pub who: String,
    #[serde(rename = "Version", default)]
    pub version: String,
    #[serde(rename = "Created", default)]
    pub created: String,
    #[serde(rename = "Path", default)]
    pub path: String,
}

/// A run of Terraform that may have taken a lock: its operation as
/// Terraform writes it in a lock, the state's path, the host it ran on,
/// and when it may have taken the lock.
pub struct RunWindow<'a> {
    pub operation: &'a str,
    pub path: &'a str,
    pub host: &'a str,
    pub from: SystemTime,
    pub to: SystemTime,
}

impl LockInfo {
    /// The lock of a lock object; `None` when it is no Terraform lock.
    /// Whoever wrote it wrote its words: they are kept printable.
    pub fn from_json(bytes: &[u8]) -> Option<LockInfo> {
        let lock = serde_json::from_slice::<LockInfo>(bytes).ok()?;
        let lock = LockInfo {
            id: printable(&lock.id),
            operation: printable(&lock.operation),
            who: printable(&lock.who),
            version: printable(&lock.version),
            created: printable(&lock.created),
            path: printable(&lock.path),
        };
        (!lock.id.is_empty()).then_some(lock)
    }

    /// The lock Terraform names when it cannot take (or release) one: the
    /// `Lock Info:` block of its error lines.
    pub fn from_terraform_error(lines: &[String]) -> Option<LockInfo> {
        let start = lines.iter().position(|l| l.contains("Lock Info:"))?;
        let mut lock = LockInfo::default();
        for line in &lines[start + 1..] {
            let line = line.trim().trim_start_matches('│').trim();
            let Some((name, value)) = line.split_once(':') else {
                break;
            };
            let value = value.trim().to_string();
            match name.trim() {
                "ID" => lock.id = value,
                "Path" => lock.path = value,
                "Operation" => lock.operation = value,
                "Who" => lock.who = value,
                "Version" => lock.version = value,
                "Created" => lock.created = value,
                "Info" => {}
                _ => break,
            }
        }
        (!lock.id.is_empty()).then_some(lock)
    }

    /// When the lock was taken, by its holder's clock: RFC 3339 in a lock
    /// object, Go's `2006-01-02 15:04:05.999999999 -0700 MST` in an error.
    pub fn created_at(&self) -> Option<SystemTime> {
        let text = self.created.trim();
        let rfc3339 = match text.split_whitespace().collect::<Vec<_>>()[..] {
            [date, time, offset, ..] if offset.len() == 5 => {
                format!("{date}T{time}{}:{}", &offset[..3], &offset[3..])
            }
            _ => text.to_string(),
        };
        DateTime::from_str(&rfc3339, Format::DateTimeWithOffset)
            .ok()
            .and_then(|time| SystemTime::try_from(time).ok())
    }

    /// The host part of `Who` (`user@host`).
    fn host(&self) -> &str {
        self.who.rsplit_once('@').map_or("", |(_, host)| host)
    }

    /// Whether `run` took this lock: same operation, state and host, taken
    /// while it ran.
    pub fn taken_in(&self, run: &RunWindow) -> bool {
        let Some(created) = self.created_at() else {
            return false;
        };
        self.operation == run.operation
            && self.path == run.path
            && self.host() == run.host
            && created + CLOCK_SLACK >= run.from
            && created <= run.to + CLOCK_SLACK
    }

    /// The holder in words: `root@vm, for a terraform apply since
    /// 2026-12-07 21:44:34 UTC (Terraform 1.11.4; lock ID ...)`. Whoever
    /// wrote the lock wrote its words: they are made printable on one line.
    pub fn holder(&self) -> String {
        let who = match self.who.as_str() {
            "" => "someone",
            who => who,
        };
        let since = match self.created_at() {
            Some(time) => format!(" since {}", readable_time(time)),
            None if !self.created.is_empty() => format!(" since {}", self.created),
            None => String::new(),
        };
        let version = match self.version.as_str() {
            "" => String::new(),
            version => format!("Terraform {version}; "),
        };
        printable(&format!(
            "{who}, for {}{since} ({version}lock ID {})",
            operation_words(&self.operation),
            self.id
        ))
    }
}

/// `text` on one line, without control characters (what another party
/// wrote in the bucket never forges a line of the job's log).
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A lock's operation in words.
fn operation_words(operation: &str) -> String {
    match operation {
        "OperationTypeApply" => "a terraform apply or destroy".into(),
        "OperationTypePlan" => "a terraform plan".into(),
        "OperationTypeRefresh" => "a terraform refresh".into(),
        "state-push" => "a terraform state push".into(),
        "" => "a Terraform command".into(),
        other => format!("Terraform ({other})"),
    }
}

/// `2026-12-07 21:44:34 UTC`.
pub fn readable_time(time: SystemTime) -> String {
    let seconds = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DateTime::from_secs(seconds as i64)
        .fmt(Format::DateTime)
        .map(|text| format!("{} UTC", text.trim_end_matches('Z').replace('T', " ")))
        .unwrap_or_default()
}

/// RFC 3339, for the lease's own times.
pub fn rfc3339(time: SystemTime) -> String {
    DateTime::from(time)
        .fmt(Format::DateTime)
        .unwrap_or_default()
}

/// A time written by [`rfc3339`].
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    DateTime::from_str(text, Format::DateTimeWithOffset)
        .ok()
        .and_then(|time| SystemTime::try_from(time).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBJECT: &str = r#"{"ID":"400ea10b-e5fb-f867-1a23-27b792db7b92","Operation":"OperationTypeApply","Info":"","Who":"root@vm","Version":"1.11.4","Created":"2026-12-07T21:44:34.305658005Z","Path":"vine-terraform-state/a/terraform.tfstate"}"#;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(String::from).collect()
    }

    #[test]
    fn a_lock_object_and_terraforms_error_give_the_same_lock() {
        let object = LockInfo::from_json(OBJECT.as_bytes()).unwrap();
        // Terraform 1.11's words when the lock is held (S3, use_lockfile).
        let error = lines(
            "Error: Error acquiring the state lock\n\nError message: operation error S3: PutObject, https \
             response error\nStatusCode: 412, RequestID: x\napi error PreconditionFailed: At least one of the \
             pre-conditions you\nspecified did not hold\nLock Info:\n  ID:        \
             400ea10b-e5fb-f867-1a23-27b792db7b92\n  Path:      vine-terraform-state/a/terraform.tfstate\n  \
             Operation: OperationTypeApply\n  Who:       root@vm\n  Version:   1.11.4\n  Created:   2026-12-07 \
             21:44:34.305658005 +0000 UTC\n  Info:      \n\n\nTerraform acquires a state lock to protect the state",
        );
        let printed = LockInfo::from_terraform_error(&error).unwrap();
        assert_eq!(printed.id, object.id);
        assert_eq!(printed.path, object.path);
        assert_eq!(printed.who, object.who);
        assert_eq!(printed.created_at(), object.created_at());
        assert!(object.created_at().is_some());
        assert_eq!(
            object.holder(),
            "root@vm, for a terraform apply or destroy since 2026-12-07 21:44:34 UTC (Terraform 1.11.4; lock ID \
             400ea10b-e5fb-f867-1a23-27b792db7b92)"
        );
        assert_eq!(printed.holder(), object.holder());
        let forged = LockInfo {
            who: "x\n==> DEPLOY succeeded".into(),
            ..object.clone()
        };
        assert!(!forged.holder().contains('\n'), "{}", forged.holder());
        let boxed = lines("│ Error: Error acquiring the state lock\n│ Lock Info:\n│   ID:        abc\n│   Path: p");
        assert_eq!(LockInfo::from_terraform_error(&boxed).unwrap().id, "abc");
        assert_eq!(
            LockInfo::from_terraform_error(&lines("Error: nothing")),
            None
        );
        assert_eq!(LockInfo::from_json(b"{}"), None);
        assert_eq!(LockInfo::from_json(b"not json"), None);
    }

    #[test]
    fn a_lock_is_a_runs_only_with_its_operation_state_host_and_time() {
        let lock = LockInfo::from_json(OBJECT.as_bytes()).unwrap();
        let created = lock.created_at().unwrap();
        let run = |operation, path, host, from: SystemTime, to: SystemTime| {
            lock.taken_in(&RunWindow {
                operation,
                path,
                host,
                from,
                to,
            })
        };
        let path = "vine-terraform-state/a/terraform.tfstate";
        let minute = Duration::from_secs(60);
        assert!(run(
            "OperationTypeApply",
            path,
            "vm",
            created - minute,
            created + minute
        ));
        assert!(!run(
            "OperationTypePlan",
            path,
            "vm",
            created - minute,
            created + minute
        ));
        assert!(!run(
            "OperationTypeApply",
            "other/path",
            "vm",
            created - minute,
            created + minute
        ));
        assert!(!run(
            "OperationTypeApply",
            path,
            "other-host",
            created - minute,
            created + minute
        ));
        assert!(!run(
            "OperationTypeApply",
            path,
            "vm",
            created + minute,
            created + minute * 2
        ));
        assert!(!run(
            "OperationTypeApply",
            path,
            "vm",
            created - minute * 2,
            created - minute
        ));
    }

    #[test]
    fn lease_times_round_trip() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_435_200_250);
        assert_eq!(parse_rfc3339(&rfc3339(time)), Some(time));
        assert_eq!(readable_time(time), "2026-11-23 12:00:00 UTC");
    }
}
