//! The scaler as an AWS Lambda custom runtime (`provided.al2023`): the
//! Runtime API loop (next invocation, one pass, response or error report).
//!
//! An invocation is a scheduled (EventBridge) or direct one, or a call
//! through the Function URL; scheduled and direct ones run a full pass. A
//! URL call runs a full pass when the URL uses AWS_IAM auth (AWS checked
//! the caller) or when it carries the shared secret in the
//! `x-tendril-scaler-secret` header, compared in constant time. A call
//! without the header is Trellis's ping (a bare POST when it queues a job):
//! it runs a scale-up-only pass, at most one a ping interval, and gets a
//! 202 that tells the caller nothing. A call with a wrong secret gets a 401
//! and starts no pass.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::decision::PassKind;
use super::pass::Scaler;
use super::settings::{UrlAuth, SECRET_HEADER};

const API_VERSION: &str = "2018-06-01";

/// The Lambda Runtime API at `host:port` (`AWS_LAMBDA_RUNTIME_API`).
pub struct RuntimeApi {
    http: reqwest::Client,
    base: String,
}

impl RuntimeApi {
    pub fn new(address: &str) -> RuntimeApi {
        RuntimeApi {
            // No timeout: `next` waits as long as no invocation comes.
            http: reqwest::Client::new(),
            base: format!("http://{address}/{API_VERSION}/runtime"),
        }
    }

    /// Serves invocations until the Runtime API itself fails.
    pub async fn serve(&self, scaler: &Scaler, url_auth: &UrlAuth) -> Result<(), String> {
        let mut pings = PingGate::new(scaler.settings().ping_interval);
        loop {
            let (request_id, event) = self.next().await?;
            match handle(scaler, url_auth, &mut pings, &event).await {
                Ok(response) => {
                    self.post(&format!("invocation/{request_id}/response"), &response)
                        .await?
                }
                Err(message) => self.report_error(&request_id, &message).await?,
            }
        }
    }

    /// Tells Lambda the function could not start (bad settings).
    pub async fn report_init_error(&self, message: &str) -> Result<(), String> {
        self.post("init/error", &error_body(message)).await
    }

    async fn next(&self) -> Result<(String, Value), String> {
        let failed = |e: String| format!("the Lambda Runtime API failed: {e}");
        let answer = self
            .http
            .get(format!("{}/invocation/next", self.base))
            .send()
            .await
            .map_err(|e| failed(crate::http_error::describe(e)))?;
        if !answer.status().is_success() {
            return Err(failed(format!("next invocation: {}", answer.status())));
        }
        let request_id = answer
            .headers()
            .get("lambda-runtime-aws-request-id")
            .and_then(|v| v.to_str().ok())
            .map(String::from)
            .ok_or_else(|| failed("an invocation without Lambda-Runtime-Aws-Request-Id".into()))?;
        let body = answer
            .bytes()
            .await
            .map_err(|e| failed(crate::http_error::describe(e)))?;
        // An event that is not JSON is still an invocation: a scheduled pass.
        let event = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Ok((request_id, event))
    }

    async fn report_error(&self, request_id: &str, message: &str) -> Result<(), String> {
        let url = format!("{}/invocation/{request_id}/error", self.base);
        self.send(
            self.http
                .post(url)
                .header("Lambda-Runtime-Function-Error-Type", "Tendril.ScalerError")
                .json(&error_body(message)),
        )
        .await
    }

    async fn post(&self, path: &str, body: &Value) -> Result<(), String> {
        let url = format!("{}/{path}", self.base);
        self.send(self.http.post(url).json(body)).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<(), String> {
        let answer = request.send().await.map_err(|e| {
            format!(
                "the Lambda Runtime API failed: {}",
                crate::http_error::describe(e)
            )
        })?;
        match answer.status() {
            status if status.is_success() => Ok(()),
            status => Err(format!("the Lambda Runtime API answered {status}")),
        }
    }
}

fn error_body(message: &str) -> Value {
    json!({"errorMessage": message, "errorType": "Tendril.ScalerError"})
}

/// At most one scale-up-only pass a ping interval. When the last one ran
/// is kept in this process's memory only, and that is enough: the function
/// runs one invocation at a time (reserved concurrency 1) and a warm process
/// serves one invocation after another, so within a process the limit is
/// exact. A cold start forgets it and may run one pass more, which is
/// harmless: such a pass only starts services for jobs that wait, as the
/// next due pass would.
struct PingGate {
    interval: Duration,
    last: Option<Instant>,
}

impl PingGate {
    fn new(interval: Duration) -> PingGate {
        PingGate {
            interval,
            last: None,
        }
    }

    /// Whether a ping at `now` gets a pass (which then is the last one).
    fn open(&mut self, now: Instant) -> bool {
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < self.interval)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

/// One invocation: a full pass, a ping's scale-up-only pass, or a refusal.
async fn handle(
    scaler: &Scaler,
    url_auth: &UrlAuth,
    pings: &mut PingGate,
    event: &Value,
) -> Result<Value, String> {
    if event.pointer("/requestContext/http").is_none() {
        let report = scaler
            .pass(PassKind::Full)
            .await
            .map_err(|e| e.to_string())?;
        return serde_json::to_value(&report).map_err(|e| e.to_string());
    }
    let source = event
        .pointer("/requestContext/http/sourceIp")
        .and_then(Value::as_str)
        .unwrap_or("?");
    match admit(url_auth, event) {
        Err(refusal) => {
            tracing::warn!("refused a Function URL call from {source}: {refusal}");
            Ok(url_response(401, &json!({"error": refusal})))
        }
        Ok(PassKind::Full) => {
            let report = scaler
                .pass(PassKind::Full)
                .await
                .map_err(|e| e.to_string())?;
            let report = serde_json::to_value(&report).map_err(|e| e.to_string())?;
            Ok(url_response(200, &report))
        }
        Ok(PassKind::ScaleUpOnly) => {
            if pings.open(Instant::now()) {
                tracing::info!("a ping from {source}: a scale-up-only pass");
                // A failed pass is logged by the pass; the caller, who
                // showed no secret, learns nothing of it.
                let _ = scaler.pass(PassKind::ScaleUpOnly).await;
            } else {
                tracing::info!(
                    "a ping from {source}: no pass, one ran less than {} ago",
                    crate::units::format_duration(pings.interval)
                );
            }
            Ok(url_response(202, &json!({"status": "accepted"})))
        }
    }
}

/// What a Function URL call may start: a full pass when AWS checked the
/// caller or it shows the secret, a scale-up-only pass when it shows no
/// secret (Trellis's bare ping), nothing when it shows a wrong one.
fn admit(auth: &UrlAuth, event: &Value) -> Result<PassKind, &'static str> {
    let UrlAuth::SharedSecret(secret) = auth else {
        // AWS verified the caller's signature before invoking.
        return Ok(PassKind::Full);
    };
    // Function URLs give header names in lower case.
    let Some(given) = event.get("headers").and_then(|h| h.get(SECRET_HEADER)) else {
        return Ok(PassKind::ScaleUpOnly);
    };
    let given = given.as_str().unwrap_or_default();
    if bool::from(given.as_bytes().ct_eq(secret.expose().as_bytes())) {
        Ok(PassKind::Full)
    } else {
        Err("wrong x-tendril-scaler-secret header")
    }
}

/// A Function URL response (payload format 2.0).
fn url_response(status: u16, body: &Value) -> Value {
    json!({
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": body.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Secret;

    fn url_call(headers: Value) -> Value {
        json!({"version": "2.0", "headers": headers,
               "requestContext": {"http": {"method": "POST", "sourceIp": "203.0.113.9"}}})
    }

    #[test]
    fn a_url_call_runs_a_full_pass_with_the_exact_secret_a_ping_without_any() {
        let auth = UrlAuth::SharedSecret(Secret::new_registered("scaler-shared-secret-1".into()));
        let good = url_call(json!({"x-tendril-scaler-secret": "scaler-shared-secret-1"}));
        assert_eq!(admit(&auth, &good), Ok(PassKind::Full));
        let wrong = url_call(json!({"x-tendril-scaler-secret": "scaler-shared-secret-2"}));
        assert_eq!(
            admit(&auth, &wrong),
            Err("wrong x-tendril-scaler-secret header")
        );
        for guess in ["scaler-shared", ""] {
            let partial = url_call(json!({ "x-tendril-scaler-secret": guess }));
            assert!(admit(&auth, &partial).is_err(), "{guess:?}");
        }
        let bare = url_call(json!({"host": "abc.lambda-url.eu-west-1.on.aws"}));
        assert_eq!(admit(&auth, &bare), Ok(PassKind::ScaleUpOnly));
        let no_headers = json!({"requestContext": {"http": {"method": "POST"}}});
        assert_eq!(admit(&auth, &no_headers), Ok(PassKind::ScaleUpOnly));
        assert_eq!(
            admit(&UrlAuth::AwsIam, &url_call(json!({}))),
            Ok(PassKind::Full)
        );
    }

    #[test]
    fn the_ping_gate_lets_one_pass_through_an_interval() {
        let mut gate = PingGate::new(Duration::from_secs(10));
        let start = Instant::now();
        assert!(gate.open(start));
        assert!(!gate.open(start + Duration::from_secs(3)));
        assert!(!gate.open(start + Duration::from_millis(9_999)));
        assert!(gate.open(start + Duration::from_secs(10)));
        // Refused pings do not push the next pass back.
        assert!(!gate.open(start + Duration::from_secs(15)));
        assert!(gate.open(start + Duration::from_secs(20)));
    }
}
