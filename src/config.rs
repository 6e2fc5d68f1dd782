//! Settings: the command line, the environment, and their validation.
//!
//! Non-secret settings are flags with an environment fallback. Secrets (the
//! worker token, storage keys, the Infracost key) come only from the
//! environment or from a file named by `<VARIABLE>_FILE`: a flag would show
//! them to every user of the host in `/proc/<pid>/cmdline`. A missing or
//! invalid setting becomes a [`ConfigError`] that names the variable; `main`
//! prints it on one line and exits 2.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::secrets::Secret;
use crate::units::{format_duration, parse_duration, parse_size};

/// A setting that is missing or cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    /// The environment variable (and flag, where there is one) at fault.
    pub variable: String,
    /// What is wrong with it, and what to do.
    pub problem: String,
}

impl ConfigError {
    pub(crate) fn new(variable: &str, problem: impl Into<String>) -> Self {
        ConfigError {
            variable: variable.to_string(),
            problem: problem.into(),
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "tendril",
    version = crate::VERSION,
    about = "The Tendril worker: claims jobs from Trellis and runs Terraform, Helm, kubectl and the cloud CLIs for them"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub logging: LoggingArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run as a worker: announce to Trellis, claim and run jobs until signalled.
    Start(StartArgs),
    /// Run one job from a file, without Trellis, and write its result locally.
    Exec(ExecArgs),
    /// Print Tendril's version and the versions of the tools it finds on PATH.
    Version,
    /// Check this worker's settings, peers and tools without changing
    /// anything, taking exactly the settings of `start`; one line per check
    /// (`--json`: one JSON document). Exit 1 when a check the mode needs
    /// failed, 2 when a setting is missing or invalid.
    Doctor(crate::doctor::DoctorArgs),
    /// Ask a running worker's health endpoint (TENDRIL_HEALTH_ADDR): exit 0
    /// when it is healthy, 1 when not (for a container HEALTHCHECK).
    Health(HealthArgs),
    /// Register a new worker with Trellis (for setting up a self-hosted one)
    /// and print the environment lines it runs with. The platform's
    /// registration secret is read from TENDRIL_REGISTRATION_SECRET (or
    /// TENDRIL_REGISTRATION_SECRET_FILE).
    Register(RegisterArgs),
    /// Scale the pool of ECS worker services between zero and one task each
    /// from the jobs waiting in Trellis's database: as a Lambda custom
    /// runtime when AWS_LAMBDA_RUNTIME_API is set, once with --once, or else
    /// every --interval.
    Scaler(crate::scaler::settings::ScalerArgs),
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The address the worker serves its health on.
    #[arg(long, env = "TENDRIL_HEALTH_ADDR", value_name = "HOST:PORT")]
    pub health_addr: Option<String>,
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// The worker's name, as Trellis shows it.
    #[arg(long)]
    pub name: String,
    /// cloud-hosted or self-hosted.
    #[arg(long, default_value = "self-hosted")]
    pub mode: String,
    /// Base URL of Trellis (falls back to GRAPE_WEB_ORIGIN).
    #[arg(long, env = "TRELLIS_URL", hide_env_values = true)]
    pub trellis_url: Option<String>,
    /// Allow plain http:// to a host other than loopback (never in production).
    #[arg(long, env = "TENDRIL_ALLOW_INSECURE_HTTP")]
    pub allow_insecure_http: bool,
}

#[derive(Debug, Args)]
pub struct LoggingArgs {
    /// Format of Tendril's own log: text or json [default: text].
    #[arg(long, global = true, env = "TENDRIL_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Level (or tracing filter) of Tendril's own log, e.g. info, debug or
    /// `info,tendril=debug` [default: info].
    #[arg(long, global = true, env = "TENDRIL_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// How Tendril's own log is written, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A tracing filter where every directive names a level.
    pub filter: String,
}

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

impl LoggingArgs {
    /// The log settings; a filter directive that names no level (`loud`,
    /// which tracing would take for a target and so silence everything
    /// else) is refused.
    pub fn resolve(&self) -> Result<LogSettings, ConfigError> {
        let format = match self.log_format.as_deref().map(str::trim) {
            None | Some("") | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::new(
                    "TENDRIL_LOG_FORMAT (--log-format)",
                    format!("'{other}' is not a log format (use text or json)"),
                ))
            }
        };
        let filter = self
            .log_level
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .unwrap_or("info");
        for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            let level = directive
                .rsplit_once('=')
                .map_or(directive, |(_, level)| level);
            if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
                return Err(ConfigError::new(
                    "TENDRIL_LOG_LEVEL (--log-level)",
                    format!(
                        "'{directive}' names no level (use one of {}, or target=level, e.g. info,tendril=debug)",
                        LEVELS.join(", ")
                    ),
                ));
            }
        }
        Ok(LogSettings {
            format,
            filter: filter.to_string(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerMode {
    /// A customer's own machine: jobs without a cloud identity use the
    /// host's ambient credentials.
    SelfHosted,
    /// An ECS Fargate task run by the platform: every user job must carry an
    /// identity, and ECS stops the task 120 s after SIGTERM.
    CloudHosted,
}

impl WorkerMode {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerMode::SelfHosted => "self-hosted",
            WorkerMode::CloudHosted => "cloud-hosted",
        }
    }
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Base URL of Trellis (falls back to GRAPE_WEB_ORIGIN).
    #[arg(long, env = "TRELLIS_URL", hide_env_values = true)]
    pub trellis_url: Option<String>,
    /// This worker's id, assigned at registration. The token is read from
    /// GRAPE_WORKER_TOKEN or the file named by GRAPE_WORKER_TOKEN_FILE.
    #[arg(long, env = "GRAPE_WORKER_ID", hide_env_values = true)]
    pub worker_id: Option<String>,
    /// How often to ask for a job when idle [default: 10s].
    #[arg(long, env = "TENDRIL_POLL_INTERVAL", value_name = "DURATION")]
    pub poll_interval: Option<String>,
    /// Claim until one job comes, run it, deliver everything and exit: 0
    /// when the job succeeded, 1 otherwise (for ephemeral tasks and
    /// debugging).
    #[arg(long)]
    pub once: bool,
    /// Exit (0, after the usual drain) once this long has passed without a
    /// job, deciding only right after an empty claim.
    #[arg(long, env = "TENDRIL_EXIT_AFTER_IDLE", value_name = "DURATION")]
    pub exit_after_idle: Option<String>,
    /// Serve GET /healthz and GET /metrics on this address (e.g.
    /// 127.0.0.1:9460) [default: off].
    #[arg(long, env = "TENDRIL_HEALTH_ADDR", value_name = "HOST:PORT")]
    pub health_addr: Option<String>,
    /// How often to send a heartbeat, and to check a running job's ownership
    /// [default: 30s].
    #[arg(long, env = "TENDRIL_HEARTBEAT_INTERVAL", value_name = "DURATION")]
    pub heartbeat_interval: Option<String>,
    /// How long the first SIGTERM waits for the running job
    /// [default: 10m self-hosted, 50s cloud-hosted].
    #[arg(long, env = "TENDRIL_DRAIN_GRACE", value_name = "DURATION")]
    pub drain_grace: Option<String>,
    /// The most time spent delivering the last statuses, logs and the
    /// OFFLINE heartbeat when Trellis is unreachable at exit [default: 10s].
    #[arg(long, env = "TENDRIL_FINAL_DELIVERY_TIMEOUT", value_name = "DURATION")]
    pub final_delivery_timeout: Option<String>,
    /// Timeout of one request to Trellis [default: 30s].
    #[arg(long, env = "TENDRIL_REQUEST_TIMEOUT", value_name = "DURATION")]
    pub request_timeout: Option<String>,
    /// Timeout of a plan artifact upload or download [default: 10m].
    #[arg(long, env = "TENDRIL_ARTIFACT_TIMEOUT", value_name = "DURATION")]
    pub artifact_timeout: Option<String>,
    /// The largest claimed job or job row read from Trellis [default: 32MiB].
    #[arg(long, env = "TENDRIL_MAX_JOB_SIZE", value_name = "SIZE")]
    pub max_job_size: Option<String>,
    /// Longest wait between two retries of a request to Trellis [default: 30s].
    #[arg(long, env = "TENDRIL_RETRY_MAX_DELAY", value_name = "DURATION")]
    pub retry_max_delay: Option<String>,
    /// Allow plain http:// to a host other than loopback (never in production).
    #[arg(long, env = "TENDRIL_ALLOW_INSECURE_HTTP")]
    pub allow_insecure_http: bool,
    #[command(flatten)]
    pub job: JobArgs,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// A job file: what a claim returns, `{"job": ..., "cloud_identity": ...}`.
    pub job_file: PathBuf,
    /// Where artifacts and result.json go [default: ./tendril-out/<job id>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// For a DEPLOY: the --out directory of the earlier PLAN whose plan it
    /// applies (its job.json, result.json and terraform.plan.out).
    #[arg(long, value_name = "DIR")]
    pub plan_from: Option<PathBuf>,
    #[command(flatten)]
    pub job: JobArgs,
}

/// Settings that shape how a job runs, shared by `start` and `exec`.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// cloud-hosted or self-hosted [default: self-hosted].
    #[arg(long, env = "GRAPE_WORKER_MODE")]
    pub mode: Option<String>,
    /// Root of job workspaces and of the outbox [default: $XDG_STATE_HOME/tendril
    /// or ~/.local/state/tendril].
    #[arg(long, env = "TENDRIL_WORK_DIR", value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Where the Terraform and chart templates are [default: ./templates].
    #[arg(long, env = "TENDRIL_TEMPLATES_DIR", value_name = "DIR")]
    pub templates_dir: Option<PathBuf>,
    /// A job running longer than this is cancelled and fails [default: 2h].
    #[arg(long, env = "TENDRIL_JOB_TIMEOUT", value_name = "DURATION")]
    pub job_timeout: Option<String>,
    /// Time a tool gets between SIGINT and SIGKILL when a job is cancelled
    /// [default: 30s].
    #[arg(long, env = "TENDRIL_CANCEL_GRACE", value_name = "DURATION")]
    pub cancel_grace: Option<String>,
    /// Most log a job may send; past it a truncation line is sent and output
    /// is dropped [default: 100MiB].
    #[arg(long, env = "TENDRIL_LOG_LIMIT", value_name = "SIZE")]
    pub log_limit: Option<String>,
    /// A job silent this long gets a "still running" line [default: 60s].
    #[arg(long, env = "TENDRIL_PROGRESS_INTERVAL", value_name = "DURATION")]
    pub progress_interval: Option<String>,
    /// Extra environment variable names passed to every tool (comma-separated).
    #[arg(long, env = "TENDRIL_PASS_ENV", value_name = "NAMES")]
    pub pass_env: Option<String>,
    /// AWS regions to discover (comma-separated) [default: every enabled region].
    #[arg(long, env = "TENDRIL_AWS_REGIONS", value_name = "REGIONS")]
    pub aws_regions: Option<String>,
    /// How many regions are discovered at once [default: 4].
    #[arg(long, env = "TENDRIL_DISCOVERY_CONCURRENCY", value_name = "N")]
    pub discovery_concurrency: Option<String>,
    /// Keep Terraform state in this directory on this machine when no
    /// SUPABASE_S3_ENDPOINT is set (`start`: only when set; `exec`
    /// [default: $XDG_DATA_HOME/tendril/state or ~/.local/share/tendril/state]).
    #[arg(long, env = "TENDRIL_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Time Terraform gets between SIGINT and SIGKILL when a job is stopped
    /// (it writes state and releases its lock) [default: 5m self-hosted,
    /// 40s cloud-hosted].
    #[arg(long, env = "TENDRIL_TERRAFORM_GRACE", value_name = "DURATION")]
    pub terraform_grace: Option<String>,
    /// A Terraform provider mirror directory (`terraform providers mirror`):
    /// the providers it holds are installed from it alone, so a registry
    /// outage cannot fail them; others come from the registry [default: none].
    #[arg(long, env = "TENDRIL_TERRAFORM_PROVIDER_MIRROR", value_name = "DIR")]
    pub terraform_provider_mirror: Option<PathBuf>,
    /// How long Terraform waits for a state lock held by another run [default: 5m].
    #[arg(long, env = "TENDRIL_TERRAFORM_LOCK_TIMEOUT", value_name = "DURATION")]
    pub terraform_lock_timeout: Option<String>,
    /// A directory of Terraform hooks: the executables terraform-pre-plan,
    /// terraform-post-plan, terraform-pre-apply and terraform-post-apply in
    /// it run around each plan and apply of a job [default: none].
    #[arg(long, env = "TENDRIL_HOOKS_DIR", value_name = "DIR")]
    pub hooks_dir: Option<PathBuf>,
    /// A hook running longer than this is stopped and fails its job; at
    /// most 10m [default: 60s].
    #[arg(long, env = "TENDRIL_HOOK_TIMEOUT", value_name = "DURATION")]
    pub hook_timeout: Option<String>,
    /// The argo-cd Helm chart: a name in the repository below, or a path to
    /// a chart directory or archive [default: argo-cd].
    #[arg(long, env = "TENDRIL_ARGOCD_CHART", value_name = "CHART")]
    pub argocd_chart: Option<String>,
    /// The Helm repository of the argo-cd chart [default: https://argoproj.github.io/argo-helm].
    #[arg(long, env = "TENDRIL_ARGOCD_CHART_REPOSITORY", value_name = "URL")]
    pub argocd_chart_repository: Option<String>,
    /// The argo-cd chart version [default: 7.7.11].
    #[arg(long, env = "TENDRIL_ARGOCD_CHART_VERSION", value_name = "VERSION")]
    pub argocd_chart_version: Option<String>,
    /// How long the ArgoCD install may take to become ready [default: 10m].
    #[arg(long, env = "TENDRIL_ARGOCD_TIMEOUT", value_name = "DURATION")]
    pub argocd_timeout: Option<String>,
    /// Compute Engine API [default: https://compute.googleapis.com/compute/v1].
    #[arg(long, env = "TENDRIL_GCP_COMPUTE_ENDPOINT", value_name = "URL")]
    pub gcp_compute_endpoint: Option<String>,
    /// Cloud DNS API [default: https://dns.googleapis.com/dns/v1].
    #[arg(long, env = "TENDRIL_GCP_DNS_ENDPOINT", value_name = "URL")]
    pub gcp_dns_endpoint: Option<String>,
    /// Hosts a wif_config's token_url and service_account_impersonation_url
    /// may name besides Google's (tests against a local fake only).
    #[arg(long, env = "TENDRIL_GCP_ALLOWED_HOSTS", value_name = "HOSTS")]
    pub gcp_allowed_hosts: Option<String>,
    /// Self-hosted only: directories (absolute, comma-separated) a
    /// wif_config's credential_source.file may be in [default: none].
    #[arg(long, env = "TENDRIL_GCP_CREDENTIAL_DIRS", value_name = "DIRS")]
    pub gcp_credential_dirs: Option<String>,
    /// Self-hosted only: hosts a wif_config's credential_source.url may name
    /// besides loopback and the metadata servers (comma-separated) [default: none].
    #[arg(long, env = "TENDRIL_GCP_CREDENTIAL_URL_HOSTS", value_name = "HOSTS")]
    pub gcp_credential_url_hosts: Option<String>,
    /// Microsoft Entra's authority host [default: https://login.microsoftonline.com].
    #[arg(long, env = "TENDRIL_AZURE_AUTHORITY_HOST", value_name = "URL")]
    pub azure_authority_host: Option<String>,
    /// Azure Resource Manager [default: https://management.azure.com].
    #[arg(long, env = "TENDRIL_AZURE_RESOURCE_MANAGER", value_name = "URL")]
    pub azure_resource_manager: Option<String>,
    /// After a stopped Terraform ended: the most time for pushing its
    /// errored.tfstate and checking for a lock it left [default: 10s
    /// cloud-hosted, 60s self-hosted].
    #[arg(long, env = "TENDRIL_STOP_CLEANUP_TIMEOUT", value_name = "DURATION")]
    pub stop_cleanup_timeout: Option<String>,
    /// No job is claimed while the work dir has less free space than this
    /// [default: 512MiB].
    #[arg(long, env = "TENDRIL_MIN_FREE_SPACE", value_name = "SIZE")]
    pub min_free_space: Option<String>,
    /// S3-compatible endpoint of the Terraform state bucket.
    #[arg(long, env = "SUPABASE_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// Region of the Terraform state bucket.
    #[arg(long, env = "SUPABASE_S3_REGION", value_name = "REGION")]
    pub s3_region: Option<String>,
}

/// How a job runs, resolved and validated.
#[derive(Debug, Clone)]
pub struct JobSettings {
    pub mode: WorkerMode,
    pub work_dir: PathBuf,
    /// Free space the work dir needs before a job is claimed.
    pub min_free_space: u64,
    pub templates_dir: PathBuf,
    pub job_timeout: Duration,
    pub cancel_grace: Duration,
    pub log_limit: u64,
    pub progress_interval: Duration,
    pub pass_env: Vec<String>,
    pub aws_regions: Vec<String>,
    pub discovery_concurrency: usize,
    pub state_storage: Option<StateStorage>,
    /// Local state, used only without `state_storage`: set explicitly for
    /// `start`, defaulted for `exec`; without either, Terraform jobs fail.
    pub state_dir: Option<PathBuf>,
    pub terraform_grace: Duration,
    /// After a stopped Terraform ended: pushing its errored.tfstate and
    /// checking for a lock it left.
    pub stop_cleanup: Duration,
    pub terraform_lock_timeout: Duration,
    pub terraform_provider_mirror: Option<PathBuf>,
    pub hooks: crate::jobs::hooks::HookSettings,
    pub argocd: ArgoCdSettings,
    pub azure: crate::cloud::azure::AzureEndpoints,
    pub gcp: crate::cloud::gcp::GcpSettings,
    pub infracost_api_key: Option<Secret>,
    /// The platform's secret for registering the workers DEPLOY_WORKER deploys.
    pub registration_secret: Option<Secret>,
}

/// Reading a stopped tool's last output after it exits, and the like.
const WIND_DOWN_MARGIN: Duration = Duration::from_secs(5);

impl JobSettings {
    /// The longest time a tool takes between SIGINT and its end (the
    /// longer of the cancel and Terraform graces).
    pub fn longest_grace(&self) -> Duration {
        self.cancel_grace.max(self.terraform_grace)
    }

    /// How long a stopped job may take to wind down by itself: its tool's
    /// grace, the state push and lock check after Terraform, a margin.
    pub fn wind_down(&self) -> Duration {
        self.longest_grace() + self.stop_cleanup + WIND_DOWN_MARGIN
    }
}

/// Which argo-cd chart a DEPLOY installs, and how long it may take.
#[derive(Debug, Clone)]
pub struct ArgoCdSettings {
    pub chart: String,
    pub repository: String,
    pub version: String,
    pub timeout: Duration,
}

/// The S3-compatible bucket that holds Terraform state.
#[derive(Debug, Clone)]
pub struct StateStorage {
    pub endpoint: String,
    pub region: String,
    pub key_id: Secret,
    pub secret_key: Secret,
}

/// How the worker talks to Trellis, resolved and validated.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub trellis_url: String,
    pub worker_id: String,
    pub worker_token: Secret,
    pub poll_interval: Duration,
    pub heartbeat_interval: Duration,
    pub drain_grace: Duration,
    pub final_delivery_timeout: Duration,
    pub request_timeout: Duration,
    pub artifact_timeout: Duration,
    pub retry_max_delay: Duration,
    pub allow_insecure_http: bool,
    /// The largest claimed job or job row read from Trellis.
    pub max_job_size: usize,
    /// Run one job, then exit.
    pub once: bool,
    /// Exit after this long without a job.
    pub exit_after_idle: Option<Duration>,
    /// Where the health and metrics listener serves, if anywhere.
    pub health_addr: Option<String>,
}

/// ECS stops a Fargate task this long after SIGTERM, whatever the task does.
pub const ECS_STOP_TIMEOUT: Duration = Duration::from_secs(120);
/// What drain, a stopped job's wind-down and the final delivery must fit
/// in on ECS: the rest is for the OFFLINE heartbeat (3 s at most) and the
/// exit.
pub const ECS_SHUTDOWN_BUDGET: Duration = Duration::from_secs(115);

fn duration(
    variable: &str,
    value: &Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(text) => parse_duration(text).map_err(|problem| ConfigError::new(variable, problem)),
    }
}

pub(crate) fn positive_duration(
    variable: &str,
    value: &Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let parsed = duration(variable, value, default)?;
    if parsed.is_zero() {
        return Err(ConfigError::new(variable, "must be longer than zero"));
    }
    Ok(parsed)
}

/// A comma-separated list of absolute directories.
fn absolute_dirs(variable: &str, value: &Option<String>) -> Result<Vec<PathBuf>, ConfigError> {
    list(value)
        .into_iter()
        .map(PathBuf::from)
        .map(|dir| match dir.is_absolute() {
            true => Ok(dir),
            false => Err(ConfigError::new(
                variable,
                format!("'{}' is not an absolute path", dir.display()),
            )),
        })
        .collect()
}

pub(crate) fn list(value: &Option<String>) -> Vec<String> {
    value
        .iter()
        .flat_map(|text| text.split(','))
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(String::from)
        .collect()
}

/// The local state directory of `tendril exec`'s embedded default.
pub fn default_state_dir() -> PathBuf {
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir);
    data.join("tendril").join("state")
}

/// Reads a secret from `NAME`, or from the file named by `NAME_FILE`.
/// Either way the value is registered for masking before it is returned.
pub fn secret_from_env(name: &str) -> Result<Option<Secret>, ConfigError> {
    let value = match std::env::var(name) {
        Ok(value) => Some(value),
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(ConfigError::new(name, "is not valid UTF-8"))
        }
        Err(std::env::VarError::NotPresent) => {
            let file_variable = format!("{name}_FILE");
            match std::env::var_os(&file_variable) {
                None => None,
                Some(path) => Some(std::fs::read_to_string(&path).map_err(|error| {
                    ConfigError::new(
                        &file_variable,
                        format!("cannot read {}: {error}", PathBuf::from(&path).display()),
                    )
                })?),
            }
        }
    };
    Ok(value
        .map(|text| text.trim_end_matches(['\n', '\r']).to_string())
        .filter(|text| !text.is_empty())
        .map(Secret::new_registered))
}

impl JobArgs {
    /// Resolves the job settings, with the defaults of the worker's mode.
    pub fn resolve(&self) -> Result<JobSettings, ConfigError> {
        let mode = match self.mode.as_deref().map(str::trim) {
            None | Some("") | Some("self-hosted") => WorkerMode::SelfHosted,
            Some("cloud-hosted") => WorkerMode::CloudHosted,
            Some(other) => {
                return Err(ConfigError::new(
                    "GRAPE_WORKER_MODE (--mode)",
                    format!("'{other}' is not a mode (use cloud-hosted or self-hosted)"),
                ))
            }
        };
        let log_limit = match &self.log_limit {
            None => 100 << 20,
            Some(text) => parse_size(text)
                .map_err(|problem| ConfigError::new("TENDRIL_LOG_LIMIT (--log-limit)", problem))?,
        };
        let discovery_concurrency = match &self.discovery_concurrency {
            None => 4,
            Some(text) => text
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    ConfigError::new(
                        "TENDRIL_DISCOVERY_CONCURRENCY (--discovery-concurrency)",
                        format!("'{text}' is not a whole number above zero"),
                    )
                })?,
        };
        Ok(JobSettings {
            mode,
            work_dir: self
                .work_dir
                .clone()
                .unwrap_or_else(crate::work_dir::default_work_dir),
            min_free_space: match &self.min_free_space {
                None => 512 << 20,
                Some(text) => parse_size(text).map_err(|problem| {
                    ConfigError::new("TENDRIL_MIN_FREE_SPACE (--min-free-space)", problem)
                })?,
            },
            templates_dir: self
                .templates_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("templates")),
            job_timeout: positive_duration(
                "TENDRIL_JOB_TIMEOUT (--job-timeout)",
                &self.job_timeout,
                Duration::from_secs(2 * 3600),
            )?,
            cancel_grace: duration(
                "TENDRIL_CANCEL_GRACE (--cancel-grace)",
                &self.cancel_grace,
                Duration::from_secs(30),
            )?,
            log_limit,
            progress_interval: positive_duration(
                "TENDRIL_PROGRESS_INTERVAL (--progress-interval)",
                &self.progress_interval,
                Duration::from_secs(60),
            )?,
            pass_env: list(&self.pass_env),
            aws_regions: list(&self.aws_regions),
            discovery_concurrency,
            state_storage: self.state_storage()?,
            state_dir: self.state_dir.clone(),
            terraform_grace: duration(
                "TENDRIL_TERRAFORM_GRACE (--terraform-grace)",
                &self.terraform_grace,
                match mode {
                    WorkerMode::SelfHosted => Duration::from_secs(300),
                    WorkerMode::CloudHosted => Duration::from_secs(40),
                },
            )?,
            stop_cleanup: positive_duration(
                "TENDRIL_STOP_CLEANUP_TIMEOUT (--stop-cleanup-timeout)",
                &self.stop_cleanup_timeout,
                match mode {
                    WorkerMode::SelfHosted => Duration::from_secs(60),
                    WorkerMode::CloudHosted => Duration::from_secs(10),
                },
            )?,
            terraform_lock_timeout: duration(
                "TENDRIL_TERRAFORM_LOCK_TIMEOUT (--terraform-lock-timeout)",
                &self.terraform_lock_timeout,
                Duration::from_secs(300),
            )?,
            terraform_provider_mirror: self.terraform_provider_mirror.clone(),
            hooks: crate::jobs::hooks::HookSettings::resolve(&self.hooks_dir, &self.hook_timeout)?,
            argocd: ArgoCdSettings {
                chart: self
                    .argocd_chart
                    .clone()
                    .unwrap_or_else(|| "argo-cd".into()),
                repository: self
                    .argocd_chart_repository
                    .clone()
                    .unwrap_or_else(|| "https://argoproj.github.io/argo-helm".into()),
                version: self
                    .argocd_chart_version
                    .clone()
                    .unwrap_or_else(|| "7.7.11".into()),
                timeout: positive_duration(
                    "TENDRIL_ARGOCD_TIMEOUT (--argocd-timeout)",
                    &self.argocd_timeout,
                    Duration::from_secs(600),
                )?,
            },
            azure: crate::cloud::azure::AzureEndpoints {
                authority: self
                    .azure_authority_host
                    .clone()
                    .unwrap_or_else(|| "https://login.microsoftonline.com".into()),
                resource_manager: self
                    .azure_resource_manager
                    .clone()
                    .unwrap_or_else(|| "https://management.azure.com".into()),
            },
            gcp: crate::cloud::gcp::GcpSettings {
                compute: self
                    .gcp_compute_endpoint
                    .clone()
                    .unwrap_or_else(|| "https://compute.googleapis.com/compute/v1".into()),
                dns: self
                    .gcp_dns_endpoint
                    .clone()
                    .unwrap_or_else(|| "https://dns.googleapis.com/dns/v1".into()),
                extra_allowed_hosts: list(&self.gcp_allowed_hosts),
                credential_dirs: absolute_dirs(
                    "TENDRIL_GCP_CREDENTIAL_DIRS (--gcp-credential-dirs)",
                    &self.gcp_credential_dirs,
                )?,
                credential_url_hosts: list(&self.gcp_credential_url_hosts),
            },
            infracost_api_key: secret_from_env("INFRACOST_API_KEY")?,
            registration_secret: secret_from_env("TENDRIL_REGISTRATION_SECRET")?,
        })
    }

    fn state_storage(&self) -> Result<Option<StateStorage>, ConfigError> {
        let key_id = secret_from_env("SUPABASE_STORAGE_KEY_ID")?;
        let secret_key = secret_from_env("SUPABASE_STORAGE_SECRET_KEY")?;
        let Some(endpoint) = self.s3_endpoint.clone().filter(|e| !e.trim().is_empty()) else {
            return Ok(None);
        };
        let missing = |name: &str| {
            ConfigError::new(
                name,
                "is required when SUPABASE_S3_ENDPOINT is set (the Terraform state bucket)",
            )
        };
        Ok(Some(StateStorage {
            endpoint,
            region: self
                .s3_region
                .clone()
                .filter(|r| !r.trim().is_empty())
                .ok_or_else(|| missing("SUPABASE_S3_REGION"))?,
            key_id: key_id.ok_or_else(|| missing("SUPABASE_STORAGE_KEY_ID"))?,
            secret_key: secret_key.ok_or_else(|| missing("SUPABASE_STORAGE_SECRET_KEY"))?,
        }))
    }
}

impl StartArgs {
    /// Resolves the worker's settings; `mode` picks the drain default.
    pub fn resolve(&self, mode: WorkerMode) -> Result<AgentSettings, ConfigError> {
        let trellis_url = self
            .trellis_url
            .clone()
            .or_else(|| std::env::var("GRAPE_WEB_ORIGIN").ok())
            .map(|url| url.trim().trim_end_matches('/').to_string())
            .filter(|url| !url.is_empty())
            .ok_or_else(|| {
                ConfigError::new(
                    "TRELLIS_URL (--trellis-url)",
                    "is not set (the base URL of Trellis, e.g. https://trellis.example.com)",
                )
            })?;
        let worker_id = self
            .worker_id
            .clone()
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                ConfigError::new(
                    "GRAPE_WORKER_ID (--worker-id)",
                    "is not set (the id Trellis gave this worker at registration)",
                )
            })?;
        let worker_token = secret_from_env("GRAPE_WORKER_TOKEN")?.ok_or_else(|| {
            ConfigError::new(
                "GRAPE_WORKER_TOKEN",
                "is not set (set it, or GRAPE_WORKER_TOKEN_FILE, to the worker's token)",
            )
        })?;
        let drain_default = match mode {
            WorkerMode::SelfHosted => Duration::from_secs(600),
            WorkerMode::CloudHosted => Duration::from_secs(50),
        };
        Ok(AgentSettings {
            trellis_url,
            worker_id,
            worker_token,
            poll_interval: positive_duration(
                "TENDRIL_POLL_INTERVAL (--poll-interval)",
                &self.poll_interval,
                Duration::from_secs(10),
            )?,
            heartbeat_interval: positive_duration(
                "TENDRIL_HEARTBEAT_INTERVAL (--heartbeat-interval)",
                &self.heartbeat_interval,
                Duration::from_secs(30),
            )?,
            drain_grace: duration(
                "TENDRIL_DRAIN_GRACE (--drain-grace)",
                &self.drain_grace,
                drain_default,
            )?,
            final_delivery_timeout: positive_duration(
                "TENDRIL_FINAL_DELIVERY_TIMEOUT (--final-delivery-timeout)",
                &self.final_delivery_timeout,
                Duration::from_secs(10),
            )?,
            request_timeout: positive_duration(
                "TENDRIL_REQUEST_TIMEOUT (--request-timeout)",
                &self.request_timeout,
                Duration::from_secs(30),
            )?,
            artifact_timeout: positive_duration(
                "TENDRIL_ARTIFACT_TIMEOUT (--artifact-timeout)",
                &self.artifact_timeout,
                Duration::from_secs(600),
            )?,
            retry_max_delay: positive_duration(
                "TENDRIL_RETRY_MAX_DELAY (--retry-max-delay)",
                &self.retry_max_delay,
                Duration::from_secs(30),
            )?,
            allow_insecure_http: self.allow_insecure_http,
            once: self.once,
            exit_after_idle: match &self.exit_after_idle {
                None => None,
                Some(_) => Some(positive_duration(
                    "TENDRIL_EXIT_AFTER_IDLE (--exit-after-idle)",
                    &self.exit_after_idle,
                    Duration::ZERO,
                )?),
            },
            health_addr: self
                .health_addr
                .as_deref()
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(|address| {
                    address
                        .parse::<std::net::SocketAddr>()
                        .map(|_| address.to_string())
                        .map_err(|_| {
                            ConfigError::new(
                                "TENDRIL_HEALTH_ADDR (--health-addr)",
                                format!("'{address}' is not an address with a port (e.g. 127.0.0.1:9460)"),
                            )
                        })
                })
                .transpose()?,
            max_job_size: match &self.max_job_size {
                None => 32 << 20,
                Some(text) => parse_size(text)
                    .map(|size| size as usize)
                    .map_err(|problem| {
                        ConfigError::new("TENDRIL_MAX_JOB_SIZE (--max-job-size)", problem)
                    })?,
            },
        })
    }
}

/// Where a worker's Terraform state goes, checked before it claims: a
/// cloud-hosted worker (a Fargate task, whose disk dies with it) needs the
/// bucket; a self-hosted one without it keeps local state only when
/// `TENDRIL_STATE_DIR` is set, and that is worth a warning (other workers
/// cannot see that state). Returns the warning, if any.
pub fn check_state_backend(job: &JobSettings) -> Result<Option<String>, ConfigError> {
    match (&job.state_storage, &job.state_dir, job.mode) {
        (Some(_), _, _) => Ok(None),
        (None, _, WorkerMode::CloudHosted) => Err(ConfigError::new(
            "SUPABASE_S3_ENDPOINT",
            "is required in cloud-hosted mode (with SUPABASE_S3_REGION, SUPABASE_STORAGE_KEY_ID and \
             SUPABASE_STORAGE_SECRET_KEY): Terraform state kept on the task's disk would die with the task",
        )),
        (None, Some(dir), WorkerMode::SelfHosted) => Ok(Some(format!(
            "Terraform state is kept in {} on this machine (TENDRIL_STATE_DIR, no SUPABASE_S3_ENDPOINT): \
             other workers cannot see it, and a vine planned or deployed here must be destroyed here",
            dir.display()
        ))),
        (None, None, WorkerMode::SelfHosted) => Ok(None),
    }
}

/// On ECS the whole shutdown (drain, cancel grace, final delivery) must fit
/// before ECS kills the task; returns a warning when the settings cannot.
pub fn shutdown_budget_warning(
    mode: WorkerMode,
    agent: &AgentSettings,
    job: &JobSettings,
) -> Option<String> {
    let total = agent.drain_grace + job.wind_down() + agent.final_delivery_timeout;
    (mode == WorkerMode::CloudHosted && total > ECS_SHUTDOWN_BUDGET).then(|| {
        format!(
            "drain grace {} + tool grace {} (the longer of the cancel and Terraform graces) + stop cleanup {} \
             + wind-down margin {} + final delivery {} = {} does not fit in the {} ECS allows after SIGTERM \
             (aim for {}): a job may be killed without a terminal status",
            format_duration(agent.drain_grace),
            format_duration(job.longest_grace()),
            format_duration(job.stop_cleanup),
            format_duration(WIND_DOWN_MARGIN),
            format_duration(agent.final_delivery_timeout),
            format_duration(total),
            format_duration(ECS_STOP_TIMEOUT),
            format_duration(ECS_SHUTDOWN_BUDGET),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job_args(mode: Option<&str>) -> JobArgs {
        JobArgs {
            mode: mode.map(String::from),
            work_dir: None,
            min_free_space: None,
            templates_dir: None,
            job_timeout: None,
            cancel_grace: None,
            log_limit: None,
            progress_interval: None,
            pass_env: Some("FOO, BAR,,".into()),
            aws_regions: None,
            discovery_concurrency: None,
            state_dir: None,
            terraform_grace: None,
            stop_cleanup_timeout: None,
            terraform_lock_timeout: None,
            terraform_provider_mirror: None,
            hooks_dir: None,
            hook_timeout: None,
            argocd_chart: None,
            argocd_chart_repository: None,
            argocd_chart_version: None,
            argocd_timeout: None,
            gcp_compute_endpoint: None,
            gcp_dns_endpoint: None,
            gcp_allowed_hosts: None,
            gcp_credential_dirs: None,
            gcp_credential_url_hosts: None,
            azure_authority_host: None,
            azure_resource_manager: None,
            s3_endpoint: None,
            s3_region: None,
        }
    }

    #[test]
    fn an_unknown_mode_names_the_variable() {
        let error = job_args(Some("cloud")).resolve().unwrap_err();
        assert!(
            error.to_string().starts_with("GRAPE_WORKER_MODE"),
            "{error}"
        );
    }

    #[test]
    fn a_log_filter_must_name_a_level_and_the_format_be_known() {
        let logging = |format: Option<&str>, level: Option<&str>| LoggingArgs {
            log_format: format.map(String::from),
            log_level: level.map(String::from),
        };
        assert_eq!(logging(None, None).resolve().unwrap().filter, "info");
        assert!(logging(None, Some("info,tendril=debug,hyper=WARN"))
            .resolve()
            .is_ok());
        let loud = logging(None, Some("loud"))
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(
            loud.starts_with("TENDRIL_LOG_LEVEL (--log-level): 'loud' names no level"),
            "{loud}"
        );
        assert!(logging(None, Some("tendril=loud")).resolve().is_err());
        let xml = logging(Some("xml"), None)
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(
            xml.starts_with("TENDRIL_LOG_FORMAT (--log-format): 'xml'"),
            "{xml}"
        );
        assert_eq!(
            logging(Some("json"), None).resolve().unwrap().format,
            LogFormat::Json
        );
    }

    #[test]
    fn lists_drop_blanks() {
        assert_eq!(
            job_args(None).resolve().unwrap().pass_env,
            vec!["FOO", "BAR"]
        );
    }

    #[test]
    fn gcp_credential_dirs_must_be_absolute() {
        let mut args = job_args(None);
        args.gcp_credential_dirs = Some("/run/secrets/gcp, /var/run/tokens".into());
        assert_eq!(
            args.resolve().unwrap().gcp.credential_dirs,
            [
                PathBuf::from("/run/secrets/gcp"),
                PathBuf::from("/var/run/tokens")
            ]
        );
        args.gcp_credential_dirs = Some("/run/secrets/gcp,tokens".into());
        let error = args.resolve().unwrap_err().to_string();
        assert!(
            error.starts_with("TENDRIL_GCP_CREDENTIAL_DIRS") && error.contains("'tokens'"),
            "{error}"
        );
    }

    #[test]
    fn cloud_hosted_defaults_fit_the_ecs_budget() {
        let job = job_args(Some("cloud-hosted")).resolve().unwrap();
        let agent = AgentSettings {
            trellis_url: "https://t".into(),
            worker_id: "w".into(),
            worker_token: Secret::new_registered("token-for-budget-test".into()),
            poll_interval: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(30),
            drain_grace: Duration::from_secs(50),
            final_delivery_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            artifact_timeout: Duration::from_secs(600),
            retry_max_delay: Duration::from_secs(30),
            allow_insecure_http: false,
            max_job_size: 32 << 20,
            once: false,
            exit_after_idle: None,
            health_addr: None,
        };
        assert_eq!(shutdown_budget_warning(job.mode, &agent, &job), None);
        let too_long = AgentSettings {
            drain_grace: Duration::from_secs(600),
            ..agent
        };
        let warning = shutdown_budget_warning(job.mode, &too_long, &job).unwrap();
        assert!(warning.contains("does not fit"), "{warning}");
    }
}
