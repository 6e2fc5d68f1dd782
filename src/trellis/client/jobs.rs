//! The calls about one claimed job: reading its row, its status updates and
//! log chunks, and its GitOps token.

use reqwest::Method;
use serde_json::Value;

use super::answer::{api_not_found, json_body, send, SMALL_ANSWER};
use super::{TrellisClient, TrellisError};
use crate::secrets::MaskedSecret;
use crate::trellis::model::{LogChunk, StatusUpdate};

impl TrellisClient {
    /// `GET /jobs/{id}`: the bare job row, `None` when Trellis itself says
    /// there is no such job.
    pub async fn get_job(&self, job_id: &str) -> Result<Option<Value>, TrellisError> {
        match send(self.request(Method::GET, &["jobs", job_id])).await {
            Ok(response) => Ok(Some(
                json_body(response, self.job_limit("a job row")).await?,
            )),
            Err(error) => api_not_found(error, "Job not found"),
        }
    }

    /// `PUT /jobs/{id}/status`.
    pub async fn update_status(
        &self,
        job_id: &str,
        update: &StatusUpdate,
    ) -> Result<(), TrellisError> {
        send(
            self.request(Method::PUT, &["jobs", job_id, "status"])
                .json(update),
        )
        .await?;
        Ok(())
    }

    /// `POST /jobs/{id}/logs`.
    pub async fn send_logs(&self, job_id: &str, chunk: &LogChunk) -> Result<(), TrellisError> {
        send(
            self.request(Method::POST, &["jobs", job_id, "logs"])
                .json(chunk),
        )
        .await?;
        Ok(())
    }

    /// `POST /jobs/{id}/git-token`: the user's token for the vine's GitOps
    /// repository, registered for masking before it is returned; `None`
    /// when Trellis has none for this job (`{"token": null}`, 403 or 404).
    pub async fn git_token(&self, job_id: &str) -> Result<Option<MaskedSecret>, TrellisError> {
        let request = self.request(Method::POST, &["jobs", job_id, "git-token"]);
        let response = match send(request).await {
            Ok(response) => response,
            Err(TrellisError::Rejected {
                status: 403 | 404, ..
            }) => return Ok(None),
            Err(error) => return Err(error),
        };
        let body: Value = json_body(response, SMALL_ANSWER).await?;
        match body.get("token") {
            Some(Value::String(token)) if !token.is_empty() => {
                Ok(Some(MaskedSecret::new(token.clone())))
            }
            Some(Value::String(_) | Value::Null) | None => Ok(None),
            Some(_) => Err(TrellisError::InvalidResponse(
                "the git-token answer's token is not a string".into(),
            )),
        }
    }
}
