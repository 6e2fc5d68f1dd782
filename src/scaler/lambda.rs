//! The scaler as an AWS Lambda custom runtime (`provided.al2023`): the
//! Runtime API loop (next invocation, one pass, response or error report).
//!
//! An invocation is a scheduled (EventBridge) or direct one, or a call
//! through the Function URL. A URL call must carry the shared secret in the
//! `x-tendril-scaler-secret` header, compared in constant time, unless the
//! URL uses AWS_IAM auth; a refused call gets a 401 and starts no pass.

use serde_json::{json, Value};
use subtle::ConstantTimeEq;

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
        loop {
            let (request_id, event) = self.next().await?;
            match handle(scaler, url_auth, &event).await {
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

/// One invocation: a pass, unless it is a URL call that is not let in.
async fn handle(scaler: &Scaler, url_auth: &UrlAuth, event: &Value) -> Result<Value, String> {
    let through_url = event.pointer("/requestContext/http").is_some();
    if through_url {
        if let Err(refusal) = admit(url_auth, event) {
            let source = event
                .pointer("/requestContext/http/sourceIp")
                .and_then(Value::as_str)
                .unwrap_or("?");
            tracing::warn!("refused a Function URL call from {source}: {refusal}");
            return Ok(url_response(401, &json!({"error": refusal})));
        }
    }
    let report = scaler.pass().await.map_err(|e| e.to_string())?;
    let report = serde_json::to_value(&report).map_err(|e| e.to_string())?;
    Ok(if through_url {
        url_response(200, &report)
    } else {
        report
    })
}

/// Whether a Function URL call may start a pass.
fn admit(auth: &UrlAuth, event: &Value) -> Result<(), &'static str> {
    let UrlAuth::SharedSecret(secret) = auth else {
        // AWS verified the caller's signature before invoking.
        return Ok(());
    };
    // Function URLs give header names in lower case.
    let given = event
        .get("headers")
        .and_then(|headers| headers.get(SECRET_HEADER))
        .and_then(Value::as_str)
        .ok_or("no x-tendril-scaler-secret header")?;
    if bool::from(given.as_bytes().ct_eq(secret.expose().as_bytes())) {
        Ok(())
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
    fn a_url_call_needs_the_exact_secret_unless_the_url_uses_iam() {
        let auth = UrlAuth::SharedSecret(Secret::new_registered("scaler-shared-secret-1".into()));
        let good = url_call(json!({"x-tendril-scaler-secret": "scaler-shared-secret-1"}));
        assert_eq!(admit(&auth, &good), Ok(()));
        let wrong = url_call(json!({"x-tendril-scaler-secret": "scaler-shared-secret-2"}));
        assert_eq!(
            admit(&auth, &wrong),
            Err("wrong x-tendril-scaler-secret header")
        );
        let prefix = url_call(json!({"x-tendril-scaler-secret": "scaler-shared"}));
        assert!(admit(&auth, &prefix).is_err());
        assert_eq!(
            admit(&auth, &url_call(json!({}))),
            Err("no x-tendril-scaler-secret header")
        );
        assert_eq!(admit(&UrlAuth::AwsIam, &url_call(json!({}))), Ok(()));
    }
}
