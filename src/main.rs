//! The `tendril` binary: parses the command line and wires the library.
//! Exit codes: 0 success (or a clean drain), 1 a failed or interrupted job,
//! 2 a configuration error or credentials Trellis rejects.

use std::process::ExitCode;

use clap::Parser;

use tendril::agent::{Agent, Exit};
use tendril::cli::{Cli, Command};
use tendril::delivery::Outbox;
use tendril::jobs::JobServices;
use tendril::settings::{check_state_backend, shutdown_budget_warning};
use tendril::shutdown::Shutdown;
use tendril::tools::versions::tool_versions;
use tendril::trellis::TrellisClient;
use tendril::work_dir::{Hold, WorkDirLock};

/// Prints one line naming what is wrong and exits 2.
fn configuration_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("tendril: {message}");
    ExitCode::from(2)
}

/// The command line; on AWS Lambda, where the binary is the function's
/// `bootstrap` and runs without arguments, that means `tendril scaler`.
fn arguments() -> Vec<std::ffi::OsString> {
    let mut arguments: Vec<_> = std::env::args_os().collect();
    if arguments.len() == 1 && std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        arguments.push("scaler".into());
    }
    arguments
}

fn main() -> ExitCode {
    tendril::secrets::forbid_dumps();
    let cli = Cli::parse_from(arguments());
    let logging = match cli.logging.resolve() {
        Ok(logging) => logging,
        Err(error) => return configuration_error(error),
    };
    if let Err(message) = tendril::telemetry::init(&logging) {
        return configuration_error(message);
    }
    // Tools are killed when the thread that started them exits
    // (PR_SET_PDEATHSIG, see `tools::process`): they are started from these
    // worker threads, which live as long as the process, and must never be
    // started from a `spawn_blocking` or `block_in_place` thread, which the
    // runtime ends when idle.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            return configuration_error(format!("cannot start the async runtime: {error}"))
        }
    };
    // The command runs as a task on the runtime's workers, not on this
    // thread: a future on the `block_on` thread made every wakeup of an idle
    // worker cross two threads more (the benchmark: 1.3 wakeups a second
    // instead of 0.4). A panic goes on unwinding as it would have here.
    runtime.block_on(async {
        match tokio::spawn(async_main(cli.command)).await {
            Ok(code) => code,
            Err(failure) => std::panic::resume_unwind(failure.into_panic()),
        }
    })
}

async fn async_main(command: Command) -> ExitCode {
    match command {
        Command::Version => {
            println!("tendril {}", tendril::VERSION);
            for (tool, version) in tool_versions(&std::env::var("PATH").unwrap_or_default()).await {
                println!("{tool} {version}");
            }
            ExitCode::SUCCESS
        }
        Command::Doctor(args) => {
            let (job, agent) = args.start.resolve();
            tendril::doctor::run(args.json, job, agent).await
        }
        Command::Register(args) => register(args).await,
        Command::Scaler(args) => tendril::scaler::run(args).await,
        Command::Exec(args) => {
            adopt_tools_orphans();
            let mut settings = match args.job.resolve() {
                Ok(settings) => settings,
                Err(error) => return configuration_error(error),
            };
            // The embedded default: state in a local directory.
            settings
                .state_dir
                .get_or_insert_with(tendril::cli::default_state_dir);
            let _lock = match WorkDirLock::acquire(&settings.work_dir, Hold::Shared) {
                Ok(lock) => lock,
                Err(error) => {
                    return configuration_error(format!("TENDRIL_WORK_DIR (--work-dir): {error}"))
                }
            };
            match tendril::exec::run(&args.job_file, args.out, args.plan_from, settings).await {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(error) => configuration_error(error),
            }
        }
        Command::Start(args) => start(args).await,
        Command::Health(args) => health(args).await,
    }
}

/// Makes this process the reaper of what its tools start outside their
/// process groups, so that it can end them (see `tools::orphans`).
fn adopt_tools_orphans() {
    if let Err(error) = tendril::tools::orphans::adopt_orphans() {
        tracing::warn!(
            "cannot become the reaper of the tools' orphans ({error}): a process a tool starts outside its \
             process group may outlive it"
        );
    }
}

/// `tendril start`: the worker.
async fn start(args: tendril::cli::StartArgs) -> ExitCode {
    adopt_tools_orphans();
    let (job_settings, settings) = args.resolve();
    let job_settings = match job_settings {
        Ok(settings) => settings,
        Err(error) => return configuration_error(error),
    };
    let settings = match settings {
        Ok(settings) => settings,
        Err(error) => return configuration_error(error),
    };
    match check_state_backend(&job_settings) {
        Ok(Some(warning)) => tracing::warn!("{warning}"),
        Ok(None) => {}
        Err(error) => return configuration_error(error),
    }
    if let Some(warning) = shutdown_budget_warning(job_settings.mode, &settings, &job_settings) {
        tracing::warn!("{warning}");
    }
    let client = match TrellisClient::new(&settings) {
        Ok(client) => client,
        Err(error) => return configuration_error(format!("TRELLIS_URL (--trellis-url): {error}")),
    };
    let work_dir = job_settings.work_dir.clone();
    let _lock = match WorkDirLock::acquire(&work_dir, Hold::Exclusive) {
        Ok(lock) => lock,
        Err(error) => {
            return configuration_error(format!("TENDRIL_WORK_DIR (--work-dir): {error}"))
        }
    };
    let outbox = match Outbox::open(&work_dir) {
        Ok(outbox) => outbox,
        Err(error) => {
            return configuration_error(format!(
                "TENDRIL_WORK_DIR (--work-dir): cannot use {}: {error}",
                work_dir.display()
            ))
        }
    };
    let _health = match &settings.health_addr {
        Some(address) => {
            let check = tendril::health::HealthCheck {
                heartbeat_interval: settings.heartbeat_interval,
                work_dir: work_dir.clone(),
            };
            match tendril::health::serve(address, check).await {
                Ok(server) => {
                    tracing::info!("health and metrics on http://{}", server.address);
                    Some(server)
                }
                Err(error) => {
                    return configuration_error(format!(
                        "TENDRIL_HEALTH_ADDR (--health-addr): cannot listen on {address}: {error}"
                    ))
                }
            }
        }
        None => None,
    };
    let shutdown = match Shutdown::listen(Some(settings.drain_grace)) {
        Ok(shutdown) => shutdown,
        Err(error) => return configuration_error(format!("cannot listen for signals: {error}")),
    };
    tracing::info!(
        "Tendril {} starting: worker {}, {} mode, Trellis {}, work dir {}, state {}, health {}",
        tendril::VERSION,
        settings.worker_id,
        job_settings.mode.as_str(),
        settings.trellis_url,
        work_dir.display(),
        match (&job_settings.state_storage, &job_settings.state_dir) {
            (Some(bucket), _) => format!("s3://vine-terraform-state at {}", bucket.endpoint),
            (None, Some(dir)) => format!("local in {}", dir.display()),
            (None, None) => "none (Terraform jobs fail)".to_string(),
        },
        settings.health_addr.as_deref().unwrap_or("off"),
    );
    let services = JobServices::new(job_settings);
    let agent = Agent::new(settings, services, client, outbox, shutdown);
    match agent.run().await {
        Exit::Drained => ExitCode::SUCCESS,
        Exit::Interrupted | Exit::JobFailed => ExitCode::from(1),
        Exit::Rejected(message) => configuration_error(message),
        Exit::AnnouncementRefused(message) => {
            eprintln!("tendril: {message}");
            ExitCode::from(1)
        }
    }
}

/// `tendril health`: exit 0 when the worker's health endpoint says healthy.
async fn health(args: tendril::cli::HealthArgs) -> ExitCode {
    let Some(address) = args.health_addr.filter(|a| !a.trim().is_empty()) else {
        return configuration_error(
            "TENDRIL_HEALTH_ADDR (--health-addr): is not set (the address the worker serves its health on)",
        );
    };
    match tendril::health::ask(address.trim()).await {
        Ok(body) => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Err(body) => {
            println!("{}", body.trim_end());
            ExitCode::from(1)
        }
    }
}

/// `tendril register`: the token goes to standard output only, as the
/// environment lines to paste, never to a log.
async fn register(args: tendril::cli::RegisterArgs) -> ExitCode {
    let Some(url) = args
        .trellis_url
        .clone()
        .or_else(|| std::env::var("GRAPE_WEB_ORIGIN").ok())
    else {
        return configuration_error(
            "TRELLIS_URL (--trellis-url): is not set (the base URL of Trellis)",
        );
    };
    let secret =
        match tendril::settings::read::secret_from_env("TENDRIL_REGISTRATION_SECRET") {
            Ok(Some(secret)) => secret,
            Ok(None) => return configuration_error(
                "TENDRIL_REGISTRATION_SECRET: is not set (the platform's registration secret, or \
                 TENDRIL_REGISTRATION_SECRET_FILE)",
            ),
            Err(error) => return configuration_error(error),
        };
    let url = url.trim().trim_end_matches('/').to_string();
    match tendril::trellis::client::register(
        &url,
        args.allow_insecure_http,
        secret.expose(),
        &args.name,
        args.mode,
    )
    .await
    {
        Ok(registration) => {
            println!("GRAPE_WORKER_ID={}", registration.tendril_id);
            println!("GRAPE_WORKER_TOKEN={}", registration.tendril_token);
            ExitCode::SUCCESS
        }
        Err(tendril::trellis::TrellisError::Unauthorized(_)) => configuration_error(
            "Trellis rejected the registration secret (TENDRIL_REGISTRATION_SECRET)",
        ),
        Err(error) => {
            eprintln!("tendril: registration failed: {error}");
            ExitCode::from(1)
        }
    }
}
