//! The routes of the worker API, each as the deployed Trellis answers it
//! (see `docs/trellis.md`), and the ECS agent's task protection endpoint
//! (served here so its calls are recorded in one order with Trellis's).

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State as AxState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, patch, post, put};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::clock::{now, uuid};
use super::state::*;

pub(super) async fn heartbeat(AxState(db): AxState<Db>, headers: HeaderMap, body: Bytes) -> Reply {
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

pub(super) async fn claim(AxState(db): AxState<Db>, headers: HeaderMap) -> Reply {
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
pub(super) const COLUMNS: [&str; 19] = [
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
pub(super) fn in_column_order(row: &Map<String, Value>) -> String {
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
pub(super) fn opt_str(req: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match req.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone()).filter(|s| !s.is_empty())),
        Some(_) => Err(error(400, "Invalid request body")),
    }
}

pub(super) async fn update_status(
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

pub(super) async fn append_log(
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
        .any(|m| chunk.contains(m.as_str()))
        || st.refused_log_jobs.contains(&id);
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

pub(super) async fn git_token(
    AxState(db): AxState<Db>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Reply {
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

pub(super) async fn upload_artifact(
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

pub(super) async fn download_artifact(
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

pub(super) async fn get_job(
    AxState(db): AxState<Db>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Reply {
    let st = lock(&db);
    st.auth(&headers)?;
    let Some(job) = st.job(&id) else {
        return Err(error(404, "Job not found"));
    };
    Ok(Json(Value::Object(job.row.clone())).into_response())
}

pub(super) async fn patch_metadata(
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

pub(super) async fn delete_worker(
    AxState(db): AxState<Db>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Reply {
    let mut st = lock(&db);
    st.auth(&headers)?;
    st.workers.remove(&id);
    success(StatusCode::OK)
}

/// Whether the request carries `Authorization: Bearer <secret>` for a set
/// secret.
fn bearer_is(headers: &HeaderMap, secret: Option<&str>) -> bool {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let bearer = auth.and_then(|v| v.strip_prefix("Bearer "));
    secret.is_some() && bearer == secret
}

pub(super) async fn register(AxState(db): AxState<Db>, headers: HeaderMap, body: Bytes) -> Reply {
    let mut st = lock(&db);
    if !bearer_is(&headers, st.registration_secret.as_deref()) {
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
    let (id, token) = (uuid(), crate::support::random_hex(64));
    let metadata = json!({ "name": name, "mode": mode });
    st.workers.insert(id.clone(), Worker::new(&token, metadata));
    let answer = json!({ "tendril_id": id, "tendril_token": token });
    Ok(Json(answer).into_response())
}

/// The release pipeline's announcement of a worker release: the Tendrils
/// page marks older workers outdated, and the Update button offers its
/// `version` as the image tag.
pub(super) async fn announce_release(
    AxState(db): AxState<Db>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let mut st = lock(&db);
    if !bearer_is(&headers, st.release_secret.as_deref()) {
        return Err(error(401, "Unauthorized"));
    }
    let req = json_object(&body)?;
    let Some(version) = req
        .get("version")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
    else {
        return Err(error(400, "Missing required field: version"));
    };
    for text in ["release_notes", "github_release_url", "commit_sha"] {
        if !req.get(text).is_none_or(|v| v.is_null() || v.is_string()) {
            return Err(error(400, format!("{text} must be a string")));
        }
    }
    if !req
        .get("is_breaking")
        .is_none_or(|v| v.is_null() || v.is_boolean())
    {
        return Err(error(400, "is_breaking must be a boolean"));
    }
    if st.releases.iter().any(|r| r["version"] == version) {
        return Err(error(409, "Release version already exists"));
    }
    let mut release = req.clone();
    release.insert("id".into(), json!(uuid()));
    release.insert("created_at".into(), json!(now()));
    st.releases.push(Value::Object(release.clone()));
    Ok((StatusCode::CREATED, Json(json!({ "release": release }))).into_response())
}

/// A fake of the ECS agent's task protection endpoint (the agent sets
/// `ECS_AGENT_URI` to `.../ecs-agent/<task>`), served here so that its calls
/// are recorded in one order with the Trellis calls. It checks the body as
/// the agent does.
pub(super) async fn task_protection(Path(task): Path<String>, body: Bytes) -> Reply {
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

pub(super) async fn not_found() -> ApiError {
    error(404, "Not found")
}

pub(super) fn router(db: Db) -> Router {
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
        .route("/api/releases/worker", post(announce_release))
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
