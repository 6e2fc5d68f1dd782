//! The ordered queue of a job's PROCESSING updates.
//!
//! Trellis keeps no state machine: a PROCESSING update that lands after the
//! terminal one reopens the job. So every update of a job goes through this
//! one queue, delivered one at a time. Closing the queue (when the job has
//! ended) takes no more progress; what is already pending is still
//! delivered, in order, and the terminal update is sent only after the
//! queue has emptied. (When that wait is cut short, at the final delivery
//! timeout, delivery is dropped with it: nothing of it can land later.)

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

use super::send::{send_progress, DeliveryError, DeliveryPolicy};
use crate::trellis::{StatusUpdate, TrellisClient};

#[derive(Default)]
pub struct StatusQueue {
    pending: Mutex<VecDeque<StatusUpdate>>,
    wake: Notify,
    closed: AtomicBool,
}

impl StatusQueue {
    pub fn push(&self, update: StatusUpdate) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(update);
        self.wake.notify_one();
    }

    /// No more progress: delivery ends once what is pending is through.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn next(&self) -> Option<StatusUpdate> {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }

    /// Delivers updates in order until the queue is closed and empty. A
    /// progress update Trellis refuses is skipped (the next carries the job
    /// on); a job taken away, or a rejected token, ends delivery.
    pub async fn deliver(
        &self,
        client: &TrellisClient,
        job_id: &str,
        policy: &DeliveryPolicy,
    ) -> Result<(), DeliveryError> {
        loop {
            let closed = self.closed.load(Ordering::SeqCst);
            let Some(update) = self.next() else {
                if closed {
                    return Ok(());
                }
                self.wake.notified().await;
                continue;
            };
            send_progress(client, job_id, &update, policy).await?;
        }
    }
}
