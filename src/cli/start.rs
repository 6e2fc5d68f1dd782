//! `tendril start`'s own flags (how the worker talks to Trellis, when it
//! exits) and their resolution into [`AgentSettings`]; the job flags it
//! shares with `exec` are [`JobArgs`].

use std::time::Duration;

use clap::Args;

use super::{JobArgs, ModeDefault};
use crate::settings::read::{duration, positive_duration, secret_from_env, size};
use crate::settings::{AgentSettings, ConfigError, JobSettings, WorkerMode};

/// How long the first SIGTERM waits for the running job.
const DRAIN_GRACE: ModeDefault = ModeDefault {
    self_hosted: "10m",
    cloud_hosted: "50s",
};

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Base URL of Trellis (falls back to GRAPE_WEB_ORIGIN).
    #[arg(long, env = "TRELLIS_URL", hide_env_values = true)]
    pub trellis_url: Option<String>,
    /// This worker's id, assigned at registration. The token is read from
    /// GRAPE_WORKER_TOKEN or the file named by GRAPE_WORKER_TOKEN_FILE.
    #[arg(long, env = "GRAPE_WORKER_ID", hide_env_values = true)]
    pub worker_id: Option<String>,
    /// How often to ask for a job when idle.
    #[arg(
        long,
        env = "TENDRIL_POLL_INTERVAL",
        value_name = "DURATION",
        default_value = "10s"
    )]
    pub poll_interval: String,
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
    /// How often to send a heartbeat, and to check a running job's ownership.
    #[arg(
        long,
        env = "TENDRIL_HEARTBEAT_INTERVAL",
        value_name = "DURATION",
        default_value = "30s"
    )]
    pub heartbeat_interval: String,
    #[arg(
        long,
        env = "TENDRIL_DRAIN_GRACE",
        value_name = "DURATION",
        help = DRAIN_GRACE.help("How long the first SIGTERM waits for the running job")
    )]
    pub drain_grace: Option<String>,
    /// The most time spent delivering the last statuses, logs and the
    /// OFFLINE heartbeat when Trellis is unreachable at exit.
    #[arg(
        long,
        env = "TENDRIL_FINAL_DELIVERY_TIMEOUT",
        value_name = "DURATION",
        default_value = "10s"
    )]
    pub final_delivery_timeout: String,
    /// Timeout of one request to Trellis.
    #[arg(
        long,
        env = "TENDRIL_REQUEST_TIMEOUT",
        value_name = "DURATION",
        default_value = "30s"
    )]
    pub request_timeout: String,
    /// Timeout of a plan artifact upload or download.
    #[arg(
        long,
        env = "TENDRIL_ARTIFACT_TIMEOUT",
        value_name = "DURATION",
        default_value = "10m"
    )]
    pub artifact_timeout: String,
    /// The largest claimed job or job row read from Trellis.
    #[arg(
        long,
        env = "TENDRIL_MAX_JOB_SIZE",
        value_name = "SIZE",
        default_value = "32MiB"
    )]
    pub max_job_size: String,
    /// Longest wait between two retries of a request to Trellis.
    #[arg(
        long,
        env = "TENDRIL_RETRY_MAX_DELAY",
        value_name = "DURATION",
        default_value = "30s"
    )]
    pub retry_max_delay: String,
    /// Allow plain http:// to a host other than loopback (never in production).
    #[arg(long, env = "TENDRIL_ALLOW_INSECURE_HTTP")]
    pub allow_insecure_http: bool,
    #[command(flatten)]
    pub job: JobArgs,
}

impl StartArgs {
    /// Resolves the job settings, then the worker's with the job's mode
    /// (self-hosted when the mode itself is invalid); both results are
    /// kept, so `doctor` can report every problem.
    pub fn resolve(
        &self,
    ) -> (
        Result<JobSettings, ConfigError>,
        Result<AgentSettings, ConfigError>,
    ) {
        // A worker renews its leases on Terraform states with its heartbeat
        // (a bad heartbeat interval is the worker settings' error).
        let job = match self.heartbeat_interval() {
            Ok(heartbeat) => self.job.resolve_renewing_leases_every(heartbeat),
            Err(_) => self.job.resolve(),
        };
        let mode = job.as_ref().map_or(WorkerMode::default(), |job| job.mode);
        (job, self.agent(mode))
    }

    fn heartbeat_interval(&self) -> Result<Duration, ConfigError> {
        positive_duration(
            "TENDRIL_HEARTBEAT_INTERVAL (--heartbeat-interval)",
            &self.heartbeat_interval,
        )
    }

    /// The worker's settings; `mode` picks the drain default.
    fn agent(&self, mode: WorkerMode) -> Result<AgentSettings, ConfigError> {
        Ok(AgentSettings {
            trellis_url: self.trellis_url()?,
            worker_id: self.worker_id()?,
            worker_token: secret_from_env("GRAPE_WORKER_TOKEN")?.ok_or_else(|| {
                ConfigError::new(
                    "GRAPE_WORKER_TOKEN",
                    "is not set (set it, or GRAPE_WORKER_TOKEN_FILE, to the worker's token)",
                )
            })?,
            poll_interval: positive_duration(
                "TENDRIL_POLL_INTERVAL (--poll-interval)",
                &self.poll_interval,
            )?,
            heartbeat_interval: self.heartbeat_interval()?,
            drain_grace: duration(
                "TENDRIL_DRAIN_GRACE (--drain-grace)",
                self.drain_grace.as_deref().unwrap_or(DRAIN_GRACE.of(mode)),
            )?,
            final_delivery_timeout: positive_duration(
                "TENDRIL_FINAL_DELIVERY_TIMEOUT (--final-delivery-timeout)",
                &self.final_delivery_timeout,
            )?,
            request_timeout: positive_duration(
                "TENDRIL_REQUEST_TIMEOUT (--request-timeout)",
                &self.request_timeout,
            )?,
            artifact_timeout: positive_duration(
                "TENDRIL_ARTIFACT_TIMEOUT (--artifact-timeout)",
                &self.artifact_timeout,
            )?,
            retry_max_delay: positive_duration(
                "TENDRIL_RETRY_MAX_DELAY (--retry-max-delay)",
                &self.retry_max_delay,
            )?,
            allow_insecure_http: self.allow_insecure_http,
            once: self.once,
            exit_after_idle: self
                .exit_after_idle
                .as_deref()
                .map(|text| positive_duration("TENDRIL_EXIT_AFTER_IDLE (--exit-after-idle)", text))
                .transpose()?,
            health_addr: self.health_addr()?,
            max_job_size: size("TENDRIL_MAX_JOB_SIZE (--max-job-size)", &self.max_job_size)?
                as usize,
        })
    }

    fn trellis_url(&self) -> Result<String, ConfigError> {
        self.trellis_url
            .clone()
            .or_else(|| std::env::var("GRAPE_WEB_ORIGIN").ok())
            .map(|url| url.trim().trim_end_matches('/').to_string())
            .filter(|url| !url.is_empty())
            .ok_or_else(|| {
                ConfigError::new(
                    "TRELLIS_URL (--trellis-url)",
                    "is not set (the base URL of Trellis, e.g. https://trellis.example.com)",
                )
            })
    }

    fn worker_id(&self) -> Result<String, ConfigError> {
        self.worker_id
            .clone()
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                ConfigError::new(
                    "GRAPE_WORKER_ID (--worker-id)",
                    "is not set (the id Trellis gave this worker at registration)",
                )
            })
    }

    /// The health listener's address, checked to have a port; none: off.
    fn health_addr(&self) -> Result<Option<String>, ConfigError> {
        self.health_addr
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
                            format!(
                                "'{address}' is not an address with a port (e.g. 127.0.0.1:9460)"
                            ),
                        )
                    })
            })
            .transpose()
    }
}
