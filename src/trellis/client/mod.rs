//! The HTTP client of the Trellis worker API (see `docs/trellis.md`).
//!
//! Every method makes one attempt and classifies the answer into a
//! [`TrellisError`]; callers choose how to retry with [`super::retry`]. The
//! worker token travels in a header marked sensitive and never appears in an
//! error or a log.
//!
//! The calls live by area: `claims.rs` (`POST /jobs/claim`), `jobs.rs` (a
//! claimed job's row, status, logs and git token), `artifacts.rs` (the
//! plan), `workers.rs` (heartbeats and the workers a job deploys);
//! `answer.rs` sends a request and reads its answer, `address.rs` checks
//! `TRELLIS_URL`.

mod address;
mod answer;
mod artifacts;
mod claims;
mod error;
mod jobs;
mod workers;

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, Url};

use crate::settings::AgentSettings;
use answer::{Limit, JOB_SIZE_SETTING};

pub use address::{api_base, UrlError};
pub use artifacts::MAX_PLAN_ARTIFACT_BYTES;
pub use error::TrellisError;
pub use workers::register;

/// The Trellis worker API, for one worker identity.
#[derive(Clone)]
pub struct TrellisClient {
    http: reqwest::Client,
    api: Url,
    worker_id: String,
    artifact_timeout: Duration,
    /// The largest claim or job row read.
    max_job_size: usize,
}

impl TrellisClient {
    pub fn new(settings: &AgentSettings) -> Result<Self, UrlError> {
        let api = api_base(&settings.trellis_url, settings.allow_insecure_http)?;
        let mut headers = HeaderMap::new();
        let header = |value: &str| {
            HeaderValue::from_str(value)
                .map_err(|_| UrlError("the worker id and token must be plain ASCII text".into()))
        };
        headers.insert("X-Worker-ID", header(&settings.worker_id)?);
        let mut token = header(settings.worker_token.expose())?;
        token.set_sensitive(true);
        headers.insert("X-Worker-Token", token);
        let http = reqwest::Client::builder()
            .default_headers(headers)
            // The token is a header a redirect would carry to another origin.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(format!("tendril/{}", crate::VERSION))
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout.min(Duration::from_secs(10)))
            .use_rustls_tls()
            .build()
            .map_err(|e| UrlError(format!("cannot build the HTTP client: {e}")))?;
        Ok(TrellisClient {
            http,
            api,
            worker_id: settings.worker_id.clone(),
            artifact_timeout: settings.artifact_timeout,
            max_job_size: settings.max_job_size,
        })
    }

    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    fn job_limit(&self, what: &'static str) -> Limit {
        Limit {
            bytes: self.max_job_size,
            what,
            setting: JOB_SIZE_SETTING,
        }
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.api.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        self.http.request(method, self.url(segments))
    }
}
