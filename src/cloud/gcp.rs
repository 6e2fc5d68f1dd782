//! GCP for a job: workload identity federation from the identity's
//! `wif_config` (an `external_account` credential configuration), checked by
//! doing the token exchange it names (and the service-account impersonation
//! when it names one), then the REST reads of discovery.
//!
//! The configuration is user data: its `token_url` and
//! `service_account_impersonation_url` must be on `googleapis.com` (plus the
//! hosts a test setting allows), or a signed subject token could be sent
//! anywhere. Subject tokens come from a file, a URL, or the platform's own AWS
//! identity (a signed GetCallerIdentity, see [`super::aws::gcp_subject_token`]).
//! Every token is masked.

use serde_json::{json, Value};

use super::CloudError;
use crate::secrets::{self, SecretGuard};

const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

fn gcp_error(message: impl Into<String>) -> CloudError {
    CloudError {
        provider: "gcp",
        message: message.into(),
    }
}

/// Where the Google APIs are, and which other hosts a configuration may name.
#[derive(Debug, Clone)]
pub struct GcpEndpoints {
    pub compute: String,
    pub dns: String,
    /// Hosts allowed besides `googleapis.com` (for tests only).
    pub extra_allowed_hosts: Vec<String>,
}

/// A GCP identity with an access token.
pub struct GcpSession {
    http: reqwest::Client,
    endpoints: GcpEndpoints,
    pub project_id: String,
    pub principal: String,
    access_token: String,
    _masked: Vec<SecretGuard>,
}

/// Whether a URL of the configuration may receive tokens.
fn allowed(url: &str, endpoints: &GcpEndpoints) -> Result<(), CloudError> {
    let host = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(String::from))
        .ok_or_else(|| gcp_error(format!("'{url}' in wif_config is not a URL")))?;
    let google = host == "googleapis.com" || host.ends_with(".googleapis.com");
    if google || endpoints.extra_allowed_hosts.contains(&host) {
        Ok(())
    } else {
        Err(gcp_error(format!(
            "wif_config names {host}, which is not googleapis.com: refusing to send a token there"
        )))
    }
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A token out of a file's or a URL's content, per the source's `format`.
fn token_from(content: &str, format: &Value) -> Result<String, CloudError> {
    match text(format, "type") {
        "json" => {
            let field = text(format, "subject_token_field_name");
            let parsed: Value = serde_json::from_str(content)
                .map_err(|e| gcp_error(format!("the subject token source is not JSON: {e}")))?;
            parsed
                .get(field)
                .and_then(Value::as_str)
                .map(String::from)
                .ok_or_else(|| gcp_error(format!("the subject token source has no field {field}")))
        }
        _ => Ok(content.trim().to_string()),
    }
}

impl GcpSession {
    /// Exchanges the configuration's subject token for a Google access
    /// token, and impersonates its service account when it names one.
    pub async fn sign_in(
        endpoints: &GcpEndpoints,
        project_id: &str,
        wif_config: &str,
    ) -> Result<GcpSession, CloudError> {
        let config: Value = serde_json::from_str(wif_config).map_err(|e| {
            gcp_error(format!(
                "wif_config is not a JSON credential configuration: {e}"
            ))
        })?;
        if text(&config, "type") != "external_account" {
            return Err(gcp_error("wif_config is not an external_account (workload identity federation) configuration"));
        }
        let token_url = text(&config, "token_url");
        allowed(token_url, endpoints)?;
        let impersonation = text(&config, "service_account_impersonation_url");
        if !impersonation.is_empty() {
            allowed(impersonation, endpoints)?;
        }
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| gcp_error(e.to_string()))?;
        let mut masked = Vec::new();
        let subject = Self::subject_token(
            &http,
            &config["credential_source"],
            text(&config, "audience"),
        )
        .await?;
        masked.push(secrets::register(&subject));

        let form = [
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("audience", text(&config, "audience")),
            ("scope", CLOUD_PLATFORM),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
            ("subject_token", subject.as_str()),
            ("subject_token_type", text(&config, "subject_token_type")),
        ];
        let answer = Self::answer(http.post(token_url).form(&form), "the token exchange").await?;
        let mut access_token = text(&answer, "access_token").to_string();
        masked.push(secrets::register(&access_token));
        let mut principal = format!("federated principal of {}", text(&config, "audience"));

        if !impersonation.is_empty() {
            let request = http
                .post(impersonation)
                .bearer_auth(&access_token)
                .json(&json!({"scope": [CLOUD_PLATFORM]}));
            let answer = Self::answer(request, "service account impersonation").await?;
            access_token = text(&answer, "accessToken").to_string();
            masked.push(secrets::register(&access_token));
            principal = impersonation
                .rsplit('/')
                .next()
                .and_then(|last| last.strip_suffix(":generateAccessToken"))
                .unwrap_or(impersonation)
                .to_string();
        }
        if access_token.is_empty() {
            return Err(gcp_error("the token exchange returned no access token"));
        }
        Ok(GcpSession {
            http,
            endpoints: endpoints.clone(),
            project_id: project_id.to_string(),
            principal,
            access_token,
            _masked: masked,
        })
    }

    async fn subject_token(
        http: &reqwest::Client,
        source: &Value,
        audience: &str,
    ) -> Result<String, CloudError> {
        if text(source, "environment_id").starts_with("aws") {
            return crate::cloud::aws::gcp_subject_token(
                text(source, "regional_cred_verification_url"),
                audience,
            )
            .await;
        }
        if let Some(file) = source.get("file").and_then(Value::as_str) {
            let content = std::fs::read_to_string(file).map_err(|e| {
                gcp_error(format!("cannot read the subject token file {file}: {e}"))
            })?;
            return token_from(&content, &source["format"]);
        }
        if let Some(url) = source
            .get("url")
            .and_then(Value::as_str)
            .filter(|_| source.get("environment_id").is_none())
        {
            let mut request = http.get(url);
            for (name, value) in source
                .get("headers")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                request = request.header(name, value.as_str().unwrap_or_default());
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
            return token_from(&content, &source["format"]);
        }
        Err(gcp_error("wif_config's credential source is not supported (file, url and aws are; executable is not)"))
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
            Api::Compute => &self.endpoints.compute,
            Api::Dns => &self.endpoints.dns,
        };
        let url = format!(
            "{}/projects/{}{path}",
            base.trim_end_matches('/'),
            self.project_id
        );
        let mut items = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let mut request = self.http.get(&url).bearer_auth(&self.access_token);
            if let Some(token) = &page {
                request = request.query(&[("pageToken", token)]);
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

    fn endpoints(extra: &[&str]) -> GcpEndpoints {
        GcpEndpoints {
            compute: String::new(),
            dns: String::new(),
            extra_allowed_hosts: extra.iter().map(|h| h.to_string()).collect(),
        }
    }

    #[test]
    fn only_googleapis_hosts_may_receive_tokens() {
        assert!(allowed("https://sts.googleapis.com/v1/token", &endpoints(&[])).is_ok());
        assert!(allowed(
            "https://iamcredentials.googleapis.com/v1/x",
            &endpoints(&[])
        )
        .is_ok());
        assert!(allowed(
            "https://googleapis.com.evil.example/v1/token",
            &endpoints(&[])
        )
        .is_err());
        assert!(allowed("https://evilgoogleapis.com/v1/token", &endpoints(&[])).is_err());
        assert!(allowed("http://127.0.0.1:9/token", &endpoints(&[])).is_err());
        assert!(allowed("http://127.0.0.1:9/token", &endpoints(&["127.0.0.1"])).is_ok());
    }

    #[test]
    fn subject_tokens_are_read_as_text_or_from_a_json_field() {
        assert_eq!(token_from(" abc \n", &Value::Null).unwrap(), "abc");
        let format = json!({"type": "json", "subject_token_field_name": "id_token"});
        assert_eq!(
            token_from(r#"{"id_token": "xyz"}"#, &format).unwrap(),
            "xyz"
        );
        assert!(token_from(r#"{"other": 1}"#, &format).is_err());
    }
}
