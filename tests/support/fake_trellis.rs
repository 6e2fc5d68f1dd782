//! `FakeTrellis`: a FAKE of the Trellis control plane's worker API (every
//! route under `/api`), for tests that drive the real `tendril` binary.
//!
//! It implements the worker API of `docs/trellis.md` strictly, as the
//! deployed Trellis behaves: the same status codes, the same `{"error":
//! "..."}` bodies, the same server-side rules (atomic ordered claim,
//! ownership checks, no status state machine, `error_message` kept once set,
//! shallow `execution_metadata` merge, every heartbeat recorded as ONLINE
//! whatever its status, a log chunk holding U+0000 refused with a 500 on
//! every attempt, as PostgreSQL text cannot store it). It is not Trellis:
//! there is no database, no stale-job recovery and no web app; tests play the
//! web app through the control helpers (`cancel_job`, `reassign_job`,
//! `set_git_token`, ...) and read results as its screens do
//! (`support::trellis_reads`).
//!
//! It runs on its own OS thread with its own tokio runtime, listens on
//! 127.0.0.1 on a free port, records every request, and can inject faults:
//! error answers, slow answers, dropped connections and whole outages (the
//! listening socket is closed, so connections are refused, and later re-bound
//! on the same port). Everything stops when the `FakeTrellis` is dropped.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State as AxState};
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use axum::{Json, Router};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The largest plan artifact Trellis accepts (50 MiB).
pub const MAX_ARTIFACT_BYTES: usize = 52_428_800;
const JOB_STATUSES: [&str; 4] = ["PROCESSING", "SUCCESS", "FAILED", "CANCELLED"];
const STREAMS: [&str; 3] = ["STDOUT", "STDERR", "SYSTEM"];
const MODES: [&str; 2] = ["cloud-hosted", "self-hosted"];
const IDENTITY_KEYS: [&str; 10] = [
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

struct Worker {
    token: String,
    metadata: Value,
    heartbeats: Vec<Value>,
    last_seen: Option<Instant>,
    /// The row's `status`: ONLINE after any heartbeat or claim (the server
    /// reads nothing else of a heartbeat but its version).
    status: &'static str,
    /// The row's `version`, from the last heartbeat that carried one.
    version: Option<String>,
}

impl Worker {
    fn new(token: &str, metadata: Value) -> Worker {
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

struct Job {
    /// The `provision_jobs` row as the fake keeps it.
    row: Map<String, Value>,
    /// For `enqueue_raw`: what the claim returns instead of `row`.
    wire: Option<Value>,
    identity: Value,
    history: Vec<Value>,
    logs: Vec<(String, String)>,
    /// What `POST /jobs/{id}/git-token` answers (`{"token": null}` if none).
    git_token: Option<String>,
}

impl Job {
    fn field(&self, key: &str) -> Option<&str> {
        self.row
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }
}

struct FailRule {
    method: Option<String>,
    prefix: String,
    remaining: usize,
    status: u16,
    message: String,
}

enum Intercept {
    Pass,
    Fail(u16, String),
    Drop,
}

#[derive(Default)]
struct State {
    workers: HashMap<String, Worker>,
    registration_secret: Option<String>,
    /// In insertion order, which is the age order the claim uses.
    jobs: Vec<Job>,
    artifacts: HashMap<String, Vec<u8>>,
    requests: Vec<RecordedRequest>,
    fail_rules: Vec<FailRule>,
    /// Log chunks holding one of these are refused, every time, as the
    /// database refuses a value it cannot store.
    refused_log_markers: Vec<String>,
    drop_next: usize,
    delay: Duration,
}

type Db = Arc<Mutex<State>>;
type Reply = Result<Response, ApiError>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An error answer: `status` with `{"error": message}`.
struct ApiError(u16, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// The one error-response helper.
fn error(status: u16, msg: impl Into<String>) -> ApiError {
    ApiError(status, msg.into())
}

fn success(status: StatusCode) -> Reply {
    Ok((status, Json(json!({ "success": true }))).into_response())
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(error(400, "Invalid request body")),
    }
}

impl State {
    fn auth(&self, headers: &HeaderMap) -> Result<String, ApiError> {
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
    fn touch(&mut self, worker: &str) -> Option<&mut Worker> {
        let w = self.workers.get_mut(worker)?;
        w.last_seen = Some(Instant::now());
        w.status = "ONLINE";
        Some(w)
    }

    fn job(&self, id: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.field("id") == Some(id))
    }

    fn job_mut(&mut self, id: &str) -> Option<&mut Job> {
        self.jobs.iter_mut().find(|j| j.field("id") == Some(id))
    }

    /// The one ownership check: the job exists and `worker_id` is the caller.
    fn owned(&mut self, id: &str, me: &str, action: &str) -> Result<&mut Job, ApiError> {
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

    fn intercept(&mut self, method: &str, path: &str) -> Intercept {
        if !path.starts_with("/api") {
            return Intercept::Pass;
        }
        if self.drop_next > 0 {
            self.drop_next -= 1;
            return Intercept::Drop;
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

// ---- handlers -----------------------------------------------------------

async fn heartbeat(AxState(db): AxState<Db>, headers: HeaderMap, body: Bytes) -> Reply {
    let mut st = lock(&db);
    let me = st.auth(&headers)?;
    let beat = json_object(&body)?;
    if let Some(w) = st.touch(&me) {
        if let Some(version) = beat.get("version").and_then(Value::as_str) {
            w.version = Some(version.to_string());
        }
        w.heartbeats.push(Value::Object(beat));
    }
    success(StatusCode::OK)
}

async fn claim(AxState(db): AxState<Db>, headers: HeaderMap) -> Reply {
    let mut st = lock(&db);
    let me = st.auth(&headers)?;
    st.touch(&me);
    let queued_for = |j: &Job, who: Option<&str>| {
        j.field("status") == Some("QUEUED") && j.field("assigned_worker_id") == who
    };
    let pick = (st.jobs.iter().position(|j| queued_for(j, Some(&me))))
        .or_else(|| st.jobs.iter().position(|j| queued_for(j, None)));
    let Some(job) = pick.map(|i| &mut st.jobs[i]) else {
        return Ok(Json(json!({ "job": null })).into_response());
    };
    let now = now();
    job.row.insert("status".into(), json!("CLAIMED"));
    job.row.insert("worker_id".into(), json!(me));
    job.row.insert("claimed_at".into(), now.clone());
    job.row.insert("updated_at".into(), now);
    let row = match &job.wire {
        Some(raw) => raw.to_string(),
        None => in_column_order(&job.row),
    };
    let body = format!(r#"{{"job":{row},"cloud_identity":{}}}"#, job.identity);
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The `provision_jobs` columns in the table's order.
const COLUMNS: [&str; 19] = [
    "id",
    "user_id",
    "vineyard_id",
    "vine_id",
    "cloud_identity_id",
    "job_type",
    "plan_job_id",
    "assigned_worker_id",
    "config_snapshot",
    "configuration_hash",
    "status",
    "worker_id",
    "claimed_at",
    "started_at",
    "completed_at",
    "created_at",
    "updated_at",
    "error_message",
    "execution_metadata",
];

/// A row as JSON with its keys in column order, as the database gives it
/// (`id` first), then any other keys.
fn in_column_order(row: &Map<String, Value>) -> String {
    let known = COLUMNS.iter().filter_map(|c| row.get_key_value(*c));
    let others = row.iter().filter(|(k, _)| !COLUMNS.contains(&k.as_str()));
    let fields: Vec<String> = known
        .chain(others)
        .map(|(key, value)| format!("{}:{value}", Value::String(key.clone())))
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// An optional string field: absent, null and "" are all `None`; any other
/// non-string is a malformed body.
fn opt_str(req: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match req.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone()).filter(|s| !s.is_empty())),
        Some(_) => Err(error(400, "Invalid request body")),
    }
}

async fn update_status(
    AxState(db): AxState<Db>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let mut st = lock(&db);
    let me = st.auth(&headers)?;
    let req = json_object(&body)?;
    let Some(status) = opt_str(&req, "status")? else {
        return Err(error(400, "status is required"));
    };
    if !JOB_STATUSES.contains(&status.as_str()) {
        let msg = "status must be one of: PROCESSING, SUCCESS, FAILED, CANCELLED";
        return Err(error(400, msg));
    }
    let error_message = opt_str(&req, "error_message")?;
    let metadata = match req.get("execution_metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(error(400, "Invalid request body")),
    };
    let job = st.owned(&id, &me, "update status")?;
    job.history.push(Value::Object(req));
    let now = now();
    let row = &mut job.row;
    if status == "PROCESSING" && row.get("started_at").is_none_or(Value::is_null) {
        row.insert("started_at".into(), now.clone());
    }
    if status != "PROCESSING" {
        row.insert("completed_at".into(), now.clone());
    }
    row.insert("status".into(), json!(status));
    row.insert("updated_at".into(), now);
    if let Some(msg) = error_message {
        row.insert("error_message".into(), json!(msg));
    }
    if !metadata.is_empty() {
        let merged = row.entry("execution_metadata").or_insert_with(|| json!({}));
        if !merged.is_object() {
            *merged = json!({});
        }
        if let Some(merged) = merged.as_object_mut() {
            merged.extend(metadata);
        }
    }
    success(StatusCode::OK)
}

async fn append_log(
    AxState(db): AxState<Db>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let mut st = lock(&db);
    let me = st.auth(&headers)?;
    let req = json_object(&body)?;
    let Some(chunk) = req
        .get("log_chunk")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
    else {
        return Err(error(400, "log_chunk is required"));
    };
    let stream = req.get("stream_type").and_then(Value::as_str);
    let Some(stream) = stream.filter(|s| STREAMS.contains(s)) else {
        return Err(error(
            400,
            "stream_type must be one of: STDOUT, STDERR, SYSTEM",
        ));
    };
    let refused = st
        .refused_log_markers
        .iter()
        .any(|m| chunk.contains(m.as_str()));
    let job = st.owned(&id, &me, "insert log")?;
    if refused {
        return Err(error(
            500,
            "Failed to insert log: invalid input syntax (injected refusal)",
        ));
    }
    if chunk.contains('\0') {
        // PostgreSQL's text type cannot hold NUL: the insert fails, every time.
        return Err(error(
            500,
            "Failed to insert log: invalid byte sequence for encoding \"UTF8\": 0x00",
        ));
    }
    job.logs.push((stream.to_string(), chunk.to_string()));
    success(StatusCode::CREATED)
}

async fn git_token(AxState(db): AxState<Db>, Path(id): Path<String>, headers: HeaderMap) -> Reply {
    let st = lock(&db);
    let me = st.auth(&headers)?;
    let Some(job) = st.job(&id) else {
        return Err(error(404, "Job not found"));
    };
    if job.field("worker_id") != Some(me.as_str()) {
        return Err(error(403, "Worker does not own this job"));
    }
    Ok(Json(json!({ "token": job.git_token })).into_response())
}

async fn upload_artifact(
    AxState(db): AxState<Db>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let mut st = lock(&db);
    let me = st.auth(&headers)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let essence = content_type
        .and_then(|c| c.split(';').next())
        .map(str::trim);
    if !essence.is_some_and(|c| c.eq_ignore_ascii_case("application/octet-stream")) {
        return Err(error(400, "Content-Type must be application/octet-stream"));
    }
    if body.len() > MAX_ARTIFACT_BYTES {
        return Err(error(413, "File too large (max 50MB)"));
    }
    if body.is_empty() {
        return Err(error(400, "Empty body"));
    }
    st.owned(&id, &me, "upload plan artifact")?;
    st.artifacts.insert(id.clone(), body.to_vec());
    let key = format!("{id}/terraform.plan.out");
    Ok((StatusCode::CREATED, Json(json!({ "key": key }))).into_response())
}

async fn download_artifact(
    AxState(db): AxState<Db>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Reply {
    let st = lock(&db);
    st.auth(&headers)?;
    let Some(bytes) = st.artifacts.get(&id) else {
        return Err(error(404, "Plan artifact not found"));
    };
    let content_type = [(header::CONTENT_TYPE, "application/octet-stream")];
    Ok((content_type, bytes.clone()).into_response())
}

async fn get_job(AxState(db): AxState<Db>, Path(id): Path<String>, headers: HeaderMap) -> Reply {
    let st = lock(&db);
    st.auth(&headers)?;
    let Some(job) = st.job(&id) else {
        return Err(error(404, "Job not found"));
    };
    Ok(Json(Value::Object(job.row.clone())).into_response())
}

async fn patch_metadata(
    AxState(db): AxState<Db>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let mut st = lock(&db);
    st.auth(&headers)?;
    let metadata = json_object(&body)?;
    let Some(worker) = st.workers.get_mut(&id) else {
        return Err(error(
            500,
            "Failed to update worker metadata: Worker not found",
        ));
    };
    worker.metadata = Value::Object(metadata);
    success(StatusCode::OK)
}

async fn delete_worker(
    AxState(db): AxState<Db>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Reply {
    let mut st = lock(&db);
    st.auth(&headers)?;
    st.workers.remove(&id);
    success(StatusCode::OK)
}

async fn register(AxState(db): AxState<Db>, headers: HeaderMap, body: Bytes) -> Reply {
    let mut st = lock(&db);
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let bearer = auth.and_then(|v| v.strip_prefix("Bearer "));
    if st.registration_secret.is_none() || bearer != st.registration_secret.as_deref() {
        return Err(error(401, "Unauthorized"));
    }
    let req = json_object(&body)?;
    let Some(name) = req
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    else {
        return Err(error(400, "Missing required field: name"));
    };
    let mode = req.get("mode").cloned().unwrap_or(Value::Null);
    if !(mode.is_null() || mode.as_str().is_some_and(|m| MODES.contains(&m))) {
        return Err(error(400, "mode must be one of: cloud-hosted, self-hosted"));
    }
    let (id, token) = (uuid(), super::random_hex(64));
    let metadata = json!({ "name": name, "mode": mode });
    st.workers.insert(id.clone(), Worker::new(&token, metadata));
    let answer = json!({ "tendril_id": id, "tendril_token": token });
    Ok(Json(answer).into_response())
}

/// A fake of the ECS agent's task protection endpoint (the agent sets
/// `ECS_AGENT_URI` to `.../ecs-agent/<task>`), served here so that its calls
/// are recorded in one order with the Trellis calls. It checks the body as
/// the agent does.
async fn task_protection(Path(task): Path<String>, body: Bytes) -> Reply {
    let req = json_object(&body)?;
    let Some(enabled) = req.get("ProtectionEnabled").and_then(Value::as_bool) else {
        return Err(error(400, "ProtectionEnabled is required"));
    };
    let expiry = req.get("ExpiresInMinutes");
    if enabled
        && !expiry
            .and_then(Value::as_u64)
            .is_some_and(|m| (1..=2880).contains(&m))
    {
        return Err(error(400, "ExpiresInMinutes must be between 1 and 2880"));
    }
    let task_arn = format!("arn:aws:ecs:eu-west-1:123456789012:task/pool/{task}");
    let answer = json!({"protection": {"ProtectionEnabled": enabled, "TaskArn": task_arn}});
    Ok(Json(answer).into_response())
}

async fn not_found() -> ApiError {
    error(404, "Not found")
}

fn router(db: Db) -> Router {
    Router::new()
        .route("/api/workers/heartbeat", post(heartbeat))
        .route("/api/jobs/claim", post(claim))
        .route("/api/jobs/{id}", get(get_job))
        .route("/api/jobs/{id}/status", put(update_status))
        .route("/api/jobs/{id}/logs", post(append_log))
        .route("/api/jobs/{id}/git-token", post(git_token))
        .route(
            "/api/jobs/{id}/plan-artifact",
            post(upload_artifact).get(download_artifact),
        )
        .route("/api/workers/{id}/metadata", patch(patch_metadata))
        .route("/api/workers/{id}", delete(delete_worker))
        .route("/api/tendrils/register", post(register))
        .route(
            "/ecs-agent/{task}/task-protection/v1/state",
            put(task_protection),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        // Large enough that a 50 MiB + 1 upload reaches the handler's 413.
        .layer(DefaultBodyLimit::max(2 * MAX_ARTIFACT_BYTES))
        .with_state(db)
}

// ---- transport: accept loop, recording, fault injection -----------------

async fn serve_request(
    app: Router,
    db: Db,
    kill: CancellationToken,
    req: Request<Incoming>,
) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return error(400, "Failed to read request body").into_response();
    };
    let (method, path) = (parts.method.to_string(), parts.uri.path().to_string());
    let (index, intercept, delay) = {
        let mut st = lock(&db);
        let headers = parts.headers.iter();
        st.requests.push(RecordedRequest {
            method: method.clone(),
            path: path.clone(),
            headers: headers
                .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                .collect(),
            body: body.to_vec(),
            status: 0,
        });
        (
            st.requests.len() - 1,
            st.intercept(&method, &path),
            st.delay,
        )
    };
    let response = match intercept {
        Intercept::Drop => {
            kill.cancel(); // the connection task closes the socket
            return std::future::pending().await;
        }
        Intercept::Fail(status, message) => error(status, message).into_response(),
        Intercept::Pass => {
            let Ok(response) = app
                .oneshot(Request::from_parts(parts, Body::from(body)))
                .await;
            response
        }
    };
    lock(&db).requests[index].status = response.status().as_u16();
    tokio::time::sleep(delay).await;
    response
}

/// Serves until `stop` is cancelled. The listener and every connection task
/// hold a clone of `done`, dropped only after their socket is closed, so the
/// receiver sees "disconnected" once nothing of this server is left.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    db: Db,
    stop: CancellationToken,
    done: mpsc::Sender<()>,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let (app, db, kill, done) = (app.clone(), db.clone(), stop.child_token(), done.clone());
        tokio::spawn(async move {
            let conn_kill = kill.clone();
            let service = hyper::service::service_fn(move |req| {
                let fut = serve_request(app.clone(), db.clone(), conn_kill.clone(), req);
                async move { Ok::<_, Infallible>(fut.await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = kill.cancelled() => {}
            }
            drop(done); // after `conn`, and with it the socket, is gone
        });
    }
    drop(listener);
    drop(done);
}

enum Serving {
    Up {
        stop: CancellationToken,
        done: mpsc::Receiver<()>,
    },
    Down,
    Closed,
}

/// The listening side, shared with the `outage` timer thread.
struct Net {
    port: u16,
    rt: tokio::runtime::Handle,
    app: Router,
    db: Db,
    serving: Mutex<Serving>,
}

impl Net {
    fn serve(&self, listener: std::net::TcpListener) -> Serving {
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let _guard = self.rt.enter();
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let (stop, (tx, done)) = (CancellationToken::new(), mpsc::channel());
        let task = accept_loop(
            listener,
            self.app.clone(),
            self.db.clone(),
            stop.clone(),
            tx,
        );
        self.rt.spawn(task);
        Serving::Up { stop, done }
    }

    /// Closes the listener and every open connection, and waits until they
    /// are closed. `close` makes it final (drop).
    fn go_down(&self, close: bool) {
        let mut serving = lock(&self.serving);
        let next = match *serving {
            Serving::Closed => Serving::Closed,
            _ if close => Serving::Closed,
            _ => Serving::Down,
        };
        if let Serving::Up { stop, done } = std::mem::replace(&mut *serving, next) {
            stop.cancel();
            let _ = done.recv_timeout(Duration::from_secs(10));
        }
    }

    fn come_back(&self) {
        let mut serving = lock(&self.serving);
        if !matches!(*serving, Serving::Down) {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match std::net::TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(listener) => break listener,
                Err(e) if Instant::now() > deadline => panic!("re-bind port {}: {e}", self.port),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        *serving = self.serve(listener);
    }
}

// ---- the test-facing handle ----------------------------------------------

/// A fake Trellis (see the module docs). All methods are synchronous.
pub struct FakeTrellis {
    db: Db,
    net: Arc<Net>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeTrellis {
    /// Starts the fake on 127.0.0.1 on a free port.
    pub fn start() -> FakeTrellis {
        let (handle_tx, handle_rx) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fake-trellis".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fake Trellis runtime");
                handle_tx
                    .send(rt.handle().clone())
                    .expect("send runtime handle");
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })
            .expect("spawn the fake Trellis thread");
        let rt = handle_rx.recv().expect("fake Trellis runtime handle");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        let db = Db::default();
        let app = router(db.clone());
        let serving = Mutex::new(Serving::Down);
        let net = Arc::new(Net {
            port,
            rt,
            app,
            db: db.clone(),
            serving,
        });
        *lock(&net.serving) = net.serve(listener);
        FakeTrellis {
            db,
            net,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, without `/api` and without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.net.port)
    }

    pub fn port(&self) -> u16 {
        self.net.port
    }

    fn st(&self) -> MutexGuard<'_, State> {
        lock(&self.db)
    }

    fn with_job<T>(&self, id: &str, f: impl FnOnce(&mut Job) -> T) -> T {
        let mut st = self.st();
        f(st.job_mut(id)
            .unwrap_or_else(|| panic!("fake Trellis has no job {id}")))
    }

    // -- workers --

    /// Registers a worker that authenticates with `id` and `token`, with
    /// metadata `{}`.
    pub fn add_worker(&self, id: &str, token: &str) {
        self.st()
            .workers
            .insert(id.to_string(), Worker::new(token, json!({})));
    }

    /// The bearer secret `POST /api/tendrils/register` requires (without it,
    /// every registration is 401).
    pub fn set_registration_secret(&self, secret: &str) {
        self.st().registration_secret = Some(secret.to_string()).filter(|s| !s.is_empty());
    }

    /// The token a worker authenticates with (e.g. one `register` made).
    pub fn worker_token(&self, id: &str) -> Option<String> {
        self.st().workers.get(id).map(|w| w.token.clone())
    }

    pub fn worker_exists(&self, id: &str) -> bool {
        self.st().workers.contains_key(id)
    }

    pub fn worker_metadata(&self, id: &str) -> Option<Value> {
        self.st().workers.get(id).map(|w| w.metadata.clone())
    }

    /// Every heartbeat body the worker sent, in order.
    pub fn heartbeats(&self, worker_id: &str) -> Vec<Value> {
        let st = self.st();
        st.workers
            .get(worker_id)
            .map(|w| w.heartbeats.clone())
            .unwrap_or_default()
    }

    /// The worker's row as the Tendrils page reads it: `status` (ONLINE
    /// once it sent a heartbeat or a claim, whatever status it sent) and
    /// `version` (its last heartbeat's).
    pub fn worker_row(&self, id: &str) -> Option<Value> {
        self.st()
            .workers
            .get(id)
            .map(|w| json!({"status": w.status, "version": w.version}))
    }

    /// When the worker last sent a heartbeat or a claim.
    pub fn last_seen(&self, worker_id: &str) -> Option<Instant> {
        self.st().workers.get(worker_id).and_then(|w| w.last_seen)
    }

    // -- jobs --

    /// Queues a job: defaults, then the given fields, then `status: QUEUED`
    /// and `worker_id: null`. Returns its id (generated unless given).
    pub fn enqueue(&self, job: Value) -> String {
        self.add_job(job, true, Value::Null, None)
    }

    /// Like `enqueue`, with a CloudIdentity that the claim returns (missing
    /// keys are filled with "", as Trellis sends them).
    pub fn enqueue_with_identity(&self, job: Value, identity: Value) -> String {
        let mut identity = identity;
        if let Some(fields) = identity.as_object_mut() {
            for key in IDENTITY_KEYS {
                fields.entry(key).or_insert_with(|| json!(""));
            }
        }
        self.add_job(job, true, identity, None)
    }

    /// Puts a row as is over the defaults (any status; claimable only if it
    /// is QUEUED). Returns its id.
    pub fn insert_job(&self, row: Value) -> String {
        self.add_job(row, false, Value::Null, None)
    }

    /// Queues a job whose claim returns `raw` exactly as given (for malformed
    /// jobs). `raw` needs a string `id`; the fake tracks status and owner in
    /// its own row.
    pub fn enqueue_raw(&self, raw: Value) -> String {
        assert!(
            raw["id"].is_string(),
            "enqueue_raw needs a string id: {raw}"
        );
        self.add_job(raw.clone(), true, Value::Null, Some(raw))
    }

    fn add_job(&self, given: Value, queue: bool, identity: Value, wire: Option<Value>) -> String {
        let Value::Object(given) = given else {
            panic!("a job must be a JSON object, got {given}");
        };
        let (id, now) = (uuid(), now());
        let mut row: Map<String, Value> = serde_json::from_value(json!({
            "id": id, "user_id": TEST_USER_ID, "vineyard_id": null, "vine_id": null,
            "cloud_identity_id": null, "job_type": "PLAN", "plan_job_id": null,
            "assigned_worker_id": null, "config_snapshot": {}, "configuration_hash": null,
            "status": "QUEUED", "worker_id": null, "claimed_at": null, "started_at": null,
            "completed_at": null, "created_at": now, "updated_at": now,
            "error_message": null, "execution_metadata": null,
        }))
        .expect("an object");
        row.extend(given);
        if queue {
            row.insert("status".into(), json!("QUEUED"));
            row.insert("worker_id".into(), Value::Null);
        }
        if identity.is_object() && row["cloud_identity_id"].is_null() {
            row.insert("cloud_identity_id".into(), json!(uuid()));
        }
        let id = row["id"]
            .as_str()
            .expect("a job id must be a string")
            .to_string();
        let mut st = self.st();
        assert!(st.job(&id).is_none(), "duplicate job id {id}");
        let (history, logs) = (Vec::new(), Vec::new());
        st.jobs.push(Job {
            row,
            wire,
            identity,
            history,
            logs,
            git_token: None,
        });
        id
    }

    /// The job's row as `GET /api/jobs/{id}` returns it.
    pub fn job(&self, id: &str) -> Option<Value> {
        self.st().job(id).map(|j| Value::Object(j.row.clone()))
    }

    /// Every accepted status PUT body for the job, in order.
    pub fn status_history(&self, id: &str) -> Vec<Value> {
        self.st()
            .job(id)
            .map(|j| j.history.clone())
            .unwrap_or_default()
    }

    /// Every accepted log chunk for the job as (stream, chunk), in order.
    pub fn logs(&self, id: &str) -> Vec<(String, String)> {
        self.st()
            .job(id)
            .map(|j| j.logs.clone())
            .unwrap_or_default()
    }

    /// The job's last accepted log chunk (cheap, for polling a long log).
    pub fn last_log_chunk(&self, id: &str) -> Option<String> {
        self.st()
            .job(id)
            .and_then(|j| j.logs.last().map(|(_, chunk)| chunk.clone()))
    }

    /// All the job's log chunks concatenated.
    pub fn log_text(&self, id: &str) -> String {
        self.logs(id).into_iter().map(|(_, chunk)| chunk).collect()
    }

    /// The token `POST /jobs/{id}/git-token` answers for the job (the
    /// user's git provider token); `None` answers `{"token": null}`.
    pub fn set_git_token(&self, id: &str, token: Option<&str>) {
        self.with_job(id, |job| job.git_token = token.map(String::from));
    }

    /// What the web app does when a user presses Cancel.
    pub fn cancel_job(&self, id: &str) {
        let now = now();
        self.with_job(id, |job| {
            job.row.insert("status".into(), json!("CANCELLED"));
            job.row.insert("completed_at".into(), now.clone());
            job.row.insert("updated_at".into(), now);
        });
    }

    /// Gives the job to another worker (as a requeue and re-claim would).
    pub fn reassign_job(&self, id: &str, other_worker_id: &str) {
        self.set_job_field(id, "worker_id", json!(other_worker_id));
    }

    pub fn set_job_field(&self, id: &str, key: &str, value: Value) {
        self.with_job(id, |job| job.row.insert(key.to_string(), value));
    }

    pub fn artifact(&self, job_id: &str) -> Option<Vec<u8>> {
        self.st().artifacts.get(job_id).cloned()
    }

    pub fn put_artifact(&self, job_id: &str, bytes: &[u8]) {
        self.st()
            .artifacts
            .insert(job_id.to_string(), bytes.to_vec());
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.st().requests.clone()
    }

    // -- fault injection --

    /// The next `n` `/api` requests answer `status` with
    /// `{"error":"Injected failure"}` and have no other effect.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.fail_next_with("", "/api", n, status, "Injected failure");
    }

    /// Like `fail_next`, only for requests with this method (any when "")
    /// whose path starts with `path_prefix`.
    pub fn fail_next_matching(&self, method: &str, path_prefix: &str, n: usize, status: u16) {
        self.fail_next_with(method, path_prefix, n, status, "Injected failure");
    }

    /// Like `fail_next_matching`, answering `{"error": message}`.
    pub fn fail_next_with(
        &self,
        method: &str,
        path_prefix: &str,
        n: usize,
        status: u16,
        message: &str,
    ) {
        let method = Some(method.to_string()).filter(|m| !m.is_empty());
        if n > 0 {
            self.st().fail_rules.push(FailRule {
                method,
                prefix: path_prefix.to_string(),
                remaining: n,
                status,
                message: message.to_string(),
            });
        }
    }

    /// Refuses, on every attempt, each log chunk that holds `marker`, with
    /// the 500 `Failed to insert log: ...` a value the database cannot
    /// store gets.
    pub fn refuse_logs_containing(&self, marker: &str) {
        self.st().refused_log_markers.push(marker.to_string());
    }

    /// Removes every injected failure rule still pending.
    pub fn clear_faults(&self) {
        self.st().fail_rules.clear();
    }

    /// Delays every answer (after its effect), so a client timeout can leave
    /// a request applied but unanswered.
    pub fn set_delay(&self, delay: Duration) {
        self.st().delay = delay;
    }

    /// The next `n` `/api` requests are read, recorded with status 0 and
    /// have their connection closed without an answer or any effect.
    pub fn drop_next(&self, n: usize) {
        self.st().drop_next += n;
    }

    /// Closes the listening socket and all connections: connects are refused.
    pub fn go_down(&self) {
        self.net.go_down(false);
    }

    /// Re-binds the same port and serves again.
    pub fn come_back(&self) {
        self.net.come_back();
    }

    /// `go_down` now and `come_back` after `d`, from a background thread.
    pub fn outage(&self, d: Duration) {
        self.go_down();
        let net = self.net.clone();
        std::thread::spawn(move || {
            std::thread::sleep(d);
            net.come_back();
        });
    }

    /// Polls `f` every 50 ms; panics naming `what` (and the last requests)
    /// after `timeout`. Use generous timeouts: this catches hangs.
    pub fn wait_until<F: Fn(&FakeTrellis) -> bool>(&self, timeout: Duration, what: &str, f: F) {
        let deadline = Instant::now() + timeout;
        while !f(self) {
            if Instant::now() > deadline {
                let requests = self.requests();
                let recent: Vec<String> = (requests.iter().rev().take(20).rev())
                    .map(|r| format!("  {} {} -> {}", r.method, r.path, r.status))
                    .collect();
                panic!(
                    "timed out after {timeout:?} waiting for {what}; last requests:\n{}",
                    recent.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (like `wait_until`) until the job's log contains `needle`.
    pub fn wait_for_log(&self, timeout: Duration, job: &str, needle: &str) {
        let what = format!("{needle:?} in the log of {job}");
        self.wait_until(timeout, &what, |t| t.log_text(job).contains(needle));
    }
}

impl Drop for FakeTrellis {
    fn drop(&mut self) {
        self.net.go_down(true);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn now() -> Value {
    json!(timestamp(SystemTime::now()))
}

/// RFC 3339 UTC with microseconds, as Trellis's JSON carries timestamps.
fn timestamp(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let micros = since.subsec_micros();
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{micros:06}Z")
}

/// A random version-4 UUID string.
pub fn uuid() -> String {
    let h = super::random_hex(32);
    let variant = ["8", "9", "a", "b"][usize::from(h.as_bytes()[16] % 4)];
    format!(
        "{}-{}-4{}-{}{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        variant,
        &h[17..20],
        &h[20..32]
    )
}
