//! Files and directories only Tendril's own user can read: job workspaces,
//! the outbox, credentials, kubeconfigs.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates a private (0700) directory and its parents.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
}

/// Writes a file readable by its owner only, atomically (through a rename),
/// so a crash leaves the old content or the new, never half of one.
pub fn write_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_through_rename(path, contents, false)
}

/// Like [`write_private_file`], and on disk before it returns: the file
/// and the directory entry are synced, so a host crash right after cannot
/// lose it (for what must survive one: a job's terminal status).
pub fn write_durable_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_through_rename(path, contents, true)
}

fn write_through_rename(path: &Path, contents: &[u8], durable: bool) -> io::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(contents)?;
    if durable {
        file.sync_all()?;
    }
    drop(file);
    fs::rename(&temporary, path)?;
    if durable {
        if let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Syncs a directory, so that the entries created or renamed in it survive
/// a host crash.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    fs::File::open(path)?.sync_all()
}
