//! A job's workspace: a private directory (0700) under the work root that
//! holds everything the job writes, removed when the job ends.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::private_files::{create_private_dir, write_private_file};

/// The directory under the work root that holds the workspaces.
fn workspaces_root(work_root: &Path) -> PathBuf {
    work_root.join("jobs")
}

/// A job's private directory; removed on drop, whatever the job's outcome.
#[derive(Debug)]
pub struct Workspace {
    dir: PathBuf,
}

impl Workspace {
    /// Creates a fresh workspace for a job.
    pub fn create(work_root: &Path, job_id: &str) -> io::Result<Workspace> {
        let safe_id: String = job_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        let dir =
            workspaces_root(work_root).join(format!("{safe_id}-{:08x}", rand::random::<u32>()));
        create_private_dir(&workspaces_root(work_root))?;
        create_private_dir(&dir)?;
        create_private_dir(&dir.join("home"))?;
        Ok(Workspace { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The HOME the job's tools get, so none of them writes into the
    /// worker's own home.
    pub fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    /// Writes a file only the worker's user can read (0600).
    pub fn write_private(&self, name: &str, contents: &[u8]) -> io::Result<PathBuf> {
        let path = self.dir.join(name);
        write_private_file(&path, contents)?;
        Ok(path)
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if let Err(error) = fs::remove_dir_all(&self.dir) {
            tracing::warn!(
                "cannot remove the job workspace {}: {error}",
                self.dir.display()
            );
        }
    }
}

/// Removes workspaces left by a Tendril that was killed: they may hold
/// credentials, and no job of a new process owns them.
pub fn remove_leftovers(work_root: &Path) {
    let Ok(entries) = fs::read_dir(workspaces_root(work_root)) else {
        return;
    };
    for entry in entries.flatten() {
        tracing::info!(
            "removing a workspace left by an earlier run: {}",
            entry.path().display()
        );
        let _ = fs::remove_dir_all(entry.path());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn workspaces_are_private_and_removed_on_drop() {
        let root = std::env::temp_dir().join(format!("tendril-ws-test-{}", std::process::id()));
        let workspace = Workspace::create(&root, "job/1").unwrap();
        let dir = workspace.path().to_path_buf();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let file = workspace.write_private("secret.txt", b"x").unwrap();
        assert_eq!(
            fs::metadata(file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        drop(workspace);
        assert!(!dir.exists());
        fs::remove_dir_all(root).unwrap();
    }
}
