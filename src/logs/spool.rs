//! A job's log spool: lines become chunks on disk, and one delivery task
//! sends the chunks to Trellis in order, one POST at a time.
//!
//! Lines are gathered into a chunk of consecutive lines of one stream (at
//! most [`MAX_CHUNK_BYTES`]); a chunk is sealed when the stream changes, when
//! it is full, or when its first line is [`FLUSH_AFTER`] old. Sealed chunks
//! are appended to `chunks.jsonl` in the job's outbox entry, and the offset of
//! the first undelivered one is kept in `chunks.offset`. Memory stays at one
//! open chunk whatever Trellis does; an outage only makes the file longer,
//! and a restarted Tendril delivers what is left. Delivery is at least once:
//! a retry after a lost answer can repeat a chunk, never skip or reorder one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::MAX_CHUNK_BYTES;
use crate::outbox::OutboxEntry;
use crate::private_files::write_private_file;
use crate::trellis::retry::{retry, RetryPolicy};
use crate::trellis::{LogChunk, StreamType, TrellisClient, TrellisError};

/// The longest a line waits in an open chunk before it is sent.
pub const FLUSH_AFTER: Duration = Duration::from_millis(500);

/// The writing side of a job's spool.
pub struct Spool {
    open: Mutex<OpenChunk>,
    wake: Notify,
    closed: AtomicBool,
}

struct OpenChunk {
    file: File,
    stream: StreamType,
    text: String,
    opened: Option<Instant>,
    write_failed: bool,
}

fn chunks_path(entry: &OutboxEntry) -> PathBuf {
    entry.dir().join("chunks.jsonl")
}

fn offset_path(entry: &OutboxEntry) -> PathBuf {
    entry.dir().join("chunks.offset")
}

impl OpenChunk {
    /// Appends the open chunk to the file as one record.
    fn seal(&mut self) {
        if self.text.is_empty() {
            return;
        }
        let chunk = LogChunk {
            log_chunk: std::mem::take(&mut self.text),
            stream_type: self.stream,
        };
        self.opened = None;
        let mut record = serde_json::to_vec(&chunk).unwrap_or_default();
        record.push(b'\n');
        if let Err(error) = self.file.write_all(&record) {
            if !std::mem::replace(&mut self.write_failed, true) {
                tracing::error!("cannot write the log spool, log lines are being lost: {error}");
            }
        }
    }
}

impl Spool {
    /// Opens (or continues) the spool of an outbox entry.
    pub fn create(entry: &OutboxEntry) -> io::Result<Spool> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(chunks_path(entry))?;
        Ok(Spool {
            open: Mutex::new(OpenChunk {
                file,
                stream: StreamType::System,
                text: String::new(),
                opened: None,
                write_failed: false,
            }),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
        })
    }

    /// Adds a line (masked, at most a chunk long, without its newline).
    pub fn push(&self, stream: StreamType, line: &str) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.stream != stream || open.text.len() + line.len() + 1 > MAX_CHUNK_BYTES {
            open.seal();
            self.wake.notify_one();
        }
        if open.opened.is_none() {
            open.opened = Some(Instant::now());
            open.stream = stream;
            self.wake.notify_one();
        }
        open.text.push_str(line);
        open.text.push('\n');
    }

    /// Seals the last chunk: nothing more will be pushed.
    pub fn close(&self) {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).seal();
        self.closed.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Waits until there may be a sealed chunk to read: one was sealed, or
    /// the open chunk came of age (then it is sealed here).
    async fn wait_for_chunk(&self) {
        let opened = self.open.lock().unwrap_or_else(|e| e.into_inner()).opened;
        match opened {
            None => self.wake.notified().await,
            Some(opened) => {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep_until((opened + FLUSH_AFTER).into()) => {
                        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
                        if open.opened.is_some_and(|o| o.elapsed() >= FLUSH_AFTER) {
                            open.seal();
                        }
                    }
                }
            }
        }
    }
}

/// Reads sealed chunks from where delivery left off.
struct ChunkReader {
    reader: BufReader<File>,
    offset: u64,
    offset_path: PathBuf,
}

impl ChunkReader {
    fn open(entry: &OutboxEntry) -> io::Result<ChunkReader> {
        let offset_path = offset_path(entry);
        let offset = fs::read_to_string(&offset_path)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0);
        let file = OpenOptions::new().read(true).open(chunks_path(entry))?;
        let mut reader = BufReader::new(file);
        reader.seek(SeekFrom::Start(offset))?;
        Ok(ChunkReader {
            reader,
            offset,
            offset_path,
        })
    }

    /// The next whole record and the offset after it; `None` at the end (a
    /// record cut short by a crash is left unread).
    fn next(&mut self) -> io::Result<Option<(LogChunk, u64)>> {
        loop {
            let mut line = String::new();
            let read = self.reader.read_line(&mut line)? as u64;
            if read == 0 || !line.ends_with('\n') {
                self.reader.seek(SeekFrom::Start(self.offset))?;
                return Ok(None);
            }
            match serde_json::from_str::<LogChunk>(&line) {
                Ok(chunk) => return Ok(Some((chunk, self.offset + read))),
                Err(error) => {
                    tracing::warn!("skipping a damaged log spool record: {error}");
                    self.commit(self.offset + read)?;
                }
            }
        }
    }

    /// Records that everything before `offset` was delivered.
    fn commit(&mut self, offset: u64) -> io::Result<()> {
        self.offset = offset;
        write_private_file(&self.offset_path, offset.to_string().as_bytes())
    }
}

/// Why delivery stopped before the end.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Trellis(#[from] TrellisError),
    #[error("log spool: {0}")]
    Io(#[from] io::Error),
}

/// Sends an entry's chunks to Trellis in order, each until it is accepted.
/// With a live spool, runs until the spool is closed and emptied; without
/// one (an entry left by an earlier run), until the file is emptied.
pub async fn deliver(
    client: &TrellisClient,
    entry: &OutboxEntry,
    spool: Option<&Spool>,
    policy: RetryPolicy,
) -> Result<(), DeliveryError> {
    if !chunks_path(entry).exists() {
        return Ok(());
    }
    let mut reader = ChunkReader::open(entry)?;
    let what = format!("sending logs of job {}", entry.job_id());
    loop {
        // Read before looking for a chunk: a spool closed by then has
        // sealed everything it will ever hold.
        let closed = spool.is_none_or(|spool| spool.closed.load(Ordering::SeqCst));
        if let Some((chunk, next)) = reader.next()? {
            match retry(policy, &what, || client.send_logs(entry.job_id(), &chunk)).await {
                Ok(()) => {}
                Err(TrellisError::Rejected { status, message }) => {
                    tracing::error!(
                        "Trellis refused a log chunk of job {} (HTTP {status}: {message}); it is dropped",
                        entry.job_id()
                    );
                }
                Err(error) => return Err(error.into()),
            }
            reader.commit(next)?;
            continue;
        }
        match spool {
            Some(spool) if !closed => spool.wait_for_chunk().await,
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::Outbox;

    fn entry() -> (PathBuf, OutboxEntry) {
        let root = std::env::temp_dir().join(format!(
            "tendril-spool-test-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let entry = Outbox::open(&root).unwrap().create_entry("job-1").unwrap();
        (root, entry)
    }

    fn read_all(entry: &OutboxEntry) -> Vec<LogChunk> {
        let mut reader = ChunkReader::open(entry).unwrap();
        let mut chunks = Vec::new();
        while let Some((chunk, next)) = reader.next().unwrap() {
            chunks.push(chunk);
            reader.commit(next).unwrap();
        }
        chunks
    }

    #[test]
    fn chunks_hold_consecutive_lines_of_one_stream() {
        let (root, entry) = entry();
        let spool = Spool::create(&entry).unwrap();
        spool.push(StreamType::Stdout, "one");
        spool.push(StreamType::Stdout, "two");
        spool.push(StreamType::Stderr, "three");
        spool.push(StreamType::Stdout, "four");
        spool.close();
        let chunks = read_all(&entry);
        let texts: Vec<_> = chunks
            .iter()
            .map(|c| (c.stream_type, c.log_chunk.as_str()))
            .collect();
        assert_eq!(
            texts,
            vec![
                (StreamType::Stdout, "one\ntwo\n"),
                (StreamType::Stderr, "three\n"),
                (StreamType::Stdout, "four\n")
            ]
        );
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn chunks_never_exceed_the_limit() {
        let (root, entry) = entry();
        let spool = Spool::create(&entry).unwrap();
        let line = "x".repeat(1000);
        for _ in 0..200 {
            spool.push(StreamType::Stdout, &line);
        }
        spool.close();
        let chunks = read_all(&entry);
        assert!(chunks.len() >= 4);
        assert!(chunks.iter().all(|c| c.log_chunk.len() <= MAX_CHUNK_BYTES));
        assert_eq!(
            chunks.iter().map(|c| c.log_chunk.len()).sum::<usize>(),
            200 * 1001
        );
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn delivery_resumes_after_the_committed_offset_and_ignores_a_cut_record() {
        let (root, entry) = entry();
        let spool = Spool::create(&entry).unwrap();
        spool.push(StreamType::Stdout, "first");
        spool.push(StreamType::Stderr, "second");
        spool.close();
        let mut reader = ChunkReader::open(&entry).unwrap();
        let (_, next) = reader.next().unwrap().unwrap();
        reader.commit(next).unwrap();
        // A crash in the middle of writing a record leaves half a line.
        let mut file = OpenOptions::new()
            .append(true)
            .open(chunks_path(&entry))
            .unwrap();
        file.write_all(b"{\"log_chunk\":\"cut").unwrap();

        let remaining = read_all(&entry);
        assert_eq!(remaining.len(), 1);
        assert_eq!(remaining[0].log_chunk, "second\n");
        fs::remove_dir_all(root).unwrap();
    }
}
