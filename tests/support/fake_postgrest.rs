//! A fake of Supabase's REST API (PostgREST) over a `provision_jobs` table,
//! for the scaler (no Supabase is reachable here). Strict like the real one:
//! the service-role key must be in both `apikey` (else Supabase's gateway
//! answers 401 `{"message": "Invalid API key", "hint": ...}`, with no code)
//! and `Authorization: Bearer` (else PostgREST's 401 PGRST301), an unknown
//! column or operator is a 400 (PGRST100), and counts
//! follow PostgREST's rules: with `Prefer: count=exact` the total is in
//! `Content-Range` (`0-0/N`, or `*/0` when nothing matches), and a `Range`
//! shorter than the total answers 206.

use std::sync::{Arc, Mutex};

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::http_fake::HttpFake;

const COLUMNS: [&str; 5] = [
    "id",
    "status",
    "assigned_worker_id",
    "worker_id",
    "completed_at",
];
const TERMINAL: [&str; 3] = ["SUCCESS", "FAILED", "CANCELLED"];

#[derive(Debug, Clone)]
pub struct RecordedQuery {
    pub path: String,
    pub query: String,
    pub prefer: Option<String>,
    pub range: Option<String>,
}

#[derive(Default)]
struct Table {
    rows: Vec<Value>,
    requests: Vec<RecordedQuery>,
    failures: Vec<u16>,
    /// Rows that appear once this many requests have been answered.
    later: Vec<(usize, Value)>,
}

#[derive(Clone)]
struct Shared {
    key: String,
    table: Arc<Mutex<Table>>,
}

pub struct FakePostgrest {
    table: Arc<Mutex<Table>>,
    server: HttpFake,
}

impl FakePostgrest {
    /// Serves the table to callers holding `service_role_key`.
    pub fn start(service_role_key: &str) -> FakePostgrest {
        let table = Arc::new(Mutex::new(Table::default()));
        let shared = Shared {
            key: service_role_key.into(),
            table: table.clone(),
        };
        let server = HttpFake::serve(|_| {
            Router::new()
                .route("/rest/v1/provision_jobs", get(select_jobs))
                .route("/rest/v1/rpc/recover_stale_jobs", post(recover_stale_jobs))
                .with_state(shared)
        });
        FakePostgrest { table, server }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Adds a job row: `status`, and the assigned and claiming workers (a
    /// job with a terminal status was completed now).
    pub fn add_job(&self, status: &str, assigned: Option<&str>, worker: Option<&str>) -> String {
        let (id, row) = job_row(status, assigned, worker);
        self.table().rows.push(row);
        id
    }

    /// Like `add_job`, but the row appears only once `after` more requests
    /// have been answered (a job claimed while a pass runs).
    pub fn add_job_later(&self, after: usize, status: &str, worker: Option<&str>) {
        let (_, row) = job_row(status, None, worker);
        let mut table = self.table();
        let at = table.requests.len() + after;
        table.later.push((at, row));
    }

    /// Sets a job's status; a terminal one also sets `completed_at` to now.
    pub fn set_status(&self, id: &str, status: &str) {
        let mut table = self.table();
        let row = table
            .rows
            .iter_mut()
            .find(|r| r["id"] == id)
            .expect("a job of this fake");
        row["status"] = json!(status);
        if TERMINAL.contains(&status) {
            row["completed_at"] = json!(super::rfc3339(std::time::SystemTime::now()));
        }
    }

    /// The next `statuses.len()` requests fail with these statuses.
    pub fn fail_next(&self, statuses: &[u16]) {
        self.table().failures.extend(statuses);
    }

    pub fn requests(&self) -> Vec<RecordedQuery> {
        self.table().requests.clone()
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap()
    }
}

fn job_row(status: &str, assigned: Option<&str>, worker: Option<&str>) -> (String, Value) {
    let id = format!("job-{}", super::random_hex(8));
    let completed = TERMINAL
        .contains(&status)
        .then(|| super::rfc3339(std::time::SystemTime::now()));
    let row = json!({"id": id, "status": status, "assigned_worker_id": assigned,
                     "worker_id": worker, "completed_at": completed});
    (id, row)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"code": code, "message": message, "details": null, "hint": null})),
    )
        .into_response()
}

/// Records the request, checks the key headers and applies an injected
/// failure; `Some` is the answer to give instead of serving it.
fn refusal(shared: &Shared, headers: &HeaderMap, path: &str, query: &str) -> Option<Response> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let mut table = shared.table.lock().unwrap();
    let served = table.requests.len();
    let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut table.later)
        .into_iter()
        .partition(|(at, _)| *at <= served);
    table.later = later;
    table.rows.extend(due.into_iter().map(|(_, row)| row));
    table.requests.push(RecordedQuery {
        path: path.into(),
        query: query.into(),
        prefer: header("prefer"),
        range: header("range"),
    });
    // Supabase's gateway checks `apikey` and answers in its own shape, with
    // no code; PostgREST then checks the JWT in `Authorization`.
    if header("apikey").as_deref() != Some(shared.key.as_str()) {
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"message": "Invalid API key",
                            "hint": "Double check your Supabase `anon` or `service_role` API key."})),
            )
                .into_response(),
        );
    }
    if header("authorization") != Some(format!("Bearer {}", shared.key)) {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "PGRST301",
            "JWSError JWSInvalidSignature",
        ));
    }
    if !table.failures.is_empty() {
        let status = table.failures.remove(0);
        return Some(error(
            StatusCode::from_u16(status).unwrap(),
            "PGRST000",
            "Database client error. Retrying the connection.",
        ));
    }
    None
}

/// One PostgREST filter: `column=op.value`, for the operators the scaler
/// may use (`eq`, `in`, `is.null`, and `gt` on `completed_at`, whose values
/// are all RFC 3339 UTC with whole seconds, so they compare as text).
fn matches(row: &Value, column: &str, filter: &str) -> Result<bool, String> {
    let value = row[column].as_str();
    if let Some(bound) = filter.strip_prefix("gt.") {
        if column != "completed_at" || bound.len() != 20 || !bound.ends_with('Z') {
            return Err(format!(
                "\"invalid input syntax for type timestamp: {bound}\""
            ));
        }
        Ok(value.is_some_and(|v| v > bound))
    } else if let Some(wanted) = filter.strip_prefix("eq.") {
        Ok(value == Some(wanted))
    } else if let Some(list) = filter
        .strip_prefix("in.(")
        .and_then(|l| l.strip_suffix(')'))
    {
        Ok(list
            .split(',')
            .any(|item| value == Some(item.trim_matches('"'))))
    } else if filter == "is.null" {
        Ok(row[column].is_null())
    } else {
        Err(format!(
            "\"failed to parse filter ({filter})\" (line 1, column 1)"
        ))
    }
}

async fn select_jobs(
    State(shared): State<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    if let Some(answer) = refusal(&shared, &headers, "/rest/v1/provision_jobs", &query) {
        return answer;
    }
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let table = shared.table.lock().unwrap();
    let mut rows: Vec<&Value> = table.rows.iter().collect();
    let mut select = vec!["*".to_string()];
    for (column, filter) in &pairs {
        if column == "select" {
            select = filter.split(',').map(String::from).collect();
            continue;
        }
        if !COLUMNS.contains(&column.as_str()) {
            return error(
                StatusCode::BAD_REQUEST,
                "42703",
                &format!("column provision_jobs.{column} does not exist"),
            );
        }
        let mut kept = Vec::new();
        for row in rows {
            match matches(row, column, filter) {
                Ok(true) => kept.push(row),
                Ok(false) => {}
                Err(message) => return error(StatusCode::BAD_REQUEST, "PGRST100", &message),
            }
        }
        rows = kept;
    }
    if let Some(unknown) = select
        .iter()
        .find(|c| *c != "*" && !COLUMNS.contains(&c.as_str()))
    {
        return error(
            StatusCode::BAD_REQUEST,
            "42703",
            &format!("column provision_jobs.{unknown} does not exist"),
        );
    }
    let total = rows.len();
    let (first, last) = match headers.get("range").and_then(|v| v.to_str().ok()) {
        None => (0, total.saturating_sub(1)),
        Some(range) => {
            let parsed = range
                .split_once('-')
                .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
            match parsed {
                Some((a, b)) if a <= b => (a, b.min(total.saturating_sub(1))),
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "PGRST103",
                        "Requested range not satisfiable",
                    )
                }
            }
        }
    };
    let shown: Vec<Value> = if total == 0 || first >= total {
        Vec::new()
    } else {
        rows[first..=last]
            .iter()
            .map(|row| {
                if select == ["*"] {
                    (*row).clone()
                } else {
                    Value::Object(
                        select
                            .iter()
                            .map(|c| (c.clone(), row[c.as_str()].clone()))
                            .collect(),
                    )
                }
            })
            .collect()
    };
    let exact = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.split(',').any(|part| part.trim() == "count=exact"));
    let shown_range = if shown.is_empty() {
        "*".to_string()
    } else {
        format!("{first}-{}", first + shown.len() - 1)
    };
    let content_range = format!(
        "{shown_range}/{}",
        if exact { total.to_string() } else { "*".into() }
    );
    let status = if exact && shown.len() < total {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    (
        status,
        [("content-range", content_range)],
        Json(Value::Array(shown)),
    )
        .into_response()
}

async fn recover_stale_jobs(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(answer) = refusal(&shared, &headers, "/rest/v1/rpc/recover_stale_jobs", "") {
        return answer;
    }
    (StatusCode::OK, Json(json!(0))).into_response()
}
