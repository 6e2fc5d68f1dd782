//! Why a job failed, in words for the person who reads it in Trellis.

use crate::cloud::CloudError;
use crate::report::ReportError;
use crate::secrets::mask;
use crate::tools::ToolError;
use crate::trellis::TrellisError;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The job itself cannot run as given (a bad snapshot, a missing input).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Tool(ToolError),
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error(transparent)]
    Trellis(#[from] TrellisError),
    /// A Terraform command and the state lock, in words: who holds a lock,
    /// what became of one a command left (see `state_lock`).
    #[error("{0}")]
    StateLock(String),
    /// A Terraform hook failed the job.
    #[error(transparent)]
    Hook(#[from] crate::jobs::hooks::HookError),
    #[error("{0}")]
    Io(String),
    /// Tendril's own fault (a panic in the executor), masked.
    #[error("Tendril hit an internal error while running this job ({0}); please report it")]
    Internal(String),
    /// A failure already put in words and masked while the job's secrets
    /// were still registered (see [`JobError::masked`]).
    #[error("{0}")]
    Masked(String),
    /// The job was stopped (signal, timeout, cancellation); the caller knows why.
    #[error("the job was stopped")]
    Stopped,
    /// Stopped, with something the user must know about what was left
    /// behind (a state lock).
    #[error("the job was stopped; {0}")]
    StoppedLeaving(String),
}

impl From<ToolError> for JobError {
    fn from(error: ToolError) -> Self {
        match error {
            ToolError::Stopped { .. } => JobError::Stopped,
            other => JobError::Tool(other),
        }
    }
}

/// A report or fetch that failed fails the job in the same words.
impl From<ReportError> for JobError {
    fn from(error: ReportError) -> Self {
        match error {
            ReportError::Trellis(error) => JobError::Trellis(error),
            ReportError::Invalid(message) => JobError::Invalid(message),
            ReportError::Io(message) => JobError::Io(message),
        }
    }
}

impl JobError {
    pub fn io(what: &str, error: std::io::Error) -> Self {
        JobError::Io(format!("{what}: {error}"))
    }

    /// The error with every registered secret masked out of its message:
    /// called while the job's own secrets are still registered, so that the
    /// message Trellis shows holds none of them. Stops stay stops.
    pub fn masked(self) -> JobError {
        match self {
            JobError::Stopped => JobError::Stopped,
            JobError::StoppedLeaving(note) => JobError::StoppedLeaving(mask(&note).into_owned()),
            other => JobError::Masked(mask(&other.to_string()).into_owned()),
        }
    }
}
