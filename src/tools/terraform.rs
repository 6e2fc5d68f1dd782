//! The Terraform CLI, as the jobs use it: always `-no-color`, `-input=false`
//! where Terraform takes it, a lock timeout, output through the job's log.
//! The environment (`TF_IN_AUTOMATION`, `CHECKPOINT_DISABLE`, the CLI config
//! that disables the checkpoint, the plugin cache) comes with the job's
//! base environment.
//!
//! A stopped Terraform gets its own grace (it finishes provider calls,
//! writes state and releases the lock on SIGINT, which can take minutes).
//! What a lock left behind means is `jobs::state_lock`'s business.

use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::{run, ToolCommand, ToolError, ToolOutput};
use crate::logs::JobLog;
use crate::units::format_duration;

/// Terraform in one working directory, for one job.
pub struct Terraform<'a> {
    base: ToolCommand,
    log: &'a JobLog,
    stop: &'a CancellationToken,
    lock_timeout: Duration,
}

impl<'a> Terraform<'a> {
    /// `base` carries the environment and working directory; its grace is
    /// Terraform's own.
    pub fn new(
        base: ToolCommand,
        log: &'a JobLog,
        stop: &'a CancellationToken,
        lock_timeout: Duration,
    ) -> Self {
        Terraform {
            base: ToolCommand {
                program: "terraform".into(),
                args: Vec::new(),
                ..base
            },
            log,
            stop,
            lock_timeout,
        }
    }

    /// The same Terraform, waiting at most `lock_timeout` for a state lock.
    pub fn with_lock_timeout(self, lock_timeout: Duration) -> Self {
        Terraform {
            lock_timeout,
            ..self
        }
    }

    /// The user Terraform names in the `Who` (`user@host`) of a state lock
    /// it takes: its Go runtime, built without cgo, takes the name
    /// `/etc/passwd` gives the uid it runs as (Tendril's), else `USER` of its
    /// environment, else none.
    pub fn lock_user(&self) -> String {
        // SAFETY: getuid(2) has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        std::fs::read_to_string("/etc/passwd")
            .ok()
            .and_then(|passwd| user_of(&passwd, uid))
            .or_else(|| self.base.env.get("USER").cloned())
            .unwrap_or_default()
    }

    fn command(&self, args: &[&str]) -> ToolCommand {
        ToolCommand {
            args: args.iter().map(|a| a.to_string()).collect(),
            ..self.base.clone()
        }
    }

    async fn run(&self, command: ToolCommand) -> Result<ToolOutput, ToolError> {
        self.log.system(&format!("$ {}", command.display()));
        run(&command, self.log, self.stop).await
    }

    fn lock_timeout(&self) -> String {
        format!("-lock-timeout={}", format_duration(self.lock_timeout))
    }

    /// `terraform init`, with the backend settings file when there is one.
    pub async fn init(&self, backend_config: Option<&Path>) -> Result<(), ToolError> {
        let mut args = vec![
            "init".to_string(),
            "-input=false".into(),
            "-no-color".into(),
            "-reconfigure".into(),
        ];
        if let Some(file) = backend_config {
            args.push(format!("-backend-config={}", file.display()));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(self.command(&args)).await.map(drop)
    }

    /// `terraform plan -out`.
    pub async fn plan(&self, var_file: &str, plan_file: &str) -> Result<(), ToolError> {
        let (lock, out, vars) = (
            self.lock_timeout(),
            format!("-out={plan_file}"),
            format!("-var-file={var_file}"),
        );
        self.run(self.command(&[
            "plan",
            "-input=false",
            "-no-color",
            "-compact-warnings",
            &lock,
            &out,
            &vars,
        ]))
        .await
        .map(drop)
    }

    /// `terraform show -json` of a saved plan.
    pub async fn show_json(&self, plan_file: &str) -> Result<Value, ToolError> {
        self.json(self.command(&["show", "-json", "-no-color", plan_file]))
            .await
    }

    /// `terraform apply` of a saved plan: exactly what was reviewed.
    pub async fn apply(&self, plan_file: &str) -> Result<(), ToolError> {
        let lock = self.lock_timeout();
        self.run(self.command(&[
            "apply",
            "-input=false",
            "-no-color",
            "-compact-warnings",
            "-auto-approve",
            &lock,
            plan_file,
        ]))
        .await
        .map(drop)
    }

    /// `terraform output -json`: every output as Terraform gives it
    /// (`{"value": ..., "sensitive": ..., "type": ...}`).
    pub async fn output_json(&self) -> Result<Map<String, Value>, ToolError> {
        match self
            .json(self.command(&["output", "-json", "-no-color"]))
            .await?
        {
            Value::Object(outputs) => Ok(outputs),
            _ => Ok(Map::new()),
        }
    }

    /// `terraform state list`: the addresses the state holds (none when
    /// there is no state at all yet).
    pub async fn state_list(&self) -> Result<Vec<String>, ToolError> {
        match self
            .run(
                self.command(&["state", "list", "-no-color"])
                    .capturing_stdout(),
            )
            .await
        {
            Ok(output) => Ok(output
                .stdout
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()),
            Err(ToolError::Failed { stderr_tail, .. })
                if stderr_tail
                    .iter()
                    .any(|line| line.contains("No state file was found")) =>
            {
                Ok(Vec::new())
            }
            Err(error) => Err(error),
        }
    }

    /// `terraform state push` of a state file (an interrupted run's
    /// `errored.tfstate`), bounded by `stop` of its own; without taking the
    /// lock when `lock` is false (the interrupted run's own lock still
    /// stands for it).
    pub async fn state_push(
        &self,
        state_file: &str,
        lock: bool,
        stop: &CancellationToken,
    ) -> Result<(), ToolError> {
        let lock = match lock {
            true => self.lock_timeout(),
            false => "-lock=false".to_string(),
        };
        let command = self.command(&["state", "push", &lock, state_file]);
        self.log.system(&format!("$ {}", command.display()));
        run(&command, self.log, stop).await.map(drop)
    }

    /// `terraform destroy -auto-approve`.
    pub async fn destroy(&self, var_file: &str) -> Result<(), ToolError> {
        let (lock, vars) = (self.lock_timeout(), format!("-var-file={var_file}"));
        self.run(self.command(&[
            "destroy",
            "-auto-approve",
            "-input=false",
            "-no-color",
            "-compact-warnings",
            &lock,
            &vars,
        ]))
        .await
        .map(drop)
    }

    async fn json(&self, command: ToolCommand) -> Result<Value, ToolError> {
        let output = self.run(command.capturing_stdout()).await?;
        serde_json::from_str(&output.stdout).map_err(|error| ToolError::Failed {
            program: "terraform".into(),
            status: format!("an answer that is not JSON ({error})"),
            stderr_tail: output.stderr_tail,
        })
    }
}

/// The name of `uid` in the text of `/etc/passwd` (`name:x:uid:...`).
fn user_of(passwd: &str, uid: u32) -> Option<String> {
    passwd
        .lines()
        .filter(|line| !line.starts_with(['#', '+', '-']))
        .find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            (fields.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::user_of;

    #[test]
    fn the_lock_user_is_the_passwd_name_of_the_uid() {
        let passwd = "# users\nroot:x:0:0:root:/root:/bin/bash\n+nis::::\ntendril:x:1000:1000::/home/tendril:/bin/sh\n";
        assert_eq!(user_of(passwd, 0).as_deref(), Some("root"));
        assert_eq!(user_of(passwd, 1000).as_deref(), Some("tendril"));
        assert_eq!(user_of(passwd, 42), None);
        assert_eq!(user_of("broken", 0), None);
    }
}
