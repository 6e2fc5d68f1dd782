//! Terraform's lock info: what a state lock says of its holder, read from
//! the lock object (`{"ID", "Operation", "Info", "Who", "Version",
//! "Created", "Path"}`) or from the `Lock Info:` block Terraform prints when
//! it cannot take a lock; put in words for a person, and matched against a
//! run of Tendril's own Terraform.
//!
//! Whoever could write the bucket could have written a lock's words: every
//! field is made printable on one line and cut to a bounded length when it
//! is read, and a lock's ID is offered to an operator in a command only
//! when it reads as an ID.

use std::time::{Duration, SystemTime};

use aws_smithy_types::date_time::{DateTime, Format};
use serde::Deserialize;

/// How far after a run's window a lock's creation may fall and still be
/// the run's (a renewal that came late, clock adjustments on the host).
const CLOCK_SLACK: Duration = Duration::from_secs(5);

/// The most characters of one field another party wrote that are shown.
const MAX_FIELD_CHARS: usize = 256;

/// The longest lock ID offered in a `terraform force-unlock` command
/// (Terraform's are UUIDs, 36 characters).
const MAX_ID_LEN: usize = 64;

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
/// Terraform writes it in a lock, the state's path, the `Who` its
/// Terraform writes, and when it may have taken the lock (by the clock of
/// the host it ran on, the clock of its lock's `Created`).
pub struct RunWindow<'a> {
    pub operation: &'a str,
    pub path: &'a str,
    pub who: &'a str,
    pub from: SystemTime,
    pub to: SystemTime,
}

impl LockInfo {
    /// The lock of a lock object; `None` when it is no Terraform lock.
    pub fn from_json(bytes: &[u8]) -> Option<LockInfo> {
        let lock = serde_json::from_slice::<LockInfo>(bytes).ok()?;
        lock.printable()
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
        lock.printable()
    }

    /// A lock from another party's words with each field made printable;
    /// `None` without an ID.
    fn printable(self) -> Option<LockInfo> {
        let lock = LockInfo {
            id: field(&self.id),
            operation: field(&self.operation),
            who: field(&self.who),
            version: field(&self.version),
            created: field(&self.created),
            path: field(&self.path),
        };
        (!lock.id.is_empty()).then_some(lock)
    }

    /// When the lock was taken, by its holder's clock: RFC 3339 in a lock
    /// object, Go's `2006-01-02 15:04:05.999999999 -0700 MST` in an error.
    pub fn created_at(&self) -> Option<SystemTime> {
        let text = self.created.trim();
        let rfc3339 = match text.split_whitespace().collect::<Vec<_>>()[..] {
            [date, time, offset, ..] => match go_offset(offset) {
                Some((hours, minutes)) => format!("{date}T{time}{hours}:{minutes}"),
                None => text.to_string(),
            },
            _ => text.to_string(),
        };
        parse_rfc3339(&rfc3339)
    }

    /// Whether `run` took this lock: the same operation, state and `Who`
    /// (user and host), taken while it ran. A lock from before the run
    /// started is never its own, whatever else it shares with it.
    pub fn taken_in(&self, run: &RunWindow) -> bool {
        let Some(created) = self.created_at() else {
            return false;
        };
        let until = run.to.checked_add(CLOCK_SLACK).unwrap_or(run.to);
        self.operation == run.operation
            && self.path == run.path
            && self.who == run.who
            && created >= run.from
            && created <= until
    }

    /// Whether the ID reads as one Terraform writes (a UUID: letters,
    /// digits and `-`), so that it can be offered in a command to copy.
    pub fn has_plain_id(&self) -> bool {
        self.id.len() <= MAX_ID_LEN
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
    }

    /// The holder in words: `root@vm, for a terraform apply since
    /// 2026-12-07 21:44:34 UTC (Terraform 1.11.4; lock ID ...)`, on one
    /// printable line.
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

/// Whether Terraform's last error lines say it could not take the state
/// lock (its heading may be past the lines kept; its closing words are
/// not). Then the lock they name is another's: Terraform never held one.
pub fn terraform_could_not_take_lock(stderr_tail: &[String]) -> bool {
    stderr_tail.iter().any(|line| {
        line.contains("Error acquiring the state lock")
            || line.contains("Terraform acquires a state lock to protect the state")
    })
}

/// The `+hh` and `mm` of a Go time zone offset (`+0100`), if it is one.
fn go_offset(offset: &str) -> Option<(&str, &str)> {
    let digits = offset.strip_prefix(['+', '-'])?;
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((offset.get(..3)?, offset.get(3..)?))
}

/// `text` on one line as it reads: control characters, and the invisible
/// ones that reorder or hide text (bidirectional controls, zero-width
/// characters), become `?`. What another party wrote in the bucket never
/// forges a line of the job's log, nor hides what a line says.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| match c.is_control() || is_invisible_format(c) {
            true => '?',
            false => c,
        })
        .collect()
}

/// One field another party wrote: [`printable`], and cut after
/// [`MAX_FIELD_CHARS`] characters (marked with `...`).
pub fn field(text: &str) -> String {
    match text.char_indices().nth(MAX_FIELD_CHARS) {
        Some((cut, _)) => format!("{}...", printable(&text[..cut])),
        None => printable(text),
    }
}

/// Unicode's format characters (category Cf) that change how text around
/// them reads without showing: bidirectional controls (U+202E turns text
/// around), zero-width characters, the soft hyphen, tags.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E007F}'
    )
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
    DateTime::from_secs(i64::try_from(seconds).unwrap_or(i64::MAX))
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

/// An RFC 3339 time, such as [`rfc3339`] writes.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    DateTime::from_str(text, Format::DateTimeWithOffset)
        .ok()
        .and_then(|time| SystemTime::try_from(time).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
        assert!(terraform_could_not_take_lock(&error));
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
        assert!(object.has_plain_id());
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
        assert!(!terraform_could_not_take_lock(&lines("Error: nothing")));
        assert_eq!(LockInfo::from_json(b"{}"), None);
        assert_eq!(LockInfo::from_json(b"not json"), None);
    }

    #[test]
    fn a_hostile_locks_words_are_printable_bounded_and_its_id_never_offered_raw() {
        let id = "abc\u{1b}[31mRED\u{7}; rm -rf ~";
        let who = format!("mallory\u{202e}@{}", "h".repeat(5000));
        let object = serde_json::json!({"ID": id, "Operation": "OperationTypeApply", "Who": who,
            "Version": "1.11.4", "Created": "2026-12-07T21:44:34Z", "Path": "p"});
        let error = lines(&format!(
            "Error: Error acquiring the state lock\nLock Info:\n  ID:        {id}\n  Who:       {who}\n  \
             Created:   2026-12-07 21:44:34 +0000 UTC\n"
        ));
        for lock in [
            LockInfo::from_json(object.to_string().as_bytes()).unwrap(),
            LockInfo::from_terraform_error(&error).unwrap(),
        ] {
            assert_eq!(lock.id, "abc?[31mRED?; rm -rf ~");
            assert!(!lock.has_plain_id(), "{}", lock.id);
            assert!(lock.who.starts_with("mallory?@hhh") && lock.who.ends_with("h..."));
            assert_eq!(lock.who.chars().count(), MAX_FIELD_CHARS + 3);
            let holder = lock.holder();
            assert!(holder
                .chars()
                .all(|c| !c.is_control() && !is_invisible_format(c)));
            assert!(holder.len() < 1000, "{}", holder.len());
        }
    }

    #[test]
    fn a_lock_is_a_runs_only_with_its_operation_state_who_and_time() {
        let lock = LockInfo::from_json(OBJECT.as_bytes()).unwrap();
        let created = lock.created_at().unwrap();
        let run = |operation, path, who, from: SystemTime, to: SystemTime| {
            lock.taken_in(&RunWindow {
                operation,
                path,
                who,
                from,
                to,
            })
        };
        let path = "vine-terraform-state/a/terraform.tfstate";
        let minute = Duration::from_secs(60);
        let second = Duration::from_secs(1);
        let (before, after) = (created - minute, created + minute);
        assert!(run("OperationTypeApply", path, "root@vm", before, after));
        assert!(!run("OperationTypePlan", path, "root@vm", before, after));
        assert!(!run(
            "OperationTypeApply",
            "other/path",
            "root@vm",
            before,
            after
        ));
        assert!(!run(
            "OperationTypeApply",
            path,
            "root@other-host",
            before,
            after
        ));
        assert!(
            !run("OperationTypeApply", path, "alice@vm", before, after),
            "another user on the same host"
        );
        assert!(!run(
            "OperationTypeApply",
            path,
            "root@vm",
            after,
            after + minute
        ));
        assert!(
            !run(
                "OperationTypeApply",
                path,
                "root@vm",
                created + second,
                after
            ),
            "a lock from a second before the run is not its own"
        );
        assert!(!run(
            "OperationTypeApply",
            path,
            "root@vm",
            before - minute,
            before
        ));
        assert!(run("OperationTypeApply", path, "root@vm", created, created));
    }

    #[test]
    fn a_created_time_with_an_odd_offset_is_no_time_and_no_panic() {
        let at = |created: &str| {
            LockInfo {
                created: created.into(),
                ..LockInfo::default()
            }
            .created_at()
        };
        assert_eq!(at("2026-01-01 00:00:00 +0é0"), None);
        assert_eq!(at("2026-01-01 00:00:00 é000 UTC"), None);
        assert_eq!(
            at("2026-12-07 21:44:34.5 +0100 CET"),
            parse_rfc3339("2026-12-07T20:44:34.5Z")
        );
    }

    #[test]
    fn lease_times_round_trip() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_435_200_250);
        assert_eq!(parse_rfc3339(&rfc3339(time)), Some(time));
        assert_eq!(readable_time(time), "2026-11-23 12:00:00 UTC");
    }

    proptest! {
        /// Whatever a lock object holds, reading and describing it neither
        /// panics nor lets an unprintable character or an unbounded field out.
        #[test]
        fn any_lock_object_is_read_safely(
            id in any::<String>(), who in any::<String>(), created in any::<String>(),
            operation in any::<String>(), version in any::<String>(),
        ) {
            let object = serde_json::json!({"ID": id, "Operation": operation, "Who": who,
                "Version": version, "Created": created, "Path": "p"});
            if let Some(lock) = LockInfo::from_json(object.to_string().as_bytes()) {
                let _ = lock.created_at();
                let holder = lock.holder();
                prop_assert!(holder.chars().all(|c| !c.is_control() && !is_invisible_format(c)));
                prop_assert!(holder.chars().count() < 6 * (MAX_FIELD_CHARS + 3) + 100);
                let now = SystemTime::now();
                let _ = lock.taken_in(&RunWindow { operation: "o", path: "p", who: "w", from: now, to: now });
            }
        }

        #[test]
        fn any_created_time_is_parsed_safely(
            date in "[0-9-]{0,12}", time in "[0-9:.]{0,20}", offset in "\\PC{0,6}", zone in "\\PC{0,4}",
        ) {
            let lock = LockInfo { created: format!("{date} {time} {offset} {zone}"), ..LockInfo::default() };
            let _ = lock.created_at().map(readable_time);
        }

        #[test]
        fn any_terraform_error_is_read_safely(text in "\\PC{0,40}(\nLock Info:)?(\n *[A-Za-z]{0,9}: *\\PC{0,30}){0,8}") {
            let lines = lines(&text);
            if let Some(lock) = LockInfo::from_terraform_error(&lines) {
                let _ = lock.created_at();
                prop_assert!(lock.holder().chars().all(|c| !c.is_control()));
            }
        }
    }
}
