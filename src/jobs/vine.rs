//! The vine jobs: PLAN, DEPLOY, DESTROY and BOOTSTRAP, on real Terraform.
//!
//! Each prepares the same way (template copy, tfvars, state backend,
//! `terraform init`), then plans, applies or destroys. A DEPLOY applies
//! exactly the plan a PLAN job uploaded, after checking that the vine's
//! configuration has not changed since; without a `plan_job_id` it plans in
//! the job. An interrupted apply or destroy pushes any `errored.tfstate` back
//! to the backend before the workspace goes, and a held lock is named.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::cluster::{self, facts};
use super::redact;
use super::stack::{seconds, template_dir, Stack, PLAN_FILE};
use super::stack_inputs::vine_state_key;
use super::tfvars::vine_tfvars;
use super::{costs, reviewed_plan, JobContext, JobError};

/// The vine's stack: its template, its snapshot's variables, its state key.
async fn vine_stack(context: &JobContext) -> Result<Stack<'_>, JobError> {
    let job = &context.job;
    let state_key = vine_state_key(job.vineyard_id.as_deref(), &job.config_snapshot)?;
    let vars = vine_tfvars(context, &template_dir(context, "vine")).await?;
    Stack::prepare(context, "vine", &vars, state_key, BTreeMap::new()).await
}

/// PLAN: plan, show, upload the plan for a later DEPLOY.
pub async fn plan(context: &JobContext) -> Result<Map<String, Value>, JobError> {
    // What its DEPLOY would refuse after the apply is refused now.
    facts::snapshot_facts(context)?;
    let mut vine = vine_stack(context).await?;
    vine.plan().await?;
    let shown = vine.terraform().await?.show_json(PLAN_FILE).await?;
    let phase = context.phase("upload", "uploading the plan");
    let key = context
        .reporter
        .upload_plan_artifact(&context.job.id, vine.plan_bytes()?)
        .await?;
    vine.record("upload_plan", phase.finish());
    let mut metadata = Map::new();
    metadata.insert("plan_completed".into(), json!(true));
    metadata.insert("plan_file_key".into(), json!(key));
    metadata.insert("plan_result".into(), redact::plan_result(&shown));
    if let Some((breakdown, summary)) = costs::estimate(context, &shown).await {
        metadata.insert("cost_breakdown".into(), breakdown);
        metadata.insert("cost_summary".into(), summary);
    }
    metadata.insert("timings".into(), Value::Object(vine.timings));
    Ok(metadata)
}

/// BOOTSTRAP (legacy): plan and apply in one job.
pub async fn bootstrap(context: &JobContext) -> Result<Map<String, Value>, JobError> {
    deploy_with(context, None).await
}

/// DEPLOY: apply the reviewed plan of `plan_job_id` (or plan in the job).
pub async fn deploy(context: &JobContext) -> Result<Map<String, Value>, JobError> {
    let plan_job = context.job.plan_job_id.clone().filter(|id| !id.is_empty());
    deploy_with(context, plan_job.as_deref()).await
}

async fn deploy_with(
    context: &JobContext,
    plan_job_id: Option<&str>,
) -> Result<Map<String, Value>, JobError> {
    // Checked before anything is applied: a value the cluster phases would
    // refuse must not leave a vine half deployed.
    facts::snapshot_facts(context)?;
    if let Some(id) = plan_job_id {
        reviewed_plan::check(context, id).await?;
    }
    let mut vine = vine_stack(context).await?;
    match plan_job_id {
        Some(id) => {
            let phase = context.phase("download_plan", "downloading the reviewed plan");
            let plan = context.reporter.plan_artifact(id).await?.ok_or_else(|| {
                JobError::Invalid(format!(
                    "the PLAN job {id} has no plan artifact: nothing was applied (a plan nobody reviewed is \
                     never applied); plan again"
                ))
            })?;
            crate::private_files::write_private_file(&vine.dir.join(PLAN_FILE), &plan)
                .map_err(|e| JobError::io("cannot write the plan file", e))?;
            vine.record("download_plan", phase.finish());
        }
        None => vine.plan().await?,
    }
    vine.apply().await?;
    let raw = vine.terraform().await?.output_json().await?;
    let (plain, redacted, masked) = redact::outputs(&raw);
    context.keep_masked(masked);
    let cluster_name = facts::cluster_name(&plain)?;
    let setup = match cluster_name.as_deref() {
        Some(name) => {
            let timings = &mut vine.timings;
            let mut record = |phase: &str, took: Duration| {
                timings.insert(phase.into(), seconds(took));
            };
            Some(cluster::set_up(context, &plain, name, &mut record).await?)
        }
        None => {
            context.log.system(
                "no cluster in the Terraform outputs: skipping kubeconfig, ArgoCD and its applications",
            );
            None
        }
    };
    // Trellis stores every value it is given: an unknown one is left out.
    let known = [
        ("cluster_name", cluster_name),
        (
            "cluster_endpoint",
            facts::output_text(&plain, &facts::CLUSTER_ENDPOINT),
        ),
        (
            "cluster_arn",
            facts::output_text(&plain, &facts::CLUSTER_ARN),
        ),
        (
            "argocd_url",
            setup.as_ref().and_then(|s| s.argocd_url.clone()),
        ),
        (
            "argocd_admin_password",
            setup.and_then(|s| s.argocd_admin_password),
        ),
    ];
    let mut metadata: Map<String, Value> = known
        .into_iter()
        .filter_map(|(key, value)| Some((key.to_string(), Value::String(value?))))
        .collect();
    metadata.insert("outputs".into(), Value::Object(redacted));
    metadata.insert("timings".into(), Value::Object(vine.timings));
    Ok(metadata)
}

/// DESTROY: from the snapshot and the remote state alone.
pub async fn destroy(context: &JobContext) -> Result<Map<String, Value>, JobError> {
    let mut vine = vine_stack(context).await?;
    let resources = vine.terraform().await?.state_list().await?;
    if resources.is_empty() {
        return Err(JobError::Invalid(format!(
            "no state at {}: nothing was destroyed",
            vine.state_key
        )));
    }
    context
        .log
        .system(&format!("{} resources in the state", resources.len()));
    vine.destroy().await?;
    let mut metadata = Map::new();
    metadata.insert("destroyed_resources".into(), json!(resources));
    metadata.insert("timings".into(), Value::Object(vine.timings));
    Ok(metadata)
}
