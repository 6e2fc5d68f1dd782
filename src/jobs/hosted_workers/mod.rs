//! The hosted-worker jobs (DEPLOY_WORKER, UPDATE_WORKER, DESTROY_WORKER),
//! which manage other, cloud-hosted Tendrils (their ECS services and the
//! Terraform state of their infrastructure) with the platform's own AWS
//! credentials, not a user's identity. "Worker" elsewhere in Tendril means
//! this process; here it means the hosted workers these jobs manage.
//!
//! DEPLOY_WORKER applies `templates/worker/<provider>` with the worker state
//! key (registering the worker first when the snapshot has none), records
//! `deploy_config` in the worker's metadata and reports `worker_outputs`.
//! `deploy_config` holds what the worker's ECS service really runs (its
//! image repository and tag, cpu and memory, read back from ECS, never
//! null: Trellis's Update button would fill a null with the original Go
//! worker's image) and the worker token, which Trellis needs to update and
//! destroy the worker. A worker job acts with the platform's credentials;
//! the claim's cloud identity (the one the new worker will serve) only
//! picks the image variant (see `image`).
//! DESTROY_WORKER destroys that state, then deletes the registration. The
//! worker token reaches Terraform only as `TF_VAR_worker_token` (never tfvars;
//! a worker job has no plan artifact), and is masked. UPDATE_WORKER is in
//! `update`.

mod image;
mod service;
mod update;

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::redact;
use super::snapshot::{self, setting};
use super::stack::Stack;
use super::{JobContext, JobError};
use crate::secrets;
use image::{variant_to_deploy, with_variant, ImageRef, TENDRIL_REPOSITORY};
use service::{Deployed, WorkerService};
pub use update::update_worker;

/// A worker's ECS names: the worker templates name cluster and service
/// after the first 8 characters of the worker id (the original's form).
pub fn worker_short_id(worker_id: &str) -> String {
    worker_id.chars().take(8).collect()
}

/// A worker's state key: the original's `workers/<first 8 characters>/`, so
/// that workers it deployed can still be updated and destroyed.
pub fn worker_state_key(worker_id: &str) -> String {
    format!("workers/{}/terraform.tfstate", worker_short_id(worker_id))
}

/// The variables a worker job sets (all declared by the worker template;
/// the secrets go through the environment instead, see [`worker_secrets`]).
/// The new worker keeps its Terraform state in this worker's bucket: the
/// bucket's endpoint and region are passed on.
fn worker_vars(context: &JobContext, worker_id: &str) -> Result<Map<String, Value>, JobError> {
    let snapshot = &context.job.config_snapshot;
    let mut vars = Map::new();
    vars.insert("worker_id".into(), json!(worker_id));
    for name in [
        "worker_name",
        "region",
        "image_repository",
        "image_tag",
        "trellis_url",
        "cpu",
        "memory",
    ] {
        if let Some(value) = snapshot.get(name).filter(|v| !v.is_null()) {
            vars.insert(name.into(), value.clone());
        }
    }
    if let Some(tag) = vars.get("image_tag").and_then(Value::as_str) {
        let tag = tag_to_deploy(context, tag)?;
        vars.insert("image_tag".into(), json!(tag));
    }
    if let Some(storage) = &context.settings.state_storage {
        vars.insert("state_endpoint".into(), json!(storage.endpoint));
        vars.insert("state_region".into(), json!(storage.region));
    }
    Ok(vars)
}

/// A text setting of a worker job's snapshot (see [`setting`]).
fn read(snapshot: &Map<String, Value>, name: &str) -> Result<Option<String>, JobError> {
    setting(snapshot, &[name]).map_err(JobError::Invalid)
}

/// The worker's token in a worker job's snapshot.
pub(super) fn worker_token(snapshot: &Map<String, Value>) -> Result<Option<String>, JobError> {
    let token = snapshot::text(snapshot, "", &["worker_token"]).map_err(JobError::Invalid)?;
    Ok(token.map(|token| token.value))
}

/// The image tag DEPLOY_WORKER deploys: the snapshot's, as the variant of
/// the identity the worker will serve where that applies (see `image`).
/// Without an `image_repository` in the snapshot the worker template's
/// default, Tendril's own repository, is deployed.
fn tag_to_deploy(context: &JobContext, tag: &str) -> Result<String, JobError> {
    let repository = read(&context.job.config_snapshot, "image_repository")?;
    let provider = context.identity.as_ref().and_then(|i| i.provider.as_ref());
    let variant = variant_to_deploy(
        context.settings.worker_image_variants,
        repository.as_deref().unwrap_or(TENDRIL_REPOSITORY),
        provider,
    );
    Ok(with_variant(tag, variant))
}

/// The secrets a worker job gives Terraform, as `TF_VAR_` environment
/// (never tfvars): the worker's token, and the platform's state-bucket keys
/// and Infracost key, which the template stores in Secrets Manager for the
/// new worker's task.
fn worker_secrets(context: &JobContext, token: &str) -> BTreeMap<String, String> {
    let settings = &context.settings;
    let mut env = BTreeMap::from([("TF_VAR_worker_token".to_string(), token.to_string())]);
    if let Some(storage) = &settings.state_storage {
        env.insert("TF_VAR_state_key_id".into(), storage.key_id.expose().into());
        env.insert(
            "TF_VAR_state_secret_key".into(),
            storage.secret_key.expose().into(),
        );
    }
    if let Some(key) = &settings.infracost_api_key {
        env.insert("TF_VAR_infracost_api_key".into(), key.expose().into());
    }
    env
}

/// The worker's stack: its template, its variables, its state key, the
/// token in Terraform's environment only, and the worker's region as the
/// AWS provider's (the template has no provider block, to be a module too).
async fn worker_stack<'a>(
    context: &'a JobContext,
    worker_id: &str,
    token: &str,
) -> Result<Stack<'a>, JobError> {
    crate::safe_name::check("worker_id", worker_id).map_err(JobError::Invalid)?;
    let vars = worker_vars(context, worker_id)?;
    if let Some(region) = vars.get("region").and_then(Value::as_str) {
        crate::safe_name::check("region", region).map_err(JobError::Invalid)?;
    }
    let mut env = worker_secrets(context, token);
    if let Some(region) = vars.get("region").and_then(Value::as_str) {
        for name in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
            env.insert(name.to_string(), region.to_string());
        }
    }
    Stack::prepare(context, "worker", &vars, worker_state_key(worker_id), env).await
}

/// DEPLOY_WORKER.
pub async fn deploy_worker(context: &JobContext) -> Result<Map<String, Value>, JobError> {
    let spec = WorkerSpec::from_snapshot(context, false)?;
    if context.settings.state_storage.is_none() {
        return Err(JobError::Invalid(
            "DEPLOY_WORKER gives the new worker this worker's Terraform state bucket, and this worker has none: \
             set SUPABASE_S3_ENDPOINT, SUPABASE_S3_REGION, SUPABASE_STORAGE_KEY_ID and SUPABASE_STORAGE_SECRET_KEY"
                .into(),
        ));
    }
    let (worker_id, token, registered) = the_worker(context).await?;
    context.keep_masked([secrets::register(&token)]);
    context.log.system(&format!(
        "worker {worker_id}{}",
        if registered { " (registered now)" } else { "" }
    ));
    let mut stack = worker_stack(context, &worker_id, &token).await?;
    stack.plan().await?;
    stack.apply().await?;
    let raw = stack.terraform().await?.output_json().await?;
    let (_, outputs, masked) = redact::outputs(&raw);
    context.keep_masked(masked);
    let phase = context.log.phase("reading what the worker's service runs");
    let read = deployed_service(&spec.region, &worker_id, &outputs)
        .await
        .running()
        .await
        .and_then(|running| running.deployed());
    let deployed = match read {
        Ok(deployed) => deployed,
        Err(error) => {
            context.log.system(&format!(
                "warning: what the worker's service runs could not be read from ECS ({error}): its \
                 deploy_config records what the deployment was given"
            ));
            configured(context, &worker_id, &stack)?
        }
    };
    stack.record("read_service", phase.finish());
    context
        .log
        .system(&format!("the worker's service runs {}", deployed.image));
    let spec = WorkerSpec { worker_id, ..spec };
    record_deploy_config(context, &spec, Some(&token), &deployed).await?;
    let mut metadata = Map::new();
    metadata.insert("worker_id".into(), json!(spec.worker_id));
    metadata.insert("registered".into(), json!(registered));
    metadata.insert("worker_outputs".into(), Value::Object(outputs));
    metadata.insert("timings".into(), Value::Object(stack.timings));
    Ok(metadata)
}

/// The worker DEPLOY_WORKER deploys: its id and token from the snapshot (a
/// re-deploy), else registered now; and whether it was registered now.
async fn the_worker(context: &JobContext) -> Result<(String, String, bool), JobError> {
    let snapshot = &context.job.config_snapshot;
    if let (Some(id), Some(token)) = (read(snapshot, "worker_id")?, worker_token(snapshot)?) {
        return Ok((id, token, false));
    }
    let secret = context.settings.registration_secret.as_ref().ok_or_else(|| {
        JobError::Invalid(
            "the snapshot has no worker_id and worker_token, and no TENDRIL_REGISTRATION_SECRET is set \
             to register the worker"
                .into(),
        )
    })?;
    let name = read(snapshot, "worker_name")?.unwrap_or_else(|| "tendril".into());
    let phase = context.log.phase(&format!("registering worker {name}"));
    let registration = context
        .reporter
        .register_worker(secret.expose(), &name)
        .await?;
    phase.finish();
    Ok((registration.tendril_id, registration.tendril_token, true))
}

/// DESTROY_WORKER: an empty state fails, and keeps the registration.
pub async fn destroy_worker(context: &JobContext) -> Result<Map<String, Value>, JobError> {
    let snapshot = &context.job.config_snapshot;
    let worker_id = read(snapshot, "worker_id")?
        .ok_or_else(|| JobError::Invalid("the worker job's snapshot has no worker_id".into()))?;
    // Destroying needs every variable, the token too, but uses none of them.
    let token = worker_token(snapshot)?.unwrap_or_else(|| "not-needed-to-destroy".into());
    context.keep_masked([secrets::register(&token)]);
    let mut stack = worker_stack(context, &worker_id, &token).await?;
    let resources = stack.terraform().await?.state_list().await?;
    if resources.is_empty() {
        return Err(JobError::Invalid(format!(
            "no state at {}: nothing was destroyed, and the worker's registration is kept",
            stack.state_key
        )));
    }
    stack.destroy().await?;
    let phase = context
        .log
        .phase(&format!("deleting worker {worker_id}'s registration"));
    context.reporter.delete_worker(&worker_id).await?;
    stack.record("delete_registration", phase.finish());
    let mut metadata = Map::new();
    metadata.insert("destroyed_resources".into(), json!(resources));
    metadata.insert("timings".into(), Value::Object(stack.timings));
    Ok(metadata)
}

/// The service DEPLOY_WORKER made: named by the template's outputs, else
/// as the worker templates name it (`tendril-<short id>`).
async fn deployed_service(
    region: &str,
    worker_id: &str,
    outputs: &Map<String, Value>,
) -> WorkerService {
    let conventional = format!("tendril-{}", worker_short_id(worker_id));
    let named = |output: &str| {
        outputs
            .get(output)
            .and_then(Value::as_str)
            .unwrap_or(&conventional)
            .to_string()
    };
    WorkerService::new(region, &named("cluster_name"), &named("service_name")).await
}

/// What the deployment was given: the variables DEPLOY_WORKER set, else the
/// template's defaults.
fn configured(context: &JobContext, worker_id: &str, stack: &Stack) -> Result<Deployed, JobError> {
    let vars = worker_vars(context, worker_id)?;
    let defaults = crate::jobs::tfvars::declared_defaults(&stack.dir)?;
    let given = |name: &str| {
        vars.get(name)
            .or_else(|| defaults.get(name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let repository = given("image_repository");
    let repository = repository.as_str().ok_or_else(|| {
        JobError::Invalid(
            "neither the snapshot nor the worker template names the image repository: \
             set the template's image_repository default"
                .into(),
        )
    })?;
    Ok(Deployed {
        image: ImageRef {
            repository: repository.to_string(),
            tag: given("image_tag").as_str().unwrap_or_default().to_string(),
        },
        cpu: given("cpu"),
        memory: given("memory"),
    })
}

/// What a `*_WORKER` snapshot says about the worker.
struct WorkerSpec {
    worker_id: String,
    region: String,
    image_tag: String,
    image_repository: Option<String>,
}

impl WorkerSpec {
    /// Reads the snapshot; `worker_id` is required unless the job may register one.
    fn from_snapshot(context: &JobContext, needs_worker_id: bool) -> Result<WorkerSpec, JobError> {
        let snapshot = &context.job.config_snapshot;
        let required = |name: &str| {
            read(snapshot, name)?.ok_or_else(|| {
                JobError::Invalid(format!("the worker job's snapshot has no {name}"))
            })
        };
        let spec = WorkerSpec {
            worker_id: if needs_worker_id {
                required("worker_id")?
            } else {
                String::new()
            },
            region: required("region")?,
            image_tag: required("image_tag")?,
            image_repository: read(snapshot, "image_repository")?,
        };
        // Both end up in an image reference, a tfvars file and ECS's API.
        crate::safe_name::check_image_tag("image_tag", &spec.image_tag)
            .map_err(JobError::Invalid)?;
        if let Some(repository) = &spec.image_repository {
            crate::safe_name::check_image_repository("image_repository", repository)
                .map_err(JobError::Invalid)?;
        }
        Ok(spec)
    }
}

/// Records the worker's `deploy_config` in its metadata (replaced whole):
/// what Trellis's Update and Destroy buttons copy into the next worker
/// job's snapshot. The image (repository and tag), cpu and memory are what
/// the worker runs, `token` the worker's (it goes back to the party that
/// issued it, never to a log, tfvars or a plan).
async fn record_deploy_config(
    context: &JobContext,
    spec: &WorkerSpec,
    token: Option<&str>,
    deployed: &Deployed,
) -> Result<(), JobError> {
    let snapshot = &context.job.config_snapshot;
    let mut config = Map::new();
    config.insert("region".into(), json!(spec.region));
    config.insert("cloud_provider".into(), json!(context.provider().as_str()));
    if let Some(url) = read(snapshot, "trellis_url")? {
        config.insert("trellis_url".into(), json!(url));
    }
    config.insert("image_repository".into(), json!(deployed.image.repository));
    config.insert("image_tag".into(), json!(deployed.image.tag));
    for (key, value) in [("cpu", &deployed.cpu), ("memory", &deployed.memory)] {
        if !value.is_null() {
            config.insert(key.into(), value.clone());
        }
    }
    match token {
        Some(token) => {
            config.insert("worker_token".into(), json!(token));
        }
        None => context.log.system(
            "warning: the snapshot has no worker_token: the worker's deploy_config is recorded without it, and \
             Trellis will ask for a re-deploy before the next update",
        ),
    }
    context
        .reporter
        .replace_worker_metadata(
            &spec.worker_id,
            Map::from_iter([("deploy_config".to_string(), Value::Object(config))]),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_names_use_the_first_eight_characters() {
        assert_eq!(worker_short_id("0123456789abcdef"), "01234567");
    }
}
