//! The outbox: what Tendril still owes Trellis, kept on disk so that no
//! crash, SIGKILL or outage loses it.
//!
//! Each job gets a directory `<work root>/outbox/<job id>/` for as long as
//! it runs and until everything about it has been delivered (a job failed
//! before it runs, one holding only its FAILED): `job.json`
//! (which job), `chunks.jsonl` and `chunks.offset` (its log spool, see
//! [`super::spool`]) and, once the job has ended, `terminal.json` (its
//! terminal status, written durably, with the job id inside, so that it
//! survives a damaged neighbour), and, while one of its Terraform commands
//! holds a lease on a state, `state-hold.json` (which state: after a crash,
//! the restarted worker releases what its dead Terraform left there, see
//! `jobs::state_lock`). It lives beside the job workspaces, never
//! inside one, because a workspace is removed when its job ends. Entries are
//! delivered by the job's own report and, when that could not finish, by
//! the backlog.
//!
//! A delivered entry is removed in two steps: it is first renamed out of
//! the outbox's view (`.removed-<job id>-<random>`, a name no job id can
//! have), durably, then deleted. A kill at any moment leaves either the
//! whole entry (delivered again at the next start) or a renamed one, which
//! the next start deletes unread: never an entry with part of its files,
//! whose missing log offset would send the whole log again, or whose
//! missing terminal status would report a SUCCESS as interrupted.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::private_files::{create_private_dir, sync_dir, write_durable_file};
use crate::safe_name;
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

/// `terminal.json`: the status, and whose it is.
#[derive(Serialize, Deserialize)]
struct TerminalRecord {
    job_id: String,
    update: StatusUpdate,
}

/// The start of the name of an entry taken out of the outbox to be deleted.
/// A job id never starts with a dot (see [`safe_name`]).
const REMOVED_PREFIX: &str = ".removed-";

impl Outbox {
    /// Opens (or creates) the outbox, and deletes the entries an earlier
    /// run had taken out but not deleted yet.
    pub fn open(work_root: &Path) -> io::Result<Outbox> {
        let root = work_root.join("outbox");
        create_private_dir(&root)?;
        for item in fs::read_dir(&root)? {
            let path = item?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if name.starts_with(REMOVED_PREFIX) {
                delete_removed(&path);
            }
        }
        Ok(Outbox { root })
    }

    /// Creates the entry of a job that is starting. The job id must be a
    /// safe name (the agent checks it before).
    pub fn create_entry(&self, job_id: &str) -> io::Result<OutboxEntry> {
        if !safe_name::is_safe(job_id) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the job id is not a safe directory name",
            ));
        }
        let dir = self.root.join(job_id);
        create_private_dir(&dir)?;
        let record = serde_json::to_vec(&EntryRecord {
            job_id: job_id.to_string(),
        })?;
        write_durable_file(&dir.join("job.json"), &record)?;
        sync_dir(&self.root)?;
        Ok(OutboxEntry {
            dir,
            job_id: job_id.to_string(),
        })
    }

    /// Every entry on disk, oldest first. An entry's job is read from
    /// `job.json`, else from its terminal status, else from the directory's
    /// name: a damaged file never makes an entry, and what it owes, vanish.
    pub fn pending(&self) -> io::Result<Vec<OutboxEntry>> {
        let mut entries = Vec::new();
        for item in fs::read_dir(&self.root)? {
            let dir = item?.path();
            let name = dir.file_name().unwrap_or_default().to_string_lossy();
            if !dir.is_dir() || name.starts_with('.') {
                continue;
            }
            let Some(job_id) = entry_job_id(&dir) else {
                tracing::warn!(
                    "the outbox entry {} names no job and is left as it is",
                    dir.display()
                );
                continue;
            };
            let modified = fs::metadata(&dir).and_then(|m| m.modified()).ok();
            entries.push((modified, OutboxEntry { dir, job_id }));
        }
        entries.sort_by_key(|(modified, _)| *modified);
        Ok(entries.into_iter().map(|(_, entry)| entry).collect())
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

fn entry_job_id(dir: &Path) -> Option<String> {
    if let Some(record) = read_json::<EntryRecord>(&dir.join("job.json")) {
        return Some(record.job_id);
    }
    if let Some(record) = read_json::<TerminalRecord>(&dir.join("terminal.json")) {
        return Some(record.job_id);
    }
    let name = dir.file_name()?.to_str()?;
    safe_name::is_safe(name).then(|| name.to_string())
}

impl OutboxEntry {
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records the job's terminal status, on disk before it returns.
    pub fn save_terminal(&self, update: &StatusUpdate) -> io::Result<()> {
        let record = TerminalRecord {
            job_id: self.job_id.clone(),
            update: update.clone(),
        };
        write_durable_file(
            &self.dir.join("terminal.json"),
            &serde_json::to_vec(&record)?,
        )
    }

    /// The terminal status recorded, if the job got as far as ending.
    pub fn terminal(&self) -> Option<StatusUpdate> {
        read_json::<TerminalRecord>(&self.dir.join("terminal.json")).map(|record| record.update)
    }

    /// Records, durably, that the job holds a lease on a Terraform state
    /// (what `jobs::state_lock` writes, opaque here).
    pub fn save_state_hold(&self, hold: &serde_json::Value) -> io::Result<()> {
        write_durable_file(&self.state_hold_path(), &serde_json::to_vec(hold)?)
    }

    /// The state the job held a lease on when it last ran, if any.
    pub fn state_hold(&self) -> Option<serde_json::Value> {
        read_json(&self.state_hold_path())
    }

    /// The job holds no lease any more.
    pub fn clear_state_hold(&self) {
        match fs::remove_file(self.state_hold_path()) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => tracing::warn!(
                "cannot remove {}: {error}",
                self.state_hold_path().display()
            ),
            _ => {}
        }
    }

    fn state_hold_path(&self) -> PathBuf {
        self.dir.join("state-hold.json")
    }

    /// Removes the entry once everything in it has been delivered: takes it
    /// out of the outbox (a durable rename), then deletes it (see the
    /// module's comment). An entry that cannot be taken out stays whole.
    pub fn remove(&self) {
        let Some(outbox) = self.dir.parent() else {
            return;
        };
        let removed = outbox.join(format!(
            "{REMOVED_PREFIX}{}-{:016x}",
            self.job_id,
            rand::random::<u64>()
        ));
        if let Err(error) = fs::rename(&self.dir, &removed).and_then(|()| sync_dir(outbox)) {
            tracing::warn!(
                "cannot take the delivered outbox entry {} out of the outbox: {error}",
                self.dir.display()
            );
            return;
        }
        crate::failpoint::kill_here("outbox-entry-taken-out");
        delete_removed(&removed);
    }
}

/// Deletes an entry taken out of the outbox; one that cannot be deleted now
/// is deleted at the next start.
fn delete_removed(path: &Path) {
    if let Err(error) = fs::remove_dir_all(path) {
        tracing::warn!(
            "cannot delete the delivered outbox entry {}: {error}",
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn entries_survive_a_restart_with_their_terminal_status() {
        let root = crate::scratch::path("outbox-restart");
        let outbox = Outbox::open(&root).unwrap();
        assert!(
            outbox.create_entry("job/../1").is_err(),
            "unsafe ids make no entry"
        );
        let entry = outbox.create_entry("job-1").unwrap();
        assert!(entry.terminal().is_none());
        entry.save_terminal(&StatusUpdate::failed("boom")).unwrap();

        let reopened = Outbox::open(&root).unwrap().pending().unwrap();
        assert_eq!(reopened.len(), 1);
        assert_eq!(reopened[0].job_id(), "job-1");
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

    #[test]
    fn an_entry_taken_out_but_not_deleted_is_never_read_and_is_deleted_at_the_next_start() {
        let root = crate::scratch::path("outbox-taken-out");
        let outbox = Outbox::open(&root).unwrap();
        let entry = outbox.create_entry("job-3").unwrap();
        fs::write(entry.dir().join("chunks.jsonl"), b"{}\n").unwrap();
        entry
            .save_terminal(&StatusUpdate::failed("delivered"))
            .unwrap();
        // What a kill between the two steps of a removal leaves: the entry
        // renamed out, its files partly deleted.
        let taken_out = root.join("outbox").join(".removed-job-3-00000000000000ff");
        fs::rename(entry.dir(), &taken_out).unwrap();
        fs::remove_file(taken_out.join("terminal.json")).unwrap();
        assert!(outbox.pending().unwrap().is_empty(), "not an entry");
        assert!(taken_out.exists());
        let reopened = Outbox::open(&root).unwrap();
        assert!(!taken_out.exists(), "deleted at the next start");
        assert!(reopened.pending().unwrap().is_empty());
        // A whole removal leaves nothing behind.
        let entry = reopened.create_entry("job-4").unwrap();
        entry.remove();
        assert_eq!(fs::read_dir(root.join("outbox")).unwrap().count(), 0);
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_damaged_job_json_loses_neither_the_entry_nor_its_terminal_status() {
        let root = crate::scratch::path("outbox-damaged");
        let outbox = Outbox::open(&root).unwrap();
        let entry = outbox.create_entry("job-2").unwrap();
        entry.save_terminal(&StatusUpdate::failed("kept")).unwrap();
        // A host crash left job.json empty.
        fs::write(entry.dir().join("job.json"), b"").unwrap();
        let pending = outbox.pending().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].job_id(), "job-2");
        assert_eq!(pending[0].terminal(), Some(StatusUpdate::failed("kept")));
        // Neither file readable: the directory's name still says whose it is.
        fs::write(entry.dir().join("terminal.json"), b"{\"job_").unwrap();
        assert_eq!(outbox.pending().unwrap()[0].job_id(), "job-2");
        fs::remove_dir_all(root).unwrap();
    }
}
