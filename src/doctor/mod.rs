//! `tendril doctor`: an operator's self-check of a worker. It takes exactly
//! the settings `tendril start` takes and checks, changing nothing, what the
//! worker needs: its settings, Trellis and its credentials, the work
//! directory, the tools, the state bucket, its own AWS identity, the ECS
//! agent and the templates. It takes no lock and leaves no file, so it can
//! run beside a running worker.

mod host;
mod peers;
mod report;
mod settings;

use std::process::ExitCode;

use crate::settings::{AgentSettings, ConfigError, JobSettings};
use crate::tools::versions::tool_versions;

use report::{Check, Report};

/// Runs every check on the settings `start` would resolve (`job`, and
/// `agent` with the job's mode), prints the report (`json`: one JSON
/// document), and returns the exit code: 2 when a setting is missing or
/// invalid, 1 when a check the mode needs failed.
pub async fn run(
    json: bool,
    job: Result<JobSettings, ConfigError>,
    agent: Result<AgentSettings, ConfigError>,
) -> ExitCode {
    let report = checks(settings::resolve(job, agent)).await;
    print!(
        "{}",
        match json {
            true => report.json(),
            false => report.text(),
        }
    );
    ExitCode::from(report.exit_code())
}

async fn checks(resolved: settings::Resolved) -> Report {
    let job = resolved.job.as_ref();
    let path = std::env::var("PATH").unwrap_or_default();
    let trellis = async {
        match (&resolved.client, &resolved.agent) {
            (Some(client), Some(agent)) => peers::trellis(client, agent).await,
            _ => Check::not_checked("trellis"),
        }
    };
    let bucket = async {
        match job {
            Some(job) => peers::state_bucket(job).await,
            None => Check::not_checked("state-bucket"),
        }
    };
    let (trellis, versions, bucket, identity, ecs_agent) = tokio::join!(
        trellis,
        tool_versions(&path),
        bucket,
        peers::aws_identity(resolved.mode),
        peers::ecs_agent(resolved.mode),
    );
    let mut checks = vec![resolved.check.clone(), trellis];
    checks.push(job.map_or_else(|| Check::not_checked("work-dir"), host::work_dir));
    let has_infracost_key = job.is_some_and(|job| job.infracost_api_key.is_some());
    checks.extend(host::tools(&versions, resolved.mode, has_infracost_key));
    checks.extend([bucket, identity, ecs_agent]);
    checks.extend(match job {
        Some(job) => host::templates(job),
        None => host::TEMPLATE_CHECKS.map(Check::not_checked).into(),
    });
    Report {
        mode: resolved.mode,
        settings_invalid: resolved.invalid(),
        checks,
    }
}
