//! Scratch paths for unit tests: unique per process and call, under the
//! system temp dir, so tests running at once never share one.

use std::path::PathBuf;

/// A new path `tendril-<what>-test-<pid>-<random>` in the temp dir (not
/// created).
pub fn path(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "tendril-{what}-test-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ))
}

/// A new directory, created (see [`path`]).
pub fn dir(what: &str) -> PathBuf {
    let dir = path(what);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}
