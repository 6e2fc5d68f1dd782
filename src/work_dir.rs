//! The work directory: where job workspaces (`jobs/`) and the outbox
//! (`outbox/`) live. One Tendril at a time may run on it: `start` holds an
//! exclusive lock on `tendril.lock` for its whole life (a second one exits
//! naming the first's PID), and `exec` a shared one, so that no worker
//! starting later removes the workspace of a job still running there.
//! Before each claim the agent checks the directory can still take a job:
//! writable, with enough free space.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::private_files::create_private_dir;
use crate::units::format_size;

/// The default work directory: `$XDG_STATE_HOME/tendril`, else
/// `~/.local/state/tendril` (a persistent place, so the outbox survives a
/// restart).
pub fn default_work_dir() -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    state.join("tendril")
}

/// How a process holds the work directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// `tendril start`: no other Tendril may use it.
    Exclusive,
    /// `tendril exec`: other `exec`s may, a worker may not.
    Shared,
}

/// The lock on a work directory, released when dropped (or when the
/// process ends, however it ends).
#[derive(Debug)]
pub struct WorkDirLock {
    _file: File,
}

/// Why the work directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another Tendril (PID {holder}) is using {dir}: give this one another TENDRIL_WORK_DIR"
    )]
    Held { dir: String, holder: String },
    #[error("cannot use {dir}: {source}")]
    Io { dir: String, source: io::Error },
}

impl WorkDirLock {
    /// Creates the directory if needed and takes its lock, without waiting.
    pub fn acquire(dir: &Path, hold: Hold) -> Result<WorkDirLock, LockError> {
        let shown = dir.display().to_string();
        let io = |source| LockError::Io {
            dir: shown.clone(),
            source,
        };
        create_private_dir(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join("tendril.lock"))
            .map_err(io)?;
        let operation = match hold {
            Hold::Exclusive => libc::LOCK_EX,
            Hold::Shared => libc::LOCK_SH,
        };
        // SAFETY: flock(2) on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), operation | libc::LOCK_NB) } != 0 {
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::WouldBlock {
                return Err(io(error));
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder
                .split_whitespace()
                .next()
                .unwrap_or("unknown")
                .to_string();
            return Err(LockError::Held { dir: shown, holder });
        }
        // Say who holds it (for the message a second Tendril prints).
        let mut record = || -> io::Result<()> {
            if hold == Hold::Exclusive {
                file.set_len(0)?;
            }
            file.seek(io::SeekFrom::End(0))?;
            writeln!(file, "{}", std::process::id())
        };
        record().map_err(io)?;
        Ok(WorkDirLock { _file: file })
    }
}

/// Whether the work directory can take a job now: a file can be written
/// there, and at least `min_free` bytes are free. The problem, if any.
///
/// The probe is not synced: this runs before every claim, and a sync is a
/// disk flush (and some five wakeups of an idle worker) each poll. A full
/// or read-only file system already refuses the write itself; a job's own
/// files are synced when it is recorded, and a job that cannot be recorded
/// is failed at once.
pub fn ready_for_a_job(dir: &Path, min_free: u64) -> Result<(), String> {
    let probe = dir.join(".write-probe");
    let written = File::create(&probe).and_then(|mut file| file.write_all(b"probe"));
    let _ = std::fs::remove_file(&probe);
    if let Err(error) = written {
        return Err(format!(
            "the work dir {} cannot be written: {error}",
            dir.display()
        ));
    }
    let free = free_space(dir)
        .map_err(|error| format!("cannot read the free space of {}: {error}", dir.display()))?;
    if free < min_free {
        return Err(format!(
            "the work dir {} has {} free, less than TENDRIL_MIN_FREE_SPACE ({})",
            dir.display(),
            format_size(free),
            format_size(min_free)
        ));
    }
    Ok(())
}

/// Bytes available to this user on the filesystem of `dir`.
pub fn free_space(dir: &Path) -> io::Result<u64> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("a NUL in the path"))?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: statvfs(3) writes the struct for a valid NUL-terminated path.
    if unsafe { libc::statvfs(path.as_ptr(), stats.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs succeeded, so the struct is initialised.
    let stats = unsafe { stats.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    let (blocks, size) = (stats.f_bavail as u64, stats.f_frsize as u64);
    Ok(blocks.saturating_mul(size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exclusive_hold_keeps_out_everyone_and_a_shared_one_only_workers() {
        let dir = crate::scratch::path("workdir");
        let worker = WorkDirLock::acquire(&dir, Hold::Exclusive).unwrap();
        let refused = WorkDirLock::acquire(&dir, Hold::Exclusive).unwrap_err();
        assert!(
            refused
                .to_string()
                .contains(&format!("(PID {})", std::process::id())),
            "{refused}"
        );
        assert!(WorkDirLock::acquire(&dir, Hold::Shared).is_err());
        drop(worker);
        let first = WorkDirLock::acquire(&dir, Hold::Shared).unwrap();
        let second = WorkDirLock::acquire(&dir, Hold::Shared).unwrap();
        assert!(WorkDirLock::acquire(&dir, Hold::Exclusive).is_err());
        drop((first, second));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_writable_dir_with_room_is_ready_and_a_demanding_minimum_is_not() {
        let dir = crate::scratch::path("workdir");
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(ready_for_a_job(&dir, 0), Ok(()));
        let problem = ready_for_a_job(&dir, u64::MAX).unwrap_err();
        assert!(
            problem.contains("less than TENDRIL_MIN_FREE_SPACE"),
            "{problem}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
