//! How an executor reports and fetches what it needs from outside the job:
//! progress metadata during a job, the plan artifact, and the PLAN job a
//! DEPLOY applies. Two implementations: Trellis (progress through the job's
//! ordered status queue, see [`crate::delivery`]) and local files (for
//! `tendril exec`, see [`local`]).

pub mod local;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::jobs::JobError;
use crate::secrets::MaskedSecret;
use crate::settings::WorkerMode;
use crate::trellis::retry::{retry, RetryPolicy};
use crate::trellis::{JobStatus, Registration, StatusUpdate, TrellisClient};

/// The Trellis side of a running job's reporting.
#[derive(Clone)]
pub struct TrellisReporter {
    pub statuses: Arc<crate::delivery::status_queue::StatusQueue>,
    pub client: TrellisClient,
    pub retry_max_delay: Duration,
}

/// Where an executor's progress goes and its inputs come from.
#[derive(Clone)]
pub enum Reporter {
    Trellis(TrellisReporter),
    Local(Arc<local::LocalReport>),
}

/// Attempts of an artifact or job read before the job fails.
const FETCH_ATTEMPTS: u32 = 5;

impl Reporter {
    /// Progress metadata (a PROCESSING update): merged shallowly into the
    /// job's `execution_metadata`; never delivered after the terminal update.
    pub fn progress(&self, metadata: Map<String, Value>) {
        match self {
            Reporter::Trellis(trellis) => trellis.statuses.push(StatusUpdate {
                status: JobStatus::Processing,
                error_message: None,
                execution_metadata: Some(metadata),
            }),
            Reporter::Local(report) => report.merge(metadata),
        }
    }

    fn policy(max_delay: Duration) -> RetryPolicy {
        RetryPolicy {
            max_attempts: Some(FETCH_ATTEMPTS),
            ..RetryPolicy::until_accepted(max_delay)
        }
    }

    /// Stores a job's binary plan; returns its key.
    pub async fn upload_plan_artifact(
        &self,
        job_id: &str,
        plan: Vec<u8>,
    ) -> Result<String, JobError> {
        match self {
            Reporter::Trellis(t) => Ok(retry(
                Self::policy(t.retry_max_delay),
                "uploading the plan",
                || t.client.upload_plan_artifact(job_id, plan.clone()),
            )
            .await?),
            Reporter::Local(report) => report.save_plan(job_id, &plan),
        }
    }

    /// The binary plan of a PLAN job, if it has one.
    pub async fn plan_artifact(&self, plan_job_id: &str) -> Result<Option<Vec<u8>>, JobError> {
        match self {
            Reporter::Trellis(t) => Ok(retry(
                Self::policy(t.retry_max_delay),
                "downloading the plan",
                || t.client.download_plan_artifact(plan_job_id),
            )
            .await?),
            Reporter::Local(report) => report.planned_artifact(plan_job_id),
        }
    }

    /// Replaces a worker's metadata in Trellis (for a worker a job deployed
    /// or updated; never the running worker's own).
    pub async fn replace_worker_metadata(
        &self,
        worker_id: &str,
        metadata: Map<String, Value>,
    ) -> Result<(), JobError> {
        match self {
            Reporter::Trellis(t) => Ok(retry(
                Self::policy(t.retry_max_delay),
                "recording the worker's metadata",
                || t.client.replace_worker_metadata(worker_id, &metadata),
            )
            .await?),
            Reporter::Local(report) => report.save_worker_metadata(worker_id, &metadata),
        }
    }

    /// Registers a new cloud-hosted worker; returns its id and token.
    pub async fn register_worker(
        &self,
        secret: &str,
        name: &str,
    ) -> Result<Registration, JobError> {
        match self {
            Reporter::Trellis(t) => Ok(retry(Self::policy(t.retry_max_delay), "registering the worker", || {
                t.client.register_worker(secret, name, WorkerMode::CloudHosted)
            })
            .await?),
            Reporter::Local(_) => Err(JobError::Invalid(
                "registering a worker needs Trellis: give the job file's snapshot a worker_id and worker_token".into(),
            )),
        }
    }

    /// Deletes a worker's registration in Trellis.
    pub async fn delete_worker(&self, worker_id: &str) -> Result<(), JobError> {
        match self {
            Reporter::Trellis(t) => Ok(retry(
                Self::policy(t.retry_max_delay),
                "deleting the worker's registration",
                || t.client.delete_worker(worker_id),
            )
            .await?),
            Reporter::Local(report) => report.save_worker_metadata(
                worker_id,
                &Map::from_iter([("deleted".to_string(), Value::Bool(true))]),
            ),
        }
    }

    /// The job's GitOps token from Trellis, masked; `None` when Trellis has
    /// none (or, for `tendril exec`, there is no Trellis to ask).
    pub async fn git_token(&self, job_id: &str) -> Result<Option<MaskedSecret>, JobError> {
        match self {
            Reporter::Trellis(t) => Ok(retry(
                Self::policy(t.retry_max_delay),
                "fetching the git token",
                || t.client.git_token(job_id),
            )
            .await?),
            Reporter::Local(_) => Ok(None),
        }
    }

    /// Another job's row (the PLAN job of a DEPLOY), if it exists.
    pub async fn job_row(&self, job_id: &str) -> Result<Option<Value>, JobError> {
        match self {
            Reporter::Trellis(t) => Ok(retry(
                Self::policy(t.retry_max_delay),
                "reading the plan job",
                || t.client.get_job(job_id),
            )
            .await?),
            Reporter::Local(report) => report.planned_job(job_id),
        }
    }
}
