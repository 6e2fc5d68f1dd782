//! Which tools this host has, and their versions: for `tendril version` and
//! for the worker's first heartbeat.

use std::collections::BTreeMap;
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

/// What a tool's version reads as when the tool is absent.
pub const MISSING: &str = "missing";

/// The version of every tool, found on `path` (the worker's PATH), or
/// "missing"; the tools are asked at once, each bounded to a few seconds.
pub async fn tool_versions(path: &str) -> BTreeMap<String, String> {
    let asks = TOOLS.iter().map(|(tool, args)| async move {
        let version = ask_version(tool, args, path)
            .await
            .unwrap_or_else(|| MISSING.to_string());
        (tool.to_string(), version)
    });
    futures::future::join_all(asks).await.into_iter().collect()
}

async fn ask_version(tool: &str, args: &[&str], path: &str) -> Option<String> {
    let child = tokio::process::Command::new(tool)
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
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(10), child)
        .await
        .ok()?
        .ok()?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Some(version_in(&text).unwrap_or_else(|| "unknown".to_string()))
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
    use super::version_in;

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
