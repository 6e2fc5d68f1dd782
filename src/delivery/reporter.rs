//! The Trellis side of a running job's reporting (the `Trellis` arm of
//! `report::Reporter`): progress goes into the job's ordered status queue;
//! the plan artifact, another job's row, the git token and the workers a
//! job deploys are asked of Trellis, a few times before the job fails (a
//! refusal of Trellis's own fewer, a registration's not again).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::outbox::OutboxEntry;
use super::status_queue::StatusQueue;
use crate::secrets::MaskedSecret;
use crate::settings::WorkerMode;
use crate::trellis::retry::{retry, RetryPolicy};
use crate::trellis::{JobStatus, Registration, StatusUpdate, TrellisClient, TrellisError};

/// Attempts of an artifact or job read before the job fails.
const FETCH_ATTEMPTS: u32 = 5;

/// Reports one running job to Trellis.
#[derive(Clone)]
pub struct TrellisReporter {
    pub statuses: Arc<StatusQueue>,
    pub client: TrellisClient,
    pub retry_max_delay: Duration,
    /// The job's outbox entry, for what a restart must find.
    pub entry: Arc<OutboxEntry>,
}

impl TrellisReporter {
    /// Queues a PROCESSING update carrying `metadata`.
    pub fn progress(&self, metadata: Map<String, Value>) {
        self.statuses.push(StatusUpdate {
            status: JobStatus::Processing,
            error_message: None,
            execution_metadata: Some(metadata),
        });
    }

    fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: Some(FETCH_ATTEMPTS),
            ..RetryPolicy::until_accepted(self.retry_max_delay)
        }
    }

    /// Stores a job's binary plan; returns its key.
    pub async fn upload_plan_artifact(
        &self,
        job_id: &str,
        plan: Vec<u8>,
    ) -> Result<String, TrellisError> {
        retry(self.policy(), "uploading the plan", || {
            self.client.upload_plan_artifact(job_id, plan.clone())
        })
        .await
    }

    /// The binary plan of a PLAN job, if it has one.
    pub async fn plan_artifact(&self, plan_job_id: &str) -> Result<Option<Vec<u8>>, TrellisError> {
        retry(self.policy(), "downloading the plan", || {
            self.client.download_plan_artifact(plan_job_id)
        })
        .await
    }

    /// Replaces a worker's metadata.
    pub async fn replace_worker_metadata(
        &self,
        worker_id: &str,
        metadata: &Map<String, Value>,
    ) -> Result<(), TrellisError> {
        retry(self.policy(), "recording the worker's metadata", || {
            self.client.replace_worker_metadata(worker_id, metadata)
        })
        .await
    }

    /// Registers a new cloud-hosted worker; returns its id and token.
    pub async fn register_worker(
        &self,
        secret: &str,
        name: &str,
    ) -> Result<Registration, TrellisError> {
        // A registration Trellis refuses (a name taken, a constraint) is
        // refused again: it is not retried. One whose answer is lost may
        // have been made: sent again, it would fail on the name, and the
        // first one's token would be lost all the same.
        let policy = self.policy().refusals_not_retried().not_idempotent();
        retry(policy, "registering the worker", || {
            self.client
                .register_worker(secret, name, WorkerMode::CloudHosted)
        })
        .await
        .map_err(|error| match error.surely_not_carried_out() {
            true => error,
            false => TrellisError::AnswerLost {
                error: Box::new(error),
                consequence: "a worker may have been registered under this name whose token is lost: delete it \
                              on the Tendrils page, then run the job again",
            },
        })
    }

    /// Deletes a worker's registration.
    pub async fn delete_worker(&self, worker_id: &str) -> Result<(), TrellisError> {
        retry(self.policy(), "deleting the worker's registration", || {
            self.client.delete_worker(worker_id)
        })
        .await
    }

    /// The job's GitOps token, masked; `None` when Trellis has none.
    pub async fn git_token(&self, job_id: &str) -> Result<Option<MaskedSecret>, TrellisError> {
        retry(self.policy(), "fetching the git token", || {
            self.client.git_token(job_id)
        })
        .await
    }

    /// Another job's row, if it exists.
    pub async fn job_row(&self, job_id: &str) -> Result<Option<Value>, TrellisError> {
        retry(self.policy(), "reading the plan job", || {
            self.client.get_job(job_id)
        })
        .await
    }

    /// Another job's row, asked a few quick times for a check that is made
    /// again later; `None` when Trellis cannot say now.
    pub async fn glance_at_job(&self, job_id: &str) -> Option<Value> {
        let policy = RetryPolicy::few(self.retry_max_delay);
        match retry(policy, "reading another job", || {
            self.client.get_job(job_id)
        })
        .await
        {
            Ok(row) => row,
            Err(error) => {
                tracing::warn!("cannot read job {job_id} in Trellis: {error}");
                None
            }
        }
    }

    /// Records in the outbox entry that the job holds a lease on a state
    /// (`None`: it holds none any more).
    pub fn record_state_hold(&self, hold: Option<&Value>) {
        let saved = match hold {
            Some(hold) => self.entry.save_state_hold(hold),
            None => {
                self.entry.clear_state_hold();
                Ok(())
            }
        };
        if let Err(error) = saved {
            tracing::warn!(
                "cannot record job {}'s lease on its Terraform state in the outbox ({error}): after a crash, a \
                 lock it left is released only when its lease expires",
                self.entry.job_id()
            );
        }
    }
}
