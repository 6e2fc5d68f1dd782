//! Cost estimates of a plan with Infracost, when `INFRACOST_API_KEY` is set.
//! An estimate is a nicety: when Infracost fails, the PLAN says so and
//! succeeds without one.

use serde_json::{json, Value};

use super::{JobContext, JobError};

/// `cost_breakdown` (Infracost's own `breakdown --format json` document,
/// unchanged: the plan page reads it as it is) and `cost_summary` of a
/// plan, or `None` (logged) when Infracost is not configured or fails.
pub async fn estimate(context: &JobContext, plan: &Value) -> Option<(Value, Value)> {
    let key = context.settings.infracost_api_key.as_ref()?;
    let phase = context.phase("cost_estimate", "estimating costs with Infracost");
    let result = async {
        let plan_file = context
            .workspace
            .write_private("plan.json", plan.to_string().as_bytes())
            .map_err(|e| JobError::io("cannot write the plan JSON", e))?;
        let path = plan_file.display().to_string();
        let args = [
            "breakdown",
            "--path",
            &path,
            "--format",
            "json",
            "--no-color",
            "--log-level",
            "warn",
        ];
        let mut command = context
            .command("infracost", &args)
            .await?
            .capturing_stdout();
        command
            .env
            .insert("INFRACOST_API_KEY".into(), key.expose().into());
        command
            .env
            .insert("INFRACOST_SKIP_UPDATE_CHECK".into(), "true".into());
        let output = context.run(&command).await?;
        serde_json::from_str::<Value>(&output.stdout)
            .map_err(|e| JobError::Invalid(format!("Infracost's answer is not JSON: {e}")))
    }
    .await;
    phase.finish();
    match result {
        Ok(report) => {
            let summary = summary(&report);
            Some((report, summary))
        }
        Err(JobError::Stopped) => None,
        Err(error) => {
            context.log.system(&format!(
                "warning: Infracost failed ({error}); the plan has no cost estimate"
            ));
            None
        }
    }
}

fn number(value: &Value) -> Value {
    match value {
        Value::String(text) => text.parse::<f64>().map(|n| json!(n)).unwrap_or(Value::Null),
        Value::Number(_) => value.clone(),
        _ => Value::Null,
    }
}

/// The totals of an Infracost report.
fn summary(report: &Value) -> Value {
    let counts = &report["summary"];
    let count = |key: &str| counts.get(key).and_then(Value::as_u64).unwrap_or(0);
    json!({
        "total_monthly": number(&report["totalMonthlyCost"]),
        "total_hourly": number(&report["totalHourlyCost"]),
        "diff_monthly": number(&report["diffTotalMonthlyCost"]),
        "resources_with_cost": count("totalSupportedResources"),
        "resources_free": count("totalNoPriceResources"),
        "total_resources": count("totalDetectedResources"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_infracost_report_is_summarised() {
        let report = json!({
            "totalMonthlyCost": "73.5", "totalHourlyCost": "0.1", "diffTotalMonthlyCost": "73.5",
            "summary": {"totalDetectedResources": 5, "totalSupportedResources": 2, "totalNoPriceResources": 3},
            "projects": [{"breakdown": {"resources": [
                {"name": "aws_eks_cluster.main", "resourceType": "aws_eks_cluster", "monthlyCost": "73", "hourlyCost": "0.1"}
            ]}}]
        });
        assert_eq!(
            summary(&report),
            json!({"total_monthly": 73.5, "total_hourly": 0.1, "diff_monthly": 73.5,
                   "resources_with_cost": 2, "resources_free": 3, "total_resources": 5})
        );
    }
}
