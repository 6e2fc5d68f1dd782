//! Which tools this host has, and their versions: for `tendril version`,
//! `tendril doctor` and the worker's heartbeat.
//!
//! Each tool is asked for its version with a scratch HOME (removed after:
//! `az` writes `~/.azure` when asked) and an environment of PATH only, each
//! bounded to a few seconds. Some are slow (`az` and `gcloud` are Python
//! programs that take seconds to start), so the worker asks beside its
//! first claim, never before it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// The tools a job may need, with the arguments that print their version.
const TOOLS: [(&str, &[&str]); 7] = [
    ("terraform", &["version"]),
    ("helm", &["version", "--short"]),
    ("kubectl", &["version", "--client"]),
    ("aws", &["--version"]),
    ("gcloud", &["version"]),
    ("az", &["version"]),
    ("infracost", &["--version"]),
];

/// The most time a tool gets to print its version.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// What asking a tool for its version found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolVersion {
    /// Not on PATH.
    Missing,
    /// On PATH, but its version command failed: why (`exit 1`, ...).
    Failing(String),
    /// It answered, with no version number in its words.
    Unknown,
    Known(String),
}

impl fmt::Display for ToolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolVersion::Missing => f.write_str("missing"),
            ToolVersion::Failing(why) => write!(f, "failing ({why})"),
            ToolVersion::Unknown => f.write_str("unknown"),
            ToolVersion::Known(version) => f.write_str(version),
        }
    }
}

/// The version of every tool found on `path` (the worker's PATH); the
/// tools are asked at once.
pub async fn tool_versions(path: &str) -> BTreeMap<String, ToolVersion> {
    let home = ScratchHome::create();
    let home_path = home.as_ref().map(|h| h.0.as_path());
    let asks = TOOLS.iter().map(|(tool, args)| async move {
        let version = ask_version(tool, args, path, home_path, PROBE_TIMEOUT).await;
        (tool.to_string(), version)
    });
    futures::future::join_all(asks).await.into_iter().collect()
}

/// A private directory for the probes' HOME, of a name no one could have
/// made before it, removed when dropped.
struct ScratchHome(std::path::PathBuf);

impl ScratchHome {
    fn create() -> Option<ScratchHome> {
        use std::os::unix::fs::DirBuilderExt;
        (0..3).find_map(|_| {
            let dir = std::env::temp_dir()
                .join(format!("tendril-tool-probe-{:016x}", rand::random::<u64>()));
            let created = std::fs::DirBuilder::new().mode(0o700).create(&dir);
            created.ok().map(|()| ScratchHome(dir))
        })
    }
}

impl Drop for ScratchHome {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The most a probe may print on each stream: a version takes a line.
const OUTPUT_LIMIT: u64 = 64 * 1024;

async fn ask_version(
    tool: &str,
    args: &[&str],
    path: &str,
    home: Option<&Path>,
    timeout: Duration,
) -> ToolVersion {
    let mut command = tokio::process::Command::new(tool);
    command
        .args(args)
        .env_clear()
        .env("PATH", path)
        // A version probe is no reason to call home.
        .env("CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK", "true")
        .env("INFRACOST_SKIP_UPDATE_CHECK", "true")
        .env("CHECKPOINT_DISABLE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own: what it starts (a wrapper script's program)
        // is killed with it.
        .process_group(0)
        .kill_on_drop(true);
    match home {
        Some(home) => command.env("HOME", home).current_dir(home),
        // No scratch directory: no HOME rather than the worker's own.
        None => command.current_dir(std::env::temp_dir()),
    };
    let (mut child, own_tool) = match crate::tools::orphans::spawn(&mut command) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return ToolVersion::Missing,
        Err(error) => return ToolVersion::Failing(error.to_string()),
        Ok(spawned) => spawned,
    };
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let answer = tokio::time::timeout(timeout, async {
        let (out, err) = tokio::join!(read_bounded(stdout), read_bounded(stderr));
        let overflowed = out.len() as u64 > OUTPUT_LIMIT || err.len() as u64 > OUTPUT_LIMIT;
        let status = match overflowed {
            true => None,
            false => child.wait().await.ok(),
        };
        (out, err, status, overflowed)
    })
    .await;
    // What it started, in its group or elsewhere, ends with it.
    own_tool.end(&mut child).await;
    let (out, err, status) = match answer {
        Err(_) => {
            return ToolVersion::Failing(format!(
                "no answer in {}",
                crate::units::format_duration(timeout)
            ))
        }
        Ok((_, _, _, true)) => {
            return ToolVersion::Failing(format!("printed more than {} KiB", OUTPUT_LIMIT / 1024))
        }
        Ok((out, err, status, false)) => (out, err, status),
    };
    match status {
        Some(status) if status.success() => {}
        Some(status) => {
            return ToolVersion::Failing(crate::tools::process::describe_status(status))
        }
        None => return ToolVersion::Failing("its end could not be read".into()),
    }
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&err)
    );
    version_in(&text).map_or(ToolVersion::Unknown, ToolVersion::Known)
}

/// What a probe printed on one stream, up to one byte past the limit.
async fn read_bounded(stream: Option<impl tokio::io::AsyncRead + Unpin>) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    if let Some(stream) = stream {
        let _ = stream.take(OUTPUT_LIMIT + 1).read_to_end(&mut bytes).await;
    }
    bytes
}

/// The first thing in `text` that looks like a version number (`1.11.4`,
/// `3.17.0+g301108e`).
fn version_in(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    (0..bytes.len()).find_map(|start| {
        let after = if start == 0 { b' ' } else { bytes[start - 1] };
        let starts_number =
            bytes[start].is_ascii_digit() && (after == b'v' || !after.is_ascii_alphanumeric());
        if !starts_number {
            return None;
        }
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-')))
            .map_or(text.len(), |n| start + n);
        let candidate = &text[start..end];
        candidate
            .contains('.')
            .then(|| candidate.trim_end_matches(['.', '-']).to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A directory with one executable `tool` running `script`.
    fn stand_in(script: &str) -> std::path::PathBuf {
        let dir = crate::scratch::dir("versions");
        let tool = dir.join("tool");
        std::fs::write(&tool, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    async fn ask(dir: &Path, timeout: Duration) -> ToolVersion {
        let home = ScratchHome::create().unwrap();
        let path = format!("{}:/usr/bin:/bin", dir.display());
        ask_version("tool", &[], &path, Some(&home.0), timeout).await
    }

    #[tokio::test]
    async fn a_tool_that_fails_is_failing_whatever_it_prints() {
        let dir = stand_in("echo 'tool v1.2.3'; exit 3");
        assert_eq!(
            ask(&dir, PROBE_TIMEOUT).await,
            ToolVersion::Failing("exit code 3".into())
        );
        assert_eq!(
            ToolVersion::Failing("exit code 3".into()).to_string(),
            "failing (exit code 3)"
        );
        let dir = stand_in("echo 'tool v1.2.3'");
        assert_eq!(
            ask(&dir, PROBE_TIMEOUT).await,
            ToolVersion::Known("1.2.3".into())
        );
    }

    #[tokio::test]
    async fn a_tool_that_hangs_is_failing_after_the_timeout() {
        let dir = stand_in("exec sleep 30");
        assert_eq!(
            ask(&dir, Duration::from_millis(300)).await,
            ToolVersion::Failing("no answer in 300ms".into())
        );
    }

    #[tokio::test]
    async fn a_tool_that_floods_is_failing_and_what_it_started_is_gone() {
        let dir = stand_in("exec yes");
        assert_eq!(
            ask(&dir, PROBE_TIMEOUT).await,
            ToolVersion::Failing("printed more than 64 KiB".into())
        );
        // A wrapper whose program hangs: the program goes with it.
        let dir = stand_in(&format!(
            "sleep 30 & echo $! > {}/child; wait",
            "$(dirname \"$0\")"
        ));
        let failing = ask(&dir, Duration::from_millis(500)).await;
        assert_eq!(failing, ToolVersion::Failing("no answer in 500ms".into()));
        let child = std::fs::read_to_string(dir.join("child")).unwrap();
        let alive = || {
            std::fs::read_to_string(format!("/proc/{}/stat", child.trim()))
                .is_ok_and(|stat| !stat.contains(") Z "))
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while alive() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(), "the probe's own child is killed with it");
    }

    #[tokio::test]
    async fn an_absent_tool_is_missing() {
        let dir = crate::scratch::dir("versions");
        assert_eq!(ask(&dir, PROBE_TIMEOUT).await, ToolVersion::Missing);
    }

    #[tokio::test]
    async fn the_probes_home_is_a_scratch_directory_removed_after() {
        // What `az version` does: it writes its settings under HOME.
        let dir =
            stand_in("mkdir -p \"$HOME/.azure\" && echo \"$HOME\" > \"$RECORD\"; echo 2.67.0");
        let record = dir.join("home");
        let path = format!("{}:/usr/bin:/bin", dir.display());
        let tools = {
            let home = ScratchHome::create().unwrap();
            let script = std::fs::read_to_string(dir.join("tool"))
                .unwrap()
                .replace("$RECORD", record.to_str().unwrap());
            std::fs::write(dir.join("tool"), script).unwrap();
            let version = ask_version("tool", &[], &path, Some(&home.0), PROBE_TIMEOUT).await;
            (version, home.0.clone())
        };
        assert_eq!(tools.0, ToolVersion::Known("2.67.0".into()));
        let home = std::fs::read_to_string(&record).unwrap();
        assert_eq!(home.trim(), tools.1.to_str().unwrap());
        assert_ne!(
            Some(home.trim().to_string()),
            std::env::var("HOME").ok(),
            "not the worker's own HOME"
        );
        assert!(!tools.1.exists(), "the scratch HOME is removed");
    }

    #[test]
    fn versions_are_found_in_each_tools_own_words() {
        assert_eq!(
            version_in("Terraform v1.11.4\non linux_amd64").as_deref(),
            Some("1.11.4")
        );
        assert_eq!(
            version_in("aws-cli/1.45.11 Python/3.11.7 Linux/6.1").as_deref(),
            Some("1.45.11")
        );
        assert_eq!(
            version_in("Client Version: v1.33.1\nKustomize Version: v5").as_deref(),
            Some("1.33.1")
        );
        assert_eq!(
            version_in("v3.17.0+g301108e").as_deref(),
            Some("3.17.0+g301108e")
        );
        assert_eq!(
            version_in("{\n  \"azure-cli\": \"2.67.0\",").as_deref(),
            Some("2.67.0")
        );
        assert_eq!(version_in("no numbers here"), None);
    }
}
