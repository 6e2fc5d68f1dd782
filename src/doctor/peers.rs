//! The checks of what a worker talks to, in `tendril doctor`: Trellis, the
//! Terraform state bucket, Tendril's own AWS identity and the ECS agent.
//! Every call is a read that changes nothing: no heartbeat, no claim, no
//! task protection set.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::cloud::aws::ambient_caller_identity;
use crate::jobs::stack_inputs::STATE_BUCKET;
use crate::settings::{AgentSettings, JobSettings, StateStorage, WorkerMode};
use crate::trellis::{TrellisClient, TrellisError};

use super::report::{Check, Mark};

/// The most the AWS CLI's HeadBucket and the SDK's GetCallerIdentity may
/// take, retries included.
const AWS_CALL_TIMEOUT: Duration = Duration::from_secs(90);

/// `GET /api/jobs/<a random id>`: 404 "Job not found" when Trellis accepts
/// this worker's id and token, 401 when it does not. Nothing changes.
pub async fn trellis(client: &TrellisClient, agent: &AgentSettings) -> Check {
    const NAME: &str = "trellis";
    let url = &agent.trellis_url;
    match client.get_job(&random_job_id()).await {
        Ok(_) => Check::ok(
            NAME,
            format!("{url} accepts worker {}", client.worker_id()),
        ),
        Err(TrellisError::Unauthorized(message)) => Check::not_ok(
            NAME,
            Mark::Failed,
            format!("{url} rejected the worker ID or token ({message})"),
            "set GRAPE_WORKER_TOKEN (or GRAPE_WORKER_TOKEN_FILE) to this worker's token and \
             GRAPE_WORKER_ID to its id, as `tendril register` printed them",
        ),
        Err(TrellisError::Transport(message)) => Check::not_ok(
            NAME,
            Mark::Failed,
            format!("cannot reach {url}: {message}"),
            "check TRELLIS_URL (--trellis-url), and the network and proxy settings of this host",
        ),
        Err(other) => Check::not_ok(
            NAME,
            Mark::Failed,
            format!("{url}: {other}"),
            "check that TRELLIS_URL (--trellis-url) is the base URL of Trellis (its API is under /api) \
             and that Trellis is up",
        ),
    }
}

/// A job id no job has: a random version 4 UUID (the form of Trellis's ids).
fn random_job_id() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// HeadBucket of the state bucket with the storage keys, through the AWS
/// CLI; without a bucket, whether the mode allows that.
pub async fn state_bucket(job: &JobSettings) -> Check {
    const NAME: &str = "state-bucket";
    let Some(storage) = &job.state_storage else {
        return match (job.mode, &job.state_dir) {
            (WorkerMode::CloudHosted, _) => Check::not_ok(
                NAME,
                Mark::Failed,
                "no bucket configured: a cloud-hosted worker's state would die with its task",
                "set SUPABASE_S3_ENDPOINT, SUPABASE_S3_REGION, SUPABASE_STORAGE_KEY_ID and \
                 SUPABASE_STORAGE_SECRET_KEY",
            ),
            (WorkerMode::SelfHosted, Some(dir)) => Check::ok(
                NAME,
                format!(
                    "no bucket: local state in {} (TENDRIL_STATE_DIR)",
                    dir.display()
                ),
            ),
            (WorkerMode::SelfHosted, None) => Check::not_ok(
                NAME,
                Mark::Warning,
                "no bucket and no TENDRIL_STATE_DIR: Terraform jobs fail here",
                "set SUPABASE_S3_ENDPOINT, SUPABASE_S3_REGION and the storage keys, or \
                 TENDRIL_STATE_DIR for state kept on this machine",
            ),
        };
    };
    let at = format!(
        "s3://{STATE_BUCKET} at {} (region {})",
        storage.endpoint, storage.region
    );
    let output = match tokio::time::timeout(AWS_CALL_TIMEOUT, head_bucket(storage)).await {
        Ok(Ok(output)) => output,
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::NotFound => {
            return Check::not_ok(
                NAME,
                Mark::Warning,
                format!("{at}: not checked, the aws CLI is not on PATH"),
                "install the AWS CLI to let doctor check the bucket (Terraform itself does not need it)",
            )
        }
        Ok(Err(error)) => {
            return Check::not_ok(
                NAME,
                Mark::Warning,
                format!("{at}: not checked, cannot run the aws CLI: {error}"),
                "check the aws CLI on PATH",
            )
        }
        Err(_) => {
            return Check::not_ok(
                NAME,
                Mark::Failed,
                format!("{at}: HeadBucket did not answer within {AWS_CALL_TIMEOUT:?}"),
                "check SUPABASE_S3_ENDPOINT, and the network and proxy settings of this host",
            )
        }
    };
    if output.status.success() {
        return Check::ok(NAME, format!("{at} answers with the storage keys"));
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let said = stderr
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .unwrap_or("no message");
    let (problem, hint) = bucket_problem(said);
    Check::not_ok(
        NAME,
        Mark::Failed,
        format!("{at}: {problem} ({said})"),
        hint,
    )
}

/// `aws s3api head-bucket` with the storage keys in the CLI's environment
/// alone; none of Tendril's own AWS settings (keys, profile, endpoints)
/// reach it, but its network settings (proxies, CA bundles) do.
async fn head_bucket(storage: &StateStorage) -> std::io::Result<std::process::Output> {
    let mut command = tokio::process::Command::new("aws");
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("AWS_") && name != "AWS_CA_BUNDLE" {
            command.env_remove(name.as_ref());
        }
    }
    command
        .args(["s3api", "head-bucket", "--bucket", STATE_BUCKET])
        .args(["--endpoint-url", &storage.endpoint])
        .args(["--region", &storage.region])
        .args(["--cli-connect-timeout", "10", "--cli-read-timeout", "20"])
        .env("AWS_ACCESS_KEY_ID", storage.key_id.expose())
        .env("AWS_SECRET_ACCESS_KEY", storage.secret_key.expose())
        // No profile of the host: with --endpoint-url and no config the CLI
        // addresses the bucket path-style, as Terraform's backend does.
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_MAX_ATTEMPTS", "2")
        .env("AWS_PAGER", "")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
}

/// What a failed HeadBucket means, from the CLI's last line, and what to do.
fn bucket_problem(said: &str) -> (&'static str, &'static str) {
    if said.contains("(404)") || said.contains("NoSuchBucket") {
        (
            "the bucket does not exist",
            "create the bucket vine-terraform-state in the storage, or check SUPABASE_S3_ENDPOINT",
        )
    } else if said.contains("(403)")
        || said.contains("InvalidAccessKeyId")
        || said.contains("SignatureDoesNotMatch")
    {
        (
            "the storage refused the keys",
            "check SUPABASE_STORAGE_KEY_ID and SUPABASE_STORAGE_SECRET_KEY (the storage's S3 \
             access keys) and SUPABASE_S3_REGION",
        )
    } else if said.contains("(400)") || said.contains("(301)") {
        (
            "the storage refused the request",
            "check SUPABASE_S3_REGION and that SUPABASE_S3_ENDPOINT is the S3 endpoint of the \
             storage (https://<project>.supabase.co/storage/v1/s3 on Supabase)",
        )
    } else {
        (
            "the storage cannot be reached",
            "check SUPABASE_S3_ENDPOINT, and the network and proxy settings of this host",
        )
    }
}

/// STS GetCallerIdentity with Tendril's own credentials: needed in
/// cloud-hosted mode (platform jobs and every AssumeRole start from them),
/// a warning on a self-hosted worker.
pub async fn aws_identity(mode: WorkerMode) -> Check {
    const NAME: &str = "aws-identity";
    let (mark, hint) = match mode {
        WorkerMode::CloudHosted => (
            Mark::Failed,
            "give the task its role (the ECS task role): DEPLOY_WORKER, UPDATE_WORKER and every \
             AssumeRole into a user's account act from it",
        ),
        WorkerMode::SelfHosted => (
            Mark::Warning,
            "for AWS jobs, give Tendril AWS credentials (environment, profile or instance \
             profile): AssumeRole into a user's role starts from them",
        ),
    };
    match tokio::time::timeout(AWS_CALL_TIMEOUT, ambient_caller_identity()).await {
        Ok(Ok(identity)) => Check::ok(
            NAME,
            format!("{} (account {})", identity.arn, identity.account),
        ),
        Ok(Err(error)) => Check::not_ok(NAME, mark, without_debug(&error.to_string()), hint),
        Err(_) => Check::not_ok(
            NAME,
            mark,
            format!("GetCallerIdentity did not answer within {AWS_CALL_TIMEOUT:?}"),
            hint,
        ),
    }
}

/// An SDK error's message without the debug dump the SDK appends to it:
/// ` (DispatchFailure(DispatchFailure { ... }))` at the end.
fn without_debug(message: &str) -> String {
    let dump = message.match_indices(" (").find(|(at, _)| {
        let rest = &message[at + 2..];
        let type_name = rest
            .find(|c: char| !c.is_ascii_alphanumeric())
            .map_or("", |end| &rest[..end]);
        type_name.starts_with(|c: char| c.is_ascii_uppercase())
            && rest[type_name.len()..].starts_with(['(', ' '])
            && rest[type_name.len()..].trim_start().starts_with(['(', '{'])
            && message.ends_with(')')
    });
    match dump {
        Some((at, _)) => message[..at].to_string(),
        None => message.to_string(),
    }
}

/// The ECS agent's task protection state (a GET, which changes nothing),
/// when `ECS_AGENT_URI` is set. A failure is a warning, as a failure to
/// protect the task is in a job.
pub async fn ecs_agent(mode: WorkerMode) -> Check {
    const NAME: &str = "ecs-agent";
    let agent_uri = std::env::var("ECS_AGENT_URI").unwrap_or_default();
    if agent_uri.trim().is_empty() {
        return match mode {
            WorkerMode::CloudHosted => Check::not_ok(
                NAME,
                Mark::Warning,
                "ECS_AGENT_URI is not set: jobs run without ECS task scale-in protection",
                "run cloud-hosted workers as ECS tasks (the ECS agent sets ECS_AGENT_URI)",
            ),
            WorkerMode::SelfHosted => Check::ok(NAME, "not on ECS (ECS_AGENT_URI is not set)"),
        };
    }
    let url = format!(
        "{}/task-protection/v1/state",
        agent_uri.trim().trim_end_matches('/')
    );
    let permissions = "the task role needs ecs:GetTaskProtection and ecs:UpdateTaskProtection \
                       on its own task";
    let answer = async {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let response = http.get(&url).send().await?;
        let status = response.status();
        Ok::<_, reqwest::Error>((status, response.json::<Value>().await.unwrap_or_default()))
    };
    let (status, body) = match answer.await {
        Ok(answer) => answer,
        Err(error) => {
            return Check::not_ok(
                NAME,
                Mark::Warning,
                format!(
                    "cannot reach the ECS agent at {url}: {}",
                    crate::http_error::describe(error)
                ),
                "ECS_AGENT_URI is the ECS agent's to set: unset it outside ECS",
            )
        }
    };
    let refused = body.get("failure").or_else(|| body.get("error"));
    match (status.is_success(), refused, body.get("protection")) {
        (true, None, Some(protection)) => Check::ok(NAME, protection_state(protection)),
        (_, Some(reason), _) => Check::not_ok(
            NAME,
            Mark::Warning,
            format!("the ECS agent refused (HTTP {}): {reason}", status.as_u16()),
            permissions,
        ),
        _ => Check::not_ok(
            NAME,
            Mark::Warning,
            format!(
                "the ECS agent answered HTTP {} without a protection state",
                status.as_u16()
            ),
            permissions,
        ),
    }
}

/// `task <arn>: scale-in protection off` (or on, until when).
fn protection_state(protection: &Value) -> String {
    let text = |key: &str| protection.get(key).and_then(Value::as_str).unwrap_or("?");
    let state = match protection.get("ProtectionEnabled").and_then(Value::as_bool) {
        Some(true) => format!("on until {}", text("ExpirationDate")),
        _ => "off".to_string(),
    };
    format!(
        "task {}: scale-in protection {state} (a worker turns it on while a job runs)",
        text("TaskArn")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_id_is_a_fresh_version_4_uuid() {
        let (first, second) = (random_job_id(), random_job_id());
        assert_ne!(first, second);
        let groups: Vec<usize> = first.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{first}");
        assert_eq!(&first[14..15], "4", "{first}");
        assert!("89ab".contains(&first[19..20]), "{first}");
    }

    #[test]
    fn an_sdk_error_loses_its_debug_dump() {
        assert_eq!(
            without_debug(
                "aws: GetCallerIdentity failed: dispatch failure: no credentials found in chain \
                 (DispatchFailure(DispatchFailure { source: ConnectorError { kind: Other(None) } }))"
            ),
            "aws: GetCallerIdentity failed: dispatch failure: no credentials found in chain"
        );
        assert_eq!(
            without_debug("service error: InvalidClientTokenId (HTTP 403) (ServiceError(ServiceError { raw: x }))"),
            "service error: InvalidClientTokenId (HTTP 403)"
        );
        assert_eq!(without_debug("plain (words) here"), "plain (words) here");
    }

    #[test]
    fn a_failed_head_bucket_names_what_to_fix() {
        let (problem, hint) = bucket_problem(
            "An error occurred (404) when calling the HeadBucket operation: Not Found",
        );
        assert_eq!(problem, "the bucket does not exist");
        assert!(hint.contains("vine-terraform-state"));
        let (_, hint) = bucket_problem(
            "An error occurred (403) when calling the HeadBucket operation: Forbidden",
        );
        assert!(hint.contains("SUPABASE_STORAGE_SECRET_KEY"));
        let (_, hint) = bucket_problem(
            "Could not connect to the endpoint URL: \"http://127.0.0.1:9/vine-terraform-state\"",
        );
        assert!(hint.starts_with("check SUPABASE_S3_ENDPOINT"));
    }
}
