//! Tendril, the job worker of the Vintner platform, as a library.
//!
//! The binary in `main.rs` is wiring only: everything it runs lives here so
//! another front end (the Grape CLI) can share the executors, the tool
//! wrappers, the cloud code and the Trellis client.
//!
//! Data flows one way: `agent` claims a job through `trellis`, hands it to
//! `jobs`, whose executors run tools through `tools` and report through
//! `report`, whose log lines go through `logs` (masked by `secrets`).

pub mod agent;
pub mod cloud;
pub mod config;
pub mod delivery;
pub mod doctor;
pub mod exec;
pub mod health;
pub mod http_error;
pub mod jobs;
pub mod logs;
pub mod private_files;
pub mod report;
pub mod safe_name;
pub mod scaler;
pub mod secrets;
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
