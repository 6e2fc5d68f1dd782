//! Counting jobs through Supabase's REST API (PostgREST): a `Range: 0-0`
//! request with `Prefer: count=exact` returns at most one row, and the total
//! in `Content-Range` (`0-0/N`, or `*/N` when there is none). The
//! service-role key goes in `apikey` and `Authorization: Bearer`.
//!
//! A failed call is either PostgREST refusing it, in its own JSON error
//! (`{"code", "message", ...}`: a column or a function the database lacks,
//! a database error) or in its gateway's (`{"message", "hint"}`: a wrong
//! key; any 401 or 403 is a key refused), which repeats until someone
//! changes something, or PostgREST being unavailable (no connection, a timeout,
//! 502/503/504, which it also answers while its database is unreachable,
//! or an answer that is not its own), which the next pass tries again.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_RANGE, RANGE};
use reqwest::StatusCode;
use serde_json::Value;
use url::Url;

use crate::secrets::Secret;

/// Why a request to PostgREST did not give what was asked.
#[derive(Debug, thiserror::Error)]
pub enum PostgrestError {
    /// PostgREST (or Supabase's gateway in front of it) answered with its
    /// own error: the request is refused.
    #[error(
        "PostgREST refused {what} (HTTP {status}{}): {message}{hint}",
        code.as_ref().map_or(String::new(), |code| format!(", {code}"))
    )]
    Refused {
        what: String,
        status: u16,
        /// PostgREST's error code; the gateway's answers carry none.
        code: Option<String>,
        message: String,
        /// What to check, when the refusal says (a key it does not take).
        hint: &'static str,
    },
    /// No answer, or one that is not PostgREST's own: an outage.
    #[error("PostgREST is unavailable for {what}: {problem}")]
    Unavailable { what: String, problem: String },
    /// The client cannot be made, or an answer makes no sense.
    #[error("PostgREST {what}: {problem}")]
    Invalid { what: String, problem: String },
}

/// What a refusal with `status` asks the operator to check.
fn refusal_hint(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            "; check SUPABASE_SERVICE_ROLE_KEY (the service-role key of the project at SUPABASE_URL)"
        }
        _ => "",
    }
}

/// The error for a non-2xx answer with `body` to the request `what`: a
/// refusal when the answer is PostgREST's own JSON error (`{"code",
/// "message", ...}`) or Supabase's gateway's (`{"message", "hint"}`, its
/// answer to a wrong key), and whatever the body for a 401 or a 403 (a key
/// refused, which no retry changes); an outage otherwise.
fn failed_answer(what: &str, status: StatusCode, body: &str) -> PostgrestError {
    let error = serde_json::from_str::<Value>(body).ok();
    let text = |key: &str| {
        let value = error.as_ref()?.get(key)?.as_str()?;
        Some(value.to_string())
    };
    let gateway = matches!(
        status,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    );
    let key_refused = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
    let bare = || match short(body) {
        said if said.is_empty() => "no reason given".to_string(),
        said => said,
    };
    let message = text("message").or_else(|| key_refused.then(bare));
    match message {
        Some(message) if !gateway => PostgrestError::Refused {
            what: what.into(),
            status: status.as_u16(),
            code: text("code"),
            message,
            hint: refusal_hint(status),
        },
        _ => PostgrestError::Unavailable {
            what: what.into(),
            problem: format!("HTTP {status}: {}", short(body)),
        },
    }
}

/// The `provision_jobs` table and its RPCs, as the service role sees them.
pub struct JobTable {
    http: reqwest::Client,
    rest: Url,
}

impl JobTable {
    pub fn new(supabase_url: &Url, service_role_key: &Secret) -> Result<Self, PostgrestError> {
        let error = |problem: String| PostgrestError::Invalid {
            what: "client".into(),
            problem,
        };
        let mut headers = HeaderMap::new();
        let mut key = HeaderValue::from_str(service_role_key.expose())
            .map_err(|_| error("the service-role key is not a valid header value".into()))?;
        key.set_sensitive(true);
        let mut bearer = HeaderValue::from_str(&format!("Bearer {}", service_role_key.expose()))
            .map_err(|_| error("the service-role key is not a valid header value".into()))?;
        bearer.set_sensitive(true);
        headers.insert("apikey", key);
        headers.insert(AUTHORIZATION, bearer);
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_secs(15))
            // The key is in `apikey` too, which a redirect would carry along.
            .redirect(reqwest::redirect::Policy::none())
            .use_rustls_tls()
            .build()
            .map_err(|e| error(e.to_string()))?;
        let mut rest = supabase_url.clone();
        if let Ok(mut path) = rest.path_segments_mut() {
            path.pop_if_empty().extend(["rest", "v1", ""]);
        }
        Ok(JobTable { http, rest })
    }

    /// How many `provision_jobs` rows match the PostgREST `filters`
    /// (e.g. `[("status", "eq.QUEUED")]`).
    pub async fn count(&self, filters: &[(&str, &str)]) -> Result<u64, PostgrestError> {
        let what = describe(filters);
        let mut url = self.endpoint("provision_jobs");
        url.query_pairs_mut()
            .append_pair("select", "id")
            .extend_pairs(filters);
        let request = self
            .http
            .get(url)
            .header("Prefer", "count=exact")
            .header(RANGE, "0-0");
        let answer = answered(&what, request).await?;
        let range = answer
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        total_of(&range).ok_or_else(|| PostgrestError::Invalid {
            what,
            problem: format!(
                "no total in Content-Range '{range}' (is Prefer: count=exact honoured?)"
            ),
        })
    }

    /// Calls `rpc/recover_stale_jobs` (requeues jobs of silent workers).
    pub async fn recover_stale_jobs(&self) -> Result<(), PostgrestError> {
        let request = self
            .http
            .post(self.endpoint("rpc/recover_stale_jobs"))
            .json(&serde_json::json!({}));
        answered("rpc/recover_stale_jobs", request).await?;
        Ok(())
    }

    fn endpoint(&self, path: &str) -> Url {
        let mut url = self.rest.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(path.split('/'));
        }
        url
    }
}

/// Sends `request` (for `what`); a 2xx answer, else why not.
async fn answered(
    what: &str,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, PostgrestError> {
    let answer = request
        .send()
        .await
        .map_err(|e| PostgrestError::Unavailable {
            what: what.into(),
            problem: crate::http_error::describe(e),
        })?;
    let status = answer.status();
    if status.is_success() {
        return Ok(answer);
    }
    let body = answer.text().await.unwrap_or_default();
    Err(failed_answer(what, status, &body))
}

/// The total of a `Content-Range` value: `0-0/12` or `*/0` give 12 and 0.
fn total_of(content_range: &str) -> Option<u64> {
    let (_, total) = content_range.trim().rsplit_once('/')?;
    total.parse().ok()
}

fn describe(filters: &[(&str, &str)]) -> String {
    let parts: Vec<String> = filters.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("count of provision_jobs?{}", parts.join("&"))
}

/// The start of an error body, for a one-line message.
fn short(body: &str) -> String {
    let line = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_comes_from_content_range() {
        assert_eq!(total_of("0-0/12"), Some(12));
        assert_eq!(total_of("*/0"), Some(0));
        assert_eq!(total_of("0-0/*"), None);
        assert_eq!(total_of(""), None);
    }

    #[test]
    fn postgrests_own_error_is_a_refusal_and_a_gateways_or_a_bare_one_an_outage() {
        let own = r#"{"code": "42703", "message": "column provision_jobs.x does not exist", "details": null}"#;
        let refused = failed_answer(
            "count of provision_jobs?x=eq.1",
            StatusCode::BAD_REQUEST,
            own,
        );
        assert_eq!(
            refused.to_string(),
            "PostgREST refused count of provision_jobs?x=eq.1 (HTTP 400, 42703): column provision_jobs.x does \
             not exist"
        );
        // Supabase's gateway answers a wrong key with no code.
        let key = r#"{"message": "Invalid API key", "hint": "Double check your Supabase `anon` or `service_role` API key."}"#;
        let refused = failed_answer("rpc/recover_stale_jobs", StatusCode::UNAUTHORIZED, key);
        assert_eq!(
            refused.to_string(),
            "PostgREST refused rpc/recover_stale_jobs (HTTP 401): Invalid API key; check \
             SUPABASE_SERVICE_ROLE_KEY (the service-role key of the project at SUPABASE_URL)"
        );
        // A 401 or 403 is a refusal whatever its body.
        for body in ["", "<html>Forbidden</html>"] {
            let refused = failed_answer("rpc/recover_stale_jobs", StatusCode::FORBIDDEN, body);
            assert!(
                matches!(refused, PostgrestError::Refused { .. }),
                "{refused}"
            );
            assert!(refused
                .to_string()
                .contains("check SUPABASE_SERVICE_ROLE_KEY"));
        }
        let database_down = r#"{"code": "PGRST001", "message": "Database client error"}"#;
        let down = failed_answer(
            "rpc/recover_stale_jobs",
            StatusCode::SERVICE_UNAVAILABLE,
            database_down,
        );
        assert!(matches!(down, PostgrestError::Unavailable { .. }), "{down}");
        let page = failed_answer(
            "rpc/recover_stale_jobs",
            StatusCode::INTERNAL_SERVER_ERROR,
            "<html>oops</html>",
        );
        assert_eq!(
            page.to_string(),
            "PostgREST is unavailable for rpc/recover_stale_jobs: HTTP 500 Internal Server Error: <html>oops</html>"
        );
    }

    #[test]
    fn the_rest_endpoint_keeps_a_path_prefix() {
        let key = Secret::new_registered("test-service-role-key".into());
        let table =
            JobTable::new(&Url::parse("https://x.supabase.co/base/").unwrap(), &key).unwrap();
        assert_eq!(
            table.endpoint("rpc/recover_stale_jobs").as_str(),
            "https://x.supabase.co/base/rest/v1/rpc/recover_stale_jobs"
        );
    }
}
