//! How an executor reports and fetches what it needs from outside the job:
//! progress metadata during a job, the plan artifact, and the PLAN job a
//! DEPLOY applies. Two implementations: Trellis (see
//! [`crate::delivery::reporter`]: progress through the job's ordered status
//! queue) and local files (for `tendril exec`, see [`local`]).
//!
//! Failures are a [`ReportError`]; `jobs` turns one into its own error.

pub mod local;

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::delivery::reporter::TrellisReporter;
use crate::secrets::MaskedSecret;
use crate::trellis::{Registration, TrellisError};

/// Why a report or fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Trellis(#[from] TrellisError),
    /// The job asked for something its reporter cannot give.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Io(String),
}

impl ReportError {
    pub fn io(what: &str, error: std::io::Error) -> Self {
        ReportError::Io(format!("{what}: {error}"))
    }
}

/// Where an executor's progress goes and its inputs come from.
#[derive(Clone)]
pub enum Reporter {
    Trellis(TrellisReporter),
    Local(Arc<local::LocalReport>),
}

impl Reporter {
    /// Progress metadata (a PROCESSING update): merged shallowly into the
    /// job's `execution_metadata`; never delivered after the terminal update.
    pub fn progress(&self, metadata: Map<String, Value>) {
        match self {
            Reporter::Trellis(trellis) => trellis.progress(metadata),
            Reporter::Local(report) => report.merge(metadata),
        }
    }

    /// Stores a job's binary plan; returns its key.
    pub async fn upload_plan_artifact(
        &self,
        job_id: &str,
        plan: Vec<u8>,
    ) -> Result<String, ReportError> {
        match self {
            Reporter::Trellis(t) => Ok(t.upload_plan_artifact(job_id, plan).await?),
            Reporter::Local(report) => report.save_plan(job_id, &plan),
        }
    }

    /// The binary plan of a PLAN job, if it has one.
    pub async fn plan_artifact(&self, plan_job_id: &str) -> Result<Option<Vec<u8>>, ReportError> {
        match self {
            Reporter::Trellis(t) => Ok(t.plan_artifact(plan_job_id).await?),
            Reporter::Local(report) => report.planned_artifact(plan_job_id),
        }
    }

    /// Replaces a worker's metadata in Trellis (for a worker a job deployed
    /// or updated; never the running worker's own).
    pub async fn replace_worker_metadata(
        &self,
        worker_id: &str,
        metadata: Map<String, Value>,
    ) -> Result<(), ReportError> {
        match self {
            Reporter::Trellis(t) => Ok(t.replace_worker_metadata(worker_id, &metadata).await?),
            Reporter::Local(report) => report.save_worker_metadata(worker_id, &metadata),
        }
    }

    /// Registers a new cloud-hosted worker; returns its id and token.
    pub async fn register_worker(
        &self,
        secret: &str,
        name: &str,
    ) -> Result<Registration, ReportError> {
        match self {
            Reporter::Trellis(t) => Ok(t.register_worker(secret, name).await?),
            Reporter::Local(_) => Err(ReportError::Invalid(
                "registering a worker needs Trellis: give the job file's snapshot a worker_id and worker_token".into(),
            )),
        }
    }

    /// Deletes a worker's registration in Trellis.
    pub async fn delete_worker(&self, worker_id: &str) -> Result<(), ReportError> {
        match self {
            Reporter::Trellis(t) => Ok(t.delete_worker(worker_id).await?),
            Reporter::Local(report) => report.save_worker_metadata(
                worker_id,
                &Map::from_iter([("deleted".to_string(), Value::Bool(true))]),
            ),
        }
    }

    /// The job's GitOps token from Trellis, masked; `None` when Trellis has
    /// none (or, for `tendril exec`, there is no Trellis to ask).
    pub async fn git_token(&self, job_id: &str) -> Result<Option<MaskedSecret>, ReportError> {
        match self {
            Reporter::Trellis(t) => Ok(t.git_token(job_id).await?),
            Reporter::Local(_) => Ok(None),
        }
    }

    /// The id of the worker that runs the job (`None` for `tendril exec`).
    pub fn worker_id(&self) -> Option<&str> {
        match self {
            Reporter::Trellis(t) => Some(t.client.worker_id()),
            Reporter::Local(_) => None,
        }
    }

    /// Another job's row as Trellis has it now, for a check made again
    /// later: `None` when Trellis cannot say, or there is no Trellis.
    pub async fn glance_at_job(&self, job_id: &str) -> Option<Value> {
        match self {
            Reporter::Trellis(t) => t.glance_at_job(job_id).await,
            Reporter::Local(_) => None,
        }
    }

    /// Records where a restart finds it that the job holds a lease on a
    /// Terraform state (`None`: no longer); `tendril exec` has no restart.
    pub fn record_state_hold(&self, hold: Option<&Value>) {
        if let Reporter::Trellis(t) = self {
            t.record_state_hold(hold);
        }
    }

    /// Another job's row (the PLAN job of a DEPLOY), if it exists.
    pub async fn job_row(&self, job_id: &str) -> Result<Option<Value>, ReportError> {
        match self {
            Reporter::Trellis(t) => Ok(t.job_row(job_id).await?),
            Reporter::Local(report) => report.planned_job(job_id),
        }
    }
}
