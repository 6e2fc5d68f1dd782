//! The validated settings of a worker and of `tendril exec`: what the
//! command line and the environment resolve to (the `cli` module), as plain
//! values the rest of the crate reads, and the rules that look at several of
//! them together (the state backend, the ECS shutdown budget).
//!
//! This module sits at the bottom of the crate: it uses nothing of it but
//! the leaf modules `secrets` and `units`, so every other module may depend
//! on it and none of them is depended on back. Non-secret settings are flags
//! with an environment fallback; secrets come only from the environment or a
//! `<VARIABLE>_FILE` (see [`read::secret_from_env`]). A missing or invalid
//! setting is a [`ConfigError`] naming the variable; `main` prints it on one
//! line and exits 2.

pub mod cloud;
pub mod read;
mod url;

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::PossibleValue;
use clap::ValueEnum;

use crate::secrets::Secret;
use crate::units::format_duration;

pub use cloud::{AzureEndpoints, GcpSettings};
pub use url::secure_url;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorkerMode {
    /// A customer's own machine: jobs without a cloud identity use the
    /// host's ambient credentials.
    #[default]
    SelfHosted,
    /// An ECS Fargate task run by the platform: every user job must carry an
    /// identity, and ECS stops the task 120 s after SIGTERM.
    CloudHosted,
}

impl WorkerMode {
    /// The mode's name, on the command line and to Trellis.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerMode::SelfHosted => "self-hosted",
            WorkerMode::CloudHosted => "cloud-hosted",
        }
    }
}

impl ValueEnum for WorkerMode {
    fn value_variants<'a>() -> &'a [Self] {
        &[WorkerMode::SelfHosted, WorkerMode::CloudHosted]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.as_str()))
    }
}

/// Whether DEPLOY_WORKER deploys the image variant of the cloud provider
/// the new worker serves (`<tag>-aws`) instead of the all-clouds image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageVariants {
    /// Only for Tendril's own image repository, whose releases have them.
    #[default]
    Auto,
    On,
    Off,
}

impl ImageVariants {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageVariants::Auto => "auto",
            ImageVariants::On => "on",
            ImageVariants::Off => "off",
        }
    }
}

impl ValueEnum for ImageVariants {
    fn value_variants<'a>() -> &'a [Self] {
        &[ImageVariants::Auto, ImageVariants::On, ImageVariants::Off]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.as_str()))
    }
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
    /// The lease Tendril keeps beside a state in the bucket while its
    /// Terraform holds the lock.
    pub state_lease: LeaseSettings,
    pub terraform_provider_mirror: Option<PathBuf>,
    pub hooks: HookSettings,
    pub argocd: ArgoCdSettings,
    pub azure: AzureEndpoints,
    pub gcp: GcpSettings,
    pub infracost_api_key: Option<Secret>,
    /// The platform's secret for registering the workers DEPLOY_WORKER deploys.
    pub registration_secret: Option<Secret>,
    /// Which image DEPLOY_WORKER deploys: the provider's variant or all clouds'.
    pub worker_image_variants: ImageVariants,
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

/// The lease on a Terraform state in the bucket (see `jobs::state_lock`):
/// how long it lives without a renewal, how often its holder renews it,
/// and when a holder that cannot renew it stops its Terraform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSettings {
    /// Not renewed for this long, a lease's holder is dead.
    pub expiry: Duration,
    /// How often the holder renews it (the heartbeat interval).
    pub renew_every: Duration,
    /// The holder stops its Terraform this long after the last renewal that
    /// got through: half the expiry, or sooner when Terraform's grace and
    /// the stop cleanup after it (the `errored.tfstate` push) would
    /// otherwise run past nine tenths of it, so that nothing of a holder
    /// writes the state behind an expired lease.
    pub stop_after: Duration,
}

impl LeaseSettings {
    /// The variable that sets the expiry.
    pub const EXPIRY_VARIABLE: &'static str = "TENDRIL_LOCK_LEASE_EXPIRY (--lock-lease-expiry)";

    /// Checks that a holder can renew the lease twice before it would stop
    /// its Terraform (`terraform_grace` is Terraform's time after SIGINT,
    /// `stop_cleanup` the time after Terraform ended).
    pub fn new(
        expiry: Duration,
        renew_every: Duration,
        terraform_grace: Duration,
        stop_cleanup: Duration,
    ) -> Result<LeaseSettings, ConfigError> {
        let wind_down = terraform_grace + stop_cleanup;
        let fits = |expiry| Self::stop_after(expiry, wind_down) >= renew_every * 2;
        if fits(expiry) {
            return Ok(LeaseSettings {
                expiry,
                renew_every,
                stop_after: Self::stop_after(expiry, wind_down),
            });
        }
        let mut shortest = Duration::from_secs(expiry.as_secs() + 1);
        while !fits(shortest) {
            shortest += Duration::from_secs(1);
        }
        Err(ConfigError::new(
            Self::EXPIRY_VARIABLE,
            format!(
                "{} is too short: a worker that cannot renew its lease stops Terraform after half of it, sooner \
                 when Terraform's grace of {} (TENDRIL_TERRAFORM_GRACE) and the stop cleanup of {} \
                 (TENDRIL_STOP_CLEANUP_TIMEOUT) after it would run past nine tenths of it, and that must leave \
                 time for two renewals, one every {} (the heartbeat interval); make it at least {}",
                format_duration(expiry),
                format_duration(terraform_grace),
                format_duration(stop_cleanup),
                format_duration(renew_every),
                format_duration(shortest)
            ),
        ))
    }

    /// Half the expiry, or nine tenths less the `wind_down` if sooner, in
    /// whole seconds (as a log line says it).
    fn stop_after(expiry: Duration, wind_down: Duration) -> Duration {
        let stop_after = (expiry / 2).min((expiry * 9 / 10).saturating_sub(wind_down));
        Duration::from_secs(stop_after.as_secs())
    }
}

/// Where the Terraform hooks are and how long one may run.
#[derive(Debug, Clone)]
pub struct HookSettings {
    /// The hooks directory, absolute; none: no hooks.
    pub dir: Option<PathBuf>,
    pub timeout: Duration,
}

impl HookSettings {
    /// The longest `TENDRIL_HOOK_TIMEOUT` (the HCP Terraform agent's bound too).
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
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
