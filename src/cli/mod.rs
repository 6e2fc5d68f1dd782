//! The command line: clap's [`Cli`], its subcommands and their `*Args`, and
//! their resolution into the validated values of `crate::settings`. Only the
//! binary (`main.rs`) uses this module; every default is written once,
//! beside its flag (clap's `default_value`, or a const next to the flag where
//! the default depends on the worker's mode).
//!
//! Non-secret settings are flags with an environment fallback. Secrets (the
//! worker token, storage keys, the Infracost key) come only from the
//! environment or from a file named by `<VARIABLE>_FILE`: a flag would show
//! them to every user of the host in `/proc/<pid>/cmdline`.

mod job;
mod logging;
mod start;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::settings::WorkerMode;

pub use job::{default_state_dir, JobArgs};
pub use logging::LoggingArgs;
pub use start::StartArgs;

#[derive(Debug, Parser)]
#[command(
    name = "tendril",
    version = crate::VERSION,
    about = "The Tendril worker: claims jobs from Trellis and runs Terraform, Helm, kubectl and the cloud CLIs for them"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub logging: LoggingArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run as a worker: announce to Trellis, claim and run jobs until signalled.
    Start(StartArgs),
    /// Run one job from a file, without Trellis, and write its result locally.
    Exec(ExecArgs),
    /// Print Tendril's version and the versions of the tools it finds on PATH.
    Version,
    /// Check this worker's settings, peers and tools without changing
    /// anything, taking exactly the settings of `start`; one line per check
    /// (`--json`: one JSON document). Exit 1 when a check the mode needs
    /// failed, 2 when a setting is missing or invalid.
    Doctor(DoctorArgs),
    /// Ask a running worker's health endpoint (TENDRIL_HEALTH_ADDR): exit 0
    /// when it is healthy, 1 when not (for a container HEALTHCHECK).
    Health(HealthArgs),
    /// Register a new worker with Trellis (for setting up a self-hosted one)
    /// and print the environment lines it runs with. The platform's
    /// registration secret is read from TENDRIL_REGISTRATION_SECRET (or
    /// TENDRIL_REGISTRATION_SECRET_FILE).
    Register(RegisterArgs),
    /// Scale the pool of ECS worker services between zero and one task each
    /// from the jobs waiting in Trellis's database: as a Lambda custom
    /// runtime when AWS_LAMBDA_RUNTIME_API is set, once with --once, or else
    /// every --interval.
    Scaler(crate::scaler::settings::ScalerArgs),
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// A job file: what a claim returns, `{"job": ..., "cloud_identity": ...}`.
    pub job_file: PathBuf,
    /// Where artifacts and result.json go [default: ./tendril-out/<job id>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// For a DEPLOY: the --out directory of the earlier PLAN whose plan it
    /// applies (its job.json, result.json and terraform.plan.out).
    #[arg(long, value_name = "DIR")]
    pub plan_from: Option<PathBuf>,
    #[command(flatten)]
    pub job: JobArgs,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print one JSON document (for machines) instead of a line per check.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub start: StartArgs,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The address the worker serves its health on.
    #[arg(long, env = "TENDRIL_HEALTH_ADDR", value_name = "HOST:PORT")]
    pub health_addr: Option<String>,
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// The worker's name, as Trellis shows it.
    #[arg(long)]
    pub name: String,
    /// The new worker's mode.
    #[arg(long, value_enum, default_value_t = WorkerMode::default())]
    pub mode: WorkerMode,
    /// Base URL of Trellis (falls back to GRAPE_WEB_ORIGIN).
    #[arg(long, env = "TRELLIS_URL", hide_env_values = true)]
    pub trellis_url: Option<String>,
    /// Allow plain http:// to a host other than loopback (never in production).
    #[arg(long, env = "TENDRIL_ALLOW_INSECURE_HTTP")]
    pub allow_insecure_http: bool,
}

/// A default that depends on the worker's mode, written once beside its
/// flag and shown in the flag's help.
struct ModeDefault {
    self_hosted: &'static str,
    cloud_hosted: &'static str,
}

impl ModeDefault {
    /// The default of `mode`.
    fn of(&self, mode: WorkerMode) -> &'static str {
        match mode {
            WorkerMode::SelfHosted => self.self_hosted,
            WorkerMode::CloudHosted => self.cloud_hosted,
        }
    }

    /// A flag's help with both defaults.
    fn help(&self, text: &str) -> String {
        format!(
            "{text} [default: {} {}, {} {}]",
            self.self_hosted,
            WorkerMode::SelfHosted.as_str(),
            self.cloud_hosted,
            WorkerMode::CloudHosted.as_str()
        )
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_mode_default_is_picked_by_mode_and_shown_whole() {
        let grace = ModeDefault {
            self_hosted: "5m",
            cloud_hosted: "40s",
        };
        assert_eq!(grace.of(WorkerMode::SelfHosted), "5m");
        assert_eq!(grace.of(WorkerMode::CloudHosted), "40s");
        assert_eq!(
            grace.help("Grace."),
            "Grace. [default: 5m self-hosted, 40s cloud-hosted]"
        );
    }
}
