//! The settings check of `tendril doctor`: the checks `tendril start` does
//! on its resolved settings (job settings, worker settings, the Trellis URL,
//! the state-backend rule and the ECS shutdown budget), keeping whatever did
//! resolve so the other checks can still run.

use crate::settings::{
    check_state_backend, shutdown_budget_warning, AgentSettings, ConfigError, JobSettings,
    WorkerMode,
};
use crate::trellis::TrellisClient;

use super::report::{Check, Mark};

/// What to do about local state.
const SHARED_STATE: &str =
    "set SUPABASE_S3_ENDPOINT, SUPABASE_S3_REGION, SUPABASE_STORAGE_KEY_ID and \
     SUPABASE_STORAGE_SECRET_KEY to keep Terraform state in the shared bucket";
/// What to do about a shutdown that cannot fit ECS's stop timeout.
const SHUTDOWN_BUDGET: &str = "shorten TENDRIL_DRAIN_GRACE, TENDRIL_TERRAFORM_GRACE, \
     TENDRIL_CANCEL_GRACE or TENDRIL_FINAL_DELIVERY_TIMEOUT";

/// What the settings resolved to; `None` where they did not.
pub struct Resolved {
    /// The configured mode (self-hosted when the mode itself is invalid).
    pub mode: WorkerMode,
    pub job: Option<JobSettings>,
    pub agent: Option<AgentSettings>,
    pub client: Option<TrellisClient>,
    pub check: Check,
}

impl Resolved {
    /// Whether `start` would exit 2 on these settings.
    pub fn invalid(&self) -> bool {
        self.check.mark == Mark::Failed
    }
}

/// Checks the settings as `start` does, collecting every problem instead
/// of stopping at the first.
pub fn resolve(
    job: Result<JobSettings, ConfigError>,
    agent: Result<AgentSettings, ConfigError>,
) -> Resolved {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let job = job.map_err(|error| problems.push(error.to_string())).ok();
    let mode = job.as_ref().map_or(WorkerMode::default(), |job| job.mode);
    let agent = agent.map_err(|error| problems.push(error.to_string())).ok();
    let client = agent.as_ref().and_then(|agent| {
        TrellisClient::new(agent)
            .map_err(|error| problems.push(format!("TRELLIS_URL (--trellis-url): {error}")))
            .ok()
    });
    if let Some(job) = &job {
        match check_state_backend(job) {
            Ok(warning) => warnings.extend(warning.map(|warning| (warning, SHARED_STATE))),
            Err(error) => problems.push(error.to_string()),
        }
    }
    if let (Some(job), Some(agent)) = (&job, &agent) {
        let warning = shutdown_budget_warning(mode, agent, job);
        warnings.extend(warning.map(|warning| (warning, SHUTDOWN_BUDGET)));
    }
    let check = if !problems.is_empty() {
        Check::not_ok(
            "settings",
            Mark::Failed,
            problems.join("; "),
            "fix the variables named (`tendril start` exits 2 on them); see README \"Configuration\"",
        )
    } else if !warnings.is_empty() {
        let (warnings, hints): (Vec<String>, Vec<&str>) = warnings.into_iter().unzip();
        Check::not_ok(
            "settings",
            Mark::Warning,
            warnings.join("; "),
            hints.join("; "),
        )
    } else {
        let agent = agent.as_ref();
        Check::ok(
            "settings",
            format!(
                "{} worker {} of {}",
                mode.as_str(),
                agent.map_or("?", |a| a.worker_id.as_str()),
                agent.map_or("?", |a| a.trellis_url.as_str()),
            ),
        )
    };
    Resolved {
        mode,
        job,
        agent,
        client,
        check,
    }
}
