//! What an operator probes: the health check (`GET /healthz`) and the
//! Prometheus metrics (`GET /metrics`), on `TENDRIL_HEALTH_ADDR` when it is
//! set, and `tendril health`, which asks the first of them (for a container
//! `HEALTHCHECK` and the ECS task definition's health check).
//!
//! Healthy means: Trellis itself has answered within two heartbeat
//! intervals, and the work dir can be written. An error in Trellis's own
//! words counts as an answer (its database being down is no reason to
//! replace the worker, which would lose a Fargate task's outbox); an
//! ingress's page, or no answer, does not.

pub mod metrics;
mod server;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

pub use metrics::{metrics, JobOutcome};
pub use server::{serve, HealthServer};

/// What the health check looks at.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub heartbeat_interval: Duration,
    pub work_dir: PathBuf,
}

impl HealthCheck {
    /// Whether the worker is healthy, and the body that says why.
    pub fn report(&self) -> (bool, Value) {
        let metrics = metrics();
        let since = metrics.since_last_contact();
        let mut problems = Vec::new();
        match since {
            Some(since) if since <= self.heartbeat_interval * 2 => {}
            Some(since) => problems.push(format!(
                "Trellis last answered {}s ago (more than two heartbeat intervals)",
                since.as_secs()
            )),
            None => problems.push("Trellis has not answered yet".to_string()),
        }
        if let Err(problem) = writable(&self.work_dir) {
            problems.push(problem);
        }
        let healthy = problems.is_empty();
        let body = json!({
            "status": if healthy { "ok" } else { "unhealthy" },
            "last_trellis_contact_seconds": since.map(|s| (s.as_secs_f64() * 10.0).round() / 10.0),
            "current_job_id": metrics.current_job(),
            "draining": metrics.is_draining(),
            "problems": problems,
        });
        (healthy, body)
    }
}

/// Whether a file can be written in the work dir (and is removed again).
fn writable(dir: &std::path::Path) -> Result<(), String> {
    let probe = dir.join(format!(".health-probe-{}", std::process::id()));
    let result = std::fs::write(&probe, b"probe");
    let _ = std::fs::remove_file(&probe);
    result.map_err(|error| format!("the work dir {} cannot be written: {error}", dir.display()))
}

/// `tendril health`: asks the health endpoint at `address`; `Ok` when it
/// answers 200, with the body either way.
pub async fn ask(address: &str) -> Result<String, String> {
    let url = format!("http://{address}/healthz");
    let answer = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("no answer from {url}: {}", crate::http_error::describe(e)))?;
    let healthy = answer.status().is_success();
    let body = answer.text().await.unwrap_or_default();
    if healthy {
        Ok(body)
    } else {
        Err(body)
    }
}
