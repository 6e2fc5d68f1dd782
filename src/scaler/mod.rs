//! `tendril scaler`: scales the pool of ECS worker services between zero
//! and one task each, from the jobs waiting in Trellis's database. It runs
//! as a Lambda custom runtime when `AWS_LAMBDA_RUNTIME_API` is set, once
//! with `--once` (for cron), or else as a loop every `--interval`.

mod decision;
mod lambda;
mod pass;
mod pool;
mod postgrest;
pub mod settings;

use std::process::ExitCode;

use crate::shutdown::Shutdown;
use decision::PassKind;
use lambda::RuntimeApi;
use pass::Scaler;
use settings::ScalerArgs;

/// Runs the scaler in the mode its environment and arguments ask for.
/// Exit codes: 0 done, 1 a pass had errors (`--once`) or the Lambda
/// Runtime API failed, 2 bad settings.
pub async fn run(args: ScalerArgs) -> ExitCode {
    let runtime_api = std::env::var("AWS_LAMBDA_RUNTIME_API")
        .ok()
        .filter(|api| !api.trim().is_empty());
    if let Some(address) = runtime_api {
        return on_lambda(&RuntimeApi::new(address.trim()), &args).await;
    }
    let scaler = match start(&args).await {
        Ok(scaler) => scaler,
        Err(message) => {
            eprintln!("tendril: {message}");
            return ExitCode::from(2);
        }
    };
    if args.once {
        return once(&scaler).await;
    }
    every_interval(&scaler).await
}

/// The scaler, from its settings.
async fn start(args: &ScalerArgs) -> Result<Scaler, String> {
    let settings = args.resolve().await.map_err(|e| e.to_string())?;
    Scaler::new(settings).await.map_err(|e| e.to_string())
}

/// Serves Lambda invocations; bad settings are reported as an init error.
async fn on_lambda(api: &RuntimeApi, args: &ScalerArgs) -> ExitCode {
    let started = async {
        let url_auth = args.url_auth().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((start(args).await?, url_auth))
    };
    let (scaler, url_auth) = match started.await {
        Ok(started) => started,
        Err(message) => {
            eprintln!("tendril: {message}");
            if let Err(problem) = api.report_init_error(&message).await {
                eprintln!("tendril: {problem}");
            }
            return ExitCode::from(2);
        }
    };
    tracing::info!("scaler: serving Lambda invocations");
    match api.serve(&scaler, &url_auth).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            tracing::error!("{problem}");
            ExitCode::from(1)
        }
    }
}

/// One pass; its report as JSON on stdout.
async fn once(scaler: &Scaler) -> ExitCode {
    match scaler.pass(PassKind::Full).await {
        Ok(report) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
            if report.errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(_) => ExitCode::from(1),
    }
}

/// A pass every interval until SIGTERM or SIGINT.
async fn every_interval(scaler: &Scaler) -> ExitCode {
    let shutdown = match Shutdown::listen(None) {
        Ok(shutdown) => shutdown,
        Err(error) => {
            eprintln!("tendril: cannot listen for signals: {error}");
            return ExitCode::from(2);
        }
    };
    let interval = scaler.settings().interval;
    tracing::info!(
        "scaler: a pass every {}",
        crate::units::format_duration(interval)
    );
    loop {
        // A failed pass is logged by the pass; the next one tries again.
        let _ = scaler.pass(PassKind::Full).await;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.drain.cancelled() => return ExitCode::SUCCESS,
        }
    }
}
