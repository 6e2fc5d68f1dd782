//! Reporting for `tendril exec`: metadata is kept in memory and written,
//! with the outcome, to `result.json` in the output directory; the plan
//! artifact goes to `terraform.plan.out` there. With `--plan-from DIR`, the
//! PLAN job of a DEPLOY is read from an earlier PLAN's output directory
//! (`job.json`, `result.json`, `terraform.plan.out`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{json, Map, Value};

use super::ReportError;
use crate::private_files::write_private_file;
use crate::trellis::StatusUpdate;

/// The plan artifact's file name in an output directory.
pub const PLAN_FILE: &str = "terraform.plan.out";

pub struct LocalReport {
    out_dir: PathBuf,
    plan_from: Option<PathBuf>,
    metadata: Mutex<Map<String, Value>>,
}

fn read_json(path: &Path) -> Result<Value, ReportError> {
    let bytes = std::fs::read(path)
        .map_err(|e| ReportError::io(&format!("cannot read {}", path.display()), e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ReportError::Invalid(format!("{} is not JSON: {e}", path.display())))
}

impl LocalReport {
    /// Writes the job's own row as `job.json` (0600: a snapshot can hold
    /// secrets), so that a later `--plan-from` can check it.
    pub fn new(
        out_dir: &Path,
        plan_from: Option<PathBuf>,
        job_row: &Value,
    ) -> std::io::Result<Self> {
        write_private_file(
            &out_dir.join("job.json"),
            &serde_json::to_vec_pretty(job_row)?,
        )?;
        Ok(LocalReport {
            out_dir: out_dir.to_path_buf(),
            plan_from,
            metadata: Mutex::new(Map::new()),
        })
    }

    /// Shallow merge, as Trellis does.
    pub fn merge(&self, metadata: Map<String, Value>) {
        self.metadata
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(metadata);
    }

    pub fn save_plan(&self, job_id: &str, plan: &[u8]) -> Result<String, ReportError> {
        write_private_file(&self.out_dir.join(PLAN_FILE), plan)
            .map_err(|e| ReportError::io("cannot write the plan artifact", e))?;
        Ok(format!("{job_id}/{PLAN_FILE}"))
    }

    fn plan_dir(&self, plan_job_id: &str) -> Result<Option<&Path>, ReportError> {
        let Some(dir) = self.plan_from.as_deref() else {
            return Ok(None);
        };
        let row = read_json(&dir.join("job.json"))?;
        Ok((row["id"] == plan_job_id).then_some(dir))
    }

    /// What Trellis would be sent as the worker's metadata, as
    /// `worker-metadata.json`.
    pub fn save_worker_metadata(
        &self,
        worker_id: &str,
        metadata: &Map<String, Value>,
    ) -> Result<(), ReportError> {
        let record = json!({"worker_id": worker_id, "metadata": metadata});
        write_private_file(
            &self.out_dir.join("worker-metadata.json"),
            record.to_string().as_bytes(),
        )
        .map_err(|e| ReportError::io("cannot write worker-metadata.json", e))
    }

    /// The PLAN job's row as Trellis would hold it: the row it ran with,
    /// with the status it ended with.
    pub fn planned_job(&self, plan_job_id: &str) -> Result<Option<Value>, ReportError> {
        let Some(dir) = self.plan_dir(plan_job_id)? else {
            return Ok(None);
        };
        let mut row = read_json(&dir.join("job.json"))?;
        let result = read_json(&dir.join("result.json"))?;
        row["status"] = result["status"].clone();
        row["execution_metadata"] = result["execution_metadata"].clone();
        Ok(Some(row))
    }

    pub fn planned_artifact(&self, plan_job_id: &str) -> Result<Option<Vec<u8>>, ReportError> {
        let Some(dir) = self.plan_dir(plan_job_id)? else {
            return Ok(None);
        };
        Ok(std::fs::read(dir.join(PLAN_FILE)).ok())
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
        write_private_file(&path, &serde_json::to_vec_pretty(&result)?)?;
        Ok(path)
    }
}
