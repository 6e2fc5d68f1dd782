//! A job's log: masking, line framing, the size limit, phase lines and the
//! "still running" line, in front of a destination (Trellis through the
//! spool, or the terminal for `tendril exec`).
//!
//! Every line is masked here, before it is stored or sent anywhere, so no
//! destination ever holds a registered secret.

pub mod terminal;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::secrets;
use crate::trellis::StreamType;
use crate::units::{format_duration, format_size};

/// The most a log chunk may hold, newlines included.
pub const MAX_CHUNK_BYTES: usize = 64 * 1024;
/// The longest line: a longer one is split, on a character boundary.
pub const MAX_LINE_BYTES: usize = MAX_CHUNK_BYTES - 1;

/// What takes a job's framed, masked lines on their way to Trellis (the
/// job's durable spool, which delivery implements).
pub trait LineSink: Send + Sync {
    fn push(&self, stream: StreamType, line: &str);
}

/// Where a job's lines go once they are framed and masked.
pub enum Destination {
    /// To Trellis, through the job's durable spool.
    Trellis(Arc<dyn LineSink>),
    /// To the terminal and a file, for `tendril exec`.
    Terminal(terminal::TerminalLog),
}

impl Destination {
    fn write(&self, stream: StreamType, line: &str) {
        match self {
            Destination::Trellis(spool) => spool.push(stream, line),
            Destination::Terminal(terminal) => terminal.write(stream, line),
        }
    }
}

/// The log of one running job; cheap to clone and to share with the tasks
/// that read a tool's output.
#[derive(Clone)]
pub struct JobLog {
    inner: Arc<Inner>,
}

struct Inner {
    destination: Destination,
    limit: u64,
    progress_interval: Duration,
    started: Instant,
    state: Mutex<State>,
}

struct State {
    bytes: u64,
    truncated: bool,
    last_line: Instant,
    phase: String,
}

/// A phase of a job in progress; [`Phase::finish`] logs its duration.
pub struct Phase {
    log: JobLog,
    name: String,
    started: Instant,
}

impl Phase {
    /// Logs the phase's end and returns how long it took.
    pub fn finish(self) -> Duration {
        let took = self.started.elapsed();
        self.log.system(&format!(
            "==> {} finished in {}",
            self.name,
            format_seconds(took)
        ));
        took
    }
}

fn format_seconds(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

impl JobLog {
    pub fn new(destination: Destination, limit: u64, progress_interval: Duration) -> Self {
        let now = Instant::now();
        JobLog {
            inner: Arc::new(Inner {
                destination,
                limit,
                progress_interval,
                started: now,
                state: Mutex::new(State {
                    bytes: 0,
                    truncated: false,
                    last_line: now,
                    phase: "starting".into(),
                }),
            }),
        }
    }

    /// A line of a tool's output (without its newline).
    pub fn line(&self, stream: StreamType, text: &str) {
        let masked = secrets::mask(text);
        let mut state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        state.last_line = Instant::now();
        let size = masked.len() as u64 + 1;
        if stream != StreamType::System
            && (state.truncated || state.bytes + size > self.inner.limit)
        {
            if std::mem::replace(&mut state.truncated, true) {
                return;
            }
            let notice = format!(
                "log truncated: this job's log reached its limit of {} (TENDRIL_LOG_LIMIT); \
                 further output is not sent, the job goes on",
                format_size(self.inner.limit)
            );
            self.inner.destination.write(StreamType::System, &notice);
            return;
        }
        state.bytes += size;
        crate::health::metrics().log_line(masked.len());
        for piece in split_line(&masked, MAX_LINE_BYTES) {
            self.inner.destination.write(stream, piece);
        }
    }

    /// One of Tendril's own messages about the job, as a SYSTEM line.
    pub fn system(&self, text: &str) {
        for line in text.lines() {
            self.line(StreamType::System, line);
        }
    }

    /// Starts a phase: logs `==> name` and names it in "still running" lines.
    pub fn phase(&self, name: &str) -> Phase {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .phase = name.to_string();
        self.system(&format!("==> {name}"));
        Phase {
            log: self.clone(),
            name: name.to_string(),
            started: Instant::now(),
        }
    }

    /// Runs for the life of the job: whenever the job has been silent for
    /// the progress interval, logs `still running: <phase>, <elapsed>`, so
    /// that Trellis never takes a quiet job for a dead one.
    pub async fn keep_alive(&self) {
        loop {
            let (last_line, phase) = {
                let state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
                (state.last_line, state.phase.clone())
            };
            let due = last_line + self.inner.progress_interval;
            if Instant::now() >= due {
                let elapsed = Duration::from_secs(self.inner.started.elapsed().as_secs());
                self.system(&format!(
                    "still running: {phase}, {}",
                    format_duration(elapsed)
                ));
            } else {
                tokio::time::sleep_until(due.into()).await;
            }
        }
    }
}

/// Splits a line into pieces of at most `max` bytes, on character boundaries.
pub fn split_line(text: &str, max: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    let mut first = true;
    std::iter::from_fn(move || {
        if rest.is_empty() && !std::mem::take(&mut first) {
            return None;
        }
        first = false;
        let mut end = rest.len().min(max);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(text: &str, max: usize) -> Vec<&str> {
        split_line(text, max).collect()
    }

    #[test]
    fn short_and_empty_lines_stay_whole() {
        assert_eq!(collect("hello", 10), vec!["hello"]);
        assert_eq!(collect("", 10), vec![""]);
    }

    #[test]
    fn long_lines_split_on_character_boundaries() {
        assert_eq!(collect("abcdefgh", 3), vec!["abc", "def", "gh"]);
        // "é" is two bytes: a split never cuts it.
        let pieces = collect("aéééé", 4);
        assert!(pieces.iter().all(|p| p.len() <= 4));
        assert_eq!(pieces.concat(), "aéééé");
    }
}
