//! The flags that shape how a job runs, shared by `start` and `exec`, and
//! their resolution into [`JobSettings`], step by step: the mode first (it
//! picks some defaults), then the limits, the Terraform settings, the
//! hooks, the argo-cd chart, the cloud endpoints and the state bucket.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use super::ModeDefault;
use crate::settings::read::{
    absolute_dirs, duration, list, positive_duration, secret_from_env, size,
};
use crate::settings::{
    ArgoCdSettings, AzureEndpoints, ConfigError, GcpSettings, HookSettings, ImageVariants,
    JobSettings, LeaseSettings, StateStorage, WorkerMode,
};
use crate::units::format_duration;

/// Time Terraform gets between SIGINT and SIGKILL when a job is stopped.
const TERRAFORM_GRACE: ModeDefault = ModeDefault {
    self_hosted: "5m",
    cloud_hosted: "40s",
};
/// After a stopped Terraform ended: pushing errored.tfstate, the lock check.
const STOP_CLEANUP_TIMEOUT: ModeDefault = ModeDefault {
    self_hosted: "60s",
    cloud_hosted: "10s",
};

/// How often `exec`, which has no heartbeat, renews a lease on a state
/// (`start` renews with its heartbeat, whose default this is).
const LEASE_RENEWAL_WITHOUT_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(30);

/// Settings that shape how a job runs, shared by `start` and `exec`.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// cloud-hosted or self-hosted.
    // Text, not a clap value_enum: a bad GRAPE_WORKER_MODE is the one-line
    // ConfigError naming it, which `doctor` reports as a failed check.
    #[arg(long, env = "GRAPE_WORKER_MODE", default_value = WorkerMode::default().as_str())]
    pub mode: String,
    /// Root of job workspaces and of the outbox [default: $XDG_STATE_HOME/tendril
    /// or ~/.local/state/tendril].
    #[arg(long, env = "TENDRIL_WORK_DIR", value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Where the Terraform and chart templates are.
    #[arg(
        long,
        env = "TENDRIL_TEMPLATES_DIR",
        value_name = "DIR",
        default_value = "templates"
    )]
    pub templates_dir: PathBuf,
    /// A job running longer than this is cancelled and fails.
    #[arg(
        long,
        env = "TENDRIL_JOB_TIMEOUT",
        value_name = "DURATION",
        default_value = "2h"
    )]
    pub job_timeout: String,
    /// Time a tool gets between SIGINT and SIGKILL when a job is cancelled.
    #[arg(
        long,
        env = "TENDRIL_CANCEL_GRACE",
        value_name = "DURATION",
        default_value = "30s"
    )]
    pub cancel_grace: String,
    /// Most log a job may send; past it a truncation line is sent and output
    /// is dropped.
    #[arg(
        long,
        env = "TENDRIL_LOG_LIMIT",
        value_name = "SIZE",
        default_value = "100MiB"
    )]
    pub log_limit: String,
    /// A job silent this long gets a "still running" line.
    #[arg(
        long,
        env = "TENDRIL_PROGRESS_INTERVAL",
        value_name = "DURATION",
        default_value = "60s"
    )]
    pub progress_interval: String,
    /// Extra environment variable names passed to every tool (comma-separated).
    #[arg(long, env = "TENDRIL_PASS_ENV", value_name = "NAMES")]
    pub pass_env: Option<String>,
    /// AWS regions to discover (comma-separated) [default: every enabled region].
    #[arg(long, env = "TENDRIL_AWS_REGIONS", value_name = "REGIONS")]
    pub aws_regions: Option<String>,
    /// How many regions are discovered at once.
    #[arg(
        long,
        env = "TENDRIL_DISCOVERY_CONCURRENCY",
        value_name = "N",
        default_value = "4"
    )]
    pub discovery_concurrency: String,
    /// Keep Terraform state in this directory on this machine when no
    /// SUPABASE_S3_ENDPOINT is set (`start`: only when set; `exec`
    /// [default: $XDG_DATA_HOME/tendril/state or ~/.local/share/tendril/state]).
    #[arg(long, env = "TENDRIL_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[arg(
        long,
        env = "TENDRIL_TERRAFORM_GRACE",
        value_name = "DURATION",
        help = TERRAFORM_GRACE.help(
            "Time Terraform gets between SIGINT and SIGKILL when a job is stopped \
             (it writes state and releases its lock)"
        )
    )]
    pub terraform_grace: Option<String>,
    /// A Terraform provider mirror directory (`terraform providers mirror`):
    /// the providers it holds are installed from it alone, so a registry
    /// outage cannot fail them; others come from the registry [default: none].
    #[arg(long, env = "TENDRIL_TERRAFORM_PROVIDER_MIRROR", value_name = "DIR")]
    pub terraform_provider_mirror: Option<PathBuf>,
    /// How long Terraform waits for a state lock held by another run.
    #[arg(
        long,
        env = "TENDRIL_TERRAFORM_LOCK_TIMEOUT",
        value_name = "DURATION",
        default_value = "5m"
    )]
    pub terraform_lock_timeout: String,
    /// While Terraform holds a state's lock in the bucket, Tendril keeps a
    /// lease beside it, renewed with the heartbeat; a lease not renewed for
    /// this long shows its holder is dead, and another job releases the lock
    /// it held.
    #[arg(
        long,
        env = "TENDRIL_LOCK_LEASE_EXPIRY",
        value_name = "DURATION",
        default_value = "10m"
    )]
    pub lock_lease_expiry: String,
    /// A directory of Terraform hooks: the executables terraform-pre-plan,
    /// terraform-post-plan, terraform-pre-apply and terraform-post-apply in
    /// it run around each plan and apply of a job [default: none].
    #[arg(long, env = "TENDRIL_HOOKS_DIR", value_name = "DIR")]
    pub hooks_dir: Option<PathBuf>,
    /// A hook running longer than this is stopped and fails its job; at
    /// most 10m.
    #[arg(
        long,
        env = "TENDRIL_HOOK_TIMEOUT",
        value_name = "DURATION",
        default_value = "60s"
    )]
    pub hook_timeout: String,
    /// The argo-cd Helm chart: a name in the repository below, or a path to
    /// a chart directory or archive.
    #[arg(
        long,
        env = "TENDRIL_ARGOCD_CHART",
        value_name = "CHART",
        default_value = "argo-cd"
    )]
    pub argocd_chart: String,
    /// The Helm repository of the argo-cd chart.
    #[arg(
        long,
        env = "TENDRIL_ARGOCD_CHART_REPOSITORY",
        value_name = "URL",
        default_value = "https://argoproj.github.io/argo-helm"
    )]
    pub argocd_chart_repository: String,
    /// The argo-cd chart version.
    #[arg(
        long,
        env = "TENDRIL_ARGOCD_CHART_VERSION",
        value_name = "VERSION",
        default_value = "7.7.11"
    )]
    pub argocd_chart_version: String,
    /// How long the ArgoCD install may take to become ready.
    #[arg(
        long,
        env = "TENDRIL_ARGOCD_TIMEOUT",
        value_name = "DURATION",
        default_value = "10m"
    )]
    pub argocd_timeout: String,
    /// Compute Engine API.
    #[arg(
        long,
        env = "TENDRIL_GCP_COMPUTE_ENDPOINT",
        value_name = "URL",
        default_value = "https://compute.googleapis.com/compute/v1"
    )]
    pub gcp_compute_endpoint: String,
    /// Cloud DNS API.
    #[arg(
        long,
        env = "TENDRIL_GCP_DNS_ENDPOINT",
        value_name = "URL",
        default_value = "https://dns.googleapis.com/dns/v1"
    )]
    pub gcp_dns_endpoint: String,
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
    /// Microsoft Entra's authority host.
    #[arg(
        long,
        env = "TENDRIL_AZURE_AUTHORITY_HOST",
        value_name = "URL",
        default_value = "https://login.microsoftonline.com"
    )]
    pub azure_authority_host: String,
    /// Azure Resource Manager.
    #[arg(
        long,
        env = "TENDRIL_AZURE_RESOURCE_MANAGER",
        value_name = "URL",
        default_value = "https://management.azure.com"
    )]
    pub azure_resource_manager: String,
    #[arg(
        long,
        env = "TENDRIL_STOP_CLEANUP_TIMEOUT",
        value_name = "DURATION",
        help = STOP_CLEANUP_TIMEOUT.help(
            "After a stopped Terraform ended: the most time for pushing its \
             errored.tfstate and checking for a lock it left"
        )
    )]
    pub stop_cleanup_timeout: Option<String>,
    /// No job is claimed while the work dir has less free space than this.
    #[arg(
        long,
        env = "TENDRIL_MIN_FREE_SPACE",
        value_name = "SIZE",
        default_value = "512MiB"
    )]
    pub min_free_space: String,
    /// S3-compatible endpoint of the Terraform state bucket.
    #[arg(long, env = "SUPABASE_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// Region of the Terraform state bucket.
    #[arg(long, env = "SUPABASE_S3_REGION", value_name = "REGION")]
    pub s3_region: Option<String>,
    /// DEPLOY_WORKER deploys the image variant of the provider the new
    /// worker serves (`<tag>-aws`, only that cloud's tools): auto (only for
    /// Tendril's own image repository, whose releases have them), on or off.
    #[arg(
        long,
        env = "TENDRIL_WORKER_IMAGE_VARIANTS",
        value_name = "WHEN",
        default_value = "auto"
    )]
    pub worker_image_variants: String,
}

impl JobArgs {
    /// Resolves the job settings, with the defaults of the worker's mode,
    /// for `exec`, which has no heartbeat to renew leases with.
    pub fn resolve(&self) -> Result<JobSettings, ConfigError> {
        self.resolve_renewing_leases_every(LEASE_RENEWAL_WITHOUT_HEARTBEAT)
    }

    /// Resolves the job settings, leases on states renewed every
    /// `renew_every` (a worker's heartbeat interval).
    pub fn resolve_renewing_leases_every(
        &self,
        renew_every: std::time::Duration,
    ) -> Result<JobSettings, ConfigError> {
        let mode = self.mode()?;
        let log_limit = size("TENDRIL_LOG_LIMIT (--log-limit)", &self.log_limit)?;
        let discovery_concurrency = self.discovery_concurrency()?;
        let terraform_grace = duration(
            "TENDRIL_TERRAFORM_GRACE (--terraform-grace)",
            self.terraform_grace
                .as_deref()
                .unwrap_or(TERRAFORM_GRACE.of(mode)),
        )?;
        let stop_cleanup = positive_duration(
            "TENDRIL_STOP_CLEANUP_TIMEOUT (--stop-cleanup-timeout)",
            self.stop_cleanup_timeout
                .as_deref()
                .unwrap_or(STOP_CLEANUP_TIMEOUT.of(mode)),
        )?;
        Ok(JobSettings {
            mode,
            work_dir: self
                .work_dir
                .clone()
                .unwrap_or_else(crate::work_dir::default_work_dir),
            min_free_space: size(
                "TENDRIL_MIN_FREE_SPACE (--min-free-space)",
                &self.min_free_space,
            )?,
            templates_dir: self.templates_dir.clone(),
            job_timeout: positive_duration(
                "TENDRIL_JOB_TIMEOUT (--job-timeout)",
                &self.job_timeout,
            )?,
            cancel_grace: duration("TENDRIL_CANCEL_GRACE (--cancel-grace)", &self.cancel_grace)?,
            log_limit,
            progress_interval: positive_duration(
                "TENDRIL_PROGRESS_INTERVAL (--progress-interval)",
                &self.progress_interval,
            )?,
            pass_env: list(&self.pass_env),
            aws_regions: list(&self.aws_regions),
            discovery_concurrency,
            state_storage: self.state_storage()?,
            state_dir: self.state_dir.clone(),
            terraform_grace,
            stop_cleanup,
            terraform_lock_timeout: duration(
                "TENDRIL_TERRAFORM_LOCK_TIMEOUT (--terraform-lock-timeout)",
                &self.terraform_lock_timeout,
            )?,
            state_lease: LeaseSettings::new(
                positive_duration(LeaseSettings::EXPIRY_VARIABLE, &self.lock_lease_expiry)?,
                renew_every,
                terraform_grace,
                stop_cleanup,
            )?,
            terraform_provider_mirror: self.terraform_provider_mirror.clone(),
            hooks: self.hooks()?,
            argocd: self.argocd()?,
            azure: AzureEndpoints {
                authority: self.azure_authority_host.clone(),
                resource_manager: self.azure_resource_manager.clone(),
            },
            gcp: self.gcp()?,
            infracost_api_key: secret_from_env("INFRACOST_API_KEY")?,
            registration_secret: secret_from_env("TENDRIL_REGISTRATION_SECRET")?,
            worker_image_variants: self.worker_image_variants()?,
        })
    }

    /// The worker's mode; blank is the default.
    fn mode(&self) -> Result<WorkerMode, ConfigError> {
        match self.mode.trim() {
            "" => Ok(WorkerMode::default()),
            text => <WorkerMode as ValueEnum>::from_str(text, false).map_err(|_| {
                ConfigError::new(
                    "GRAPE_WORKER_MODE (--mode)",
                    format!("'{text}' is not a mode (use cloud-hosted or self-hosted)"),
                )
            }),
        }
    }

    fn worker_image_variants(&self) -> Result<ImageVariants, ConfigError> {
        let text = self.worker_image_variants.trim();
        <ImageVariants as ValueEnum>::from_str(text, true).map_err(|_| {
            ConfigError::new(
                "TENDRIL_WORKER_IMAGE_VARIANTS (--worker-image-variants)",
                format!("'{text}' is not auto, on or off"),
            )
        })
    }

    fn discovery_concurrency(&self) -> Result<usize, ConfigError> {
        let text = &self.discovery_concurrency;
        text.trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                ConfigError::new(
                    "TENDRIL_DISCOVERY_CONCURRENCY (--discovery-concurrency)",
                    format!("'{text}' is not a whole number above zero"),
                )
            })
    }

    /// `TENDRIL_HOOKS_DIR` must be a directory (an operator who names one
    /// wants to hear about a typo at start-up, not find no hook ran), and
    /// `TENDRIL_HOOK_TIMEOUT` above zero and at most 10 minutes.
    fn hooks(&self) -> Result<HookSettings, ConfigError> {
        const TIMEOUT: &str = "TENDRIL_HOOK_TIMEOUT (--hook-timeout)";
        let timeout = positive_duration(TIMEOUT, &self.hook_timeout)?;
        if timeout > HookSettings::MAX_TIMEOUT {
            return Err(ConfigError::new(
                TIMEOUT,
                format!(
                    "{} is longer than the {} a hook may take",
                    format_duration(timeout),
                    format_duration(HookSettings::MAX_TIMEOUT)
                ),
            ));
        }
        let dir = match &self.hooks_dir {
            None => None,
            Some(dir) => Some(hooks_dir(dir)?),
        };
        Ok(HookSettings { dir, timeout })
    }

    fn argocd(&self) -> Result<ArgoCdSettings, ConfigError> {
        Ok(ArgoCdSettings {
            chart: self.argocd_chart.clone(),
            repository: self.argocd_chart_repository.clone(),
            version: self.argocd_chart_version.clone(),
            timeout: positive_duration(
                "TENDRIL_ARGOCD_TIMEOUT (--argocd-timeout)",
                &self.argocd_timeout,
            )?,
        })
    }

    fn gcp(&self) -> Result<GcpSettings, ConfigError> {
        Ok(GcpSettings {
            compute: self.gcp_compute_endpoint.clone(),
            dns: self.gcp_dns_endpoint.clone(),
            extra_allowed_hosts: list(&self.gcp_allowed_hosts),
            credential_dirs: absolute_dirs(
                "TENDRIL_GCP_CREDENTIAL_DIRS (--gcp-credential-dirs)",
                &self.gcp_credential_dirs,
            )?,
            credential_url_hosts: list(&self.gcp_credential_url_hosts),
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

fn hooks_dir(dir: &Path) -> Result<PathBuf, ConfigError> {
    let problem = |text: String| ConfigError::new("TENDRIL_HOOKS_DIR (--hooks-dir)", text);
    let absolute = dir
        .canonicalize()
        .map_err(|error| problem(format!("cannot use {}: {error}", dir.display())))?;
    if !absolute.is_dir() {
        return Err(problem(format!("{} is not a directory", dir.display())));
    }
    Ok(absolute)
}

/// The local state directory of `tendril exec`'s embedded default.
pub fn default_state_dir() -> PathBuf {
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir);
    data.join("tendril").join("state")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::*;
    use crate::secrets::Secret;
    use crate::settings::{shutdown_budget_warning, AgentSettings};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        job: JobArgs,
    }

    /// The job flags as the command line gives them, with `flags` added.
    fn parse(flags: &[&str]) -> JobArgs {
        Cli::parse_from(std::iter::once("test").chain(flags.iter().copied())).job
    }

    fn job_args(mode: Option<&str>) -> JobArgs {
        let mut flags = vec!["--pass-env", "FOO, BAR,,"];
        flags.extend(mode.map(|mode| ["--mode", mode]).into_iter().flatten());
        parse(&flags)
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

    #[test]
    fn a_lease_leaves_time_for_two_renewals_before_terraform_is_stopped() {
        let seconds = Duration::from_secs;
        let job = parse(&[]).resolve().unwrap();
        assert_eq!(
            job.state_lease,
            LeaseSettings {
                expiry: seconds(600),
                renew_every: seconds(30),
                // Half the expiry, sooner when the grace (5m self-hosted)
                // and the stop cleanup (1m) would run past nine tenths of it.
                stop_after: seconds(180),
            }
        );
        let cloud = parse(&["--mode", "cloud-hosted"]).resolve().unwrap();
        assert_eq!(cloud.state_lease.stop_after, seconds(300));
        let short = [
            "--lock-lease-expiry",
            "15s",
            "--terraform-grace",
            "5s",
            "--stop-cleanup-timeout",
            "2s",
        ];
        let worker = parse(&short)
            .resolve_renewing_leases_every(seconds(1))
            .unwrap();
        assert_eq!(worker.state_lease.stop_after, seconds(6));
        let error = parse(&["--lock-lease-expiry", "15s", "--terraform-grace", "5s"])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("TENDRIL_LOCK_LEASE_EXPIRY (--lock-lease-expiry): 15s is too short")
                && error.contains(
                    "Terraform's grace of 5s (TENDRIL_TERRAFORM_GRACE) and the stop cleanup of 1m \
                     (TENDRIL_STOP_CLEANUP_TIMEOUT)"
                )
                && error
                    .ends_with("one every 30s (the heartbeat interval); make it at least 2m19s"),
            "{error}"
        );
        let grace = parse(&["--terraform-grace", "10m"]).resolve().unwrap_err();
        assert!(
            grace.to_string().ends_with("make it at least 13m20s"),
            "{grace}"
        );
        assert!(parse(&["--lock-lease-expiry", "0s"]).resolve().is_err());
    }

    /// Accepted before the cleanup counted: a worker partitioned from the
    /// bucket right after a renewal stopped Terraform 12s after it, and its
    /// 20s grace and 10s cleanup ran past the 36s expiry.
    #[test]
    fn a_lease_expiry_shorter_than_the_stop_its_grace_and_cleanup_is_refused() {
        let settings = parse(&[
            "--mode",
            "cloud-hosted",
            "--terraform-grace",
            "20s",
            "--lock-lease-expiry",
            "36s",
        ]);
        let error = settings
            .resolve_renewing_leases_every(Duration::from_secs(5))
            .unwrap_err()
            .to_string();
        assert!(error.ends_with("make it at least 45s"), "{error}");
        let fits = parse(&[
            "--mode",
            "cloud-hosted",
            "--terraform-grace",
            "20s",
            "--lock-lease-expiry",
            "45s",
        ])
        .resolve_renewing_leases_every(Duration::from_secs(5))
        .unwrap()
        .state_lease;
        let writes_end = fits.stop_after + Duration::from_secs(20 + 10);
        assert!(writes_end + fits.expiry / 10 <= fits.expiry, "{fits:?}");
    }

    #[test]
    fn the_timeout_is_above_zero_and_at_most_ten_minutes() {
        let timeout = |text: &str| parse(&["--hook-timeout", text]).hooks();
        assert_eq!(timeout("10m").unwrap().timeout, HookSettings::MAX_TIMEOUT);
        assert_eq!(parse(&[]).hooks().unwrap().timeout, Duration::from_secs(60));
        let error = timeout("601s").unwrap_err().to_string();
        assert_eq!(
            error,
            "TENDRIL_HOOK_TIMEOUT (--hook-timeout): 10m1s is longer than the 10m a hook may take"
        );
        assert!(timeout("0s").is_err());
    }

    #[test]
    fn the_hooks_dir_must_be_an_existing_directory() {
        let dir = crate::scratch::dir("hooks-dir");
        let hooks = |dir: &Path| parse(&["--hooks-dir", dir.to_str().unwrap()]).hooks();
        let resolved = hooks(&dir).unwrap();
        assert_eq!(resolved.dir, Some(dir.canonicalize().unwrap()));
        let missing = dir.join("missing");
        let error = hooks(&missing).unwrap_err().to_string();
        assert!(
            error.starts_with("TENDRIL_HOOKS_DIR (--hooks-dir): cannot use ")
                && error.contains("missing"),
            "{error}"
        );
        let file = dir.join("file");
        std::fs::write(&file, "").unwrap();
        let error = hooks(&file).unwrap_err().to_string();
        assert!(error.ends_with("file is not a directory"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
