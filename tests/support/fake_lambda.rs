//! A fake of the AWS Lambda Runtime API (no Lambda service here): it hands
//! out queued invocations on `GET /2018-06-01/runtime/invocation/next` (a
//! long poll, as the real one), and records each response, error report and
//! init error. Strict like the real one: a response or error for an unknown
//! or already answered request id is a 400, and an error report must be
//! JSON with `errorMessage` and `errorType`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;

use super::http_fake::HttpFake;

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Response(Value),
    /// The error body, and the Lambda-Runtime-Function-Error-Type header.
    Error(Value, Option<String>),
}

#[derive(Default)]
struct Invocations {
    queued: VecDeque<(String, Value)>,
    handed_out: Vec<String>,
    outcomes: BTreeMap<String, Outcome>,
    init_errors: Vec<Value>,
}

#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<Invocations>>,
    closing: Arc<AtomicBool>,
}

pub struct FakeLambda {
    shared: Shared,
    server: HttpFake,
}

impl FakeLambda {
    pub fn start() -> FakeLambda {
        let shared = Shared {
            state: Arc::default(),
            closing: Arc::default(),
        };
        let state = shared.clone();
        let server = HttpFake::serve(|_| {
            Router::new()
                .route("/2018-06-01/runtime/invocation/next", get(next))
                .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(outcome))
                .route("/2018-06-01/runtime/init/error", post(init_error))
                .with_state(state)
        });
        FakeLambda { shared, server }
    }

    /// `host:port`, as in AWS_LAMBDA_RUNTIME_API.
    pub fn address(&self) -> String {
        self.server.url().trim_start_matches("http://").to_string()
    }

    /// Queues an invocation with this event; returns its request id.
    pub fn invoke(&self, event: Value) -> String {
        let id = format!("req-{}", super::random_hex(12));
        self.state().queued.push_back((id.clone(), event));
        id
    }

    /// Waits for the invocation's response or error; panics after `timeout`.
    pub fn wait_outcome(&self, id: &str, timeout: Duration) -> Outcome {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(outcome) = self.state().outcomes.get(id) {
                return outcome.clone();
            }
            assert!(
                Instant::now() < deadline,
                "invocation {id} got no response in {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn init_errors(&self) -> Vec<Value> {
        self.state().init_errors.clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Invocations> {
        self.shared.state.lock().unwrap()
    }
}

impl Drop for FakeLambda {
    fn drop(&mut self) {
        // Ends the long polls, so the server can stop.
        self.shared.closing.store(true, Ordering::SeqCst);
    }
}

async fn next(State(shared): State<Shared>) -> Response {
    loop {
        if shared.closing.load(Ordering::SeqCst) {
            return (StatusCode::INTERNAL_SERVER_ERROR, "the fake is closing").into_response();
        }
        let queued = {
            let mut state = shared.state.lock().unwrap();
            let next = state.queued.pop_front();
            if let Some((id, _)) = &next {
                state.handed_out.push(id.clone());
            }
            next
        };
        if let Some((id, event)) = queued {
            return (
                StatusCode::OK,
                [
                    ("lambda-runtime-aws-request-id", id),
                    ("lambda-runtime-deadline-ms", "4102444800000".to_string()),
                    (
                        "lambda-runtime-invoked-function-arn",
                        "arn:aws:lambda:us-east-1:123456789012:function:tendril-scaler".to_string(),
                    ),
                ],
                event.to_string(),
            )
                .into_response();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn outcome(
    State(shared): State<Shared>,
    Path((id, kind)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = shared.state.lock().unwrap();
    if !state.handed_out.contains(&id) || state.outcomes.contains_key(&id) {
        return (StatusCode::BAD_REQUEST, "InvalidRequestID").into_response();
    }
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(_) if kind == "response" => Value::String(String::from_utf8_lossy(&body).into()),
        Err(_) => return (StatusCode::BAD_REQUEST, "InvalidErrorBody").into_response(),
    };
    let recorded = match kind.as_str() {
        "response" => Outcome::Response(parsed),
        "error" if parsed["errorMessage"].is_string() && parsed["errorType"].is_string() => {
            let kind = headers
                .get("lambda-runtime-function-error-type")
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            Outcome::Error(parsed, kind)
        }
        _ => return (StatusCode::BAD_REQUEST, "InvalidRequest").into_response(),
    };
    state.outcomes.insert(id, recorded);
    (StatusCode::ACCEPTED, "{\"status\":\"OK\"}").into_response()
}

async fn init_error(State(shared): State<Shared>, body: Bytes) -> Response {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    shared.state.lock().unwrap().init_errors.push(parsed);
    (StatusCode::ACCEPTED, "{\"status\":\"OK\"}").into_response()
}
