//! The checks before a DEPLOY applies a PLAN job's plan: the PLAN is a PLAN
//! of the same vine that succeeded, and the vine's configuration has not
//! changed since it was planned.
//!
//! Trellis's web app sets no `configuration_hash` (only its CLI route does),
//! and its snapshots embed the whole vines row, whose bookkeeping columns
//! (`status`, `updated_at`, ...) change between the PLAN and the DEPLOY. So
//! with both hashes the hashes are compared, and otherwise the snapshots
//! without that bookkeeping (see [`configuration`]).

use serde_json::{Map, Value};

use super::{JobContext, JobError};
use crate::trellis::{JobStatus, JobType};

/// The exact message of a DEPLOY whose vine changed after its plan.
pub const CONFIGURATION_CHANGED: &str =
    "Configuration has changed since the plan was generated. Please re-plan.";

/// Top-level snapshot keys that are the vines row's bookkeeping, not
/// configuration (besides every key ending in `_at`).
const BOOKKEEPING: [&str; 3] = ["status", "estimated_monthly_cost", "git_access_token"];

/// What configures the infrastructure in a snapshot: the snapshot without
/// the row's bookkeeping. Nested objects and lists are kept whole.
pub fn configuration(snapshot: &Map<String, Value>) -> Map<String, Value> {
    snapshot
        .iter()
        .filter(|(key, _)| !BOOKKEEPING.contains(&key.as_str()) && !key.ends_with("_at"))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// Whether the vine changed between the PLAN job's row and this DEPLOY.
pub fn configuration_changed(
    plan_row: &Value,
    deploy_hash: Option<&str>,
    deploy_snapshot: &Map<String, Value>,
) -> bool {
    let plan_hash = plan_row
        .get("configuration_hash")
        .and_then(Value::as_str)
        .filter(|hash| !hash.is_empty());
    match (plan_hash, deploy_hash.filter(|hash| !hash.is_empty())) {
        (Some(planned), Some(deployed)) => planned != deployed,
        _ => {
            let planned = match plan_row.get("config_snapshot") {
                Some(Value::Object(snapshot)) => configuration(snapshot),
                _ => return true,
            };
            planned != configuration(deploy_snapshot)
        }
    }
}

/// Fails unless `plan_job_id` is a successful PLAN of this vine whose
/// configuration is this DEPLOY's.
pub async fn check(context: &JobContext, plan_job_id: &str) -> Result<(), JobError> {
    let invalid = |message: String| Err(JobError::Invalid(message));
    let Some(plan) = context.reporter.job_row(plan_job_id).await? else {
        return invalid(format!("the PLAN job {plan_job_id} does not exist"));
    };
    let text = |key: &str| plan.get(key).and_then(Value::as_str).unwrap_or_default();
    let job_type = text("job_type");
    if JobType::parse(job_type) != Some(JobType::Plan) {
        return invalid(format!("job {plan_job_id} is a {job_type} job, not a PLAN"));
    }
    if plan.get("vine_id").and_then(Value::as_str) != context.job.vine_id.as_deref() {
        return invalid(format!(
            "the PLAN job {plan_job_id} belongs to another vine"
        ));
    }
    if JobStatus::of_row(&plan) != Some(JobStatus::Success) {
        return invalid(format!(
            "the PLAN job {plan_job_id} is {}, not SUCCESS: there is no plan to apply",
            text("status")
        ));
    }
    let job = &context.job;
    if configuration_changed(
        &plan,
        job.configuration_hash.as_deref(),
        &job.config_snapshot,
    ) {
        return invalid(CONFIGURATION_CHANGED.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    fn web_snapshot(status: &str, updated_at: &str, cidr: &str) -> Map<String, Value> {
        map(json!({
            "id": "vine-1", "project_name": "shop", "environment_stage": "development",
            "region": "eu-west-1", "status": status, "estimated_monthly_cost": null,
            "created_at": "2026-11-30T10:00:00Z", "updated_at": updated_at,
            "provider": "aws", "git_access_token": "",
            "network": {"provision_network": true, "cidr_block": cidr},
        }))
    }

    #[test]
    fn the_rows_bookkeeping_is_no_change_of_configuration() {
        let planned = json!({"config_snapshot": web_snapshot("PLANNING", "2026-11-30T10:00:00Z", "10.0.0.0/16")});
        let mut later = web_snapshot("DRAFT", "2026-11-30T10:05:00Z", "10.0.0.0/16");
        later.insert("estimated_monthly_cost".into(), json!(412.5));
        later.insert("last_planned_at".into(), json!("2026-11-30T10:04:00Z"));
        assert!(!configuration_changed(&planned, None, &later));
    }

    #[test]
    fn a_real_change_is_a_change_at_any_depth() {
        let planned = json!({"config_snapshot": web_snapshot("DRAFT", "t1", "10.0.0.0/16")});
        assert!(configuration_changed(
            &planned,
            None,
            &web_snapshot("DRAFT", "t2", "10.9.0.0/16")
        ));
        let mut renamed = web_snapshot("DRAFT", "t1", "10.0.0.0/16");
        renamed.insert("project_name".into(), json!("shop2"));
        assert!(configuration_changed(&planned, None, &renamed));
    }

    #[test]
    fn with_both_hashes_the_hashes_decide() {
        let planned = json!({"configuration_hash": "h1",
                             "config_snapshot": web_snapshot("DRAFT", "t1", "10.0.0.0/16")});
        let other_cidr = web_snapshot("DRAFT", "t1", "10.9.0.0/16");
        assert!(!configuration_changed(&planned, Some("h1"), &other_cidr));
        assert!(configuration_changed(
            &planned,
            Some("h2"),
            &web_snapshot("DRAFT", "t1", "10.0.0.0/16")
        ));
        // One hash alone decides nothing: the snapshots are compared.
        assert!(configuration_changed(&planned, None, &other_cidr));
        assert!(!configuration_changed(
            &planned,
            Some(""),
            &web_snapshot("DRAFT", "t9", "10.0.0.0/16")
        ));
    }
}
