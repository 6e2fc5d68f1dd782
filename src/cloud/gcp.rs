//! GCP for a job: workload identity federation from the identity's
//! `wif_config` (an `external_account` credential configuration), checked
//! first (see [`wif_config`]), then the token exchange it names and the
//! service-account impersonation when it names one; then the REST reads of
//! discovery.
//!
//! Subject tokens come from the worker's own AWS identity (a signed
//! GetCallerIdentity, see [`super::aws::gcp_subject_token`]) or, on a
//! self-hosted worker only, from an allowed file or URL. The Google access
//! token is fetched again whenever the one held is close to expiry, so a
//! long job never hands a tool a token about to lapse; tools get that token
//! (never the worker's own AWS identity). Every token is masked.

pub mod wif_config;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_sts::primitives::{DateTime, DateTimeFormat};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::{CloudError, MIN_REMAINING};
use crate::secrets::{self, SecretGuard};
use crate::settings::{GcpSettings, WorkerMode};
use wif_config::{allowed_file, SubjectSource, TokenFormat, WifConfig};

const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

fn gcp_error(message: impl Into<String>) -> CloudError {
    CloudError {
        provider: "gcp",
        message: message.into(),
    }
}

/// A Google access token, masked from the moment Tendril holds it until the
/// job ends.
pub struct GoogleToken {
    value: String,
    expiration: SystemTime,
}

impl GoogleToken {
    /// The variables a tool acts with this token by: Terraform's google
    /// provider (and its gcs backend) read `GOOGLE_OAUTH_ACCESS_TOKEN`, gcloud
    /// reads `CLOUDSDK_AUTH_ACCESS_TOKEN`.
    pub fn environment(&self) -> BTreeMap<String, String> {
        ["GOOGLE_OAUTH_ACCESS_TOKEN", "CLOUDSDK_AUTH_ACCESS_TOKEN"]
            .into_iter()
            .map(|name| (name.to_string(), self.value.clone()))
            .collect()
    }

    fn fresh(&self, now: SystemTime) -> bool {
        self.expiration.duration_since(now).unwrap_or_default() >= MIN_REMAINING
    }
}

/// The tokens of a job: the current one, and the masks of every one issued
/// (a tool may still print an older one).
#[derive(Default)]
struct Tokens {
    current: Option<Arc<GoogleToken>>,
    masked: Vec<SecretGuard>,
}

/// A job's GCP identity: its checked `wif_config` and its tokens.
pub struct GcpSession {
    http: reqwest::Client,
    settings: GcpSettings,
    config: WifConfig,
    pub project_id: String,
    pub principal: String,
    tokens: Mutex<Tokens>,
}

/// A token out of a file's or a URL's content, per the source's format.
fn token_from(content: &str, format: &TokenFormat) -> Result<String, CloudError> {
    match format {
        TokenFormat::Json { field } => {
            let parsed: Value = serde_json::from_str(content)
                .map_err(|e| gcp_error(format!("the subject token source is not JSON: {e}")))?;
            parsed
                .get(field)
                .and_then(Value::as_str)
                .map(String::from)
                .ok_or_else(|| gcp_error(format!("the subject token source has no field {field}")))
        }
        TokenFormat::Text => Ok(content.trim().to_string()),
    }
}

/// When a token of an answer expires: `expires_in` seconds (the exchange)
/// or `expireTime` (the impersonation); unknown counts as now, so that the
/// next tool gets a new one.
fn expiration(answer: &Value, now: SystemTime) -> SystemTime {
    if let Some(seconds) = answer.get("expires_in").and_then(Value::as_u64) {
        return now + Duration::from_secs(seconds);
    }
    answer
        .get("expireTime")
        .and_then(Value::as_str)
        .and_then(|text| DateTime::from_str(text, DateTimeFormat::DateTime).ok())
        .and_then(|time| SystemTime::try_from(time).ok())
        .unwrap_or(now)
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

impl GcpSession {
    /// Checks the identity's `wif_config` against what a worker in `mode`
    /// may do; signs in only when a token is first needed.
    pub fn new(
        settings: &GcpSettings,
        mode: WorkerMode,
        project_id: &str,
        wif_config: &str,
    ) -> Result<GcpSession, CloudError> {
        let config = WifConfig::check(wif_config, mode, settings)?;
        // No redirects: a token or a signed request must reach the checked
        // URL or nothing.
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| gcp_error(e.to_string()))?;
        let principal = match &config.impersonation_url {
            Some(url) => {
                let last = url.path().rsplit('/').next().unwrap_or_default();
                last.strip_suffix(":generateAccessToken")
                    .unwrap_or(last)
                    .to_string()
            }
            None => format!("federated principal of {}", config.audience),
        };
        Ok(GcpSession {
            http,
            settings: settings.clone(),
            config,
            project_id: project_id.to_string(),
            principal,
            tokens: Mutex::new(Tokens::default()),
        })
    }

    /// A Google access token with at least [`MIN_REMAINING`] left when the
    /// provider gives one that long, signing in again when the one held is
    /// older.
    pub async fn token(&self) -> Result<Arc<GoogleToken>, CloudError> {
        let mut tokens = self.tokens.lock().await;
        if let Some(token) = tokens
            .current
            .as_ref()
            .filter(|t| t.fresh(SystemTime::now()))
        {
            return Ok(token.clone());
        }
        let token = Arc::new(self.sign_in(&mut tokens.masked).await?);
        tokens.current = Some(token.clone());
        Ok(token)
    }

    /// Exchanges the configuration's subject token for a Google access
    /// token, and impersonates its service account when it names one; every
    /// token is registered in `masked` as soon as it is known.
    async fn sign_in(&self, masked: &mut Vec<SecretGuard>) -> Result<GoogleToken, CloudError> {
        let config = &self.config;
        let subject = self.subject_token().await?;
        masked.push(secrets::register(&subject));
        let form = [
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("audience", config.audience.as_str()),
            ("scope", CLOUD_PLATFORM),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
            ("subject_token", subject.as_str()),
            ("subject_token_type", config.subject_token_type.as_str()),
        ];
        let request = self.http.post(config.token_url.clone()).form(&form);
        let mut answer = Self::answer(request, "the token exchange").await?;
        let mut field = "access_token";
        masked.push(secrets::register(text(&answer, field)));
        if let Some(url) = &config.impersonation_url {
            let request = self
                .http
                .post(url.clone())
                .bearer_auth(text(&answer, field))
                .json(&json!({"scope": [CLOUD_PLATFORM]}));
            answer = Self::answer(request, "service account impersonation").await?;
            field = "accessToken";
            masked.push(secrets::register(text(&answer, field)));
        }
        let value = text(&answer, field).to_string();
        if value.is_empty() {
            return Err(gcp_error("the token exchange returned no access token"));
        }
        Ok(GoogleToken {
            value,
            expiration: expiration(&answer, SystemTime::now()),
        })
    }

    async fn subject_token(&self) -> Result<String, CloudError> {
        match &self.config.source {
            SubjectSource::Aws { verification_url } => {
                crate::cloud::aws::gcp_subject_token(verification_url, &self.config.audience).await
            }
            SubjectSource::File { path, format } => {
                // Checked again: the file may have become a link since.
                let canonical = allowed_file(path, &self.settings.credential_dirs)?;
                let content = std::fs::read_to_string(&canonical).map_err(|e| {
                    gcp_error(format!("cannot read the subject token file {path}: {e}"))
                })?;
                token_from(&content, format)
            }
            SubjectSource::Url {
                url,
                headers,
                format,
            } => {
                let mut request = self.http.get(url.clone());
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                let content = request
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .map_err(|e| {
                        gcp_error(format!(
                            "cannot fetch the subject token: {}",
                            crate::http_error::describe(e)
                        ))
                    })?
                    .text()
                    .await
                    .map_err(|e| gcp_error(e.to_string()))?;
                token_from(&content, format)
            }
        }
    }

    /// Sends a request of the sign-in and reads its JSON answer, or the
    /// provider's message.
    async fn answer(request: reqwest::RequestBuilder, what: &str) -> Result<Value, CloudError> {
        let response = request
            .send()
            .await
            .map_err(|e| gcp_error(format!("{what}: {}", crate::http_error::describe(e))))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let message = body
            .get("error_description")
            .or_else(|| body.pointer("/error/message"))
            .or_else(|| body.get("error"))
            .and_then(Value::as_str)
            .map(String::from)
            .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
        Err(gcp_error(format!("{what} failed: {message}")))
    }

    /// Every item of a list of a Google API (`key` holds them), following
    /// `nextPageToken`.
    pub async fn list(&self, api: Api, path: &str, key: &str) -> Result<Vec<Value>, CloudError> {
        let base = match api {
            Api::Compute => &self.settings.compute,
            Api::Dns => &self.settings.dns,
        };
        let url = format!(
            "{}/projects/{}{path}",
            base.trim_end_matches('/'),
            self.project_id
        );
        let mut items = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let token = self.token().await?;
            let mut request = self.http.get(&url).bearer_auth(&token.value);
            if let Some(next) = &page {
                request = request.query(&[("pageToken", next)]);
            }
            let body = Self::answer(request, &format!("listing {path}")).await?;
            match body.get(key) {
                Some(Value::Array(list)) => items.extend(list.iter().cloned()),
                Some(Value::Object(scoped)) => items.extend(scoped.values().cloned()),
                _ => {}
            }
            match body.get("nextPageToken").and_then(Value::as_str) {
                Some(next) => page = Some(next.to_string()),
                None => return Ok(items),
            }
        }
    }
}

/// The Google APIs discovery reads.
#[derive(Clone, Copy)]
pub enum Api {
    Compute,
    Dns,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_tokens_are_read_as_text_or_from_a_json_field() {
        assert_eq!(token_from(" abc \n", &TokenFormat::Text).unwrap(), "abc");
        let format = TokenFormat::Json {
            field: "id_token".into(),
        };
        assert_eq!(
            token_from(r#"{"id_token": "xyz"}"#, &format).unwrap(),
            "xyz"
        );
        assert!(token_from(r#"{"other": 1}"#, &format).is_err());
    }

    #[test]
    fn a_token_is_used_again_only_while_it_has_the_minimum_left() {
        let now = SystemTime::now();
        let exchange = expiration(&json!({"expires_in": 3599}), now);
        let impersonation = expiration(&json!({"expireTime": "2099-01-01T00:00:00Z"}), now);
        let short = expiration(&json!({"expires_in": 600}), now);
        let unknown = expiration(&json!({}), now);
        let token = |expiration| GoogleToken {
            value: String::new(),
            expiration,
        };
        assert!(token(exchange).fresh(now));
        assert!(!token(exchange).fresh(now + Duration::from_secs(20 * 60)));
        assert!(token(impersonation).fresh(now));
        assert!(!token(short).fresh(now));
        assert!(!token(unknown).fresh(now));
    }

    #[test]
    fn tools_get_the_token_in_terraforms_and_gclouds_variables() {
        let token = GoogleToken {
            value: "ya29.token".into(),
            expiration: SystemTime::now(),
        };
        let env = token.environment();
        assert_eq!(env["GOOGLE_OAUTH_ACCESS_TOKEN"], "ya29.token");
        assert_eq!(env["CLOUDSDK_AUTH_ACCESS_TOKEN"], "ya29.token");
        assert_eq!(env.len(), 2);
    }
}
