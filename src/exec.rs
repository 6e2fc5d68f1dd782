//! `tendril exec JOB_FILE`: one job, no Trellis. The file holds what a
//! claim returns; logs go to the terminal (and `job.log`), the outcome and
//! metadata to `result.json` in the output directory. A signal interrupts
//! the job at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::jobs::{self, JobServices, JobStop, Outcome, StopReason};
use crate::logs::terminal::TerminalLog;
use crate::logs::{Destination, JobLog};
use crate::report::local::LocalReport;
use crate::report::Reporter;
use crate::settings::JobSettings;
use crate::shutdown::Shutdown;
use crate::trellis::{Claim, ClaimedJob, JobStatus, JobType, MalformedJob, StatusUpdate};

/// Why `exec` could not even start the job (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot read the job file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the job file {path} is not a claim ({{\"job\": ..., \"cloud_identity\": ...}}): {problem}"
    )]
    Parse { path: PathBuf, problem: String },
    #[error(
        "the job file {0} is not a claim: it needs a \"job\" object with an \"id\", as a claim has \
         ({{\"job\": {{\"id\": ..., \"job_type\": ..., ...}}, \"cloud_identity\": ...}}; see examples/)"
    )]
    NotAClaim(PathBuf),
    #[error(
        "the DEPLOY in {job_file} applies the plan of PLAN job {plan_job_id}: run that PLAN first (tendril exec \
         <plan file> --out DIR) and give its output directory with --plan-from DIR"
    )]
    NeedsPlan {
        job_file: PathBuf,
        plan_job_id: String,
    },
    #[error("{0}; give the output directory with --out DIR")]
    UnsafeJobId(String),
    #[error("cannot prepare the output directory {path}: {source}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen for signals: {0}")]
    Signals(std::io::Error),
}

/// Runs the job of a file; `Ok(true)` when it succeeded.
pub async fn run(
    job_file: &Path,
    out: Option<PathBuf>,
    plan_from: Option<PathBuf>,
    settings: JobSettings,
) -> Result<bool, ExecError> {
    let JobFile {
        job_row,
        checked,
        job_id,
    } = read_job_file(job_file, plan_from.is_some())?;
    let out_dir = match out {
        Some(dir) => dir,
        None => {
            crate::safe_name::check("the job id", &job_id).map_err(ExecError::UnsafeJobId)?;
            PathBuf::from("tendril-out").join(&job_id)
        }
    };
    let output_error = |source| ExecError::Output {
        path: out_dir.clone(),
        source,
    };
    crate::private_files::create_private_dir(&out_dir).map_err(output_error)?;
    let terminal = TerminalLog::create(&out_dir.join("job.log")).map_err(output_error)?;
    let log = JobLog::new(
        Destination::Terminal(terminal),
        settings.log_limit,
        settings.progress_interval,
    );
    let report = Arc::new(LocalReport::new(&out_dir, plan_from, &job_row).map_err(output_error)?);
    let shutdown = Shutdown::listen(None).map_err(ExecError::Signals)?;
    let update = run_job(checked, settings, report.clone(), log, shutdown).await;
    let result = report.finish(&update).map_err(output_error)?;
    eprintln!(
        "{}: result in {}",
        if update.status == JobStatus::Success {
            "SUCCESS"
        } else {
            "FAILED"
        },
        result.display()
    );
    Ok(update.status == JobStatus::Success)
}

/// What a job file holds, checked.
struct JobFile {
    /// The job row as the file gives it, for the local report.
    job_row: serde_json::Value,
    checked: Result<Option<ClaimedJob>, MalformedJob>,
    job_id: String,
}

/// Reads and checks the job file: a claim with a job that has an id; a
/// DEPLOY that applies a plan needs `--plan-from` (`has_plan`).
fn read_job_file(job_file: &Path, has_plan: bool) -> Result<JobFile, ExecError> {
    let text = std::fs::read_to_string(job_file).map_err(|source| ExecError::Read {
        path: job_file.into(),
        source,
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|error| ExecError::Parse {
            path: job_file.into(),
            problem: crate::trellis::model::json_problem(&error),
        })?;
    if !value.get("job").is_some_and(serde_json::Value::is_object) {
        return Err(ExecError::NotAClaim(job_file.into()));
    }
    let claim: Claim = serde_json::from_value(value).map_err(|error| ExecError::Parse {
        path: job_file.into(),
        problem: crate::trellis::model::json_problem(&error),
    })?;
    let job_row = claim.job.clone();
    let checked = claim.into_job();
    let job_id = match &checked {
        Ok(Some(claimed)) => claimed.job.id.clone(),
        Ok(None) => return Err(ExecError::NotAClaim(job_file.into())),
        Err(malformed) => malformed
            .id
            .clone()
            .ok_or_else(|| ExecError::NotAClaim(job_file.into()))?,
    };
    if let (Ok(Some(claimed)), false) = (&checked, has_plan) {
        let applies_a_plan = claimed.job.job_type == JobType::Deploy;
        if let Some(plan_job_id) = claimed
            .job
            .plan_job_id
            .clone()
            .filter(|id| applies_a_plan && !id.is_empty())
        {
            return Err(ExecError::NeedsPlan {
                job_file: job_file.into(),
                plan_job_id,
            });
        }
    }
    Ok(JobFile {
        job_row,
        checked,
        job_id,
    })
}

/// Runs the checked job until it ends, stopping it on a signal or at the
/// job timeout; the status it ends with.
async fn run_job(
    checked: Result<Option<ClaimedJob>, MalformedJob>,
    settings: JobSettings,
    report: Arc<LocalReport>,
    log: JobLog,
    shutdown: Shutdown,
) -> StatusUpdate {
    let stop = JobStop::default();
    let job_timeout = settings.job_timeout;
    let services = JobServices::new(settings);
    let job = async {
        match checked {
            Ok(Some(claimed)) => {
                jobs::run(
                    claimed,
                    &services,
                    Reporter::Local(report),
                    log.clone(),
                    &stop,
                )
                .await
            }
            Ok(None) => unreachable!("an empty claim was refused above"),
            Err(malformed) => {
                log.system(&format!("==> this job cannot run: {}", malformed.reason));
                Outcome::Report(StatusUpdate::failed(malformed.reason))
            }
        }
    };
    tokio::pin!(job);
    let timeout = tokio::time::sleep(job_timeout);
    tokio::pin!(timeout);
    let mut stopping = false;
    let outcome = loop {
        tokio::select! {
            outcome = &mut job => break outcome,
            _ = shutdown.drain.cancelled(), if !stopping => {
                stopping = true;
                stop.stop(StopReason::Shutdown);
            }
            _ = &mut timeout, if !stopping => {
                stopping = true;
                stop.stop(StopReason::Timeout(job_timeout));
            }
        }
    };
    match outcome {
        Outcome::Report(update) => update,
        Outcome::Abandon(reason) => StatusUpdate::failed(format!("stopped: {reason:?}")),
    }
}
