//! How a call to Trellis failed: [`TrellisError`], which says whether the
//! same request may succeed later.

#[derive(Debug, thiserror::Error)]
pub enum TrellisError {
    #[error("Trellis rejected the worker ID or token: {0}")]
    Unauthorized(String),
    #[error("the job is no longer this worker's: {0}")]
    JobGone(String),
    /// Trellis refuses the request itself (a 4xx of its own): sending it
    /// again cannot help.
    #[error("Trellis refused {what} (HTTP {status}): {message}")]
    Rejected {
        status: u16,
        what: &'static str,
        message: String,
    },
    /// Trellis answered a 5xx with its own `{"error": "Failed to ...: ..."}`:
    /// the database refused the request (a bad id, a constraint, a value it
    /// cannot store), which repeats on every attempt, or (rarely) failed
    /// for a moment. Retried a few times at most.
    #[error("Trellis refused {what} (HTTP {status}): {message}")]
    Refused {
        status: u16,
        what: &'static str,
        message: String,
    },
    /// Trellis, or what is in front of it, could not answer (502, 503, 504,
    /// 429, 408, or an answer that is not Trellis's own): an outage.
    #[error("Trellis is unavailable (HTTP {status}): {message}")]
    Unavailable { status: u16, message: String },
    #[error("cannot reach Trellis: {0}")]
    Transport(String),
    #[error("unexpected answer from Trellis: {0}")]
    InvalidResponse(String),
    #[error("the plan artifact is {0} bytes, over the 52,428,800 bytes (50 MiB) Trellis accepts")]
    ArtifactTooLarge(usize),
    #[error("a claimed job could not be run: {problem}")]
    UnreadableJob {
        problem: String,
        /// The job's id, when it could be read (so that it can be failed).
        job_id: Option<String>,
    },
    /// No connection to Trellis could be made: the request was not sent,
    /// and may be sent again.
    #[error("cannot reach Trellis (the request was not sent): {0}")]
    Unsent(String),
    /// The request cannot be made as given (a bad URL, a secret that is no
    /// header value): it was never sent, and never will be.
    #[error("the request to Trellis was not sent: {0}")]
    Unsendable(String),
    #[error("{what} is larger than {limit} bytes, which Tendril does not read ({setting})")]
    TooLarge {
        what: &'static str,
        limit: usize,
        setting: &'static str,
        /// The claimed job's id, when it could be read from the start of the
        /// answer (so that the job can still be failed).
        job_id: Option<String>,
    },
    #[error(
        "Trellis answered HTTP {status}, a redirect to {location}: a request carrying credentials never follows \
         one (if Trellis moved, point TRELLIS_URL at its new address)"
    )]
    Redirected { status: u16, location: String },
    /// A request that is not idempotent got no answer that says it was not
    /// carried out: Trellis may have carried it out, so it is not sent
    /// again.
    #[error("{error}; Trellis may have carried it out all the same, so it is not sent again: {consequence}")]
    AnswerLost {
        error: Box<TrellisError>,
        consequence: &'static str,
    },
}

impl TrellisError {
    /// Whether the same request may succeed later (an outage): retried with
    /// backoff. A [`TrellisError::Refused`] is not; it gets a few attempts
    /// at most (see `retry`).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TrellisError::Unavailable { .. }
                | TrellisError::Transport(_)
                | TrellisError::Unsent(_)
                | TrellisError::InvalidResponse(_)
        )
    }

    /// Whether Trellis surely did not carry the request out: it was never
    /// sent, something in front of Trellis turned it away (a 429 or a 503,
    /// an ingress's 4xx page), or Trellis refused it in its own words. A
    /// timeout, an answer that cannot be read, a gateway's 502 or 504 or a
    /// 500 page can each come after Trellis did the work.
    pub fn surely_not_carried_out(&self) -> bool {
        match self {
            TrellisError::Unavailable { status, .. } => {
                matches!(status, 429 | 503) || (400..500).contains(status)
            }
            TrellisError::Transport(_)
            | TrellisError::InvalidResponse(_)
            | TrellisError::TooLarge { .. }
            | TrellisError::UnreadableJob { .. }
            | TrellisError::AnswerLost { .. } => false,
            _ => true,
        }
    }
}
