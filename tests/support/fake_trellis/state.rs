//! The fake's state: workers, jobs (the `provision_jobs` rows as Trellis
//! keeps them), artifacts, every request it received, and the faults it is
//! told to inject; with the checks every route shares (authentication, the
//! ownership of a job, the one error-answer shape).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

/// The largest plan artifact Trellis accepts (50 MiB).
pub const MAX_ARTIFACT_BYTES: usize = 52_428_800;
pub(super) const JOB_STATUSES: [&str; 4] = ["PROCESSING", "SUCCESS", "FAILED", "CANCELLED"];
pub(super) const STREAMS: [&str; 3] = ["STDOUT", "STDERR", "SYSTEM"];
pub(super) const MODES: [&str; 2] = ["cloud-hosted", "self-hosted"];
/// The fields of a cloud identity, as a claim carries it.
pub const IDENTITY_KEYS: [&str; 10] = [
    "provider",
    "role_arn",
    "external_id",
    "account_id",
    "project_id",
    "service_account_email",
    "wif_config",
    "tenant_id",
    "client_id",
    "subscription_id",
];
/// The `user_id` of every job the fake creates.
pub const TEST_USER_ID: &str = "00000000-0000-4000-8000-00000000beef";

/// One request as the fake received it, with the status it answered
/// (0 when the connection was dropped without an answer).
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub status: u16,
    /// When the fake received it (benchmarks time the worker by it).
    pub received_at: std::time::Instant,
}

impl RecordedRequest {
    /// The first value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        let found = self
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name));
        found.map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

pub(super) struct Worker {
    pub(super) token: String,
    pub(super) metadata: Value,
    pub(super) heartbeats: Vec<Value>,
    pub(super) last_seen: Option<Instant>,
    /// The row's `status`: ONLINE after any heartbeat or claim (the server
    /// reads nothing else of a heartbeat but its version).
    pub(super) status: &'static str,
    /// The row's `version`, from the last heartbeat that carried one.
    pub(super) version: Option<String>,
}

impl Worker {
    pub(super) fn new(token: &str, metadata: Value) -> Worker {
        Worker {
            token: token.into(),
            metadata,
            heartbeats: Vec::new(),
            last_seen: None,
            status: "OFFLINE",
            version: None,
        }
    }
}

pub(super) struct Job {
    /// The `provision_jobs` row as the fake keeps it.
    pub(super) row: Map<String, Value>,
    /// For `enqueue_raw`: what the claim returns instead of `row`.
    pub(super) wire: Option<Value>,
    pub(super) identity: Value,
    pub(super) history: Vec<Value>,
    pub(super) logs: Vec<(String, String)>,
    /// What `POST /jobs/{id}/git-token` answers (`{"token": null}` if none).
    pub(super) git_token: Option<String>,
}

impl Job {
    pub(super) fn field(&self, key: &str) -> Option<&str> {
        self.row
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }
}

pub(super) struct FailRule {
    pub(super) method: Option<String>,
    pub(super) prefix: String,
    pub(super) remaining: usize,
    pub(super) status: u16,
    pub(super) message: String,
}

pub(super) enum Intercept {
    Pass,
    Fail(u16, String),
    /// An answer that is not Trellis's own: an HTML page with this status.
    Page(u16),
    Drop,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) workers: HashMap<String, Worker>,
    pub(super) registration_secret: Option<String>,
    /// The release pipeline's secret for `POST /api/releases/worker`.
    pub(super) release_secret: Option<String>,
    /// The worker releases announced, oldest first.
    pub(super) releases: Vec<Value>,
    /// In insertion order, which is the age order the claim uses.
    pub(super) jobs: Vec<Job>,
    pub(super) artifacts: HashMap<String, Vec<u8>>,
    pub(super) requests: Vec<RecordedRequest>,
    pub(super) fail_rules: Vec<FailRule>,
    /// Log chunks holding one of these are refused, every time, as the
    /// database refuses a value it cannot store.
    pub(super) refused_log_markers: Vec<String>,
    /// Jobs none of whose log chunks is stored.
    pub(super) refused_log_jobs: Vec<String>,
    pub(super) drop_next: usize,
    pub(super) delay: Duration,
    /// While set, the database is unreachable: every route answers its own
    /// 500 `Failed to <what>: <this reason>`, and nothing changes.
    pub(super) database_down: Option<String>,
    /// While set, something in front of Trellis (an ingress during a
    /// redeploy) answers every request with a page of this status.
    pub(super) ingress_page: Option<u16>,
}

pub(super) type Db = Arc<Mutex<State>>;
pub(super) type Reply = Result<Response, ApiError>;

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a route asks of the database, in the words of its `Failed to ...`
/// error.
fn database_action(method: &str, path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_start_matches("/api/").split('/').collect();
    match (method, segments.as_slice()) {
        ("POST", ["workers", "heartbeat"]) => "update heartbeat",
        ("POST", ["jobs", "claim"]) => "claim job",
        ("GET", ["jobs", _]) => "fetch job",
        ("PUT", ["jobs", _, "status"]) => "update status",
        ("POST", ["jobs", _, "logs"]) => "insert log",
        ("POST", ["jobs", _, "git-token"]) => "get git token",
        (_, ["jobs", _, "plan-artifact"]) => "access plan artifact",
        ("PATCH", ["workers", _, "metadata"]) => "update worker metadata",
        ("DELETE", ["workers", _]) => "delete worker",
        ("POST", ["tendrils", "register"]) => "register tendril",
        _ => "process request",
    }
}

/// An error answer: `status` with `{"error": message}`.
pub(super) struct ApiError(u16, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// The one error-response helper.
pub(super) fn error(status: u16, msg: impl Into<String>) -> ApiError {
    ApiError(status, msg.into())
}

pub(super) fn success(status: StatusCode) -> Reply {
    Ok((status, Json(json!({ "success": true }))).into_response())
}

pub(super) fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(error(400, "Invalid request body")),
    }
}

impl State {
    pub(super) fn auth(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        let get = |name: &str| headers.get(name).filter(|v| !v.is_empty());
        let (Some(id), Some(token)) = (get("x-worker-id"), get("x-worker-token")) else {
            return Err(error(401, "Missing X-Worker-ID or X-Worker-Token"));
        };
        match (id.to_str(), token.to_str()) {
            (Ok(id), Ok(token)) if self.workers.get(id).is_some_and(|w| w.token == token) => {
                Ok(id.to_string())
            }
            _ => Err(error(401, "Invalid worker ID or token")),
        }
    }

    /// Stamps the worker's heartbeat and sets it ONLINE, as a heartbeat and
    /// a claim both do.
    pub(super) fn touch(&mut self, worker: &str) -> Option<&mut Worker> {
        let w = self.workers.get_mut(worker)?;
        w.last_seen = Some(Instant::now());
        w.status = "ONLINE";
        Some(w)
    }

    pub(super) fn job(&self, id: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.field("id") == Some(id))
    }

    pub(super) fn job_mut(&mut self, id: &str) -> Option<&mut Job> {
        self.jobs.iter_mut().find(|j| j.field("id") == Some(id))
    }

    /// The one ownership check: the job exists and `worker_id` is the caller.
    pub(super) fn owned(&mut self, id: &str, me: &str, action: &str) -> Result<&mut Job, ApiError> {
        let job = self
            .job_mut(id)
            .filter(|j| j.field("worker_id") == Some(me));
        job.ok_or_else(|| {
            error(
                500,
                format!("Failed to {action}: Job not found or not owned by this worker"),
            )
        })
    }

    pub(super) fn intercept(&mut self, method: &str, path: &str) -> Intercept {
        if !path.starts_with("/api") {
            return Intercept::Pass;
        }
        if self.drop_next > 0 {
            self.drop_next -= 1;
            return Intercept::Drop;
        }
        if let Some(status) = self.ingress_page {
            return Intercept::Page(status);
        }
        if let Some(reason) = &self.database_down {
            let what = database_action(method, path);
            return Intercept::Fail(500, format!("Failed to {what}: {reason}"));
        }
        let rule = self.fail_rules.iter_mut().find(|r| {
            r.method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
                && path.starts_with(&r.prefix)
        });
        let Some(rule) = rule else {
            return Intercept::Pass;
        };
        rule.remaining -= 1;
        let answer = Intercept::Fail(rule.status, rule.message.clone());
        self.fail_rules.retain(|r| r.remaining > 0);
        answer
    }
}
