//! `POST /jobs/claim`, and the job id read from a claim whose answer does
//! not parse (or is too large), so that the claimed job can still be failed.

use reqwest::{Method, StatusCode};

use super::answer::{read_capped, send, Capped};
use super::{TrellisClient, TrellisError};
use crate::trellis::model::{json_problem, Claim};

impl TrellisClient {
    /// `POST /jobs/claim`: `None` when the queue is empty.
    pub async fn claim(&self) -> Result<Option<Claim>, TrellisError> {
        let response = send(self.request(Method::POST, &["jobs", "claim"])).await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let limit = self.job_limit("a claimed job");
        let body = match read_capped(response, limit).await {
            Ok(body) => body,
            Err(Capped::Over { head }) => return Err(limit.exceeded(leading_job_id(&head))),
            Err(Capped::Failed(error)) => return Err(error),
        };
        match serde_json::from_slice::<Claim>(&body) {
            Ok(claim) => Ok((!claim.job.is_null()).then_some(claim)),
            // Trellis has claimed the job all the same: it must be failed.
            Err(error) => Err(TrellisError::UnreadableJob {
                problem: format!("its claim could not be read ({})", json_problem(&error)),
                job_id: leading_job_id(&body),
            }),
        }
    }
}

/// The id of the job a claim's answer carries (`{"job": {"id": "<id>", ...`),
/// read from as much of it as there is, when the whole does not parse: only
/// the `id` key of the top-level `job` object counts, and only a safe name.
fn leading_job_id(body: &[u8]) -> Option<String> {
    let mut scanner = Scanner { bytes: body, at: 0 };
    scanner.expect(b'{')?;
    loop {
        let key = scanner.string()?;
        scanner.expect(b':')?;
        if key == "job" {
            scanner.expect(b'{')?;
            loop {
                let key = scanner.string()?;
                scanner.expect(b':')?;
                if key == "id" {
                    let id = scanner.string()?;
                    return crate::safe_name::is_safe(&id).then_some(id);
                }
                scanner.skip_value()?;
                scanner.expect(b',')?;
            }
        }
        scanner.skip_value()?;
        scanner.expect(b',')?;
    }
}

/// Just enough of a JSON reader to walk keys and skip values, on a body
/// that may be cut anywhere.
struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Scanner<'_> {
    fn peek(&mut self) -> Option<u8> {
        while self.bytes.get(self.at)?.is_ascii_whitespace() {
            self.at += 1;
        }
        self.bytes.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// A string (escapes kept as written: ids have none).
    fn string(&mut self) -> Option<String> {
        self.expect(b'"')?;
        let start = self.at;
        loop {
            match *self.bytes.get(self.at)? {
                b'\\' => self.at += 2,
                b'"' => break,
                _ => self.at += 1,
            }
        }
        let text = std::str::from_utf8(self.bytes.get(start..self.at)?)
            .ok()?
            .to_string();
        self.at += 1;
        Some(text)
    }

    /// Skips one value, however deep, without recursing; stops before the
    /// `,` or `}` after it.
    fn skip_value(&mut self) -> Option<()> {
        let mut depth = 0usize;
        loop {
            match self.peek()? {
                b'"' => {
                    self.string()?;
                }
                b'{' | b'[' => {
                    depth += 1;
                    self.at += 1;
                }
                b'}' | b']' if depth > 0 => {
                    depth -= 1;
                    self.at += 1;
                }
                b',' | b'}' | b']' if depth == 0 => return Some(()),
                _ => self.at += 1,
            }
            if depth == 0 && matches!(self.peek()?, b',' | b'}') {
                return Some(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_id_is_read_from_a_claim_that_does_not_parse() {
        let head = br#"{"job": {"id": "3f2a9c4e-1b2d-4e5f-8a9b-0c1d2e3f4a5b", "job_type": "PLAN", "config_snapshot": {"x": "#;
        assert_eq!(
            leading_job_id(head).as_deref(),
            Some("3f2a9c4e-1b2d-4e5f-8a9b-0c1d2e3f4a5b")
        );
        // Only the job object's own id, wherever it is among its keys.
        let nested = br#"{"job": {"config_snapshot": {"id": "vine-1", "deep": [[{"id": "x"}]]}, "job_type": "PLAN", "id": "real-job-1", "blob": "cut"#;
        assert_eq!(leading_job_id(nested).as_deref(), Some("real-job-1"));
        let identity_first = br#"{"cloud_identity": {"id": "ci-1"}, "job": {"id": "job-2"}}"#;
        assert_eq!(leading_job_id(identity_first).as_deref(), Some("job-2"));
        assert_eq!(leading_job_id(br#"{"job": {"id": "../x"}"#), None);
        assert_eq!(leading_job_id(br#"{"cloud_identity": {}}"#), None);
        assert_eq!(leading_job_id(b""), None);
    }
}
