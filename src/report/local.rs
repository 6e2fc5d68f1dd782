//! Reporting for `tendril exec`: metadata is kept in memory and written,
//! with the outcome, to `result.json` in the output directory.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{json, Map, Value};

use crate::trellis::StatusUpdate;

pub struct LocalReport {
    out_dir: PathBuf,
    metadata: Mutex<Map<String, Value>>,
}

impl LocalReport {
    pub fn new(out_dir: &Path) -> Self {
        LocalReport {
            out_dir: out_dir.to_path_buf(),
            metadata: Mutex::new(Map::new()),
        }
    }

    /// Shallow merge, as Trellis does.
    pub fn merge(&self, metadata: Map<String, Value>) {
        self.metadata
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(metadata);
    }

    /// Writes `result.json` (status, error_message, execution_metadata).
    pub fn finish(&self, outcome: &StatusUpdate) -> std::io::Result<PathBuf> {
        let mut metadata = self
            .metadata
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        metadata.extend(outcome.execution_metadata.clone().unwrap_or_default());
        let result = json!({
            "status": outcome.status,
            "error_message": outcome.error_message,
            "execution_metadata": metadata,
        });
        let path = self.out_dir.join("result.json");
        crate::outbox::write_private_file(&path, &serde_json::to_vec_pretty(&result)?)?;
        Ok(path)
    }
}
