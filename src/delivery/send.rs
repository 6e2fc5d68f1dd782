//! Sending what a job owes, one request at a time, until Trellis takes it.
//!
//! An outage (the network, 502/503/504, 429, an answer that is not
//! Trellis's own) is retried with capped backoff and full jitter, forever:
//! it only delays delivery. Three answers are not the network's, and end a
//! request's retries:
//!
//! - a refusal of the request itself: a 4xx, or Trellis's own 5xx (its JSON
//!   error) again and again, whatever its words, for
//!   [`DeliveryPolicy::refusal_limit`] and five attempts. A log chunk so
//!   refused is replaced by a SYSTEM line saying how many bytes could not be
//!   stored and why, but only when Trellis stores that note at once and
//!   refuses the chunk once more right after: the deployed Trellis answers
//!   its own 500 to everything while its database is down, and a note
//!   refused too shows such an outage, which is waited out like any other
//!   (the chunk is kept and sent again). A refused terminal status (a 4xx)
//!   is sent again with its biggest metadata dropped, then with none; one
//!   stuck on Trellis's 5xx is left for the backlog to try again later,
//!   whole (a database in trouble must not cost a job its metadata).
//! - "the job is gone" (404 `Job not found`, 500 `not owned by this
//!   worker`), believed only when a second read of the job a few seconds
//!   later agrees; otherwise it is retried like any transient failure.
//! - a rejected worker token, which no retry can fix.
//!
//! Everything is made storable before it is sent: U+0000, which PostgreSQL
//! text and jsonb cannot hold, becomes U+FFFD.

use std::future::Future;
use std::time::Duration;

use serde_json::Value;

use super::outbox::OutboxEntry;
use super::spool::{ChunkReader, Record, Spool};
use crate::trellis::retry::{Refusals, RetryPolicy};
use crate::trellis::{Hold, LogChunk, StatusUpdate, StreamType, TrellisClient, TrellisError};
use crate::units::format_size;

/// How often a refusal must repeat before it counts as one.
const MIN_REFUSALS: u32 = 5;

/// How delivery retries, from the worker's settings.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryPolicy {
    /// Backoff between attempts (no limit on attempts).
    pub retry: RetryPolicy,
    /// How long Trellis's own 5xx must repeat (and at least five times)
    /// before it is taken as Trellis refusing the request itself.
    pub refusal_limit: Duration,
    /// How long to wait before reading a job again to confirm it is gone.
    pub gone_check_delay: Duration,
}

impl DeliveryPolicy {
    /// Retries up to `retry_max_delay` apart; a refusal after four times
    /// that.
    pub fn new(retry_max_delay: Duration) -> Self {
        DeliveryPolicy {
            retry: RetryPolicy::until_accepted(retry_max_delay),
            refusal_limit: retry_max_delay * 4,
            gone_check_delay: Duration::from_secs(3),
        }
    }
}

/// Why delivery stopped before the end.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Trellis refuses the request itself (a 4xx).
    #[error("Trellis refused it (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
    /// Trellis refused it (a 5xx of its own) for the refusal limit.
    #[error("Trellis keeps refusing it (HTTP {status}): {message}")]
    Stuck { status: u16, message: String },
    /// The job is no longer this worker's (a second read agreed).
    #[error("the job is no longer this worker's: {0}")]
    Gone(String),
    /// A user cancelled the job in Trellis.
    #[error("the job was cancelled in Trellis")]
    Cancelled,
    /// An answer no retry can change (the worker's token was rejected).
    #[error(transparent)]
    Trellis(TrellisError),
    #[error("log spool: {0}")]
    Io(#[from] std::io::Error),
}

/// Replaces U+0000 in every string of a JSON value.
fn make_storable(value: &mut Value) {
    match value {
        Value::String(text) => storable_text(text),
        Value::Array(items) => items.iter_mut().for_each(make_storable),
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().filter(|k| k.contains('\0')).cloned().collect();
            for key in keys {
                if let Some(item) = map.remove(&key) {
                    map.insert(key.replace('\0', "\u{FFFD}"), item);
                }
            }
            map.values_mut().for_each(make_storable);
        }
        _ => {}
    }
}

fn storable_text(text: &mut String) {
    if text.contains('\0') {
        *text = text.replace('\0', "\u{FFFD}");
    }
}

/// The longest error message sent: its start says what failed, its end
/// holds the tool's last lines.
const MAX_ERROR_MESSAGE: usize = 16 * 1024;

/// `text` cut to about `limit` bytes, keeping its start and its end.
fn shortened(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let cut = |at: usize, forward: bool| {
        let mut at = at;
        while !text.is_char_boundary(at) {
            if forward {
                at += 1
            } else {
                at -= 1
            }
        }
        at
    };
    let head = cut(limit / 4, false);
    let tail = cut(text.len() - limit * 3 / 4, true);
    format!(
        "{} [... {} cut ...] {}",
        &text[..head],
        format_size((tail - head) as u64),
        &text[tail..]
    )
}

/// A status update Trellis can store.
pub fn storable_update(update: &StatusUpdate) -> StatusUpdate {
    let mut update = update.clone();
    if let Some(message) = &mut update.error_message {
        storable_text(message);
        *message = shortened(message, MAX_ERROR_MESSAGE);
    }
    if let Some(metadata) = &mut update.execution_metadata {
        metadata.values_mut().for_each(make_storable);
    }
    update
}

/// Whether the job really is gone: read a few seconds later, it no longer
/// exists (the API's own 404), is cancelled, or belongs to another worker.
pub async fn confirm_gone(client: &TrellisClient, job_id: &str, policy: &DeliveryPolicy) -> bool {
    tokio::time::sleep(policy.gone_check_delay).await;
    match client.get_job(job_id).await {
        Ok(None) => true,
        Ok(Some(row)) => Hold::of(&row, client.worker_id()) != Hold::Ours,
        Err(_) => false,
    }
}

/// One request for `job_id`, tried until it is accepted or fails for a
/// reason of its own (see the module's comment).
async fn until_accepted<F, Fut>(
    client: &TrellisClient,
    job_id: &str,
    policy: &DeliveryPolicy,
    what: &str,
    call: F,
) -> Result<(), DeliveryError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), TrellisError>>,
{
    let mut attempt = 0u32;
    let mut refusals = Refusals::default();
    loop {
        let error = match call().await {
            Ok(()) => {
                if attempt > 0 {
                    tracing::info!("{what}: succeeded after {attempt} retries");
                }
                return Ok(());
            }
            Err(error) => error,
        };
        match error {
            TrellisError::Rejected {
                status, message, ..
            } => return Err(DeliveryError::Refused { status, message }),
            TrellisError::JobGone(message) => {
                if confirm_gone(client, job_id, policy).await {
                    return Err(DeliveryError::Gone(message));
                }
                tracing::warn!("{what}: Trellis said the job is gone ({message}), but it is still this worker's; retrying");
            }
            TrellisError::Refused {
                status, message, ..
            } => {
                let refused = refusals.one_more();
                if stuck(refused, policy) {
                    return Err(DeliveryError::Stuck { status, message });
                }
                tracing::warn!(
                    "{what}: Trellis refused it (HTTP {status}: {message}); trying again ({} of at least \
                     {MIN_REFUSALS})",
                    refused.0
                );
            }
            error if error.is_transient() => tracing::warn!("{what}: {error}; retrying"),
            error => return Err(DeliveryError::Trellis(error)),
        }
        tokio::time::sleep(policy.retry.delay(attempt)).await;
        attempt = attempt.saturating_add(1);
    }
}

/// Whether a request refused `count` times over `elapsed` is stuck: refused
/// at least [`MIN_REFUSALS`] times over at least the refusal limit.
fn stuck((count, elapsed): (u32, Duration), policy: &DeliveryPolicy) -> bool {
    count >= MIN_REFUSALS && elapsed >= policy.refusal_limit
}

async fn send_one_chunk(
    client: &TrellisClient,
    job_id: &str,
    chunk: &LogChunk,
    policy: &DeliveryPolicy,
) -> Result<(), DeliveryError> {
    let what = format!("sending logs of job {job_id}");
    until_accepted(client, job_id, policy, &what, || {
        client.send_logs(job_id, chunk)
    })
    .await
}

/// How one attempt at sending a chunk went.
enum Attempt {
    Accepted,
    /// Trellis refused it, in its own words.
    Refused,
    /// No answer of Trellis's own (an outage), or a "gone" a second read
    /// contradicted.
    Unanswered,
}

/// One attempt at sending a chunk, with no retry.
async fn send_chunk_once(
    client: &TrellisClient,
    job_id: &str,
    chunk: &LogChunk,
    policy: &DeliveryPolicy,
) -> Result<Attempt, DeliveryError> {
    match client.send_logs(job_id, chunk).await {
        Ok(()) => Ok(Attempt::Accepted),
        Err(TrellisError::Rejected { .. } | TrellisError::Refused { .. }) => Ok(Attempt::Refused),
        Err(TrellisError::JobGone(message)) => match confirm_gone(client, job_id, policy).await {
            true => Err(DeliveryError::Gone(message)),
            false => Ok(Attempt::Unanswered),
        },
        Err(error) if error.is_transient() => Ok(Attempt::Unanswered),
        Err(error) => Err(DeliveryError::Trellis(error)),
    }
}

/// The SYSTEM line that stands for a chunk Trellis refuses.
fn note_for(chunk: &LogChunk, status: u16, message: &str) -> LogChunk {
    LogChunk {
        log_chunk: format!(
            "[tendril] {} of {:?} output could not be stored by Trellis (HTTP {status}: {message}) and are \
             missing here\n",
            format_size(chunk.log_chunk.len() as u64),
            chunk.stream_type
        ),
        stream_type: StreamType::System,
    }
}

/// Sends one log chunk. One that Trellis refuses (a 4xx, or its own 5xx
/// over the refusal limit) is replaced by a SYSTEM line saying so, so that
/// delivery goes on in order and nothing is dropped without a word; but
/// only once Trellis has shown that it is this chunk it cannot store: it
/// stored the note (once per chunk), answers a read of the job, and refuses
/// the chunk once more. A note refused too asks whether Trellis answers at
/// all ([`answers_reads`]): not while its database is down, an outage, and
/// the chunk is kept and sent again for as long as it lasts. When it
/// answers the read, the chunk goes once more (a database just back stores
/// it), then the note; a note refused again means Trellis stores no line
/// of this job: the chunk is [`DeliveryError::Stuck`], and the log stays,
/// whole, in the outbox for the backlog's next round.
pub async fn send_chunk(
    client: &TrellisClient,
    job_id: &str,
    chunk: LogChunk,
    policy: &DeliveryPolicy,
) -> Result<(), DeliveryError> {
    let mut chunk = chunk;
    storable_text(&mut chunk.log_chunk);
    let mut noted = false;
    let mut rounds = 0u32;
    loop {
        let (status, message) = match send_one_chunk(client, job_id, &chunk, policy).await {
            Err(
                DeliveryError::Refused { status, message }
                | DeliveryError::Stuck { status, message },
            ) => (status, message),
            other => return other,
        };
        if !noted {
            let note = note_for(&chunk, status, &message);
            noted = match send_chunk_once(client, job_id, &note, policy).await? {
                Attempt::Accepted => true,
                Attempt::Unanswered => false,
                Attempt::Refused if !answers_reads(client, job_id, policy).await? => false,
                // Trellis answers: its database may be back (the chunk is
                // stored now), or it stores no line of this job.
                Attempt::Refused => match send_chunk_once(client, job_id, &chunk, policy).await? {
                    Attempt::Accepted => return Ok(()),
                    Attempt::Unanswered => false,
                    Attempt::Refused => match send_chunk_once(client, job_id, &note, policy).await?
                    {
                        Attempt::Accepted => true,
                        Attempt::Unanswered => false,
                        Attempt::Refused => {
                            tracing::error!(
                                "Trellis refuses every log line of job {job_id} (HTTP {status}: {message}) while \
                                 it answers reads of the job: its log stays in the outbox and is sent again later"
                            );
                            return Err(DeliveryError::Stuck { status, message });
                        }
                    },
                },
            };
        }
        if noted && answers_reads(client, job_id, policy).await? {
            match send_chunk_once(client, job_id, &chunk, policy).await? {
                Attempt::Accepted => {
                    tracing::warn!(
                        "a log chunk of job {job_id} was stored after all, after a note saying it is missing"
                    );
                    return Ok(());
                }
                Attempt::Refused => {
                    tracing::error!(
                        "Trellis refused a log chunk of job {job_id} (HTTP {status}: {message}) while it stores \
                         others: it is replaced by a note"
                    );
                    return Ok(());
                }
                Attempt::Unanswered => {}
            }
        }
        tracing::warn!(
            "Trellis refused a log chunk of job {job_id} (HTTP {status}: {message}), but it is not that chunk \
             alone it cannot store: it is kept and sent again"
        );
        tokio::time::sleep(policy.retry.delay(rounds)).await;
        rounds = rounds.saturating_add(1);
    }
}

/// Whether Trellis answers a read of the job ([`current_row`]): a read it
/// keeps refusing is its database down (false); any other answer (a row
/// too large to read among them) is an answer. A job gone, or this worker
/// refused, is an error.
async fn answers_reads(
    client: &TrellisClient,
    job_id: &str,
    policy: &DeliveryPolicy,
) -> Result<bool, DeliveryError> {
    match current_row(client, job_id, policy).await {
        Ok(_) => Ok(true),
        Err(DeliveryError::Stuck { .. }) => Ok(false),
        Err(
            error
            @ (DeliveryError::Gone(_) | DeliveryError::Trellis(TrellisError::Unauthorized(_))),
        ) => Err(error),
        Err(_) => Ok(true),
    }
}

/// Sends an entry's log chunks in order. With a live spool, runs until the
/// spool is closed and emptied; without one (a finished job), until the
/// file is emptied.
pub async fn deliver_chunks(
    client: &TrellisClient,
    entry: &OutboxEntry,
    spool: Option<&Spool>,
    policy: &DeliveryPolicy,
) -> Result<(), DeliveryError> {
    let Some(mut reader) = ChunkReader::open(entry, spool.is_some())? else {
        return Ok(());
    };
    loop {
        // Read before looking for a chunk: a spool closed by then has
        // sealed everything it will ever hold.
        let closed = spool.is_none_or(Spool::is_closed);
        match reader.next_record()? {
            Some((record, next)) => {
                let chunk = match record {
                    Record::Chunk(chunk) => chunk,
                    Record::Damaged(bytes) => LogChunk {
                        log_chunk: format!(
                            "[tendril] {} of this job's log were damaged on disk (a failed write or a crash) and \
                             are missing here\n",
                            format_size(bytes as u64)
                        ),
                        stream_type: StreamType::System,
                    },
                };
                send_chunk(client, entry.job_id(), chunk, policy).await?;
                reader.commit(next)?;
            }
            None => match spool {
                Some(spool) if !closed => spool.wait_for_chunk().await,
                _ => return Ok(()),
            },
        }
    }
}

/// The job's row as Trellis has it now, read through an outage (until
/// Trellis answers). A job that no longer exists (a second read agreeing)
/// is [`DeliveryError::Gone`]; a read Trellis keeps refusing is
/// [`DeliveryError::Stuck`] (as [`until_accepted`] counts it), and an
/// answer no retry can change (a rejected token, a row too large to read)
/// ends it too.
pub async fn current_row(
    client: &TrellisClient,
    job_id: &str,
    policy: &DeliveryPolicy,
) -> Result<Value, DeliveryError> {
    let what = format!("reading job {job_id} in Trellis");
    let mut attempt = 0u32;
    let mut refusals = Refusals::default();
    loop {
        match client.get_job(job_id).await {
            Ok(Some(row)) => return Ok(row),
            Ok(None) if confirm_gone(client, job_id, policy).await => {
                return Err(DeliveryError::Gone(
                    "the job no longer exists in Trellis".into(),
                ))
            }
            Ok(None) => {}
            Err(TrellisError::Refused {
                status, message, ..
            }) => {
                if stuck(refusals.one_more(), policy) {
                    return Err(DeliveryError::Stuck { status, message });
                }
                tracing::warn!("{what}: Trellis refused it (HTTP {status}: {message}); retrying");
            }
            Err(error) if error.is_transient() => tracing::warn!("{what}: {error}; retrying"),
            Err(error) => return Err(DeliveryError::Trellis(error)),
        }
        tokio::time::sleep(policy.retry.delay(attempt)).await;
        attempt = attempt.saturating_add(1);
    }
}

/// Whether the job is still this worker's to report on ([`current_row`]):
/// cancelled, or taken by another worker, is an error.
async fn still_ours(
    client: &TrellisClient,
    job_id: &str,
    policy: &DeliveryPolicy,
) -> Result<(), DeliveryError> {
    let row = current_row(client, job_id, policy).await?;
    match Hold::of(&row, client.worker_id()) {
        Hold::Ours => Ok(()),
        Hold::Cancelled => Err(DeliveryError::Cancelled),
        Hold::TakenBy(owner) => Err(DeliveryError::Gone(format!(
            "the job now belongs to worker {owner}"
        ))),
    }
}

/// Sends a progress update; one Trellis refuses is skipped (the next
/// carries the job on). Trellis keeps no state machine, so a PROCESSING
/// would reopen a job a user cancelled: the job is read first, and a
/// cancelled or taken one gets no more progress.
pub async fn send_progress(
    client: &TrellisClient,
    job_id: &str,
    update: &StatusUpdate,
    policy: &DeliveryPolicy,
) -> Result<(), DeliveryError> {
    let what = format!("reporting progress of job {job_id}");
    match still_ours(client, job_id, policy).await {
        Ok(()) => {}
        Err(
            error @ (DeliveryError::Gone(_)
            | DeliveryError::Cancelled
            | DeliveryError::Trellis(TrellisError::Unauthorized(_))),
        ) => return Err(error),
        // Whether the job is still ours cannot be told: an update that
        // might reopen a cancelled job is not sent.
        Err(error) => {
            tracing::warn!("{what}: cannot read the job ({error}); this update is skipped");
            return Ok(());
        }
    }
    let update = storable_update(update);
    match until_accepted(client, job_id, policy, &what, || {
        client.update_status(job_id, &update)
    })
    .await
    {
        Err(error @ (DeliveryError::Refused { .. } | DeliveryError::Stuck { .. })) => {
            tracing::warn!("{what}: {error}; this update is skipped");
            Ok(())
        }
        other => other,
    }
}

/// Sends the terminal status until Trellis takes some terminal status: a
/// refused one (a 4xx) goes again with its biggest metadata values
/// dropped, then with none, and its error message says what was dropped. A
/// stuck one is an error: the entry stays for the backlog, whole.
pub async fn send_terminal(
    client: &TrellisClient,
    job_id: &str,
    update: &StatusUpdate,
    policy: &DeliveryPolicy,
) -> Result<(), DeliveryError> {
    let mut update = storable_update(update);
    let what = format!("reporting job {job_id} {:?}", update.status);
    loop {
        let sent = until_accepted(client, job_id, policy, &what, || {
            client.update_status(job_id, &update)
        })
        .await;
        match sent {
            Err(DeliveryError::Refused { status, message })
                if update.execution_metadata.is_some() =>
            {
                let dropped = shrink_metadata(&mut update);
                tracing::warn!("{what}: Trellis refused it (HTTP {status}: {message}); sending it again without {dropped}");
                let note = format!(
                    "Trellis refused this job's result (HTTP {status}: {message}), so it was sent without {dropped}"
                );
                update.error_message = Some(match update.error_message.take() {
                    Some(message) => format!("{message}; {note}"),
                    None => note,
                });
            }
            // No metadata left: a shorter message, then none.
            Err(DeliveryError::Refused { status, message }) if update.error_message.is_some() => {
                let current = update.error_message.take().unwrap_or_default();
                tracing::warn!("{what}: Trellis refused it (HTTP {status}: {message}); sending a shorter message");
                if current.len() > 1024 {
                    update.error_message = Some(shortened(&current, 1024));
                }
            }
            other => {
                if other.is_ok() {
                    tracing::info!("job {job_id} reported {:?}", update.status);
                }
                return other;
            }
        }
    }
}

/// Drops the biggest metadata values until what is left is at most half
/// of what was (or, when that is all of it, every value); says what went.
fn shrink_metadata(update: &mut StatusUpdate) -> String {
    let Some(metadata) = update.execution_metadata.as_mut() else {
        return "metadata".into();
    };
    let size = |value: &Value| serde_json::to_vec(value).map(|v| v.len()).unwrap_or(0);
    let mut sizes: Vec<(String, usize)> =
        metadata.iter().map(|(k, v)| (k.clone(), size(v))).collect();
    sizes.sort_by_key(|(_, bytes)| std::cmp::Reverse(*bytes));
    let total: usize = sizes.iter().map(|(_, s)| s).sum();
    let mut left = total;
    let mut dropped = Vec::new();
    for (key, bytes) in &sizes {
        if left <= total / 2 && !dropped.is_empty() {
            break;
        }
        metadata.remove(key);
        left -= bytes;
        dropped.push(format!("{key} ({})", format_size(*bytes as u64)));
    }
    if metadata.is_empty() {
        update.execution_metadata = None;
        return format!("its metadata ({})", dropped.join(", "));
    }
    format!("the metadata values {}", dropped.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trellis::JobStatus;
    use serde_json::{json, Map};

    #[test]
    fn nul_becomes_a_replacement_character_everywhere() {
        let update = StatusUpdate {
            status: JobStatus::Failed,
            error_message: Some("tool said \0".into()),
            execution_metadata: Some(Map::from_iter([(
                "outputs".to_string(),
                json!({"k\0": ["a\0b", {"deep": "\0"}], "n": 1}),
            )])),
        };
        let stored = storable_update(&update);
        assert_eq!(stored.error_message.as_deref(), Some("tool said \u{FFFD}"));
        assert_eq!(
            stored.execution_metadata.unwrap()["outputs"],
            json!({"k\u{FFFD}": ["a\u{FFFD}b", {"deep": "\u{FFFD}"}], "n": 1})
        );
    }

    #[test]
    fn a_long_error_message_keeps_its_start_and_its_end() {
        let message = format!(
            "terraform failed (exit code 1):\n{}\nError: the last line",
            "é".repeat(20_000)
        );
        let short = shortened(&message, MAX_ERROR_MESSAGE);
        assert!(short.len() < MAX_ERROR_MESSAGE + 64, "{}", short.len());
        assert!(short.starts_with("terraform failed (exit code 1):"));
        assert!(short.ends_with("Error: the last line"));
        assert!(short.contains(" cut ...] "));
        assert_eq!(shortened("short", 1024), "short");
    }

    #[test]
    fn the_biggest_metadata_goes_first_then_all_of_it() {
        let mut update = StatusUpdate::success(Map::from_iter([
            ("plan_result".to_string(), json!("x".repeat(10_000))),
            ("cost_breakdown".to_string(), json!("y".repeat(3_000))),
            ("plan_completed".to_string(), json!(true)),
        ]));
        let first = shrink_metadata(&mut update);
        assert!(
            first.starts_with("the metadata values plan_result ("),
            "{first}"
        );
        let left = update.execution_metadata.clone().unwrap();
        assert!(left.contains_key("cost_breakdown") && left.contains_key("plan_completed"));
        shrink_metadata(&mut update);
        let last = shrink_metadata(&mut update);
        assert!(last.starts_with("its metadata ("), "{last}");
        assert!(update.execution_metadata.is_none());
    }
}
