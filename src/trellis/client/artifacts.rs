//! A PLAN job's binary plan: uploaded after the plan, downloaded by the
//! DEPLOY that applies it.

use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use serde_json::Value;

use super::answer::{api_not_found, json_body, read_capped, send, Capped, Limit, SMALL_ANSWER};
use super::{TrellisClient, TrellisError};

/// The most Trellis accepts as a plan artifact.
pub const MAX_PLAN_ARTIFACT_BYTES: usize = 52_428_800;

/// How much of a downloaded plan is read.
const PLAN_LIMIT: Limit = Limit {
    bytes: MAX_PLAN_ARTIFACT_BYTES,
    what: "the plan artifact",
    setting: "the 50 MiB Trellis stores",
};

impl TrellisClient {
    /// `POST /jobs/{id}/plan-artifact`: returns the storage key. The size
    /// limit is checked before anything is sent.
    pub async fn upload_plan_artifact(
        &self,
        job_id: &str,
        plan: Vec<u8>,
    ) -> Result<String, TrellisError> {
        if plan.len() > MAX_PLAN_ARTIFACT_BYTES {
            return Err(TrellisError::ArtifactTooLarge(plan.len()));
        }
        let request = self
            .request(Method::POST, &["jobs", job_id, "plan-artifact"])
            .timeout(self.artifact_timeout)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(plan);
        let body: Value = json_body(send(request).await?, SMALL_ANSWER).await?;
        body.get("key")
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| {
                TrellisError::InvalidResponse("the artifact upload answer has no key".into())
            })
    }

    /// `GET /jobs/{id}/plan-artifact`: `None` when there is none.
    pub async fn download_plan_artifact(
        &self,
        job_id: &str,
    ) -> Result<Option<Vec<u8>>, TrellisError> {
        let request = self
            .request(Method::GET, &["jobs", job_id, "plan-artifact"])
            .timeout(self.artifact_timeout);
        match send(request).await {
            Ok(response) => match read_capped(response, PLAN_LIMIT).await {
                Ok(bytes) => Ok(Some(bytes)),
                Err(Capped::Over { .. }) => Err(PLAN_LIMIT.exceeded(None)),
                Err(Capped::Failed(error)) => Err(error),
            },
            Err(error) => api_not_found(error, "Plan artifact not found"),
        }
    }
}
