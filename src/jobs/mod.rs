//! The common frame of every job, and dispatch by job type.
//!
//! [`run`] takes a claimed job to its outcome: it checks the identity rule,
//! makes the workspace, builds the credentials and the tools' environment,
//! runs the executor of the job type in a task of its own (so that a panic
//! fails the job, not the worker), keeps the log alive, honours a stop, and
//! turns whatever happened into one terminal status. Executors are plain
//! async functions from a [`JobContext`] to metadata: they know nothing of
//! HTTP, signals or retries.

pub mod cluster;
pub mod costs;
pub mod discovery;
pub mod environment;
pub mod error;
pub mod hooks;
pub mod hosted_workers;
pub mod redact;
pub mod reviewed_plan;
pub mod snapshot;
pub mod stack;
pub mod stack_inputs;
pub mod state_lock;
pub mod tfvars;
pub mod vine;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::cloud::aws::AssumedRole;
use crate::cloud::azure::AzureSession;
use crate::cloud::gcp::GcpSession;
use crate::logs::JobLog;
use crate::report::Reporter;
use crate::secrets;
use crate::settings::{JobSettings, WorkerMode};
use crate::tools::{self, ToolCommand, ToolOutput};
use crate::trellis::{ClaimedJob, CloudIdentity, Job, JobType, Provider, StatusUpdate};
use crate::units::format_duration;
use crate::workspace::Workspace;
use environment::{base_environment, terraform_cli_config, uses_ambient_credentials, HostEnv};
pub use error::JobError;

/// The message of a job interrupted by the worker's shutdown.
pub const SHUTDOWN_MESSAGE: &str = "interrupted: the worker was shut down";

/// What the frame needs from the process around it.
pub struct JobServices {
    pub settings: Arc<JobSettings>,
    pub host: Arc<HostEnv>,
}

impl JobServices {
    /// The settings, and the host environment as it is now.
    pub fn new(settings: JobSettings) -> Self {
        JobServices {
            settings: Arc::new(settings),
            host: Arc::new(HostEnv::capture()),
        }
    }
}

/// Why a job was stopped before it ended by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The worker is shutting down (second signal, or the drain grace ran out).
    Shutdown,
    /// The job ran past the job timeout.
    Timeout(Duration),
    /// A user cancelled the job in Trellis.
    Cancelled,
    /// The job is no longer this worker's (requeued to another, or deleted).
    Reassigned(String),
}

/// Stops a job, remembering the first reason given.
#[derive(Clone, Default)]
pub struct JobStop {
    token: CancellationToken,
    reason: Arc<OnceLock<StopReason>>,
}

impl JobStop {
    pub fn stop(&self, reason: StopReason) {
        if self.reason.set(reason.clone()).is_ok() {
            tracing::warn!("stopping the running job: {reason:?}");
        }
        self.token.cancel();
    }

    pub fn reason(&self) -> Option<&StopReason> {
        self.reason.get()
    }

    pub fn token(&self) -> &CancellationToken {
        &self.token
    }
}

/// What becomes of a job.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Report this terminal status.
    Report(StatusUpdate),
    /// Say nothing more: the job is no longer this worker's to report.
    Abandon(StopReason),
}

/// Everything an executor works with.
pub struct JobContext {
    pub job: Job,
    /// The claim's cloud identity: the one a user job acts as; for a worker
    /// job, the one the worker it deploys will serve (which picks the image
    /// variant only: worker jobs act with the platform's credentials).
    pub identity: Option<CloudIdentity>,
    /// The job's cloud provider (see [`JobContext::provider`]).
    provider: Provider,
    pub settings: Arc<JobSettings>,
    pub workspace: Workspace,
    pub log: JobLog,
    pub reporter: Reporter,
    pub stop: CancellationToken,
    /// The AWS role the job acts as, when its identity names one.
    pub aws_role: Option<AssumedRole>,
    /// The job's GCP identity, its wif_config checked; it signs in when a
    /// token is first needed and again when the one held is close to expiry.
    gcp: Option<GcpSession>,
    /// The job's Azure sign-in, made when first needed.
    azure: tokio::sync::OnceCell<AzureSession>,
    /// `AZURE_FEDERATED_TOKEN_FILE` of Tendril's own environment.
    azure_token_file: Option<String>,
    base_env: BTreeMap<String, String>,
    /// The snapshot's secret settings and the secrets the job learns as it
    /// runs, masked while it runs.
    masked: std::sync::Mutex<Vec<secrets::SecretGuard>>,
}

impl JobContext {
    /// The job's cloud provider: the identity's (a user job's), else the
    /// snapshot's, else aws.
    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    /// The cloud account the job acts in, from its identity: the GCP project,
    /// the Azure subscription, or the AWS account (read from the role ARN
    /// when the identity leaves `account_id` empty); "" without an identity.
    pub fn cloud_account_id(&self) -> String {
        let Some(identity) = &self.identity else {
            return String::new();
        };
        match self.provider() {
            Provider::Gcp => identity.project_id.clone(),
            Provider::Azure => identity.subscription_id.clone(),
            _ if !identity.account_id.is_empty() => identity.account_id.clone(),
            _ => identity
                .role_arn
                .split(':')
                .nth(4)
                .unwrap_or_default()
                .to_string(),
        }
    }

    /// Keeps secrets the job learned (their guards) masked until it ends.
    pub fn keep_masked(&self, guards: impl IntoIterator<Item = secrets::SecretGuard>) {
        self.masked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(guards);
    }

    /// Starts a phase: `==> title` in the log, and a PROCESSING update with
    /// `phase` (a key such as `plan`) and `progress` (the title) for
    /// Trellis's job page, through the ordered status queue.
    pub fn phase(&self, key: &str, title: &str) -> crate::logs::Phase {
        self.reporter.progress(Map::from_iter([
            ("phase".to_string(), Value::String(key.into())),
            ("progress".to_string(), Value::String(title.into())),
        ]));
        self.log.phase(title)
    }

    /// The environment for the next tool: the base plus fresh credentials.
    pub async fn tool_env(&self) -> Result<BTreeMap<String, String>, JobError> {
        let mut env = self.base_env.clone();
        if let Some(role) = &self.aws_role {
            env.extend(role.keys().await?.environment());
        }
        if let Some(gcp) = &self.gcp {
            env.extend(gcp.token().await?.environment());
        }
        let acts_as_identity = !self.job.job_type.manages_hosted_workers();
        if *self.provider() == Provider::Azure && self.identity.is_some() && acts_as_identity {
            env.extend(self.azure_session().await?.environment());
        }
        Ok(env)
    }

    /// The job's GCP identity, signed in through its wif_config.
    pub async fn gcp_session(&self) -> Result<&GcpSession, JobError> {
        let session = self
            .gcp
            .as_ref()
            .ok_or_else(|| JobError::Invalid("the job's GCP identity has no wif_config".into()))?;
        session.token().await?;
        Ok(session)
    }

    /// The job's Azure identity, signed in (once) with the federated token.
    pub async fn azure_session(&self) -> Result<&AzureSession, JobError> {
        let identity = self.identity.clone().unwrap_or_default();
        let session = self
            .azure
            .get_or_try_init(|| {
                AzureSession::sign_in(
                    &self.settings.azure,
                    &identity.tenant_id,
                    &identity.client_id,
                    &identity.subscription_id,
                    self.azure_token_file.as_deref(),
                )
            })
            .await?;
        Ok(session)
    }

    /// A tool command in the workspace with the job's environment.
    pub async fn command(&self, program: &str, args: &[&str]) -> Result<ToolCommand, JobError> {
        Ok(ToolCommand::new(
            program,
            args,
            self.tool_env().await?,
            self.workspace.path().to_path_buf(),
            self.settings.cancel_grace,
        ))
    }

    /// Runs a prepared command, logging it first.
    pub async fn run(&self, command: &ToolCommand) -> Result<ToolOutput, JobError> {
        self.log.system(&format!("$ {}", command.display()));
        Ok(tools::run(command, &self.log, &self.stop).await?)
    }

    /// Runs `aws <args> --output json` with the job's credentials in `region`.
    pub async fn aws_json(&self, region: &str, args: &[&str]) -> Result<Value, JobError> {
        let mut command = self.command("aws", args).await?;
        command
            .args
            .extend(["--region".to_string(), region.to_string()]);
        command.env.insert("AWS_REGION".into(), region.into());
        self.log.system(&format!("$ {}", command.display()));
        Ok(tools::aws::json(command, &self.log, &self.stop).await?)
    }
}

/// Runs a claimed job to its outcome. Never panics and never fails: every
/// failure becomes a FAILED status with a message a user can act on.
pub async fn run(
    claimed: ClaimedJob,
    services: &JobServices,
    reporter: Reporter,
    log: JobLog,
    stop: &JobStop,
) -> Outcome {
    let job_type = claimed.job.job_type.clone();
    log.system(&format!(
        "==> job {} ({job_type}) on Tendril {}",
        claimed.job.id,
        crate::VERSION
    ));
    let result = match prepare(claimed, services, reporter, log.clone(), stop) {
        Ok(context) => execute_isolated(context, stop, services.settings.wind_down()).await,
        Err(error) => Err(error.masked()),
    };
    let left_behind = |error: &JobError| match error {
        JobError::StoppedLeaving(note) => format!("; {note}"),
        _ => String::new(),
    };
    let outcome = match (result, stop.reason()) {
        (_, Some(reason @ (StopReason::Cancelled | StopReason::Reassigned(_)))) => {
            Outcome::Abandon(reason.clone())
        }
        (Ok(metadata), _) => Outcome::Report(StatusUpdate::success(metadata)),
        (Err(error), Some(StopReason::Shutdown)) => Outcome::Report(StatusUpdate::failed(format!(
            "{SHUTDOWN_MESSAGE}{}",
            left_behind(&error)
        ))),
        (Err(error), Some(StopReason::Timeout(limit))) => {
            Outcome::Report(StatusUpdate::failed(format!(
                "timed out after {} (TENDRIL_JOB_TIMEOUT){}",
                format_duration(*limit),
                left_behind(&error)
            )))
        }
        (Err(error), None) => Outcome::Report(StatusUpdate::failed(error.to_string())),
    };
    match &outcome {
        Outcome::Report(update) => match &update.error_message {
            Some(message) => log.system(&format!("==> {job_type} failed: {message}")),
            None => log.system(&format!("==> {job_type} succeeded")),
        },
        Outcome::Abandon(reason) => log.system(&format!("==> {job_type} stopped: {reason:?}")),
    }
    outcome
}

fn prepare(
    claimed: ClaimedJob,
    services: &JobServices,
    reporter: Reporter,
    log: JobLog,
    stop: &JobStop,
) -> Result<JobContext, JobError> {
    let settings = services.settings.clone();
    let ClaimedJob { job, identity } = claimed;
    if let JobType::Unknown(name) = &job.job_type {
        return Err(unknown_job_type(name));
    }
    let user_job = !job.job_type.manages_hosted_workers();
    if user_job && identity.is_none() && settings.mode == WorkerMode::CloudHosted {
        return Err(JobError::Invalid("no cloud identity for this job".into()));
    }
    let workspace = Workspace::create(&settings.work_dir, &job.id)
        .map_err(|e| JobError::io("cannot create the job workspace", e))?;
    workspace
        .write_private(
            "terraform.rc",
            terraform_cli_config(settings.terraform_provider_mirror.as_deref()).as_bytes(),
        )
        .map_err(|e| JobError::io("cannot write the Terraform CLI configuration", e))?;
    // Worker jobs act with the platform's own credentials: Tendril's.
    let ambient = !user_job || uses_ambient_credentials(settings.mode, identity.is_some());
    let mut base_env = base_environment(&services.host, &settings, &workspace, ambient);
    // GCP tools act with the Google token Tendril exchanges (see tool_env),
    // never with the wif_config itself nor with the worker's AWS identity.
    // A worker job acts with the platform's credentials, on the platform's
    // cloud: its identity (the one the new worker serves) signs nothing in.
    let acting_identity = identity.as_ref().filter(|_| user_job);
    let gcp = match acting_identity
        .filter(|i| i.provider == Some(Provider::Gcp) && !i.wif_config.is_empty())
    {
        Some(gcp) => {
            base_env.extend(environment::gcp_project(&gcp.project_id));
            Some(GcpSession::new(
                &settings.gcp,
                settings.mode,
                &gcp.project_id,
                &gcp.wif_config,
            )?)
        }
        None => None,
    };
    let aws_role = aws_role(&job, acting_identity);
    let masked = snapshot::SECRET_SETTINGS
        .iter()
        .filter_map(|name| job.config_snapshot.get(*name).and_then(Value::as_str))
        .map(secrets::register)
        .collect();
    Ok(JobContext {
        provider: provider(&job, acting_identity),
        job,
        identity,
        settings,
        workspace,
        log,
        reporter,
        stop: stop.token().clone(),
        aws_role,
        gcp,
        azure: tokio::sync::OnceCell::new(),
        azure_token_file: services
            .host
            .get("AZURE_FEDERATED_TOKEN_FILE")
            .map(String::from),
        base_env,
        masked: std::sync::Mutex::new(masked),
    })
}

/// A job's cloud provider: its identity's, else the one its snapshot names
/// (`cloud_provider` or `provider`), else aws.
fn provider(job: &Job, identity: Option<&CloudIdentity>) -> Provider {
    if let Some(provider) = identity.and_then(|i| i.provider.clone()) {
        return provider;
    }
    ["cloud_provider", "provider"]
        .iter()
        .find_map(|key| job.config_snapshot.get(*key).and_then(Value::as_str))
        .map_or(Provider::Aws, Provider::named)
}

/// The AWS role of a job: the identity's, or for a CONNECTION_TEST the one
/// its snapshot names.
fn aws_role(job: &Job, identity: Option<&CloudIdentity>) -> Option<AssumedRole> {
    let identity = identity.filter(|i| matches!(i.provider, None | Some(Provider::Aws)));
    let from_snapshot = || {
        (job.job_type == JobType::ConnectionTest)
            .then(|| job.config_snapshot.get("role_arn").and_then(Value::as_str))
            .flatten()
    };
    let role_arn = identity
        .map(|i| i.role_arn.as_str())
        .filter(|arn| !arn.is_empty())
        .or_else(from_snapshot)?;
    let external_id = identity.map(|i| i.external_id.as_str()).unwrap_or_default();
    Some(AssumedRole::new(role_arn, external_id, &job.id))
}

/// Runs the executor in a task of its own: a panic there fails the job
/// only. After a stop the executor winds down by itself: its tools get
/// their grace (Terraform its own, longer one) and SIGKILL after it, their
/// output is read to the end, an interrupted apply's state is pushed and its
/// lock checked; only past all of that (`wind_down`) is it dropped. The
/// error is masked while the job's secrets are still registered, and the
/// workspace goes only after it.
async fn execute_isolated(
    context: JobContext,
    stop: &JobStop,
    wind_down: Duration,
) -> Result<Map<String, Value>, JobError> {
    let context = Arc::new(context);
    let held = context.clone();
    let mut task = tokio::spawn(async move { execute(&context).await });
    let joined = tokio::select! {
        joined = &mut task => joined,
        _ = held.log.keep_alive() => unreachable!("keep_alive never returns"),
        _ = stop.token().cancelled() => {
            match tokio::time::timeout(wind_down, &mut task).await {
                Ok(joined) => joined,
                Err(_) => {
                    held.log.system(&format!(
                        "the job did not wind down within {} of being stopped: its tools are killed",
                        format_duration(wind_down)
                    ));
                    task.abort();
                    return Err(JobError::Stopped);
                }
            }
        }
    };
    let result = match joined {
        Ok(result) => result,
        Err(error) if error.is_panic() => {
            let payload = error.into_panic();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(JobError::Internal(format!("panic: {message}")))
        }
        Err(_) => Err(JobError::Stopped),
    };
    let result = result.map_err(JobError::masked);
    drop(held);
    result
}

/// Dispatch by job type.
async fn execute(context: &JobContext) -> Result<Map<String, Value>, JobError> {
    match &context.job.job_type {
        JobType::ConnectionTest => discovery::connection_test(context).await,
        JobType::FetchResources => discovery::fetch_resources(context).await,
        JobType::Plan => vine::plan(context).await,
        JobType::Deploy => vine::deploy(context).await,
        JobType::Destroy => vine::destroy(context).await,
        JobType::Bootstrap => vine::bootstrap(context).await,
        JobType::DeployWorker => hosted_workers::deploy_worker(context).await,
        JobType::UpdateWorker => hosted_workers::update_worker(context).await,
        JobType::DestroyWorker => hosted_workers::destroy_worker(context).await,
        JobType::Unknown(name) => Err(unknown_job_type(name)),
    }
}

fn unknown_job_type(name: &str) -> JobError {
    JobError::Invalid(format!(
        "unknown job type '{name}': this Tendril ({}) knows {}",
        crate::VERSION,
        JobType::known_list()
    ))
}
