//! Cost estimates of a plan with Infracost, when `INFRACOST_API_KEY` is set.
//! An estimate is a nicety: when Infracost fails, the PLAN says so and
//! succeeds without one.

use serde_json::{json, Map, Value};

use super::{JobContext, JobError};

/// `cost_breakdown` and `cost_summary` of a plan, or `None` (logged) when
/// Infracost is not configured or fails.
pub async fn estimate(context: &JobContext, plan: &Value) -> Option<(Value, Value)> {
    let key = context.settings.infracost_api_key.as_ref()?;
    let phase = context.log.phase("estimating costs with Infracost");
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
        Ok(report) => Some((breakdown(&report), summary(&report))),
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

/// Each priced resource of an Infracost report.
fn breakdown(report: &Value) -> Value {
    let resources: Vec<Value> = report["projects"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|project| {
            project["breakdown"]["resources"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|resource| {
            let mut item = Map::new();
            item.insert("name".into(), resource["name"].clone());
            item.insert("resource_type".into(), resource["resourceType"].clone());
            item.insert("monthly_cost".into(), number(&resource["monthlyCost"]));
            item.insert("hourly_cost".into(), number(&resource["hourlyCost"]));
            Value::Object(item)
        })
        .collect();
    json!(resources)
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
        assert_eq!(breakdown(&report)[0]["monthly_cost"], json!(73.0));
        assert_eq!(breakdown(&report)[0]["resource_type"], "aws_eks_cluster");
    }
}
