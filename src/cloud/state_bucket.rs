//! The Terraform state bucket (`SUPABASE_S3_*`), for the few small objects
//! Tendril itself reads and writes beside a state: the lock Terraform keeps
//! there (`<key>.tflock`) and Tendril's lease (see `jobs::state_lock`).
//!
//! Three S3 calls, path-style, SigV4-signed in-process with the storage
//! keys: GetObject, PutObject (optionally only when the object is absent,
//! `If-None-Match: *`, the precondition Terraform's own lock file relies
//! on, so every store that takes `use_lockfile` takes it) and DeleteObject.
//! The keys never leave the process: they sign, and are never sent.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SigningSettings, UriPathNormalizationMode,
};
use aws_smithy_types::date_time::{DateTime, Format};
use reqwest::{Method, StatusCode};

use super::aws::{url_host, SignedRequest};
use crate::settings::StateStorage;

/// The bucket of every vine's and worker's state.
pub const STATE_BUCKET: &str = "vine-terraform-state";

/// One request to the bucket may take this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// A failed call to the bucket, in one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BucketError(String);

impl BucketError {
    pub fn new(message: String) -> BucketError {
        BucketError(message)
    }
}

/// An object read from the bucket.
#[derive(Debug)]
pub struct StoredObject {
    pub body: Vec<u8>,
    /// How long ago it was last written, by the store's own clock (its
    /// `Date` less the object's `Last-Modified`), so that no two hosts'
    /// clocks are compared.
    pub age: Duration,
}

/// The state bucket, reached with the storage keys.
pub struct StateBucket {
    http: reqwest::Client,
    endpoint: String,
    region: String,
    credentials: Credentials,
}

impl StateBucket {
    pub fn new(storage: &StateStorage) -> Result<StateBucket, BucketError> {
        // No redirects: a redirect would carry the signature elsewhere.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| BucketError(crate::http_error::describe(e)))?;
        Ok(StateBucket {
            http,
            endpoint: storage.endpoint.clone(),
            region: storage.region.clone(),
            credentials: Credentials::new(
                storage.key_id.expose(),
                storage.secret_key.expose(),
                None,
                None,
                "tendril-state-storage",
            ),
        })
    }

    /// Where an object of the bucket is shown to a person.
    pub fn describe(key: &str) -> String {
        format!("s3://{STATE_BUCKET}/{key}")
    }

    /// The object at `key`; `None` when there is none.
    pub async fn get(&self, key: &str) -> Result<Option<StoredObject>, BucketError> {
        let answer = self.send(Method::GET, key, &[], Vec::new()).await?;
        let status = answer.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(refused("reading", key, answer).await);
        }
        let header = |name: &str| {
            answer
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|text| DateTime::from_str(text, Format::HttpDate).ok())
                .and_then(|time| SystemTime::try_from(time).ok())
        };
        let now = header("date").unwrap_or_else(SystemTime::now);
        let age = header("last-modified")
            .and_then(|written| now.duration_since(written).ok())
            .unwrap_or_default();
        let body = answer
            .bytes()
            .await
            .map_err(|e| failed("reading", key, e))?;
        Ok(Some(StoredObject {
            body: body.to_vec(),
            age,
        }))
    }

    /// Writes `body` at `key` unless an object is there already; returns
    /// whether it was written.
    pub async fn create(&self, key: &str, body: Vec<u8>) -> Result<bool, BucketError> {
        let answer = self
            .send(Method::PUT, key, &[("if-none-match", "*")], body)
            .await?;
        match answer.status() {
            status if status.is_success() => Ok(true),
            StatusCode::PRECONDITION_FAILED | StatusCode::CONFLICT => Ok(false),
            _ => Err(refused("writing", key, answer).await),
        }
    }

    /// Writes `body` at `key`, replacing what is there.
    pub async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), BucketError> {
        let answer = self.send(Method::PUT, key, &[], body).await?;
        match answer.status().is_success() {
            true => Ok(()),
            false => Err(refused("writing", key, answer).await),
        }
    }

    /// Removes the object at `key` (nothing there is no error).
    pub async fn delete(&self, key: &str) -> Result<(), BucketError> {
        let answer = self.send(Method::DELETE, key, &[], Vec::new()).await?;
        match answer.status() {
            status if status.is_success() || status == StatusCode::NOT_FOUND => Ok(()),
            _ => Err(refused("removing", key, answer).await),
        }
    }

    /// `endpoint/bucket/key`, each part of the key a path segment.
    fn url(&self, key: &str) -> Result<String, BucketError> {
        let mut url = reqwest::Url::parse(self.endpoint.trim()).map_err(|e| {
            BucketError(format!(
                "SUPABASE_S3_ENDPOINT '{}' is not a URL: {e}",
                self.endpoint
            ))
        })?;
        url.path_segments_mut()
            .map_err(|_| {
                BucketError(format!(
                    "SUPABASE_S3_ENDPOINT '{}' cannot hold a path",
                    self.endpoint
                ))
            })?
            .pop_if_empty()
            .push(STATE_BUCKET)
            .extend(key.split('/'));
        Ok(url.to_string())
    }

    async fn send(
        &self,
        method: Method,
        key: &str,
        extra_headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<reqwest::Response, BucketError> {
        let url = self.url(key)?;
        let host = url_host(&url).map_err(|e| BucketError(e.message))?;
        let mut headers = vec![("host", host.as_str())];
        headers.extend_from_slice(extra_headers);
        let mut settings = SigningSettings::default();
        // S3's own rules: the path as sent, and the payload's hash signed.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let request = SignedRequest {
            method: method.as_str(),
            url: &url,
            headers: &headers,
            body: &body,
            service: "s3",
            region: &self.region,
        };
        let signature = request
            .sign(&self.credentials, settings)
            .map_err(|e| BucketError(format!("cannot sign a request to the state bucket: {e}")))?;
        let verb = match method {
            Method::GET => "reading",
            Method::DELETE => "removing",
            _ => "writing",
        };
        let mut builder = self.http.request(method, &url).body(body);
        for (name, value) in headers
            .iter()
            .skip(1)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain(signature)
        {
            builder = builder.header(name, value);
        }
        builder.send().await.map_err(|e| failed(verb, key, e))
    }
}

fn failed(verb: &str, key: &str, error: reqwest::Error) -> BucketError {
    BucketError(format!(
        "{verb} {} failed: {}",
        StateBucket::describe(key),
        crate::http_error::describe(error)
    ))
}

/// The store's refusal, with S3's `<Code>` and `<Message>` when it gives them.
async fn refused(verb: &str, key: &str, answer: reqwest::Response) -> BucketError {
    let status = answer.status();
    let text = answer.text().await.unwrap_or_default();
    let element = |name: &str| {
        let start = text.find(&format!("<{name}>"))? + name.len() + 2;
        let end = text[start..].find(&format!("</{name}>"))? + start;
        Some(text[start..end].to_string())
    };
    let detail = [element("Code"), element("Message")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(": ");
    BucketError(format!(
        "{verb} {} failed: HTTP {status}{}",
        StateBucket::describe(key),
        if detail.is_empty() {
            String::new()
        } else {
            format!(" ({detail})")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Secret;

    fn bucket(endpoint: &str) -> StateBucket {
        StateBucket::new(&StateStorage {
            endpoint: endpoint.into(),
            region: "us-east-1".into(),
            key_id: Secret::new_registered("state-bucket-test-key-id".into()),
            secret_key: Secret::new_registered("state-bucket-test-secret".into()),
        })
        .unwrap()
    }

    #[test]
    fn object_urls_are_path_style_under_the_endpoints_own_path() {
        assert_eq!(
            bucket("http://127.0.0.1:9000")
                .url("vy-1/shop/terraform.tfstate.tflock")
                .unwrap(),
            "http://127.0.0.1:9000/vine-terraform-state/vy-1/shop/terraform.tfstate.tflock"
        );
        assert_eq!(
            bucket("https://x.supabase.co/storage/v1/s3/")
                .url("a b/c")
                .unwrap(),
            "https://x.supabase.co/storage/v1/s3/vine-terraform-state/a%20b/c"
        );
        assert!(bucket("not a url").url("k").is_err());
    }
}
