//! Sets `TENDRIL_VERSION`, the version Tendril reports (`--version`, every
//! heartbeat, the User-Agent): the release version it is built as.
//!
//! A release build sets it explicitly (`TENDRIL_VERSION=1.4.0 cargo build`,
//! or the Dockerfile's build argument of the same name, which is also the
//! image tag): Trellis marks a worker outdated when this string differs from
//! its newest release's version. Built from a git checkout without it, the
//! version is the Cargo version plus the commit (`0.1.0+6c3458d`); without
//! git, the Cargo version alone.
//!
//! It also lays out a release binary's code with what an idle worker runs
//! first (see `link_idle_code_first`).

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
    link_idle_code_first();
}

/// The functions an idle `tendril start` runs (start-up, claims,
/// heartbeats, health and metrics, the drain), listed in
/// `benches/worker/idle-functions.order` by `bash scripts/bench.sh idle-order`,
/// are placed together at the start of the release binary's code. The
/// kernel maps a binary's code in 64 KiB windows around each page run;
/// scattered among the rest, those 1.3 MiB of functions kept about 5.7 MiB
/// of it resident, together about 1.5 MiB. A function the list misses
/// (new, renamed, or named otherwise in a build with other dependency
/// features or profile settings, as the benchmark's own) only lands among
/// the rest: nothing breaks, the benchmark shows the resident memory grow,
/// and the list is made again.
///
/// Only where the linker is Rust's own lld (x86_64 Linux with rustc 1.90
/// or later and no linker chosen in the configuration), as other linkers
/// do not take the option; `TENDRIL_LINK_ORDER=off` leaves it out.
fn link_idle_code_first() {
    println!("cargo:rerun-if-env-changed=TENDRIL_LINK_ORDER");
    let order = manifest_dir().join("benches/worker/idle-functions.order");
    println!("cargo:rerun-if-changed={}", order.display());
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let rustflags = env("CARGO_ENCODED_RUSTFLAGS");
    let linker_chosen = std::env::var_os("RUSTC_LINKER").is_some()
        || rustflags.contains("linker")
        || rustflags.contains("fuse-ld");
    if env("PROFILE") != "release"
        || env("TARGET") != "x86_64-unknown-linux-gnu"
        || env("TENDRIL_LINK_ORDER") == "off"
        || linker_chosen
        || !rustc_links_with_lld()
    {
        return;
    }
    if !order.exists() {
        println!(
            "cargo:warning={} is missing: the release binary's code is not ordered (see build.rs)",
            order.display()
        );
        return;
    }
    // `-Wl,` splits its argument at commas.
    if order.to_string_lossy().contains(',') {
        println!("cargo:warning=the checkout's path has a comma: the release binary's code is not ordered (see build.rs)");
        return;
    }
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}

/// Whether the compiler is 1.90 or later, when lld became its default
/// linker on x86_64 Linux.
fn rustc_links_with_lld() -> bool {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Some(output) = Command::new(rustc).arg("-vV").output().ok() else {
        return false;
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let release = text.lines().find_map(|line| line.strip_prefix("release: "));
    let version = release.and_then(|release| {
        let mut parts = release.split(['.', '-']);
        let major: u32 = parts.next()?.parse().ok()?;
        let minor: u32 = parts.next()?.parse().ok()?;
        Some((major, minor))
    });
    matches!(version, Some((1, minor)) if minor >= 90)
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
