//! Sending one request and reading its answer: a non-2xx answer is
//! classified into a [`TrellisError`], a body is read up to a limit and
//! never more into memory, and every request is counted for the metrics
//! (see [`crate::trellis::contact`]).

use reqwest::{RequestBuilder, Response, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::TrellisError;
use crate::trellis::contact;

/// The phrase of Trellis's permanent "this job is not yours" 500.
const JOB_GONE_PHRASE: &str = "not found or not owned by this worker";

pub(super) fn transport(error: reqwest::Error) -> TrellisError {
    let connect = error.is_connect();
    let description = crate::http_error::describe(error);
    match connect {
        true => TrellisError::Unsent(description),
        false => TrellisError::Transport(description),
    }
}

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

/// What a request of the route `endpoint` (a metrics label) is, in the
/// words of an error message: "Trellis refused the status update".
fn request_name(endpoint: &str) -> &'static str {
    match endpoint {
        "heartbeat" => "the heartbeat",
        "claim" => "the claim",
        "job" => "the read of the job",
        "status" => "the status update",
        "logs" => "the log chunk",
        "plan-artifact" => "the plan artifact",
        "git-token" => "the git token request",
        "worker-metadata" => "the worker's metadata",
        "worker" => "the request about the worker",
        "register" => "the registration",
        _ => "the request",
    }
}

/// Sends a request and classifies a non-2xx answer.
pub(super) async fn send(request: RequestBuilder) -> Result<Response, TrellisError> {
    let (http, request) = request.build_split();
    let request = request.map_err(transport)?;
    let endpoint = endpoint(request.url());
    let response = match http.execute(request).await {
        Ok(response) => response,
        Err(error) => {
            contact::record(endpoint, None, false);
            return Err(transport(error));
        }
    };
    let status = response.status();
    if status.is_success() {
        contact::record(endpoint, Some(status.as_u16()), true);
        return Ok(response);
    }
    if status.is_redirection() {
        contact::record(endpoint, Some(status.as_u16()), false);
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
        Err(Capped::Failed(error)) => {
            contact::record(endpoint, Some(status.as_u16()), false);
            return Err(error);
        }
    };
    let own = trelliss_words(&body);
    // Trellis's own error, whatever its status (its database down, a job
    // gone), shows that Trellis is there; a proxy's page does not.
    contact::record(endpoint, Some(status.as_u16()), own.is_some());
    Err(refusal(status, request_name(endpoint), own, &body))
}

/// The message of Trellis's own error answer, `{"error": "<message>"}`.
fn trelliss_words(body: &[u8]) -> Option<String> {
    let body = serde_json::from_slice::<Value>(body).ok()?;
    body.get("error").and_then(Value::as_str).map(String::from)
}

/// The error a non-2xx, non-redirect answer to the request `what` stands
/// for: `own` is Trellis's own error message, if the answer is one, `body`
/// the answer.
fn refusal(
    status: StatusCode,
    what: &'static str,
    own: Option<String>,
    body: &[u8],
) -> TrellisError {
    let from_trellis = own.is_some();
    let message = own.unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect());
    let code = status.as_u16();
    match status {
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
        // Gateways and load balancers: Trellis itself did not answer.
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
            TrellisError::Unavailable {
                status: code,
                message,
            }
        }
        // Trellis's own words: its database refused the request.
        _ if status.is_server_error() && from_trellis => TrellisError::Refused {
            status: code,
            what,
            message,
        },
        _ if status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT =>
        {
            TrellisError::Unavailable {
                status: code,
                message: format!("an answer that is not Trellis's own: {message}"),
            }
        }
        _ => TrellisError::Rejected {
            status: code,
            what,
            message,
        },
    }
}

/// `Ok(None)` for the API's own 404 (`{"error": "<expected>"}`); a 404 of
/// another shape (an ingress's page during a redeploy) says nothing about
/// the job and is transient; other errors pass.
pub(super) fn api_not_found<T>(
    error: TrellisError,
    expected: &str,
) -> Result<Option<T>, TrellisError> {
    match error {
        TrellisError::Rejected {
            status: 404,
            message,
            ..
        } if message == expected => Ok(None),
        TrellisError::Rejected {
            status: 404,
            message,
            ..
        } => Err(TrellisError::Unavailable {
            status: 404,
            message: format!("a 404 that is not Trellis's own answer: {message}"),
        }),
        other => Err(other),
    }
}

/// How much of an answer is read.
#[derive(Clone, Copy)]
pub(super) struct Limit {
    pub bytes: usize,
    pub what: &'static str,
    pub setting: &'static str,
}

impl Limit {
    /// The error for an answer longer than the limit.
    pub fn exceeded(self, job_id: Option<String>) -> TrellisError {
        TrellisError::TooLarge {
            what: self.what,
            limit: self.bytes,
            setting: self.setting,
            job_id,
        }
    }
}

/// The setting that bounds a claim and a job row.
pub(super) const JOB_SIZE_SETTING: &str = "TENDRIL_MAX_JOB_SIZE";
/// Small answers (a key, a token, a registration) and error bodies.
pub(super) const SMALL_ANSWER: Limit = Limit {
    bytes: 64 * 1024,
    what: "Trellis's answer",
    setting: "the 64 KiB a short answer may take",
};
const ERROR_BODY: Limit = Limit {
    bytes: 64 * 1024,
    what: "an error answer",
    setting: "64 KiB",
};

pub(super) enum Capped {
    /// Longer than the limit: the first `limit` bytes.
    Over {
        head: Vec<u8>,
    },
    Failed(TrellisError),
}

/// Reads a body up to a limit, never more into memory.
pub(super) async fn read_capped(mut response: Response, limit: Limit) -> Result<Vec<u8>, Capped> {
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

/// A JSON answer, read up to `limit`.
pub(super) async fn json_body<T: DeserializeOwned>(
    response: Response,
    limit: Limit,
) -> Result<T, TrellisError> {
    match read_capped(response, limit).await {
        // serde's message may quote a value (a token, in a registration).
        Ok(body) => serde_json::from_slice(&body)
            .map_err(|e| TrellisError::InvalidResponse(crate::trellis::model::json_problem(&e))),
        Err(Capped::Over { .. }) => Err(limit.exceeded(None)),
        Err(Capped::Failed(error)) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trelliss_own_5xx_is_a_refusal_and_a_gateways_or_a_bare_one_an_outage() {
        let own = br#"{"error": "Failed to register tendril: duplicate key value violates unique constraint"}"#;
        let refusal = |status, what, body: &[u8]| refusal(status, what, trelliss_words(body), body);
        let error = refusal(StatusCode::INTERNAL_SERVER_ERROR, "the registration", own);
        assert!(
            matches!(error, TrellisError::Refused { status: 500, .. }),
            "{error}"
        );
        assert!(!error.is_transient());
        assert_eq!(
            error.to_string(),
            "Trellis refused the registration (HTTP 500): Failed to register tendril: duplicate key value \
             violates unique constraint"
        );
        for gateway in [502, 503, 504] {
            let status = StatusCode::from_u16(gateway).unwrap();
            let error = refusal(status, "the claim", own);
            assert!(matches!(error, TrellisError::Unavailable { .. }), "{error}");
            assert!(error.is_transient());
        }
        let bare = refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the claim",
            b"<html>oops</html>",
        );
        assert!(
            matches!(bare, TrellisError::Unavailable { status: 500, .. }),
            "{bare}"
        );
        assert_eq!(
            bare.to_string(),
            "Trellis is unavailable (HTTP 500): an answer that is not Trellis's own: <html>oops</html>"
        );
        let gone =
            br#"{"error": "Failed to update status: Job not found or not owned by this worker"}"#;
        assert!(matches!(
            refusal(StatusCode::INTERNAL_SERVER_ERROR, "the status update", gone),
            TrellisError::JobGone(_)
        ));
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
}
