//! The vine jobs: PLAN, DEPLOY, DESTROY and BOOTSTRAP, on real Terraform.
//!
//! Each prepares the same way (template copy, tfvars, state backend,
//! `terraform init`), then plans, applies or destroys. A DEPLOY applies
//! exactly the plan a PLAN job uploaded, after checking that the vine's
//! configuration has not changed since; without a `plan_job_id` it plans in
//! the job. An interrupted apply or destroy pushes any `errored.tfstate` back
//! to the backend before the workspace goes, and a held lock is named.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use super::cluster::{self, output_fact};
use super::vine_inputs::{
    copy_template, tfvars, vine_state_key, write_backend, StateBackend, STATE_BUCKET,
};
use super::{costs, redact};
use super::{JobContext, JobError};
use crate::tools::terraform::{lock_id, Terraform};
use crate::tools::ToolError;
use crate::trellis::client::MAX_PLAN_ARTIFACT_BYTES;

const PLAN_FILE: &str = "terraform.plan.out";
const VAR_FILE: &str = "terraform.tfvars.json";
const ERRORED_STATE: &str = "errored.tfstate";

/// The exact message of a DEPLOY whose vine changed after its plan.
pub const CONFIGURATION_CHANGED: &str =
    "Configuration has changed since the plan was generated. Please re-plan.";

/// A phase's duration in seconds, to a tenth.
fn seconds(took: Duration) -> Value {
    json!((took.as_secs_f64() * 10.0).round() / 10.0)
}

/// A vine's Terraform configuration in the job's workspace, initialised.
struct Vine<'a> {
    context: &'a JobContext,
    dir: PathBuf,
    state_key: String,
    timings: Map<String, Value>,
}

impl<'a> Vine<'a> {
    /// Copies the template, writes tfvars and the backend, runs `init`.
    async fn prepare(context: &'a JobContext) -> Result<Vine<'a>, JobError> {
        let job = &context.job;
        let state_key = vine_state_key(job.vineyard_id.as_deref(), &job.config_snapshot)?;
        let provider = context.provider();
        let template = context.settings.templates_dir.join("vine").join(&provider);
        let dir = context.workspace.path().join("vine");
        let phase = context.log.phase("preparing the Terraform configuration");
        copy_template(&template, &dir)?;
        let vars = serde_json::to_vec_pretty(&tfvars(&job.config_snapshot)).unwrap_or_default();
        crate::private_files::write_private_file(&dir.join(VAR_FILE), &vars)
            .map_err(|e| JobError::io("cannot write terraform.tfvars.json", e))?;
        let backend = match &context.settings.state_storage {
            Some(storage) => {
                context.log.system(&format!(
                    "state: s3://{STATE_BUCKET}/{state_key} at {}",
                    storage.endpoint
                ));
                StateBackend::Bucket(storage)
            }
            None => {
                let path = context.settings.state_dir.join(&state_key);
                context.log.system(&format!(
                    "state: {} (local: no SUPABASE_S3_ENDPOINT is set)",
                    path.display()
                ));
                StateBackend::Local(&context.settings.state_dir)
            }
        };
        let backend_config = write_backend(&backend, &state_key, &context.workspace, &dir)?;
        let mut vine = Vine {
            context,
            dir,
            state_key,
            timings: Map::new(),
        };
        vine.record("prepare", phase.finish());
        let phase = context.log.phase("terraform init");
        vine.terraform()
            .await?
            .init(backend_config.as_deref())
            .await?;
        vine.record("terraform_init", phase.finish());
        Ok(vine)
    }

    fn record(&mut self, name: &str, took: Duration) {
        self.timings.insert(
            name.into(),
            json!((took.as_secs_f64() * 10.0).round() / 10.0),
        );
    }

    /// Terraform in the vine's directory, with fresh credentials and its own grace.
    async fn terraform(&self) -> Result<Terraform<'a>, JobError> {
        let mut base = self.context.command("terraform", &[]).await?;
        base.cwd = self.dir.clone();
        base.grace = self.context.settings.terraform_grace;
        Ok(Terraform::new(
            base,
            &self.context.log,
            &self.context.stop,
            self.context.settings.terraform_lock_timeout,
        ))
    }

    async fn plan(&mut self) -> Result<(), JobError> {
        let phase = self.context.log.phase("terraform plan");
        self.terraform().await?.plan(VAR_FILE, PLAN_FILE).await?;
        self.record("terraform_plan", phase.finish());
        Ok(())
    }

    async fn apply(&mut self) -> Result<(), JobError> {
        let phase = self.context.log.phase("terraform apply");
        let result = self.terraform().await?.apply(PLAN_FILE).await;
        self.after_state_change(result).await?;
        self.record("terraform_apply", phase.finish());
        Ok(())
    }

    async fn destroy(&mut self) -> Result<(), JobError> {
        let phase = self.context.log.phase("terraform destroy");
        let result = self.terraform().await?.destroy(VAR_FILE).await;
        self.after_state_change(result).await?;
        self.record("terraform_destroy", phase.finish());
        Ok(())
    }

    /// After an apply or destroy that did not finish: the state Terraform
    /// could not write goes back to the backend, and a held lock is named.
    async fn after_state_change(&self, result: Result<(), ToolError>) -> Result<(), JobError> {
        let Err(error) = result else { return Ok(()) };
        self.push_errored_state().await;
        if let ToolError::Stopped { .. } = error {
            return Err(match self.left_lock().await {
                Some(id) => JobError::StoppedLeaving(format!(
                    "the state lock {id} was left at s3://{STATE_BUCKET}/{}.tflock: once no run is active, \
                     release it with `terraform force-unlock {id}`",
                    self.state_key
                )),
                None => JobError::Stopped,
            });
        }
        match &error {
            ToolError::Failed { stderr_tail, .. } => match lock_id(stderr_tail) {
                Some(id) => Err(JobError::Invalid(format!(
                    "{error}\nThe state lock {id} is held; once no other run is active, release it with \
                     `terraform force-unlock {id}`"
                ))),
                None => Err(error.into()),
            },
            _ => Err(error.into()),
        }
    }

    /// The ID of a lock a killed Terraform left in the bucket, if any (a
    /// local state's lock dies with the process that held it).
    async fn left_lock(&self) -> Option<String> {
        let storage = self.context.settings.state_storage.as_ref()?;
        let lock_file = self.context.workspace.path().join("left-lock.json");
        let key = format!("{}.tflock", self.state_key);
        let target = lock_file.display().to_string();
        let args = [
            "s3api",
            "get-object",
            "--bucket",
            STATE_BUCKET,
            "--key",
            &key,
            &target,
        ];
        let mut command = self.context.command("aws", &args).await.ok()?;
        command.args.extend([
            "--endpoint-url".into(),
            storage.endpoint.clone(),
            "--region".into(),
            storage.region.clone(),
        ]);
        command.env.remove("AWS_SESSION_TOKEN");
        command
            .env
            .insert("AWS_ACCESS_KEY_ID".into(), storage.key_id.expose().into());
        command.env.insert(
            "AWS_SECRET_ACCESS_KEY".into(),
            storage.secret_key.expose().into(),
        );
        self.context
            .log
            .system(&format!("checking for a state lock left at {key}"));
        let stop = CancellationToken::new();
        let read = crate::tools::run(&command, &self.context.log, &stop);
        tokio::time::timeout(Duration::from_secs(60), read)
            .await
            .ok()?
            .ok()?;
        let lock: Value = serde_json::from_slice(&std::fs::read(&lock_file).ok()?).ok()?;
        lock.get("ID").and_then(Value::as_str).map(String::from)
    }

    async fn push_errored_state(&self) {
        if !self.dir.join(ERRORED_STATE).exists() {
            return;
        }
        self.context.log.system("Terraform could not save its state and left errored.tfstate: pushing it to the backend");
        // The job's own stop may be cancelled by now: the push gets its own bound.
        let stop = CancellationToken::new();
        let bound = self.context.settings.terraform_grace + Duration::from_secs(60);
        let push = async {
            match self.terraform().await {
                Ok(terraform) => terraform
                    .state_push(ERRORED_STATE, &stop)
                    .await
                    .map_err(JobError::from),
                Err(error) => Err(error),
            }
        };
        match tokio::time::timeout(bound, push).await {
            Ok(Ok(())) => self
                .context
                .log
                .system("errored.tfstate was pushed: the state is up to date"),
            Ok(Err(error)) => self.context.log.system(&format!(
                "pushing errored.tfstate failed ({error}): the state at {} may miss resources",
                self.state_key
            )),
            Err(_) => {
                stop.cancel();
                self.context
                    .log
                    .system("pushing errored.tfstate took too long and was stopped");
            }
        }
    }

    /// Reads the plan file, for upload.
    fn plan_bytes(&self) -> Result<Vec<u8>, JobError> {
        let bytes = std::fs::read(self.dir.join(PLAN_FILE))
            .map_err(|e| JobError::io("cannot read the plan file", e))?;
        if bytes.len() > MAX_PLAN_ARTIFACT_BYTES {
            return Err(JobError::Invalid(format!(
                "the plan file is {} bytes, over the 52,428,800 bytes (50 MiB) Trellis stores: split the vine \
                 or plan fewer changes at once",
                bytes.len()
            )));
        }
        Ok(bytes)
    }
}

/// PLAN: plan, show, upload the plan for a later DEPLOY.
pub async fn plan(context: &JobContext) -> Result<Map<String, Value>, JobError> {
    let mut vine = Vine::prepare(context).await?;
    vine.plan().await?;
    let shown = vine.terraform().await?.show_json(PLAN_FILE).await?;
    let phase = context.log.phase("uploading the plan");
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
    if let Some(id) = plan_job_id {
        check_plan_job(context, id).await?;
    }
    let mut vine = Vine::prepare(context).await?;
    match plan_job_id {
        Some(id) => {
            let phase = context.log.phase("downloading the reviewed plan");
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
    let (plain, redacted, _masked) = redact::outputs(&raw);
    let cluster_name = output_fact(&plain, &["eks_cluster_name", "cluster_name"]);
    let setup = match cluster_name.as_str() {
        Some(name) => {
            let timings = &mut vine.timings;
            let mut record = |phase: &str, took: Duration| {
                timings.insert(phase.into(), seconds(took));
            };
            Some(cluster::set_up(context, &plain, name, &mut record).await?)
        }
        None => {
            context.log.system(
                "no cluster in the Terraform outputs: skipping kubeconfig, ArgoCD and App of Apps",
            );
            None
        }
    };
    let mut metadata = Map::new();
    metadata.insert("cluster_name".into(), cluster_name);
    metadata.insert(
        "cluster_endpoint".into(),
        output_fact(&plain, &["eks_cluster_endpoint", "cluster_endpoint"]),
    );
    metadata.insert(
        "cluster_arn".into(),
        output_fact(&plain, &["eks_cluster_arn", "cluster_arn"]),
    );
    let (argocd_url, password) = match setup {
        Some(setup) => (setup.argocd_url, setup.argocd_admin_password),
        None => (Value::Null, Value::Null),
    };
    metadata.insert("argocd_url".into(), argocd_url);
    metadata.insert("argocd_admin_password".into(), password);
    metadata.insert("outputs".into(), Value::Object(redacted));
    metadata.insert("timings".into(), Value::Object(vine.timings));
    Ok(metadata)
}

/// The checks before a DEPLOY applies a PLAN job's plan.
async fn check_plan_job(context: &JobContext, plan_job_id: &str) -> Result<(), JobError> {
    let invalid = |message: String| Err(JobError::Invalid(message));
    let Some(plan) = context.reporter.job_row(plan_job_id).await? else {
        return invalid(format!("the PLAN job {plan_job_id} does not exist"));
    };
    let text = |row: &Value, key: &str| {
        row.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let job_type = text(&plan, "job_type");
    if job_type != "PLAN" {
        return invalid(format!("job {plan_job_id} is a {job_type} job, not a PLAN"));
    }
    if plan.get("vine_id").and_then(Value::as_str) != context.job.vine_id.as_deref() {
        return invalid(format!(
            "the PLAN job {plan_job_id} belongs to another vine"
        ));
    }
    let status = text(&plan, "status");
    if status != "SUCCESS" {
        return invalid(format!(
            "the PLAN job {plan_job_id} is {status}, not SUCCESS: there is no plan to apply"
        ));
    }
    let plan_hash = text(&plan, "configuration_hash");
    let own_hash = context.job.configuration_hash.clone().unwrap_or_default();
    let changed = if !plan_hash.is_empty() && !own_hash.is_empty() {
        plan_hash != own_hash
    } else {
        let planned = plan.get("config_snapshot").cloned().unwrap_or(Value::Null);
        planned != Value::Object(context.job.config_snapshot.clone())
    };
    if changed {
        return invalid(CONFIGURATION_CHANGED.into());
    }
    Ok(())
}

/// DESTROY: from the snapshot and the remote state alone.
pub async fn destroy(context: &JobContext) -> Result<Map<String, Value>, JobError> {
    let mut vine = Vine::prepare(context).await?;
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
