//! A Terraform configuration in a job's workspace, initialised: the
//! template of its kind copied in, its variables, its state backend. PLAN,
//! DEPLOY, DESTROY and the worker jobs all run Terraform through a stack,
//! its plans and applies between the operator's hooks (see `hooks`).
//!
//! Every command that takes the state lock (plan, apply, destroy) runs as a
//! [`LockedRun`] (see `state_lock`): under a lease on the state, with a lock
//! its ended Terraform left released and a lock someone else holds named.
//! An apply or destroy that did not finish pushes any `errored.tfstate` back
//! to the backend before the lock it left is released and the workspace
//! goes; the push never outlives the job.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::hooks::{self, Hook};
use super::stack_inputs::{copy_template, write_backend, StateBackend};
use super::state_lock::{LockedRun, Operation};
use super::{JobContext, JobError};
use crate::cloud::state_bucket::StateBucket;
use crate::private_files::write_private_file;
use crate::tools::terraform::Terraform;
use crate::trellis::client::MAX_PLAN_ARTIFACT_BYTES;

pub const PLAN_FILE: &str = "terraform.plan.out";

/// Why a Terraform job fails on a worker with nowhere to keep state.
pub const NO_STATE_BACKEND: &str = "this worker has no Terraform state backend: set SUPABASE_S3_ENDPOINT \
     (with SUPABASE_S3_REGION, SUPABASE_STORAGE_KEY_ID and SUPABASE_STORAGE_SECRET_KEY) for the platform's \
     state bucket, or TENDRIL_STATE_DIR to keep state on this machine only";
const VAR_FILE: &str = "terraform.tfvars.json";
const ERRORED_STATE: &str = "errored.tfstate";

/// How the stop cleanup after a Terraform command that takes the lock is
/// shared out, from when the command ended: looking for the lock it left
/// and releasing it may take the whole of it; an `errored.tfstate` push
/// runs for the first half at most, then gets SIGINT and a quarter more
/// before SIGKILL (`terraform state push` ignores SIGINT; S3 writes an
/// object whole or not at all), so that the release has a quarter of its
/// own even when the push took all of its time.
struct CleanupPlan {
    end: Instant,
    push_stopped_at: Instant,
    push_grace: Duration,
    release_at_least: Duration,
}

fn cleanup_plan(ended: Instant, stop_cleanup: Duration) -> CleanupPlan {
    CleanupPlan {
        end: ended + stop_cleanup,
        push_stopped_at: ended + stop_cleanup / 2,
        push_grace: stop_cleanup / 4,
        release_at_least: stop_cleanup / 4,
    }
}

/// A phase's duration in seconds, to a tenth.
pub fn seconds(took: Duration) -> Value {
    json!((took.as_secs_f64() * 10.0).round() / 10.0)
}

/// `TENDRIL_TEMPLATES_DIR/<kind>/<provider>`: the template of a job.
pub fn template_dir(context: &JobContext, kind: &str) -> PathBuf {
    context
        .settings
        .templates_dir
        .join(kind)
        .join(context.provider().as_str())
}

/// A Terraform configuration in the job's workspace, initialised.
pub struct Stack<'a> {
    context: &'a JobContext,
    pub dir: PathBuf,
    pub state_key: String,
    pub timings: Map<String, Value>,
    /// Variables for Terraform's environment (`TF_VAR_...` of secrets, and
    /// what the job's hooks wrote to `TENDRIL_HOOK_ENV`).
    env: BTreeMap<String, String>,
}

impl<'a> Stack<'a> {
    /// Copies `templates/<kind>/<provider>` into the workspace, writes the
    /// variables and the backend for `state_key`, runs `init`.
    pub async fn prepare(
        context: &'a JobContext,
        kind: &str,
        vars: &Map<String, Value>,
        state_key: String,
        env: BTreeMap<String, String>,
    ) -> Result<Stack<'a>, JobError> {
        let template = template_dir(context, kind);
        let dir = context.workspace.path().join(kind);
        let phase = context.log.phase("preparing the Terraform configuration");
        copy_template(&template, &dir)?;
        let vars = serde_json::to_vec_pretty(vars).unwrap_or_default();
        write_private_file(&dir.join(VAR_FILE), &vars)
            .map_err(|e| JobError::io("cannot write terraform.tfvars.json", e))?;
        let settings = &context.settings;
        let backend = match (&settings.state_storage, &settings.state_dir) {
            (Some(storage), _) => {
                context.log.system(&format!(
                    "state: {} at {}",
                    StateBucket::describe(&state_key),
                    storage.endpoint
                ));
                StateBackend::Bucket(storage)
            }
            (None, Some(state_dir)) => {
                let path = state_dir.join(&state_key);
                context.log.system(&format!(
                    "state: {} (local: no SUPABASE_S3_ENDPOINT is set)",
                    path.display()
                ));
                StateBackend::Local(state_dir)
            }
            (None, None) => return Err(JobError::Invalid(NO_STATE_BACKEND.into())),
        };
        let backend_config = write_backend(&backend, &state_key, &context.workspace, &dir)?;
        let mut stack = Stack {
            context,
            dir,
            state_key,
            timings: Map::new(),
            env,
        };
        stack.record("prepare", phase.finish());
        let phase = context.phase("init", "terraform init");
        stack
            .terraform()
            .await?
            .init(backend_config.as_deref())
            .await?;
        stack.record("terraform_init", phase.finish());
        Ok(stack)
    }

    pub fn record(&mut self, name: &str, took: Duration) {
        self.timings.insert(name.into(), seconds(took));
    }

    /// Terraform in the stack's directory, with fresh credentials and its own grace.
    pub async fn terraform(&self) -> Result<Terraform<'a>, JobError> {
        self.terraform_stopped_by(&self.context.stop, self.context.settings.terraform_grace)
            .await
    }

    /// The same, stopped by `stop` and given `grace` between SIGINT and SIGKILL.
    async fn terraform_stopped_by<'s>(
        &self,
        stop: &'s CancellationToken,
        grace: Duration,
    ) -> Result<Terraform<'s>, JobError>
    where
        'a: 's,
    {
        let mut base = self.context.command("terraform", &[]).await?;
        base.env.extend(self.env.clone());
        base.cwd = self.dir.clone();
        base.grace = grace;
        Ok(Terraform::new(
            base,
            &self.context.log,
            stop,
            self.context.settings.terraform_lock_timeout,
        ))
    }

    /// `terraform plan`, between the plan hooks; what hooks write to
    /// `TENDRIL_HOOK_ENV` joins the stack's environment.
    pub async fn plan(&mut self) -> Result<(), JobError> {
        let phase = self.context.phase("plan", "terraform plan");
        hooks::run(self.context, Hook::PrePlan, &self.dir, &mut self.env).await?;
        let ran = self.run_locked(Operation::Plan).await;
        hooks::after(self.context, Hook::PostPlan, &self.dir, &mut self.env, ran).await?;
        self.record("terraform_plan", phase.finish());
        Ok(())
    }

    /// `terraform apply` of the plan file, between the apply hooks.
    pub async fn apply(&mut self) -> Result<(), JobError> {
        let phase = self.context.phase("apply", "terraform apply");
        hooks::run(self.context, Hook::PreApply, &self.dir, &mut self.env).await?;
        let ran = self.run_locked(Operation::Apply).await;
        hooks::after(self.context, Hook::PostApply, &self.dir, &mut self.env, ran).await?;
        self.record("terraform_apply", phase.finish());
        Ok(())
    }

    /// `terraform destroy`, DESTROY's apply: between the apply hooks too.
    pub async fn destroy(&mut self) -> Result<(), JobError> {
        let phase = self.context.phase("destroy", "terraform destroy");
        hooks::run(self.context, Hook::PreApply, &self.dir, &mut self.env).await?;
        let ran = self.run_locked(Operation::Destroy).await;
        hooks::after(self.context, Hook::PostApply, &self.dir, &mut self.env, ran).await?;
        self.record("terraform_destroy", phase.finish());
        Ok(())
    }

    /// A command that takes the state lock, as a [`LockedRun`]. After one
    /// that did not finish, the state Terraform could not write goes back
    /// to the backend before the lock it left (if any) is released: all of
    /// it within the stop cleanup, as a stopped worker has a shutdown to fit
    /// in (see [`cleanup_plan`]).
    async fn run_locked(&self, operation: Operation) -> Result<(), JobError> {
        // Credentials first: nothing may fail between the lease and its end.
        let stop = self.context.stop.child_token();
        let terraform = self
            .terraform_stopped_by(&stop, self.context.settings.terraform_grace)
            .await?;
        let user = terraform.lock_user();
        let run = LockedRun::begin(
            self.context,
            &self.state_key,
            operation,
            &user,
            stop.clone(),
        )
        .await?;
        let terraform = terraform.with_lock_timeout(run.lock_timeout());
        let result = run
            .watch(async {
                match operation {
                    Operation::Plan => terraform.plan(VAR_FILE, PLAN_FILE).await,
                    Operation::Apply => terraform.apply(PLAN_FILE).await,
                    Operation::Destroy => terraform.destroy(VAR_FILE).await,
                }
            })
            .await;
        let cleanup = cleanup_plan(Instant::now(), self.context.settings.stop_cleanup);
        let left = run.left_lock(&result, cleanup.end).await;
        if result.is_err() {
            self.push_errored_state(&cleanup, !left.is_ours()).await;
        }
        let release_by = cleanup.end.max(Instant::now() + cleanup.release_at_least);
        run.end(result, left, release_by).await
    }

    /// Pushes an `errored.tfstate` an interrupted run left; takes the lock
    /// for it unless the run's own lock is still in place (`lock`). Returns
    /// only once the push has ended: one that runs past its time is stopped
    /// and reaped first, so that no state write outlives the job, its lease
    /// or the release of its lock.
    async fn push_errored_state(&self, cleanup: &CleanupPlan, lock: bool) {
        if !self.dir.join(ERRORED_STATE).exists() {
            return;
        }
        self.context.log.system("Terraform could not save its state and left errored.tfstate: pushing it to the backend");
        // The job's own stop may be cancelled by now: the push has its own.
        let stop = CancellationToken::new();
        let terraform = self.terraform_stopped_by(&stop, cleanup.push_grace);
        let pushed = match tokio::time::timeout_at(cleanup.push_stopped_at, terraform).await {
            Ok(Ok(terraform)) => {
                let push = terraform.state_push(ERRORED_STATE, lock, &stop);
                tokio::pin!(push);
                tokio::select! {
                    pushed = &mut push => pushed,
                    _ = tokio::time::sleep_until(cleanup.push_stopped_at) => {
                        self.context.log.system(
                            "pushing errored.tfstate takes longer than half of TENDRIL_STOP_CLEANUP_TIMEOUT: \
                             stopping it, so that the state lock can still be released in time",
                        );
                        stop.cancel();
                        push.await
                    }
                }
                .map_err(|error| error.to_string())
            }
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("its credentials were not ready in time".into()),
        };
        match pushed {
            Ok(()) => self
                .context
                .log
                .system("errored.tfstate was pushed: the state is up to date"),
            Err(error) => self.context.log.system(&format!(
                "pushing errored.tfstate failed ({error}): the state at {} may miss resources",
                self.state_key
            )),
        }
    }

    /// Reads the plan file, for upload.
    pub fn plan_bytes(&self) -> Result<Vec<u8>, JobError> {
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
