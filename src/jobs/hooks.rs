//! Terraform hooks, after the HCP Terraform agent's: the operator's
//! executables in `TENDRIL_HOOKS_DIR` named `terraform-pre-plan`,
//! `terraform-post-plan`, `terraform-pre-apply` and `terraform-post-apply`
//! run before and after each `terraform plan` and `terraform apply` of a job
//! (DESTROY's `terraform destroy` is its apply), in the stack's directory
//! with the job's tool environment.
//!
//! A hook runs through the process runner like any tool: its output goes to
//! the job's log, masked, and the job's stop or `TENDRIL_HOOK_TIMEOUT` ends
//! it the usual way (SIGINT, the cancel grace, SIGKILL). A non-zero exit
//! fails the job, and a failed pre hook keeps its step from running. What a
//! hook writes to the file named by `TENDRIL_HOOK_ENV`, as `KEY=VALUE`
//! lines, joins the environment of the job's later Terraform runs.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use super::{JobContext, JobError};
use crate::private_files::write_private_file;
use crate::tools::process::describe_status;
use crate::tools::{self, ToolCommand, ToolError, ToolOutput};
use crate::units::format_duration;

/// The file, in the job's workspace, a hook writes variables to.
const ENV_FILE: &str = "hook.env";

/// The moments a hook runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    PrePlan,
    PostPlan,
    PreApply,
    PostApply,
}

impl Hook {
    /// The hook's file name in the hooks directory.
    pub fn name(self) -> &'static str {
        match self {
            Hook::PrePlan => "terraform-pre-plan",
            Hook::PostPlan => "terraform-post-plan",
            Hook::PreApply => "terraform-pre-apply",
            Hook::PostApply => "terraform-post-apply",
        }
    }
}

/// Why a hook failed its job.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("hook {hook} failed ({how})")]
    Failed { hook: &'static str, how: String },
    #[error("hook {hook} timed out after {} (TENDRIL_HOOK_TIMEOUT) and was stopped", format_duration(*.limit))]
    TimedOut { hook: &'static str, limit: Duration },
    #[error("hook {} is not executable: make it executable (chmod +x) or remove it", .0.display())]
    NotExecutable(PathBuf),
    #[error("hook {} cannot run: {problem}", .path.display())]
    Unusable { path: PathBuf, problem: String },
    #[error("hook {hook} wrote a TENDRIL_HOOK_ENV that cannot be used: {problem}")]
    BadEnv { hook: &'static str, problem: String },
}

/// Runs `hook`, when the hooks directory holds it, in `dir` (where
/// Terraform runs); the variables it wrote to `TENDRIL_HOOK_ENV` are added
/// to `env`, the environment of the stack's later Terraform runs.
pub async fn run(
    context: &JobContext,
    hook: Hook,
    dir: &Path,
    env: &mut BTreeMap<String, String>,
) -> Result<(), JobError> {
    let Some(path) = find(context.settings.hooks.dir.as_deref(), hook)? else {
        return Ok(());
    };
    context.log.system(&format!("==> hook {}", hook.name()));
    let env_file = context.workspace.path().join(ENV_FILE);
    write_private_file(&env_file, b"")
        .map_err(|e| JobError::io("cannot write the hooks' TENDRIL_HOOK_ENV file", e))?;
    let mut command = context.command(&path.display().to_string(), &[]).await?;
    command.cwd = dir.to_path_buf();
    command.env.extend([
        ("TENDRIL_JOB_ID".to_string(), context.job.id.clone()),
        (
            "TENDRIL_JOB_TYPE".to_string(),
            context.job.job_type.to_string(),
        ),
        (
            "TENDRIL_HOOK_ENV".to_string(),
            env_file.display().to_string(),
        ),
    ]);
    let output = run_bounded(context, hook, path, &command).await?;
    if !output.status.success() {
        return Err(HookError::Failed {
            hook: hook.name(),
            how: ended(output.status),
        }
        .into());
    }
    let written = read_env(hook, &env_file)?;
    if !written.is_empty() {
        let names: Vec<&str> = written.keys().map(String::as_str).collect();
        context.log.system(&format!(
            "hook {} set {} for the job's later Terraform runs",
            hook.name(),
            names.join(", ")
        ));
    }
    env.extend(written);
    Ok(())
}

/// Runs a hook's command to its end; past the timeout it is stopped like a
/// tool that the job's stop ends.
async fn run_bounded(
    context: &JobContext,
    hook: Hook,
    path: PathBuf,
    command: &ToolCommand,
) -> Result<ToolOutput, JobError> {
    let limit = context.settings.hooks.timeout;
    let stop = context.stop.child_token();
    let running = tools::run_to_exit(command, &context.log, &stop);
    tokio::pin!(running);
    let mut timed_out = false;
    let ran = tokio::select! {
        ran = &mut running => ran,
        _ = tokio::time::sleep(limit) => {
            timed_out = true;
            stop.cancel();
            running.await
        }
    };
    let problem = match ran {
        Ok(output) => return Ok(output),
        Err(ToolError::Stopped { .. }) if timed_out && !context.stop.is_cancelled() => {
            return Err(HookError::TimedOut {
                hook: hook.name(),
                limit,
            }
            .into())
        }
        // ENOENT for a file that is there: the interpreter it names is not.
        Err(ToolError::NotFound { .. }) => "the interpreter its #! line names is missing".into(),
        Err(ToolError::Spawn { source, .. }) if source.raw_os_error() == Some(libc::ENOEXEC) => {
            "the system cannot start it (a script needs a #! line)".into()
        }
        Err(ToolError::Spawn { source, .. }) => source.to_string(),
        Err(error) => return Err(error.into()),
    };
    Err(HookError::Unusable { path, problem }.into())
}

/// The post hook of a step that ran: after a success, as [`run`]; after a
/// failure too (as the HCP Terraform agent runs them), the step's error
/// staying the job's and a failing hook only a line in the log; never
/// after a stop, when nothing more runs.
pub async fn after(
    context: &JobContext,
    hook: Hook,
    dir: &Path,
    env: &mut BTreeMap<String, String>,
    step: Result<(), JobError>,
) -> Result<(), JobError> {
    match step {
        Ok(()) => run(context, hook, dir, env).await,
        Err(error) if context.stop.is_cancelled() => Err(error),
        Err(error) => {
            if let Err(hook_error) = run(context, hook, dir, env).await {
                context.log.system(&format!(
                    "{hook_error} (after the failed step, whose error is the job's)"
                ));
            }
            Err(error)
        }
    }
}

/// The file of `hook` in the hooks directory, when there is one; a file
/// that is there but cannot run is an error, never skipped.
fn find(dir: Option<&Path>, hook: Hook) -> Result<Option<PathBuf>, HookError> {
    let Some(dir) = dir else { return Ok(None) };
    let path = dir.join(hook.name());
    let unusable = |path: PathBuf, problem: String| Err(HookError::Unusable { path, problem });
    let metadata = match std::fs::metadata(&path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return match path.symlink_metadata() {
                Ok(_) => unusable(path, "it is a symbolic link to nothing".into()),
                Err(_) => Ok(None),
            };
        }
        Err(error) => return unusable(path, error.to_string()),
    };
    if !metadata.is_file() {
        return unusable(path, "it is not a file".into());
    }
    if metadata.permissions().mode() & 0o111 == 0 {
        return Err(HookError::NotExecutable(path));
    }
    Ok(Some(path))
}

/// How a hook ended, as its failure says it: `exit 3`, `killed by SIGKILL,
/// signal 9`.
fn ended(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => match signal_hook::low_level::signal_name(signal) {
            Some(name) => format!("killed by {name}, signal {signal}"),
            None => format!("killed by signal {signal}"),
        },
        _ => describe_status(status),
    }
}

/// The variables a hook wrote to its `TENDRIL_HOOK_ENV` file.
fn read_env(hook: Hook, file: &Path) -> Result<BTreeMap<String, String>, HookError> {
    let bad = |problem: String| HookError::BadEnv {
        hook: hook.name(),
        problem,
    };
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(error) => return Err(bad(format!("it cannot be read: {error}"))),
    };
    let text = String::from_utf8(bytes).map_err(|_| bad("it is not UTF-8 text".into()))?;
    parse_env(&text).map_err(bad)
}

/// `KEY=VALUE` lines, strictly: blank lines and `#` comments are skipped;
/// the value is the rest of the line as it is (no quotes, no escapes). The
/// problem names the line, never its value (it may be a secret).
fn parse_env(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut vars = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let content = line.trim();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {number} is not KEY=VALUE"));
        };
        if !is_env_name(key) {
            return Err(format!(
                "line {number}: '{key}' is not an environment variable name (letters, digits and _, \
                 not starting with a digit)"
            ));
        }
        if value.contains('\0') {
            return Err(format!(
                "line {number}: the value of {key} holds a NUL byte"
            ));
        }
        vars.insert(key.to_string(), value.to_string());
    }
    Ok(vars)
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lines_are_key_value_with_blanks_and_comments_skipped() {
        let vars = parse_env(
            "# a comment\n\nTF_VAR_x=a=b c\n  # indented comment\n_EMPTY=\r\nTF_LOG=info\nTF_LOG=debug\n",
        )
        .unwrap();
        assert_eq!(
            vars,
            BTreeMap::from([
                ("TF_VAR_x".to_string(), "a=b c".to_string()),
                ("_EMPTY".to_string(), String::new()),
                ("TF_LOG".to_string(), "debug".to_string()),
            ])
        );
    }

    #[test]
    fn a_malformed_env_line_is_named_by_number_and_its_value_never_shown() {
        assert_eq!(
            parse_env("A=1\nsecret-value-without-equals\n").unwrap_err(),
            "line 2 is not KEY=VALUE"
        );
        for (line, key) in [
            ("1BAD=x", "1BAD"),
            (" FOO=x", " FOO"),
            ("=x", ""),
            ("A-B=x", "A-B"),
        ] {
            let problem = parse_env(line).unwrap_err();
            assert!(
                problem.starts_with(&format!(
                    "line 1: '{key}' is not an environment variable name"
                )),
                "{line}: {problem}"
            );
        }
        let problem = parse_env("A=ok\nB=nul\0here").unwrap_err();
        assert_eq!(problem, "line 2: the value of B holds a NUL byte");
    }

    #[test]
    fn an_exit_says_its_code_and_a_signal_says_which() {
        assert_eq!(ended(ExitStatus::from_raw(3 << 8)), "exit 3");
        assert_eq!(
            ended(ExitStatus::from_raw(libc::SIGKILL)),
            "killed by SIGKILL, signal 9"
        );
    }

    #[test]
    fn a_missing_hook_is_none_and_one_that_cannot_run_is_an_error() {
        let dir = crate::scratch::dir("hooks-find");
        assert!(find(None, Hook::PrePlan).unwrap().is_none());
        assert!(find(Some(&dir), Hook::PrePlan).unwrap().is_none());
        let path = dir.join("terraform-pre-plan");
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = find(Some(&dir), Hook::PrePlan).unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "hook {} is not executable: make it executable (chmod +x) or remove it",
                path.display()
            )
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find(Some(&dir), Hook::PrePlan).unwrap(), Some(path));
        std::os::unix::fs::symlink(dir.join("gone"), dir.join("terraform-post-plan")).unwrap();
        let error = find(Some(&dir), Hook::PostPlan).unwrap_err().to_string();
        assert!(error.ends_with("a symbolic link to nothing"), "{error}");
        std::fs::create_dir(dir.join("terraform-pre-apply")).unwrap();
        let error = find(Some(&dir), Hook::PreApply).unwrap_err().to_string();
        assert!(error.ends_with("it is not a file"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
