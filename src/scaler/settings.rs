//! The scaler's settings: where the job table is, which ECS services form
//! the pool, how long a worker may idle and a task may take to start, and
//! how a Function URL call proves it may start a full pass. Secrets (the service-role key, the URL's shared
//! secret) come from the environment, a `<VARIABLE>_FILE`, or a Secrets
//! Manager secret named by `<VARIABLE>_SECRET_ARN`; never from a flag.

use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, ValueEnum};
use serde::Deserialize;
use url::Url;

use crate::secrets::Secret;
use crate::settings::read::{list, positive_duration, secret_from_env};
use crate::settings::{secure_url, ConfigError};

/// The header a Function URL call carries the shared secret in.
pub const SECRET_HEADER: &str = "x-tendril-scaler-secret";

#[derive(Debug, Args)]
pub struct ScalerArgs {
    /// Run one scaling pass and exit (for cron); exit 1 if it had errors.
    /// The interval is then not used.
    #[arg(long)]
    pub once: bool,
    /// Time between two passes when not on Lambda and not --once.
    #[arg(
        long,
        env = "TENDRIL_SCALER_INTERVAL",
        value_name = "DURATION",
        default_value = "60s"
    )]
    pub interval: String,
    /// Base URL of the Supabase project whose provision_jobs are counted.
    /// The service-role key is read from SUPABASE_SERVICE_ROLE_KEY, the file
    /// named by SUPABASE_SERVICE_ROLE_KEY_FILE, or the Secrets Manager secret
    /// named by SUPABASE_SERVICE_ROLE_KEY_SECRET_ARN.
    #[arg(long, env = "SUPABASE_URL")]
    pub supabase_url: Option<String>,
    /// Regions searched for ECS services tagged tendril:pool=true
    /// (comma-separated) [default: AWS_REGION].
    #[arg(long, env = "TENDRIL_SCALER_REGIONS", value_name = "REGIONS")]
    pub regions: Option<String>,
    /// More pool services, as JSON:
    /// [{"region": ..., "cluster": ..., "service": ..., "worker_id": ...}]
    /// (worker_id may be left to the service's tendril:worker-id tag).
    #[arg(long, env = "WORKERS", value_name = "JSON")]
    pub workers: Option<String>,
    /// How long a worker stays idle (since its service's tendril:idle-since
    /// tag) before its service is scaled to 0.
    #[arg(
        long,
        env = "TENDRIL_SCALER_IDLE_TIME",
        value_name = "DURATION",
        default_value = "5m"
    )]
    pub idle_time: String,
    /// How long a service may want a task without running one (since its
    /// tendril:starting-since tag or its newest deployment) before it is
    /// "not starting": it no longer counts as capacity for waiting jobs and
    /// is reported.
    #[arg(
        long,
        env = "TENDRIL_SCALER_STARTUP_BUDGET",
        value_name = "DURATION",
        default_value = "5m"
    )]
    pub startup_budget: String,
    /// Call rpc/recover_stale_jobs before counting, in every full pass
    /// (`--recover-stale-jobs false` or TENDRIL_SCALER_RECOVER_STALE_JOBS=false
    /// turns it off).
    #[arg(
        long,
        env = "TENDRIL_SCALER_RECOVER_STALE_JOBS",
        value_name = "BOOL",
        num_args = 0..=1,
        default_value_t = true,
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = BoolishValueParser::new(),
    )]
    pub recover_stale_jobs: bool,
    /// On Lambda: a Function URL call without the secret header (Trellis's
    /// bare ping) runs a scale-up-only pass at most once in this time; a
    /// ping within it answers 202 and runs none.
    #[arg(
        long,
        env = "TENDRIL_SCALER_PING_INTERVAL",
        value_name = "DURATION",
        default_value = "10s"
    )]
    pub ping_interval: String,
    /// How a Function URL call is authenticated: `secret` (with an
    /// x-tendril-scaler-secret header equal to TENDRIL_SCALER_SECRET it runs
    /// a full pass, without the header a scale-up-only pass, with a wrong
    /// one nothing) or `aws-iam` (the URL itself uses AWS_IAM auth and
    /// every call runs a full pass).
    #[arg(
        long,
        env = "TENDRIL_SCALER_URL_AUTH",
        value_enum,
        default_value_t = UrlAuthMode::Secret
    )]
    pub url_auth: UrlAuthMode,
    /// Allow plain http:// to a Supabase host other than loopback.
    #[arg(long, env = "TENDRIL_ALLOW_INSECURE_HTTP")]
    pub allow_insecure_http: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UrlAuthMode {
    Secret,
    AwsIam,
}

/// How an invocation through the Function URL is let in.
#[derive(Debug, Clone)]
pub enum UrlAuth {
    /// A call with this secret in the header runs a full pass, one without
    /// the header a scale-up-only pass, one with another value nothing.
    SharedSecret(Secret),
    /// AWS checked the caller's signature before invoking.
    AwsIam,
}

/// One pool service named in `WORKERS`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListedService {
    pub region: String,
    pub cluster: String,
    pub service: String,
    #[serde(default)]
    pub worker_id: Option<String>,
}

/// The scaler's settings, resolved and checked.
#[derive(Debug, Clone)]
pub struct ScalerSettings {
    pub supabase_url: Url,
    pub service_role_key: Secret,
    pub regions: Vec<String>,
    pub listed: Vec<ListedService>,
    pub idle_time: Duration,
    pub startup_budget: Duration,
    pub recover_stale_jobs: bool,
    pub interval: Duration,
    pub ping_interval: Duration,
}

impl ScalerArgs {
    /// Resolves the settings; reads secrets from Secrets Manager if named.
    pub async fn resolve(&self) -> Result<ScalerSettings, ConfigError> {
        let supabase_url = self
            .supabase_url
            .as_deref()
            .filter(|url| !url.trim().is_empty())
            .ok_or_else(|| ConfigError::new("SUPABASE_URL (--supabase-url)", "is required"))?;
        let supabase_url = secure_url(supabase_url.trim(), self.allow_insecure_http)
            .map_err(|problem| ConfigError::new("SUPABASE_URL (--supabase-url)", problem))?;
        let service_role_key = secret("SUPABASE_SERVICE_ROLE_KEY")
            .await?
            .ok_or_else(|| {
                ConfigError::new(
                    "SUPABASE_SERVICE_ROLE_KEY",
                    "is required (or SUPABASE_SERVICE_ROLE_KEY_FILE, or SUPABASE_SERVICE_ROLE_KEY_SECRET_ARN)",
                )
            })?;
        let mut regions = list(&self.regions);
        if regions.is_empty() {
            regions.push(crate::cloud::aws::platform_region().await);
        }
        Ok(ScalerSettings {
            supabase_url,
            service_role_key,
            regions,
            listed: parse_workers(self.workers.as_deref())?,
            idle_time: positive_duration(
                "TENDRIL_SCALER_IDLE_TIME (--idle-time)",
                &self.idle_time,
            )?,
            startup_budget: positive_duration(
                "TENDRIL_SCALER_STARTUP_BUDGET (--startup-budget)",
                &self.startup_budget,
            )?,
            recover_stale_jobs: self.recover_stale_jobs,
            interval: positive_duration("TENDRIL_SCALER_INTERVAL (--interval)", &self.interval)?,
            ping_interval: positive_duration(
                "TENDRIL_SCALER_PING_INTERVAL (--ping-interval)",
                &self.ping_interval,
            )?,
        })
    }

    /// How Function URL calls are let in (needed on Lambda only).
    pub async fn url_auth(&self) -> Result<UrlAuth, ConfigError> {
        match self.url_auth {
            UrlAuthMode::AwsIam => Ok(UrlAuth::AwsIam),
            UrlAuthMode::Secret => match secret("TENDRIL_SCALER_SECRET").await? {
                Some(shared) => Ok(UrlAuth::SharedSecret(shared)),
                None => Err(ConfigError::new(
                    "TENDRIL_SCALER_SECRET",
                    "is required (or its _FILE or _SECRET_ARN) unless TENDRIL_SCALER_URL_AUTH=aws-iam",
                )),
            },
        }
    }
}

/// A secret from `NAME`, `NAME_FILE`, or the Secrets Manager secret whose
/// ARN is in `NAME_SECRET_ARN`.
async fn secret(name: &str) -> Result<Option<Secret>, ConfigError> {
    if let Some(value) = secret_from_env(name)? {
        return Ok(Some(value));
    }
    let arn_variable = format!("{name}_SECRET_ARN");
    match std::env::var(&arn_variable) {
        Ok(arn) if !arn.trim().is_empty() => crate::cloud::aws::secrets_manager_value(arn.trim())
            .await
            .map(Some)
            .map_err(|e| ConfigError::new(&arn_variable, e.to_string())),
        _ => Ok(None),
    }
}

fn parse_workers(text: Option<&str>) -> Result<Vec<ListedService>, ConfigError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(Vec::new());
    };
    let listed: Vec<ListedService> = serde_json::from_str(text).map_err(|e| {
        ConfigError::new(
            "WORKERS (--workers)",
            format!("is not a JSON list of {{region, cluster, service, worker_id?}}: {e}"),
        )
    })?;
    if let Some(blank) = listed.iter().find(|s| {
        [&s.region, &s.cluster, &s.service]
            .iter()
            .any(|f| f.trim().is_empty())
    }) {
        return Err(ConfigError::new(
            "WORKERS (--workers)",
            format!("an entry has an empty region, cluster or service: {blank:?}"),
        ));
    }
    Ok(listed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ScalerArgs,
    }

    fn recovers(flags: &[&str]) -> bool {
        let argv = std::iter::once("scaler").chain(flags.iter().copied());
        Cli::try_parse_from(argv).unwrap().args.recover_stale_jobs
    }

    #[test]
    fn stale_jobs_are_recovered_unless_turned_off() {
        assert!(recovers(&[]));
        assert!(recovers(&["--recover-stale-jobs"]));
        assert!(recovers(&["--recover-stale-jobs", "--once"]));
        assert!(recovers(&["--recover-stale-jobs=yes"]));
        assert!(!recovers(&["--recover-stale-jobs", "false"]));
        assert!(!recovers(&["--recover-stale-jobs=0"]));
        assert!(Cli::try_parse_from(["scaler", "--recover-stale-jobs=maybe"]).is_err());
    }

    #[test]
    fn workers_are_a_strict_json_list() {
        let listed = parse_workers(Some(
            r#"[{"region": "eu-west-1", "cluster": "c", "service": "s", "worker_id": "w"},
                {"region": "eu-central-1", "cluster": "c2", "service": "s2"}]"#,
        ))
        .unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].worker_id.as_deref(), Some("w"));
        assert_eq!(listed[1].worker_id, None);
        assert!(parse_workers(None).unwrap().is_empty());
        let typo = parse_workers(Some(r#"[{"region": "r", "cluster": "c", "servce": "s"}]"#));
        assert!(typo.unwrap_err().to_string().starts_with("WORKERS"));
        let blank = parse_workers(Some(r#"[{"region": "", "cluster": "c", "service": "s"}]"#));
        assert!(blank.unwrap_err().to_string().contains("empty region"));
    }
}
