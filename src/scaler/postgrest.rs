//! Counting jobs through Supabase's REST API (PostgREST): a `Range: 0-0`
//! request with `Prefer: count=exact` returns at most one row, and the total
//! in `Content-Range` (`0-0/N`, or `*/N` when there is none). The
//! service-role key goes in `apikey` and `Authorization: Bearer`.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_RANGE, RANGE};
use url::Url;

use crate::secrets::Secret;

/// A request to PostgREST failed or its answer made no sense.
#[derive(Debug, thiserror::Error)]
#[error("PostgREST {what}: {problem}")]
pub struct PostgrestError {
    what: String,
    problem: String,
}

/// The `provision_jobs` table and its RPCs, as the service role sees them.
pub struct JobTable {
    http: reqwest::Client,
    rest: Url,
}

impl JobTable {
    pub fn new(supabase_url: &Url, service_role_key: &Secret) -> Result<Self, PostgrestError> {
        let error = |problem: String| PostgrestError {
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
        let failed = |problem: String| PostgrestError {
            what: what.clone(),
            problem,
        };
        let mut url = self.endpoint("provision_jobs");
        url.query_pairs_mut()
            .append_pair("select", "id")
            .extend_pairs(filters);
        let answer = self
            .http
            .get(url)
            .header("Prefer", "count=exact")
            .header(RANGE, "0-0")
            .send()
            .await
            .map_err(|e| failed(crate::http_error::describe(e)))?;
        let status = answer.status();
        if !status.is_success() {
            let body = answer.text().await.unwrap_or_default();
            return Err(failed(format!("{status}: {}", short(&body))));
        }
        let range = answer
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        total_of(&range).ok_or_else(|| {
            failed(format!(
                "no total in Content-Range '{range}' (is Prefer: count=exact honoured?)"
            ))
        })
    }

    /// Calls `rpc/recover_stale_jobs` (requeues jobs of silent workers).
    pub async fn recover_stale_jobs(&self) -> Result<(), PostgrestError> {
        let failed = |problem: String| PostgrestError {
            what: "rpc/recover_stale_jobs".into(),
            problem,
        };
        let answer = self
            .http
            .post(self.endpoint("rpc/recover_stale_jobs"))
            .json(&serde_json::json!({}))
            .send()
            .await
            .map_err(|e| failed(crate::http_error::describe(e)))?;
        let status = answer.status();
        if status.is_success() {
            Ok(())
        } else {
            let body = answer.text().await.unwrap_or_default();
            Err(failed(format!("{status}: {}", short(&body))))
        }
    }

    fn endpoint(&self, path: &str) -> Url {
        let mut url = self.rest.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(path.split('/'));
        }
        url
    }
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
