//! Shutdown signals: the first SIGTERM or SIGINT drains, the second (or
//! the drain grace running out) stops the running job. The agent, `exec`
//! and the scaler's local loop each listen through [`Shutdown`].

use std::time::Duration;

use futures::StreamExt;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_tokio::Signals;
use tokio_util::sync::CancellationToken;

/// What the agent and `exec` watch to know they must stop.
#[derive(Clone, Default)]
pub struct Shutdown {
    /// Stop claiming; let the running job finish.
    pub drain: CancellationToken,
    /// Stop the running job now.
    pub hard: CancellationToken,
}

impl Shutdown {
    /// Starts listening for SIGTERM and SIGINT. After the first, the drain
    /// grace (when given) is timed; when it runs out it counts as a second.
    pub fn listen(drain_grace: Option<Duration>) -> std::io::Result<Shutdown> {
        let shutdown = Shutdown::default();
        let mut signals = Signals::new([SIGTERM, SIGINT])?;
        let (drain, hard) = (shutdown.drain.clone(), shutdown.hard.clone());
        tokio::spawn(async move {
            while let Some(signal) = signals.next().await {
                let name = if signal == SIGTERM {
                    "SIGTERM"
                } else {
                    "SIGINT"
                };
                if drain.is_cancelled() {
                    tracing::warn!("{name} again: stopping the running job");
                    hard.cancel();
                    return;
                }
                tracing::info!(
                    "{name}: draining (no new jobs; a second signal stops the running job)"
                );
                drain.cancel();
                if let Some(grace) = drain_grace {
                    let hard = hard.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(grace).await;
                        if !hard.is_cancelled() {
                            tracing::warn!(
                                "the drain grace of {} ran out: stopping the running job",
                                crate::units::format_duration(grace)
                            );
                            hard.cancel();
                        }
                    });
                }
            }
        });
        Ok(shutdown)
    }
}
