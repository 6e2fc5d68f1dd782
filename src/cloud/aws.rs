//! AWS credentials for a job: STS AssumeRole with the identity's external
//! id, through the SDK, from Tendril's own credentials (the standard chain:
//! environment, ECS task role, web identity, instance profile).
//!
//! The assumed keys are registered for masking at once and handed only to
//! the environment of the tools that need them, never to Tendril's own.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_config::meta::region::RegionProviderChain;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_sts::config::Credentials;
use aws_sdk_sts::error::DisplayErrorContext;
use tokio::sync::{Mutex, OnceCell};

use super::{CloudError, MIN_REMAINING};
use crate::secrets::{self, SecretGuard};

/// How long assumed credentials are asked for: the most AWS allows when the
/// caller is itself a role (as on ECS).
const SESSION_DURATION_SECONDS: i32 = 3600;
/// The region used for STS and global services when none is configured.
pub const DEFAULT_REGION: &str = "us-east-1";

fn aws_error(message: impl std::fmt::Display) -> CloudError {
    CloudError {
        provider: "aws",
        message: message.to_string(),
    }
}

/// Tendril's own AWS configuration, loaded once, when a job first needs it.
pub async fn platform_config() -> &'static SdkConfig {
    static CONFIG: OnceCell<SdkConfig> = OnceCell::const_new();
    CONFIG
        .get_or_init(|| async {
            let region = RegionProviderChain::default_provider().or_else(DEFAULT_REGION);
            aws_config::defaults(BehaviorVersion::latest())
                .region(region)
                .load()
                .await
        })
        .await
}

/// A set of temporary keys, masked while they live.
pub struct AssumedKeys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    pub expiration: SystemTime,
    _masked: Vec<SecretGuard>,
}

impl AssumedKeys {
    /// The variables a tool needs to act with these keys.
    pub fn environment(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("AWS_ACCESS_KEY_ID".to_string(), self.access_key_id.clone()),
            (
                "AWS_SECRET_ACCESS_KEY".to_string(),
                self.secret_access_key.clone(),
            ),
            ("AWS_SESSION_TOKEN".to_string(), self.session_token.clone()),
        ])
    }

    fn sdk_credentials(&self) -> Credentials {
        Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            Some(self.session_token.clone()),
            Some(self.expiration),
            "tendril-assumed-role",
        )
    }
}

/// Who a set of credentials acts as.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallerIdentity {
    pub account: String,
    pub arn: String,
    pub user_id: String,
}

/// A role a job acts as, assumed again whenever the keys held are close to
/// expiry, so a long job never hands a tool keys about to lapse.
pub struct AssumedRole {
    role_arn: String,
    external_id: Option<String>,
    session_name: String,
    keys: Mutex<HeldKeys>,
}

/// The keys in use, and those they replaced: a tool started with older
/// keys may still print them, so they stay masked for the role's life.
#[derive(Default)]
struct HeldKeys {
    current: Option<std::sync::Arc<AssumedKeys>>,
    retired: Vec<std::sync::Arc<AssumedKeys>>,
}

impl AssumedRole {
    pub fn new(role_arn: &str, external_id: &str, job_id: &str) -> Self {
        let session: String = format!("tendril-{job_id}")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "=,.@-_".contains(*c))
            .take(64)
            .collect();
        AssumedRole {
            role_arn: role_arn.to_string(),
            external_id: (!external_id.is_empty()).then(|| external_id.to_string()),
            session_name: session,
            keys: Mutex::new(HeldKeys::default()),
        }
    }

    pub fn role_arn(&self) -> &str {
        &self.role_arn
    }

    /// Keys with at least [`MIN_REMAINING`] left, assuming the role again
    /// when the ones held are older.
    pub async fn keys(&self) -> Result<std::sync::Arc<AssumedKeys>, CloudError> {
        let mut held = self.keys.lock().await;
        if let Some(keys) = held.current.as_ref() {
            let left = keys
                .expiration
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            if left >= MIN_REMAINING {
                return Ok(keys.clone());
            }
        }
        let keys = std::sync::Arc::new(self.assume().await?);
        if let Some(replaced) = held.current.replace(keys.clone()) {
            held.retired.push(replaced);
        }
        Ok(keys)
    }

    async fn assume(&self) -> Result<AssumedKeys, CloudError> {
        let client = aws_sdk_sts::Client::new(platform_config().await);
        let answer = client
            .assume_role()
            .role_arn(&self.role_arn)
            .role_session_name(&self.session_name)
            .set_external_id(self.external_id.clone())
            .duration_seconds(SESSION_DURATION_SECONDS)
            .send()
            .await
            .map_err(|e| {
                aws_error(format!(
                    "cannot assume role {}: {}",
                    self.role_arn,
                    DisplayErrorContext(&e)
                ))
            })?;
        let credentials = answer.credentials().ok_or_else(|| {
            aws_error(format!(
                "AssumeRole on {} returned no credentials",
                self.role_arn
            ))
        })?;
        let masked = vec![
            secrets::register(credentials.secret_access_key()),
            secrets::register(credentials.session_token()),
            secrets::register(credentials.access_key_id()),
        ];
        let expiration = SystemTime::try_from(*credentials.expiration()).unwrap_or_else(|_| {
            SystemTime::now() + Duration::from_secs(SESSION_DURATION_SECONDS as u64)
        });
        Ok(AssumedKeys {
            access_key_id: credentials.access_key_id().to_string(),
            secret_access_key: credentials.secret_access_key().to_string(),
            session_token: credentials.session_token().to_string(),
            expiration,
            _masked: masked,
        })
    }

    /// STS GetCallerIdentity with the assumed keys.
    pub async fn caller_identity(&self) -> Result<CallerIdentity, CloudError> {
        let keys = self.keys().await?;
        let config = aws_sdk_sts::config::Builder::from(platform_config().await)
            .credentials_provider(keys.sdk_credentials())
            .build();
        caller_identity(aws_sdk_sts::Client::from_conf(config)).await
    }
}

/// STS GetCallerIdentity with Tendril's own credentials (the host's, for a
/// self-hosted job without an identity).
pub async fn ambient_caller_identity() -> Result<CallerIdentity, CloudError> {
    caller_identity(aws_sdk_sts::Client::new(platform_config().await)).await
}

async fn caller_identity(client: aws_sdk_sts::Client) -> Result<CallerIdentity, CloudError> {
    let answer = client.get_caller_identity().send().await.map_err(|e| {
        aws_error(format!(
            "GetCallerIdentity failed: {}",
            DisplayErrorContext(&e)
        ))
    })?;
    Ok(CallerIdentity {
        account: answer.account().unwrap_or_default().to_string(),
        arn: answer.arn().unwrap_or_default().to_string(),
        user_id: answer.user_id().unwrap_or_default().to_string(),
    })
}

/// The subject token of a GCP workload identity federation whose credential
/// source is AWS: a GetCallerIdentity request signed with Tendril's own (the
/// platform's) AWS identity, which Google's STS replays to AWS to learn who
/// calls. `verification_url` is the source's `regional_cred_verification_url`
/// (with `{region}`); `audience` is the federation's, bound into the
/// signature as `x-goog-cloud-target-resource`.
pub async fn gcp_subject_token(
    verification_url: &str,
    audience: &str,
) -> Result<String, CloudError> {
    let region = platform_region().await;
    let template = match verification_url {
        "" => "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
        given => given,
    };
    let url = template.replace("{region}", &region);
    check_verification_url(&url, &region)?;
    let host = url_host(&url)?;
    let signed_headers = [
        ("host", host.as_str()),
        ("x-goog-cloud-target-resource", audience),
    ];
    let signature = sign_request("POST", &url, &signed_headers, b"", "sts", &region)
        .await
        .map_err(|e| aws_error(format!("cannot sign the GetCallerIdentity request: {e}")))?;
    let headers: Vec<serde_json::Value> = signed_headers
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .chain(signature)
        .map(|(key, value)| serde_json::json!({"key": key, "value": value}))
        .collect();
    let token = serde_json::json!({"url": url, "method": "POST", "headers": headers}).to_string();
    Ok(url::form_urlencoded::byte_serialize(token.as_bytes()).collect())
}

/// The URL of a GCP federation's signed request must be AWS STS's
/// GetCallerIdentity (global, or in Tendril's own region): the worker's
/// identity signs nothing else for a user's configuration.
fn check_verification_url(url: &str, region: &str) -> Result<(), CloudError> {
    let parsed = reqwest::Url::parse(url).ok();
    let host = parsed
        .as_ref()
        .and_then(|u| u.host_str())
        .unwrap_or_default();
    let sts = ["sts.amazonaws.com".to_string()]
        .into_iter()
        .chain(["amazonaws.com", "amazonaws.com.cn"].map(|domain| format!("sts.{region}.{domain}")))
        .any(|allowed| allowed == host);
    let get_caller_identity = parsed.as_ref().is_some_and(|u| {
        let actions: Vec<String> = u
            .query_pairs()
            .filter(|(key, _)| key == "Action")
            .map(|(_, value)| value.into_owned())
            .collect();
        u.scheme() == "https"
            && u.port().is_none()
            && u.path() == "/"
            && actions == ["GetCallerIdentity"]
    });
    match sts && get_caller_identity {
        true => Ok(()),
        false => Err(aws_error(format!(
            "refusing to sign wif_config's regional_cred_verification_url {url}: it must be \
             https://sts.{{region}}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15 (the region is {region})"
        ))),
    }
}

/// The value of a Secrets Manager secret, read with Tendril's own AWS
/// identity (in the secret's region) and registered for masking.
pub async fn secrets_manager_value(secret_arn: &str) -> Result<crate::secrets::Secret, CloudError> {
    let region = match secret_arn.split(':').nth(3) {
        Some(region) if secret_arn.starts_with("arn:") && !region.is_empty() => region.to_string(),
        _ => platform_region().await,
    };
    let endpoint = match std::env::var("AWS_ENDPOINT_URL_SECRETS_MANAGER") {
        Ok(endpoint) if !endpoint.trim().is_empty() => Some(endpoint),
        _ => platform_config().await.endpoint_url().map(String::from),
    };
    let domain = match secret_arn.starts_with("arn:aws-cn:") {
        true => "amazonaws.com.cn",
        false => "amazonaws.com",
    };
    let url = match endpoint {
        Some(endpoint) => format!("{}/", endpoint.trim().trim_end_matches('/')),
        None => format!("https://secretsmanager.{region}.{domain}/"),
    };
    let host = url_host(&url)?;
    let body = serde_json::json!({"SecretId": secret_arn}).to_string();
    let headers = [
        ("host", host.as_str()),
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", "secretsmanager.GetSecretValue"),
    ];
    let failed = |e: String| aws_error(format!("cannot read the secret {secret_arn}: {e}"));
    let signature = sign_request(
        "POST",
        &url,
        &headers,
        body.as_bytes(),
        "secretsmanager",
        &region,
    )
    .await
    .map_err(failed)?;
    // No redirects: the session token is a header a redirect would carry.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| failed(crate::http_error::describe(e)))?;
    let mut request = http.post(&url).body(body);
    for (key, value) in headers
        .iter()
        .skip(1)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain(signature)
    {
        request = request.header(key, value);
    }
    let answer = request
        .send()
        .await
        .map_err(|e| failed(crate::http_error::describe(e)))?;
    let status = answer.status();
    let text = answer
        .text()
        .await
        .map_err(|e| failed(crate::http_error::describe(e)))?;
    let parsed: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    if !status.is_success() {
        let message = parsed
            .get("message")
            .or_else(|| parsed.get("Message"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or("no message");
        return Err(failed(format!("{status}: {message}")));
    }
    match parsed
        .get("SecretString")
        .and_then(serde_json::Value::as_str)
    {
        Some(value) if !value.trim().is_empty() => Ok(crate::secrets::Secret::new_registered(
            value.trim_end_matches(['\n', '\r']).to_string(),
        )),
        _ => Err(failed("it has no SecretString".into())),
    }
}

/// The region of Tendril's own AWS configuration.
pub async fn platform_region() -> String {
    platform_config()
        .await
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| DEFAULT_REGION.to_string())
}

/// `host[:port]` of a URL, as the SigV4 `host` header signs it.
pub(crate) fn url_host(url: &str) -> Result<String, CloudError> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| aws_error(format!("'{url}' is not a URL: {e}")))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| aws_error(format!("'{url}' has no host")))?;
    Ok(match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    })
}

/// SigV4-signs a request with Tendril's own AWS credentials; returns the
/// headers to add (`authorization`, `x-amz-date`, and the session token when
/// there is one). `headers` are signed as given and must include `host`.
async fn sign_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    service: &str,
    region: &str,
) -> Result<Vec<(String, String)>, String> {
    use aws_credential_types::provider::ProvideCredentials;

    let credentials = platform_config()
        .await
        .credentials_provider()
        .ok_or("Tendril has no AWS credentials of its own")?
        .provide_credentials()
        .await
        .map_err(|e| format!("cannot load Tendril's own AWS credentials: {e}"))?;
    let request = SignedRequest {
        method,
        url,
        headers,
        body,
        service,
        region,
    };
    request.sign(
        &credentials,
        aws_sigv4::http_request::SigningSettings::default(),
    )
}

/// A request to SigV4-sign: `headers` are signed as given and must include
/// `host`.
pub(crate) struct SignedRequest<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    pub service: &'a str,
    pub region: &'a str,
}

impl SignedRequest<'_> {
    /// The headers to add (`authorization`, `x-amz-date`, the session
    /// token when there is one, and what `settings` ask for).
    pub fn sign(
        &self,
        credentials: &Credentials,
        settings: aws_sigv4::http_request::SigningSettings,
    ) -> Result<Vec<(String, String)>, String> {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest};
        use aws_sigv4::sign::v4;

        let identity = credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(self.region)
            .name(self.service)
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let request = SignableRequest::new(
            self.method,
            self.url,
            self.headers.iter().copied(),
            SignableBody::Bytes(self.body),
        )
        .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(request, &params)
            .map_err(|e| e.to_string())?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sts_get_caller_identity_is_signed_for_a_gcp_federation() {
        let region = "eu-west-1";
        for good in [
            "https://sts.eu-west-1.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
            "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15",
        ] {
            assert!(check_verification_url(good, region).is_ok(), "{good}");
        }
        for bad in [
            "https://sts.eu-west-1.amazonaws.com?Action=AssumeRole&RoleArn=arn:aws:iam::1:role/admin",
            "https://sts.eu-west-1.amazonaws.com?Action=GetCallerIdentity&Action=AssumeRole",
            "https://sts.eu-west-1.amazonaws.com/other?Action=GetCallerIdentity",
            "http://sts.eu-west-1.amazonaws.com?Action=GetCallerIdentity",
            "https://attacker.example?Action=GetCallerIdentity",
            "https://sts.eu-west-1.amazonaws.com.attacker.example?Action=GetCallerIdentity",
            "https://s3.eu-west-1.amazonaws.com?Action=GetCallerIdentity",
        ] {
            assert!(check_verification_url(bad, region).is_err(), "{bad}");
        }
    }
}
