//! Sets `TENDRIL_VERSION`, the version Tendril reports (`--version`, every
//! heartbeat, the User-Agent): the release version it is built as.
//!
//! A release build sets it explicitly (`TENDRIL_VERSION=1.4.0 cargo build`,
//! or the Dockerfile's build argument of the same name, which is also the
//! image tag): Trellis marks a worker outdated when this string differs from
//! its newest release's version. Built from a git checkout without it, the
//! version is the Cargo version plus the commit (`0.1.0+6c3458d`); without
//! git, the Cargo version alone.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=TENDRIL_VERSION");
    let cargo_version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let version = match std::env::var("TENDRIL_VERSION") {
        Ok(explicit) if !explicit.trim().is_empty() => explicit.trim().to_string(),
        _ => match git(&["rev-parse", "--short=7", "HEAD"]) {
            Some(commit) => {
                watch_git_head();
                format!("{cargo_version}+{commit}")
            }
            None => cargo_version,
        },
    };
    println!("cargo:rustc-env=TENDRIL_VERSION={version}");
}

/// The trimmed output of a git command in the crate's directory, if it worked.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(manifest_dir())
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?.trim().to_string();
    (output.status.success() && !text.is_empty()).then_some(text)
}

/// The crate's directory as cargo gives it to this run (not as it was when
/// the script was compiled: a build cache may be shared by checkouts at
/// other paths).
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from)
}

/// Rebuilds the version when HEAD moves: the HEAD file, the branch it
/// names, and packed refs.
fn watch_git_head() {
    let Some(git_dir) = git(&["rev-parse", "--git-dir"]) else {
        return;
    };
    let common = git(&["rev-parse", "--git-common-dir"]).unwrap_or_else(|| git_dir.clone());
    let absolute = |dir: &str| {
        let path = PathBuf::from(dir);
        if path.is_absolute() {
            path
        } else {
            manifest_dir().join(path)
        }
    };
    let (git_dir, common) = (absolute(&git_dir), absolute(&common));
    let mut watched = vec![git_dir.join("HEAD"), common.join("packed-refs")];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(common.join(branch));
    }
    for path in watched.iter().filter(|path| path.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
