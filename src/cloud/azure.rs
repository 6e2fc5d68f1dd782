//! Azure for a job: federated client credentials (the workload-identity
//! convention: a token in the file named by `AZURE_FEDERATED_TOKEN_FILE` is
//! exchanged with Microsoft Entra for a Resource Manager token), the identity
//! check (a Resource Manager read of the subscription), and the REST reads of
//! discovery. Both endpoints are settings, so tests can aim them at a local
//! fake. Every token is masked.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::CloudError;
use crate::secrets::{self, SecretGuard};
use crate::settings::AzureEndpoints;

const ARM_SCOPE: &str = "https://management.azure.com/.default";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn azure_error(message: impl Into<String>) -> CloudError {
    CloudError {
        provider: "azure",
        message: message.into(),
    }
}

/// An Azure identity with a Resource Manager token.
pub struct AzureSession {
    http: reqwest::Client,
    endpoints: AzureEndpoints,
    pub tenant_id: String,
    pub client_id: String,
    pub subscription_id: String,
    token_file: String,
    access_token: String,
    _masked: Vec<SecretGuard>,
}

impl AzureSession {
    /// Exchanges the federated token for a Resource Manager token.
    pub async fn sign_in(
        endpoints: &AzureEndpoints,
        tenant_id: &str,
        client_id: &str,
        subscription_id: &str,
        token_file: Option<&str>,
    ) -> Result<AzureSession, CloudError> {
        let token_file = token_file
            .filter(|f| !f.is_empty())
            .ok_or_else(|| azure_error("AZURE_FEDERATED_TOKEN_FILE is not set: there is no federated token to sign in with"))?;
        let federated = std::fs::read_to_string(Path::new(token_file)).map_err(|e| {
            azure_error(format!("cannot read the federated token {token_file}: {e}"))
        })?;
        let federated = federated.trim().to_string();
        let mut masked = vec![secrets::register(&federated)];
        let http = reqwest::Client::builder()
            // The bearer token is a header: no redirect may carry it anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .use_rustls_tls()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| azure_error(e.to_string()))?;
        let url = format!(
            "{}/{tenant_id}/oauth2/v2.0/token",
            endpoints.authority.trim_end_matches('/')
        );
        let form = [
            ("client_id", client_id),
            ("scope", ARM_SCOPE),
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", federated.as_str()),
        ];
        let answer = http
            .post(&url)
            .form(&form)
            .send()
            .await
            .map_err(|e| azure_error(crate::http_error::describe(e)))?;
        let status = answer.status();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        let Some(access_token) = body
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|_| status.is_success())
        else {
            let message = body
                .get("error_description")
                .or_else(|| body.get("error"))
                .and_then(Value::as_str)
                .map(String::from)
                .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
            return Err(azure_error(format!(
                "sign-in as {client_id} in tenant {tenant_id} failed: {message}"
            )));
        };
        masked.push(secrets::register(access_token));
        Ok(AzureSession {
            http,
            endpoints: endpoints.clone(),
            tenant_id: tenant_id.to_string(),
            client_id: client_id.to_string(),
            subscription_id: subscription_id.to_string(),
            token_file: token_file.to_string(),
            access_token: access_token.to_string(),
            _masked: masked,
        })
    }

    /// A Resource Manager GET of `path` (under the subscription when it does
    /// not start with `/`), following `nextLink` pages; the `value` items of
    /// a list, or the object itself.
    pub async fn get(&self, path: &str, api_version: &str) -> Result<Value, CloudError> {
        let base = self.endpoints.resource_manager.trim_end_matches('/');
        let mut url = format!(
            "{base}/subscriptions/{}{path}?api-version={api_version}",
            self.subscription_id
        );
        let mut items: Vec<Value> = Vec::new();
        loop {
            let answer = self
                .http
                .get(&url)
                .bearer_auth(&self.access_token)
                .send()
                .await
                .map_err(|e| azure_error(crate::http_error::describe(e)))?;
            let status = answer.status();
            let body: Value = answer.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                let message = body
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("no message");
                return Err(azure_error(format!(
                    "Resource Manager answered HTTP {}: {message}",
                    status.as_u16()
                )));
            }
            let Some(page) = body.get("value").and_then(Value::as_array) else {
                return Ok(body);
            };
            items.extend(page.iter().cloned());
            match body.get("nextLink").and_then(Value::as_str) {
                Some(next) if next.starts_with(base) => url = next.to_string(),
                _ => return Ok(Value::Array(items)),
            }
        }
    }

    /// What Terraform's azurerm provider and the `az` CLI need to act as
    /// this identity with the same federated token.
    pub fn environment(&self) -> BTreeMap<String, String> {
        let pairs = [
            ("ARM_TENANT_ID", &self.tenant_id),
            ("ARM_CLIENT_ID", &self.client_id),
            ("ARM_SUBSCRIPTION_ID", &self.subscription_id),
            ("ARM_OIDC_TOKEN_FILE_PATH", &self.token_file),
            ("AZURE_TENANT_ID", &self.tenant_id),
            ("AZURE_CLIENT_ID", &self.client_id),
            ("AZURE_SUBSCRIPTION_ID", &self.subscription_id),
            ("AZURE_FEDERATED_TOKEN_FILE", &self.token_file),
        ];
        let mut env: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.insert("ARM_USE_OIDC".into(), "true".into());
        env
    }
}
