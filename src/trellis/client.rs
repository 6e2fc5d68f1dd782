//! The HTTP client of the Trellis worker API.
//!
//! Every method makes one attempt and classifies the answer into a
//! [`TrellisError`]; callers choose how to retry with [`super::retry`]. The
//! worker token travels in a header marked sensitive and never appears in an
//! error or a log.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::model::*;
use crate::secrets::MaskedSecret;
use crate::settings::{secure_url, AgentSettings, WorkerMode};

/// The most Trellis accepts as a plan artifact.
pub const MAX_PLAN_ARTIFACT_BYTES: usize = 52_428_800;

/// The phrase of Trellis's permanent "this job is not yours" 500.
const JOB_GONE_PHRASE: &str = "not found or not owned by this worker";

#[derive(Debug, thiserror::Error)]
pub enum TrellisError {
    #[error("Trellis rejected the worker ID or token: {0}")]
    Unauthorized(String),
    #[error("the job is no longer this worker's: {0}")]
    JobGone(String),
    #[error("Trellis refused the request (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("Trellis is unavailable (HTTP {status}): {message}")]
    Unavailable { status: u16, message: String },
    #[error("cannot reach Trellis: {0}")]
    Transport(String),
    #[error("unexpected answer from Trellis: {0}")]
    InvalidResponse(String),
    #[error("the plan artifact is {0} bytes, over the 52,428,800 bytes (50 MiB) Trellis accepts")]
    ArtifactTooLarge(usize),
    #[error("a claimed job could not be run: {problem}")]
    UnreadableJob {
        problem: String,
        /// The job's id, when it could be read (so that it can be failed).
        job_id: Option<String>,
    },
    #[error("cannot reach Trellis (the request was not sent): {0}")]
    Unsent(String),
    #[error("{what} is larger than {limit} bytes, which Tendril does not read ({setting})")]
    TooLarge {
        what: &'static str,
        limit: usize,
        setting: &'static str,
        /// The claimed job's id, when it could be read from the start of the
        /// answer (so that the job can still be failed).
        job_id: Option<String>,
    },
    #[error(
        "Trellis answered HTTP {status}, a redirect to {location}: a request carrying credentials never follows \
         one (if Trellis moved, point TRELLIS_URL at its new address)"
    )]
    Redirected { status: u16, location: String },
}

impl TrellisError {
    /// Whether the same request may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TrellisError::Unavailable { .. }
                | TrellisError::Transport(_)
                | TrellisError::Unsent(_)
                | TrellisError::InvalidResponse(_)
        )
    }
}

/// A bad `TRELLIS_URL`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UrlError(String);

/// The Trellis worker API, for one worker identity.
#[derive(Clone)]
pub struct TrellisClient {
    http: reqwest::Client,
    api: Url,
    worker_id: String,
    artifact_timeout: Duration,
    /// The largest claim or job row read.
    max_job_size: usize,
}

impl TrellisClient {
    pub fn new(settings: &AgentSettings) -> Result<Self, UrlError> {
        let api = api_base(&settings.trellis_url, settings.allow_insecure_http)?;
        let mut headers = HeaderMap::new();
        let header = |value: &str| {
            HeaderValue::from_str(value)
                .map_err(|_| UrlError("the worker id and token must be plain ASCII text".into()))
        };
        headers.insert("X-Worker-ID", header(&settings.worker_id)?);
        let mut token = header(settings.worker_token.expose())?;
        token.set_sensitive(true);
        headers.insert("X-Worker-Token", token);
        let http = reqwest::Client::builder()
            .default_headers(headers)
            // The token is a header a redirect would carry to another origin.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(format!("tendril/{}", crate::VERSION))
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout.min(Duration::from_secs(10)))
            .use_rustls_tls()
            .build()
            .map_err(|e| UrlError(format!("cannot build the HTTP client: {e}")))?;
        Ok(TrellisClient {
            http,
            api,
            worker_id: settings.worker_id.clone(),
            artifact_timeout: settings.artifact_timeout,
            max_job_size: settings.max_job_size,
        })
    }

    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    fn job_limit(&self, what: &'static str) -> Limit {
        Limit {
            bytes: self.max_job_size,
            what,
            setting: JOB_SIZE_SETTING,
        }
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.api.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        self.http.request(method, self.url(segments))
    }

    /// `POST /workers/heartbeat`.
    pub async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<(), TrellisError> {
        send(
            self.request(Method::POST, &["workers", "heartbeat"])
                .json(heartbeat),
        )
        .await?;
        Ok(())
    }

    /// `POST /jobs/claim`: `None` when the queue is empty.
    pub async fn claim(&self) -> Result<Option<Claim>, TrellisError> {
        let response = send(self.request(Method::POST, &["jobs", "claim"])).await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let body = match read_capped(response, self.job_limit("a claimed job")).await {
            Ok(body) => body,
            Err(Capped::Over { head }) => {
                return Err(TrellisError::TooLarge {
                    what: "a claimed job",
                    limit: self.max_job_size,
                    setting: JOB_SIZE_SETTING,
                    job_id: leading_job_id(&head),
                })
            }
            Err(Capped::Failed(error)) => return Err(error),
        };
        match serde_json::from_slice::<Claim>(&body) {
            Ok(claim) => Ok((!claim.job.is_null()).then_some(claim)),
            // Trellis has claimed the job all the same: it must be failed.
            Err(error) => Err(TrellisError::UnreadableJob {
                problem: format!(
                    "its claim could not be read ({})",
                    without_values(&error.to_string())
                ),
                job_id: leading_job_id(&body),
            }),
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
            Ok(response) => {
                let limit = Limit {
                    bytes: MAX_PLAN_ARTIFACT_BYTES,
                    what: "the plan artifact",
                    setting: "the 50 MiB Trellis stores",
                };
                match read_capped(response, limit).await {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(Capped::Over { .. }) => Err(TrellisError::TooLarge {
                        what: limit.what,
                        limit: limit.bytes,
                        setting: limit.setting,
                        job_id: None,
                    }),
                    Err(Capped::Failed(error)) => Err(error),
                }
            }
            Err(error) => api_not_found(error, "Plan artifact not found"),
        }
    }

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

/// `Ok(None)` for the API's own 404 (`{"error": "<expected>"}`); a 404 of
/// another shape (an ingress's page during a redeploy) says nothing about
/// the job and is transient; other errors pass.
fn api_not_found<T>(error: TrellisError, expected: &str) -> Result<Option<T>, TrellisError> {
    match error {
        TrellisError::Rejected {
            status: 404,
            message,
        } if message == expected => Ok(None),
        TrellisError::Rejected {
            status: 404,
            message,
        } => Err(TrellisError::Unavailable {
            status: 404,
            message: format!("a 404 that is not Trellis's own answer: {message}"),
        }),
        other => Err(other),
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
            TrellisError::Rejected {
                status: 0,
                message: "the registration secret is not plain text".into(),
            }
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
    let mut url =
        api_base(trellis_url, allow_insecure_http).map_err(|e| TrellisError::Rejected {
            status: 0,
            message: e.to_string(),
        })?;
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

/// Checks `TRELLIS_URL` and returns the `/api` base (see [`secure_url`]).
pub fn api_base(trellis_url: &str, allow_insecure_http: bool) -> Result<Url, UrlError> {
    let mut api = secure_url(trellis_url, allow_insecure_http).map_err(UrlError)?;
    if let Ok(mut path) = api.path_segments_mut() {
        path.pop_if_empty().push("api");
    }
    Ok(api)
}

fn transport(error: reqwest::Error) -> TrellisError {
    let connect = error.is_connect();
    let description = crate::http_error::describe(error);
    match connect {
        true => TrellisError::Unsent(description),
        false => TrellisError::Transport(description),
    }
}

/// Sends a request and classifies a non-2xx answer.
/// The metrics label of a worker API path: the route, never an id.
fn endpoint(url: &Url) -> &'static str {
    let segments: Vec<&str> = url.path_segments().map(|s| s.collect()).unwrap_or_default();
    let api = segments
        .iter()
        .rposition(|s| *s == "api")
        .map_or(0, |i| i + 1);
    match &segments[api.min(segments.len())..] {
        ["workers", "heartbeat"] => "heartbeat",
        ["jobs", "claim"] => "claim",
        ["jobs", _] => "job",
        ["jobs", _, "status"] => "status",
        ["jobs", _, "logs"] => "logs",
        ["jobs", _, "plan-artifact"] => "plan-artifact",
        ["jobs", _, "git-token"] => "git-token",
        ["workers", _, "metadata"] => "worker-metadata",
        ["workers", _] => "worker",
        ["tendrils", "register"] => "register",
        _ => "other",
    }
}

async fn send(request: RequestBuilder) -> Result<Response, TrellisError> {
    let (http, request) = request.build_split();
    let request = request.map_err(transport)?;
    let endpoint = endpoint(request.url());
    let metrics = crate::health::metrics();
    let response = match http.execute(request).await {
        Ok(response) => response,
        Err(error) => {
            metrics.trellis_request(endpoint, None, false);
            return Err(transport(error));
        }
    };
    let status = response.status();
    // Any answer of the API's own (not a proxy's 5xx) shows Trellis is there.
    metrics.trellis_request(endpoint, Some(status.as_u16()), status.as_u16() < 500);
    if status.is_success() {
        return Ok(response);
    }
    if status.is_redirection() {
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("nowhere (no Location header)")
            .chars()
            .take(300)
            .collect();
        return Err(TrellisError::Redirected {
            status: status.as_u16(),
            location,
        });
    }
    let body = match read_capped(response, ERROR_BODY).await {
        Ok(body) => body,
        Err(Capped::Over { head }) => head,
        Err(Capped::Failed(error)) => return Err(error),
    };
    let text = String::from_utf8_lossy(&body);
    let own = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|body| body.get("error").and_then(Value::as_str).map(String::from));
    let from_trellis = own.is_some();
    let message = own.unwrap_or_else(|| text.chars().take(200).collect());
    let code = status.as_u16();
    Err(match status {
        StatusCode::UNAUTHORIZED => TrellisError::Unauthorized(message),
        // A 4xx that is not Trellis's own `{"error": ...}` comes from
        // something in between (an ingress during a redeploy): it says
        // nothing about the request. A proxy's 413 still means too large.
        _ if status.is_client_error()
            && !from_trellis
            && status != StatusCode::PAYLOAD_TOO_LARGE =>
        {
            TrellisError::Unavailable {
                status: code,
                message: format!("an answer that is not Trellis's own: {message}"),
            }
        }
        _ if status.is_server_error() && message.contains(JOB_GONE_PHRASE) => {
            TrellisError::JobGone(message)
        }
        _ if status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT =>
        {
            TrellisError::Unavailable {
                status: code,
                message,
            }
        }
        _ => TrellisError::Rejected {
            status: code,
            message,
        },
    })
}

/// How much of an answer is read.
#[derive(Clone, Copy)]
struct Limit {
    bytes: usize,
    what: &'static str,
    setting: &'static str,
}

/// The setting that bounds a claim and a job row.
const JOB_SIZE_SETTING: &str = "TENDRIL_MAX_JOB_SIZE";
/// Small answers (a key, a token, a registration) and error bodies.
const SMALL_ANSWER: Limit = Limit {
    bytes: 64 * 1024,
    what: "Trellis's answer",
    setting: "the 64 KiB a short answer may take",
};
const ERROR_BODY: Limit = Limit {
    bytes: 64 * 1024,
    what: "an error answer",
    setting: "64 KiB",
};

enum Capped {
    /// Longer than the limit: the first `limit` bytes.
    Over {
        head: Vec<u8>,
    },
    Failed(TrellisError),
}

/// Reads a body up to a limit, never more into memory.
async fn read_capped(mut response: Response, limit: Limit) -> Result<Vec<u8>, Capped> {
    let mut body = Vec::new();
    while let Some(piece) = response
        .chunk()
        .await
        .map_err(|e| Capped::Failed(transport(e)))?
    {
        let room = limit.bytes - body.len();
        if piece.len() > room {
            body.extend_from_slice(&piece[..room]);
            return Err(Capped::Over { head: body });
        }
        body.extend_from_slice(&piece);
    }
    Ok(body)
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, TrellisError> {
    serde_json::from_slice(body).map_err(|e| TrellisError::InvalidResponse(e.to_string()))
}

async fn json_body<T: DeserializeOwned>(
    response: Response,
    limit: Limit,
) -> Result<T, TrellisError> {
    match read_capped(response, limit).await {
        Ok(body) => parse(&body),
        Err(Capped::Over { .. }) => Err(TrellisError::TooLarge {
            what: limit.what,
            limit: limit.bytes,
            setting: limit.setting,
            job_id: None,
        }),
        Err(Capped::Failed(error)) => Err(error),
    }
}

/// The id of the job a claim's answer carries (`{"job": {"id": "<id>", ...`),
/// read from as much of it as there is, when the whole does not parse: only
/// the `id` key of the top-level `job` object counts, and only a safe name.
fn leading_job_id(body: &[u8]) -> Option<String> {
    let mut scanner = Scanner { bytes: body, at: 0 };
    scanner.expect(b'{')?;
    loop {
        let key = scanner.string()?;
        scanner.expect(b':')?;
        if key == "job" {
            scanner.expect(b'{')?;
            loop {
                let key = scanner.string()?;
                scanner.expect(b':')?;
                if key == "id" {
                    let id = scanner.string()?;
                    return crate::safe_name::is_safe(&id).then_some(id);
                }
                scanner.skip_value()?;
                scanner.expect(b',')?;
            }
        }
        scanner.skip_value()?;
        scanner.expect(b',')?;
    }
}

/// Just enough of a JSON reader to walk keys and skip values, on a body
/// that may be cut anywhere.
struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Scanner<'_> {
    fn peek(&mut self) -> Option<u8> {
        while self.bytes.get(self.at)?.is_ascii_whitespace() {
            self.at += 1;
        }
        self.bytes.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// A string (escapes kept as written: ids have none).
    fn string(&mut self) -> Option<String> {
        self.expect(b'"')?;
        let start = self.at;
        loop {
            match *self.bytes.get(self.at)? {
                b'\\' => self.at += 2,
                b'"' => break,
                _ => self.at += 1,
            }
        }
        let text = std::str::from_utf8(self.bytes.get(start..self.at)?)
            .ok()?
            .to_string();
        self.at += 1;
        Some(text)
    }

    /// Skips one value, however deep, without recursing; stops before the
    /// `,` or `}` after it.
    fn skip_value(&mut self) -> Option<()> {
        let mut depth = 0usize;
        loop {
            match self.peek()? {
                b'"' => {
                    self.string()?;
                }
                b'{' | b'[' => {
                    depth += 1;
                    self.at += 1;
                }
                b'}' | b']' if depth > 0 => {
                    depth -= 1;
                    self.at += 1;
                }
                b',' | b'}' | b']' if depth == 0 => return Some(()),
                _ => self.at += 1,
            }
            if depth == 0 && matches!(self.peek()?, b',' | b'}') {
                return Some(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_id_is_read_from_a_claim_that_does_not_parse() {
        let head = br#"{"job": {"id": "3f2a9c4e-1b2d-4e5f-8a9b-0c1d2e3f4a5b", "job_type": "PLAN", "config_snapshot": {"x": "#;
        assert_eq!(
            leading_job_id(head).as_deref(),
            Some("3f2a9c4e-1b2d-4e5f-8a9b-0c1d2e3f4a5b")
        );
        // Only the job object's own id, wherever it is among its keys.
        let nested = br#"{"job": {"config_snapshot": {"id": "vine-1", "deep": [[{"id": "x"}]]}, "job_type": "PLAN", "id": "real-job-1", "blob": "cut"#;
        assert_eq!(leading_job_id(nested).as_deref(), Some("real-job-1"));
        let identity_first = br#"{"cloud_identity": {"id": "ci-1"}, "job": {"id": "job-2"}}"#;
        assert_eq!(leading_job_id(identity_first).as_deref(), Some("job-2"));
        assert_eq!(leading_job_id(br#"{"job": {"id": "../x"}"#), None);
        assert_eq!(leading_job_id(br#"{"cloud_identity": {}}"#), None);
        assert_eq!(leading_job_id(b""), None);
    }

    #[test]
    fn endpoint_labels_name_the_route_and_never_an_id() {
        let label = |path: &str| {
            endpoint(&Url::parse(&format!("https://t.example/base/api/{path}")).unwrap())
        };
        assert_eq!(label("jobs/claim"), "claim");
        assert_eq!(label("jobs/3f2a/status"), "status");
        assert_eq!(label("jobs/3f2a"), "job");
        assert_eq!(label("workers/w1/metadata"), "worker-metadata");
        assert_eq!(label("workers/heartbeat"), "heartbeat");
        assert_eq!(label("elsewhere/x/y/z"), "other");
    }

    #[test]
    fn https_and_loopback_http_are_accepted() {
        assert_eq!(
            api_base("https://t.example.com", false).unwrap().as_str(),
            "https://t.example.com/api"
        );
        assert_eq!(
            api_base("https://t.example.com/base/", false)
                .unwrap()
                .as_str(),
            "https://t.example.com/base/api"
        );
        assert!(api_base("http://127.0.0.1:8080", false).is_ok());
        assert!(api_base("http://localhost:8080", false).is_ok());
        assert!(api_base("http://[::1]:8080", false).is_ok());
    }

    #[test]
    fn plain_http_elsewhere_is_refused_unless_allowed() {
        let error = api_base("http://trellis.internal", false).unwrap_err();
        assert!(
            error.to_string().contains("refusing plain http://"),
            "{error}"
        );
        assert!(api_base("http://trellis.internal", true).is_ok());
        assert!(api_base("ftp://trellis.internal", true).is_err());
    }
}
