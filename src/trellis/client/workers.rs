//! The calls about workers: this worker's heartbeat, and registering,
//! describing and deleting the workers a job deploys (or `tendril
//! register`, which is no worker).

use std::time::Duration;

use reqwest::header::HeaderValue;
use reqwest::{Method, Url};
use serde_json::{Map, Value};

use super::address::api_base;
use super::answer::{json_body, send, transport, SMALL_ANSWER};
use super::{TrellisClient, TrellisError};
use crate::settings::WorkerMode;
use crate::trellis::model::{Heartbeat, Registration};

impl TrellisClient {
    /// `POST /workers/heartbeat`.
    pub async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<(), TrellisError> {
        send(
            self.request(Method::POST, &["workers", "heartbeat"])
                .json(heartbeat),
        )
        .await?;
        Ok(())
    }

    /// `PATCH /workers/{id}/metadata`: replaces the whole object.
    pub async fn replace_worker_metadata(
        &self,
        worker_id: &str,
        metadata: &Map<String, Value>,
    ) -> Result<(), TrellisError> {
        send(
            self.request(Method::PATCH, &["workers", worker_id, "metadata"])
                .json(metadata),
        )
        .await?;
        Ok(())
    }

    /// `POST /tendrils/register`, for a worker a DEPLOY_WORKER deploys.
    pub async fn register_worker(
        &self,
        registration_secret: &str,
        name: &str,
        mode: WorkerMode,
    ) -> Result<Registration, TrellisError> {
        register_at(
            &self.http,
            self.url(&["tendrils", "register"]),
            registration_secret,
            name,
            mode,
        )
        .await
    }

    /// `DELETE /workers/{id}`.
    pub async fn delete_worker(&self, worker_id: &str) -> Result<(), TrellisError> {
        send(self.request(Method::DELETE, &["workers", worker_id])).await?;
        Ok(())
    }
}

/// `POST /tendrils/register` at `url`: registers a new worker with the
/// platform's registration secret (not a worker's credentials), always
/// naming its mode.
async fn register_at(
    http: &reqwest::Client,
    url: Url,
    registration_secret: &str,
    name: &str,
    mode: WorkerMode,
) -> Result<Registration, TrellisError> {
    let mut secret =
        HeaderValue::from_str(&format!("Bearer {registration_secret}")).map_err(|_| {
            TrellisError::Unsendable("the registration secret is not plain text".into())
        })?;
    secret.set_sensitive(true);
    let request = http
        .post(url)
        .header(reqwest::header::AUTHORIZATION, secret)
        .json(&serde_json::json!({"name": name, "mode": mode.as_str()}));
    json_body(send(request).await?, SMALL_ANSWER).await
}

/// `POST /tendrils/register` for a caller that is no worker (`tendril
/// register`).
pub async fn register(
    trellis_url: &str,
    allow_insecure_http: bool,
    registration_secret: &str,
    name: &str,
    mode: WorkerMode,
) -> Result<Registration, TrellisError> {
    let mut url = api_base(trellis_url, allow_insecure_http)
        .map_err(|e| TrellisError::Unsendable(e.to_string()))?;
    if let Ok(mut path) = url.path_segments_mut() {
        path.extend(["tendrils", "register"]);
    }
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(format!("tendril/{}", crate::VERSION))
        .timeout(Duration::from_secs(30))
        .use_rustls_tls()
        .build()
        .map_err(transport)?;
    register_at(&http, url, registration_secret, name, mode).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_registration_that_cannot_be_made_is_unsendable_not_refused() {
        let bad_url = register("ftp://t.example", false, "s", "w", WorkerMode::SelfHosted)
            .await
            .unwrap_err();
        assert!(matches!(bad_url, TrellisError::Unsendable(_)), "{bad_url}");
        assert!(!bad_url.is_transient());
        // The secret is checked before anything is sent (port 9 is discard).
        let bad_secret = register(
            "http://127.0.0.1:9",
            false,
            "two\nlines",
            "w",
            WorkerMode::SelfHosted,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&bad_secret, TrellisError::Unsendable(message) if message.contains("not plain text")),
            "{bad_secret}"
        );
    }
}
