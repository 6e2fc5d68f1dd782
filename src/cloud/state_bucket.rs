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

/// The largest object read (a lock or a lease is a few hundred bytes), and
/// the most of an error answer read.
pub const MAX_OBJECT_BYTES: usize = 64 * 1024;

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
    /// Its bytes; `None` when it is larger than [`MAX_OBJECT_BYTES`] (it is
    /// then not read).
    pub body: Option<Vec<u8>>,
    /// How long ago it was last written, by the store's own clock (its
    /// `Date` less the object's `Last-Modified`), so that no two hosts'
    /// clocks are compared; zero (written just now) when the store does not
    /// give both.
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
        let age = match (header("date"), header("last-modified")) {
            (Some(now), Some(written)) => now.duration_since(written).unwrap_or_default(),
            _ => Duration::ZERO,
        };
        let body = read_at_most(answer, MAX_OBJECT_BYTES)
            .await
            .map_err(|e| failed("reading", key, e))?;
        Ok(Some(StoredObject { body, age }))
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

/// The body of `answer`, unless it is longer than `limit` bytes (`None`:
/// the rest is not read).
async fn read_at_most(
    mut answer: reqwest::Response,
    limit: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if answer
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = answer.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// The store's refusal, with S3's `<Code>` and `<Message>` when it gives them.
async fn refused(verb: &str, key: &str, answer: reqwest::Response) -> BucketError {
    let status = answer.status();
    let text = match read_at_most(answer, MAX_OBJECT_BYTES).await {
        Ok(Some(body)) => String::from_utf8_lossy(&body).into_owned(),
        _ => String::new(),
    };
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

/// A store that gives one canned answer, for tests of what reads the
/// bucket.
#[cfg(test)]
pub(crate) mod test_store {
    use crate::secrets::Secret;
    use crate::settings::StateStorage;

    /// A store on 127.0.0.1 that answers every request with `head` (the
    /// status line and headers) and `body`; its endpoint.
    pub async fn answering(head: String, body: Vec<u8>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut connection, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match connection.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(read) => request.extend_from_slice(&buffer[..read]),
                    }
                }
                let _ = connection.write_all(head.as_bytes()).await;
                let _ = connection.write_all(&body).await;
            }
        });
        endpoint
    }

    /// The bucket's settings for the store at `endpoint`.
    pub fn storage(endpoint: &str) -> StateStorage {
        StateStorage {
            endpoint: endpoint.into(),
            region: "us-east-1".into(),
            key_id: Secret::new_registered("state-bucket-test-key-id".into()),
            secret_key: Secret::new_registered("state-bucket-test-secret".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(endpoint: &str) -> StateBucket {
        StateBucket::new(&test_store::storage(endpoint)).unwrap()
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

    #[tokio::test]
    async fn an_objects_age_is_the_stores_own_or_unknown_never_by_this_hosts_clock() {
        let old = "Last-Modified: Mon, 05 Jan 2026 10:00:00 GMT\r\n";
        let answer = |date: &str| {
            format!("HTTP/1.1 200 OK\r\n{date}{old}Content-Length: 2\r\nConnection: close\r\n\r\n")
        };
        let dated = test_store::answering(
            answer("Date: Mon, 05 Jan 2026 10:00:42 GMT\r\n"),
            b"{}".to_vec(),
        )
        .await;
        let object = bucket(&dated).get("k").await.unwrap().unwrap();
        assert_eq!(object.age, Duration::from_secs(42));
        assert_eq!(object.body.as_deref(), Some(&b"{}"[..]));
        // Without the store's Date, the age cannot be known: taken as
        // written just now (a live holder), never this host's clock less
        // the store's Last-Modified.
        let undated = test_store::answering(answer(""), b"{}".to_vec()).await;
        let object = bucket(&undated).get("k").await.unwrap().unwrap();
        assert_eq!(object.age, Duration::ZERO);
    }

    #[tokio::test]
    async fn an_object_larger_than_a_lock_or_a_lease_is_not_read() {
        let big = vec![b'x'; MAX_OBJECT_BYTES + 1];
        let sized = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            big.len()
        );
        let endpoint = test_store::answering(sized, big.clone()).await;
        assert_eq!(
            bucket(&endpoint).get("k").await.unwrap().unwrap().body,
            None
        );
        // The same without a length: read up to the bound, no further.
        let unbounded = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_string();
        let endpoint = test_store::answering(unbounded, big).await;
        assert_eq!(
            bucket(&endpoint).get("k").await.unwrap().unwrap().body,
            None
        );
        let fits = vec![b'x'; MAX_OBJECT_BYTES];
        let unbounded = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_string();
        let endpoint = test_store::answering(unbounded, fits.clone()).await;
        assert_eq!(
            bucket(&endpoint).get("k").await.unwrap().unwrap().body,
            Some(fits)
        );
    }
}
