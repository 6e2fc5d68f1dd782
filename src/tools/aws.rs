//! The `aws` CLI, for the calls whose answer Tendril reads as JSON.

use serde_json::Value;

use super::{run, ToolCommand, ToolError};
use crate::logs::JobLog;

/// Runs `aws <args> --output json` and parses its answer.
pub async fn json(
    mut command: ToolCommand,
    log: &JobLog,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<Value, ToolError> {
    command
        .args
        .extend(["--output".to_string(), "json".to_string()]);
    command.env.insert("AWS_PAGER".into(), String::new());
    let output = run(&command.capturing_stdout(), log, stop).await?;
    if output.stdout.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&output.stdout).map_err(|error| ToolError::Failed {
        program: "aws".into(),
        status: format!("an answer that is not JSON ({error})"),
        stderr_tail: output.stderr_tail,
    })
}
