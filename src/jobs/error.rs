//! Why a job failed, in words for the person who reads it in Trellis.

use crate::cloud::CloudError;
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
    #[error("{0}")]
    Io(String),
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

impl JobError {
    pub fn io(what: &str, error: std::io::Error) -> Self {
        JobError::Io(format!("{what}: {error}"))
    }
}
