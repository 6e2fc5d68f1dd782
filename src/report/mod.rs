//! How an executor reports: progress metadata during a job, and the
//! terminal outcome at its end. Two implementations: to Trellis (through
//! the outbox, see [`trellis`]) and to local files (for `tendril exec`, see
//! [`local`]).

pub mod local;
pub mod status_queue;
pub mod trellis;

use serde_json::{Map, Value};

/// Where an executor's progress goes.
#[derive(Clone)]
pub enum Reporter {
    Trellis(std::sync::Arc<status_queue::StatusQueue>),
    Local(std::sync::Arc<local::LocalReport>),
}

impl Reporter {
    /// Progress metadata (a PROCESSING update): merged shallowly into the
    /// job's `execution_metadata`; never delivered after the terminal update.
    pub fn progress(&self, metadata: Map<String, Value>) {
        match self {
            Reporter::Trellis(queue) => queue.push(crate::trellis::StatusUpdate {
                status: crate::trellis::JobStatus::Processing,
                error_message: None,
                execution_metadata: Some(metadata),
            }),
            Reporter::Local(report) => report.merge(metadata),
        }
    }
}
