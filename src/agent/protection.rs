//! ECS task scale-in protection while a job runs.
//!
//! On ECS (where the agent sets `ECS_AGENT_URI`), a task the scaler sets to
//! zero is stopped 120 s after SIGTERM, whatever it is doing: too soon for
//! an apply. So Tendril protects its task as soon as it has claimed a job,
//! and lifts the protection once the job's terminal status is delivered.
//! The protection expires by itself after the job timeout and a margin, so
//! a Tendril that dies never pins its task. A failure here is a warning,
//! never a failed job. Elsewhere this does nothing.

use std::time::Duration;

use serde_json::{json, Value};

/// Added to the job timeout for the protection's expiry: delivery and
/// cleanup after a job that ran to its timeout.
const EXPIRY_MARGIN: Duration = Duration::from_secs(15 * 60);
/// The longest ECS allows (48 hours).
const MAX_EXPIRY_MINUTES: u64 = 2880;

/// The task protection endpoint of the ECS agent.
pub struct TaskProtection {
    http: reqwest::Client,
    url: String,
    expires_in_minutes: u64,
}

impl TaskProtection {
    /// Present when running on ECS (`ECS_AGENT_URI` is set).
    pub fn from_agent_uri(
        agent_uri: Option<&str>,
        job_timeout: Duration,
    ) -> Option<TaskProtection> {
        let agent_uri = agent_uri.filter(|uri| !uri.is_empty())?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .ok()?;
        Some(TaskProtection {
            http,
            url: format!(
                "{}/task-protection/v1/state",
                agent_uri.trim_end_matches('/')
            ),
            expires_in_minutes: expiry_minutes(job_timeout),
        })
    }

    /// Turns the protection on (for the job timeout and a margin) or off.
    pub async fn set(&self, enabled: bool) -> Result<(), String> {
        let body = if enabled {
            json!({"ProtectionEnabled": true, "ExpiresInMinutes": self.expires_in_minutes})
        } else {
            json!({"ProtectionEnabled": false})
        };
        let response = self
            .http
            .put(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(crate::http_error::describe)?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        let refused = answer.get("failure").or_else(|| answer.get("error"));
        match (status.is_success(), refused) {
            (true, None) => Ok(()),
            (_, Some(reason)) => Err(format!(
                "the ECS agent refused (HTTP {}): {reason}",
                status.as_u16()
            )),
            (false, None) => Err(format!("the ECS agent answered HTTP {}", status.as_u16())),
        }
    }
}

fn expiry_minutes(job_timeout: Duration) -> u64 {
    (job_timeout + EXPIRY_MARGIN)
        .as_secs()
        .div_ceil(60)
        .min(MAX_EXPIRY_MINUTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expiry_covers_the_job_timeout_and_a_margin_within_the_ecs_limit() {
        assert_eq!(expiry_minutes(Duration::from_secs(2 * 3600)), 135);
        assert_eq!(expiry_minutes(Duration::from_secs(61)), 17);
        assert_eq!(expiry_minutes(Duration::from_secs(100 * 3600)), 2880);
    }

    #[test]
    fn only_on_ecs() {
        assert!(TaskProtection::from_agent_uri(None, Duration::from_secs(60)).is_none());
        assert!(TaskProtection::from_agent_uri(Some(""), Duration::from_secs(60)).is_none());
        let protection = TaskProtection::from_agent_uri(
            Some("http://169.254.170.2/api/abc/"),
            Duration::from_secs(60),
        );
        assert_eq!(
            protection.unwrap().url,
            "http://169.254.170.2/api/abc/task-protection/v1/state"
        );
    }
}
