//! The outbox: what Tendril still owes Trellis, kept on disk so that no
//! crash, SIGKILL or outage loses it.
//!
//! Each job gets a directory `<work root>/outbox/<job>/` for as long as it
//! runs and until everything about it has been delivered: `job.json` (which
//! job), `chunks.jsonl` and `chunks.offset` (its log spool, see
//! [`crate::logs::spool`]) and, once the job has ended, `terminal.json` (its
//! terminal status). It lives beside the job workspaces, never inside one,
//! because a workspace is removed when its job ends. A Tendril that starts
//! delivers every entry it finds before it claims anything.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::private_files::{create_private_dir, write_private_file};
use crate::trellis::StatusUpdate;

/// The outbox directory under a work root.
#[derive(Debug, Clone)]
pub struct Outbox {
    root: PathBuf,
}

/// One job's entry in the outbox.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    dir: PathBuf,
    job_id: String,
}

#[derive(Serialize, Deserialize)]
struct EntryRecord {
    job_id: String,
}

/// A job id as a directory name: ids are UUIDs, but a malformed one must
/// not reach outside the outbox.
fn directory_name(job_id: &str) -> String {
    job_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Outbox {
    pub fn open(work_root: &Path) -> io::Result<Outbox> {
        let root = work_root.join("outbox");
        create_private_dir(&root)?;
        Ok(Outbox { root })
    }

    /// Creates the entry of a job that is starting.
    pub fn create_entry(&self, job_id: &str) -> io::Result<OutboxEntry> {
        let dir = self.root.join(directory_name(job_id));
        create_private_dir(&dir)?;
        let record = serde_json::to_vec(&EntryRecord {
            job_id: job_id.to_string(),
        })?;
        write_private_file(&dir.join("job.json"), &record)?;
        Ok(OutboxEntry {
            dir,
            job_id: job_id.to_string(),
        })
    }

    /// Every entry left by an earlier run, oldest first.
    pub fn pending(&self) -> io::Result<Vec<OutboxEntry>> {
        let mut entries = Vec::new();
        for item in fs::read_dir(&self.root)? {
            let dir = item?.path();
            let record = fs::read(dir.join("job.json"))
                .ok()
                .and_then(|bytes| serde_json::from_slice::<EntryRecord>(&bytes).ok());
            match record {
                Some(record) => {
                    let modified = fs::metadata(&dir).and_then(|m| m.modified()).ok();
                    entries.push((
                        modified,
                        OutboxEntry {
                            dir,
                            job_id: record.job_id,
                        },
                    ));
                }
                None => {
                    tracing::warn!("removing an unreadable outbox entry {}", dir.display());
                    let _ = fs::remove_dir_all(&dir);
                }
            }
        }
        entries.sort_by_key(|(modified, _)| *modified);
        Ok(entries.into_iter().map(|(_, entry)| entry).collect())
    }
}

impl OutboxEntry {
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records the job's terminal status before delivery is attempted.
    pub fn save_terminal(&self, update: &StatusUpdate) -> io::Result<()> {
        write_private_file(
            &self.dir.join("terminal.json"),
            &serde_json::to_vec(update)?,
        )
    }

    /// The terminal status recorded, if the job got as far as ending.
    pub fn terminal(&self) -> Option<StatusUpdate> {
        let bytes = fs::read(self.dir.join("terminal.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Removes the entry once everything in it has been delivered.
    pub fn remove(&self) {
        if let Err(error) = fs::remove_dir_all(&self.dir) {
            tracing::warn!("cannot remove outbox entry {}: {error}", self.dir.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn entries_survive_a_restart_with_their_terminal_status() {
        let root = std::env::temp_dir().join(format!("tendril-outbox-test-{}", std::process::id()));
        let outbox = Outbox::open(&root).unwrap();
        let entry = outbox.create_entry("job/../1").unwrap();
        assert!(entry.dir().starts_with(root.join("outbox")));
        assert!(entry.terminal().is_none());
        entry.save_terminal(&StatusUpdate::failed("boom")).unwrap();

        let reopened = Outbox::open(&root).unwrap().pending().unwrap();
        assert_eq!(reopened.len(), 1);
        assert_eq!(reopened[0].job_id(), "job/../1");
        assert_eq!(reopened[0].terminal(), Some(StatusUpdate::failed("boom")));
        let mode = fs::metadata(reopened[0].dir().join("terminal.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        reopened[0].remove();
        assert!(Outbox::open(&root).unwrap().pending().unwrap().is_empty());
        fs::remove_dir_all(root).unwrap();
    }
}
