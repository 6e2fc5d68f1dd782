//! Tendril, the job worker of the Vintner platform, as a library.
//!
//! The binary in `main.rs` is wiring only: everything it runs lives here so
//! another front end (the Grape CLI) can share the executors, the tool
//! wrappers, the cloud code and the Trellis client.
//!
//! Data flows one way: `agent` claims a job through `trellis`, hands it to
//! `jobs`, whose executors run tools through `tools` and report through
//! `report`, whose log lines go through `logs` (masked by `secrets`).
//!
//! # Glossary
//!
//! - **Trellis**: the control plane. It queues jobs, hands them to workers
//!   and shows their logs and statuses; Tendril speaks to it over HTTP only
//!   (`trellis`).
//! - **Job**: one row of Trellis's `provision_jobs`: a job type (PLAN,
//!   DEPLOY, ..., see [`trellis::JobType`]), a config snapshot and the cloud
//!   identity it runs as. It ends in one terminal status.
//! - **Claim**: what Trellis answers when a worker asks for a job: the job
//!   row and its identity, checked before the job runs ([`trellis::Claim`]).
//! - **Vine**: a user's environment (its network, cluster, DNS and apps),
//!   planned, deployed and destroyed by the vine jobs with Terraform.
//! - **Snapshot**: the job's `config_snapshot`, the vine's row (or a hosted
//!   worker's settings) as it was when the job was queued (`jobs::snapshot`).
//! - **Stack**: a Terraform configuration in a job's workspace: a template
//!   copied there, its variables, its state key and backend (`jobs::stack`).
//! - **Worker**: this process, a Tendril that claims and runs jobs.
//! - **Hosted worker**: another Tendril, running as an ECS service, that the
//!   DEPLOY_WORKER, UPDATE_WORKER and DESTROY_WORKER jobs manage
//!   (`jobs::hosted_workers`).
//! - **Outbox**: the work dir's record of what Tendril still owes Trellis
//!   about each job (status updates, and the log's **spool** of chunks), so
//!   nothing is lost across a restart (`delivery`).
//!
//! # Layout
//!
//! - `agent`: `tendril start`: announce, claim, run one job at a time, drain.
//! - `cli`: the command line (clap), resolved into `settings`; the binary's only.
//! - `cloud`: cloud identities: credentials for a job and their checks.
//! - `delivery`: what a job owes Trellis (log, progress, status), through the outbox.
//! - `doctor`: `tendril doctor`, the operator's self-check of a worker.
//! - `exec`: `tendril exec JOB_FILE`: one job from a file, no Trellis.
//! - `failpoint`: where the tests of a debug build kill Tendril on purpose.
//! - `health`: the health check and the Prometheus metrics.
//! - `http_error`: one line for a failed HTTP request.
//! - `jobs`: the frame of every job, and the executors by job type.
//! - `logs`: a job's log: masking, framing, limits, phases.
//! - `private_files`: files and directories only Tendril's user can read.
//! - `report`: how an executor reports progress and reads the PLAN it applies.
//! - `safe_name`: outside values checked for their use: paths, state keys, command
//!   arguments, manifests (one checker per kind: name, region, DNS name, URL, identifier).
//! - `scaler`: `tendril scaler`, the ECS worker pool's scaler.
//! - `secrets`: the register of secret values, and masking.
//! - `settings`: the validated settings of a worker and of `tendril exec`.
//! - `shutdown`: the shutdown signals (drain, then stop) the agent, exec and the scaler watch.
//! - `telemetry`: Tendril's own log, masked.
//! - `tools`: the tools Tendril runs, and the one place that starts processes.
//! - `trellis`: the Trellis wire model, HTTP client and retry policy.
//! - `units`: the human units of settings (durations, sizes).
//! - `work_dir`: the work directory, its lock and its free space.
//! - `workspace`: a job's private workspace directory.

pub mod agent;
pub mod cli;
pub mod cloud;
pub mod delivery;
pub mod doctor;
pub mod exec;
pub mod failpoint;
pub mod health;
pub mod http_error;
pub mod jobs;
pub mod logs;
pub mod private_files;
pub mod report;
pub mod safe_name;
pub mod scaler;
#[cfg(test)]
mod scratch;
pub mod secrets;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod tools;
pub mod trellis;
pub mod units;
pub mod work_dir;
pub mod workspace;

/// Tendril's own version: the release it was built as (see `build.rs`),
/// sent to Trellis in every heartbeat and the User-Agent.
pub const VERSION: &str = env!("TENDRIL_VERSION");
