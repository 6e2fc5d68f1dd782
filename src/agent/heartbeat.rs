//! The heartbeat: a task of its own, independent of any job, that tells
//! Trellis every interval that this worker lives, what it is doing, and at
//! once when its status changes. Status changes are sent in the order they
//! happen, and OFFLINE is the last heartbeat sent. The tools' versions,
//! asked beside the first claim, go in one heartbeat of their own as soon
//! as the tools have answered.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::collections::BTreeMap;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::tools::versions::ToolVersion;
use crate::trellis::retry::{retry, RetryPolicy};
use crate::trellis::{Announcement, Heartbeat, TrellisClient, WorkerStatus};

/// The most time the final OFFLINE heartbeat may take.
pub const OFFLINE_BUDGET: Duration = Duration::from_secs(3);

#[derive(Clone)]
struct WorkerState {
    status: WorkerStatus,
    current_job_id: Option<String>,
}

/// The handle the agent uses to keep the heartbeat up to date.
pub struct Heartbeats {
    state: Arc<Mutex<WorkerState>>,
    changes: mpsc::UnboundedSender<WorkerStatus>,
    task: JoinHandle<()>,
}

impl Heartbeats {
    /// Starts the heartbeat task (the announcement was sent before); the
    /// announcement goes again, with the tools, once `tools` has them.
    pub fn start(
        client: TrellisClient,
        interval: Duration,
        retry_max_delay: Duration,
        announcement: Announcement,
        tools: JoinHandle<BTreeMap<String, ToolVersion>>,
    ) -> Heartbeats {
        let state = Arc::new(Mutex::new(WorkerState {
            status: WorkerStatus::Online,
            current_job_id: None,
        }));
        let (changes, mut received) = mpsc::unbounded_channel();
        let shared = state.clone();
        let announcement_template = announcement;
        let task = tokio::spawn(async move {
            let mut tools = Some(tools);
            // The status of the last change taken from the queue: a
            // heartbeat of the timer's or the tools' says it, never one
            // still queued (which would skip DRAINING, or send OFFLINE
            // before it).
            let mut last = WorkerStatus::Online;
            loop {
                let mut announcement = None;
                let status = tokio::select! {
                    change = received.recv() => match change {
                        Some(status) => {
                            last = status;
                            status
                        }
                        None => return,
                    },
                    _ = super::timer::sleep(interval) => last,
                    answered = async { tools.as_mut().expect("polled only while held").await }, if tools.is_some() => {
                        tools = None;
                        let Ok(versions) = answered else { continue };
                        let versions = versions.into_iter().map(|(tool, v)| (tool, v.to_string()));
                        announcement = Some(Announcement {
                            tools: Some(versions.collect()),
                            ..announcement_template.clone()
                        });
                        last
                    }
                };
                let heartbeat = Heartbeat {
                    version: crate::VERSION.to_string(),
                    status,
                    current_job_id: shared
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .current_job_id
                        .clone(),
                    announcement,
                };
                let send = retry(
                    RetryPolicy::few(retry_max_delay),
                    "sending a heartbeat",
                    || client.heartbeat(&heartbeat),
                );
                if status == WorkerStatus::Offline {
                    match tokio::time::timeout(OFFLINE_BUDGET, send).await {
                        Ok(Ok(())) => tracing::info!("reported OFFLINE to Trellis"),
                        _ => tracing::warn!("could not report OFFLINE to Trellis; it will notice the missing heartbeat"),
                    }
                    return;
                }
                if let Err(error) = send.await {
                    tracing::warn!(
                        "heartbeat failed: {error}; the next one is due in {}",
                        crate::units::format_duration(interval)
                    );
                }
            }
        });
        Heartbeats {
            state,
            changes,
            task,
        }
    }

    /// The job the worker runs now, for the next heartbeats.
    pub fn set_job(&self, job_id: Option<String>) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .current_job_id = job_id;
    }

    /// A new status, sent at once (after any sent before it).
    pub fn set_status(&self, status: WorkerStatus) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.status != status {
            state.status = status;
            let _ = self.changes.send(status);
        }
    }

    /// Sends OFFLINE as the last heartbeat and ends the task.
    pub async fn stop(self) {
        self.set_job(None);
        self.set_status(WorkerStatus::Offline);
        let mut task = self.task;
        // The task sends what is queued before OFFLINE; bound it all.
        if tokio::time::timeout(OFFLINE_BUDGET * 2, &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}
