//! A job's log spool: lines become chunks, and chunks become records of
//! `chunks.jsonl` in the job's outbox entry, read back in order for sending.
//!
//! Lines are gathered into a chunk of consecutive lines of one stream (at
//! most [`MAX_CHUNK_BYTES`]); a chunk is sealed when the stream changes, when
//! it is full, or when its first line is [`FLUSH_AFTER`] old. A sealed chunk
//! is appended to the file as one JSON record and a newline; the offset of
//! the first undelivered record is kept in `chunks.offset`. Memory stays at
//! one open chunk whatever Trellis does.
//!
//! Records are read as bytes. A record that is not whole at the end of the
//! file is still being written (a live spool) or was cut by a crash (a
//! spool left by an earlier run, which is truncated there). A write that
//! fails is cut back to the last whole record; if even that fails, the next
//! record starts on a fresh line, so a fragment can never glue itself to
//! it. A record that cannot be read is reported in its place, never
//! skipped silently.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::outbox::OutboxEntry;
use crate::logs::{LineSink, MAX_CHUNK_BYTES};
use crate::private_files::{sync_dir, write_private_file};
use crate::trellis::{LogChunk, StreamType};

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
    /// The file's length after the last whole record.
    length: u64,
    /// A write failed and could not be cut back: start the next record on
    /// a fresh line.
    broken: bool,
    stream: StreamType,
    text: String,
    opened: Option<Instant>,
    /// Bytes of lines that could not be written, and why: said in a note
    /// in their place as soon as a write succeeds again.
    lost: u64,
    lost_because: String,
}

fn chunks_path(entry: &OutboxEntry) -> PathBuf {
    entry.dir().join("chunks.jsonl")
}

fn offset_path(entry: &OutboxEntry) -> PathBuf {
    entry.dir().join("chunks.offset")
}

impl OpenChunk {
    /// Appends the open chunk to the file as one record; what cannot be
    /// written is counted, and a note says so once writing works again.
    fn seal(&mut self) {
        if self.text.is_empty() {
            return;
        }
        let chunk = LogChunk {
            log_chunk: std::mem::take(&mut self.text),
            stream_type: self.stream,
        };
        self.opened = None;
        if self.lost > 0 && !self.write_lost_note() {
            self.count_lost(chunk.log_chunk.len(), None);
            return;
        }
        if let Err(error) = self.write_record(&chunk) {
            self.count_lost(chunk.log_chunk.len(), Some(error));
        }
    }

    fn count_lost(&mut self, bytes: usize, error: Option<io::Error>) {
        if self.lost == 0 {
            if let Some(error) = &error {
                tracing::error!("cannot write the log spool, log lines are being lost: {error}");
                self.lost_because = error.to_string();
            }
        }
        self.lost += bytes as u64;
    }

    /// Writes the note of the lines lost so far; true when it is written.
    fn write_lost_note(&mut self) -> bool {
        let note = LogChunk {
            log_chunk: format!(
                "[tendril] {} of this job's log could not be written to the work dir ({}) and are missing here\n",
                crate::units::format_size(self.lost),
                self.lost_because
            ),
            stream_type: StreamType::System,
        };
        let written = self.write_record(&note).is_ok();
        if written {
            self.lost = 0;
        }
        written
    }

    /// Appends one record; a failed write is cut back to the last whole
    /// record (or, if even that fails, the next record starts a new line).
    fn write_record(&mut self, chunk: &LogChunk) -> io::Result<()> {
        let mut record = Vec::with_capacity(chunk.log_chunk.len() + 48);
        if self.broken {
            record.push(b'\n');
        }
        serde_json::to_writer(&mut record, chunk)?;
        record.push(b'\n');
        match self.file.write_all(&record) {
            Ok(()) => {
                self.length += record.len() as u64;
                self.broken = false;
                Ok(())
            }
            Err(error) => {
                self.broken = self.file.set_len(self.length).is_err();
                Err(error)
            }
        }
    }
}

/// The job's log writes its lines here.
impl LineSink for Spool {
    fn push(&self, stream: StreamType, line: &str) {
        Spool::push(self, stream, line);
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
        let length = file.metadata()?.len();
        sync_dir(entry.dir())?;
        Ok(Spool {
            open: Mutex::new(OpenChunk {
                file,
                length,
                broken: false,
                stream: StreamType::System,
                text: String::new(),
                opened: None,
                lost: 0,
                lost_because: String::new(),
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

    /// Seals the last chunk and syncs the file: nothing more will be
    /// pushed, and what was is on disk before the job counts as done.
    pub fn close(&self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.seal();
        if open.lost > 0 && !open.write_lost_note() {
            tracing::error!(
                "{} of the job's log were lost: the work dir could not be written",
                crate::units::format_size(open.lost)
            );
        }
        if let Err(error) = open.file.sync_all() {
            tracing::error!("cannot sync the log spool: {error}");
        }
        drop(open);
        self.closed.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Waits until there may be a sealed chunk to read: one was sealed, or
    /// the open chunk came of age (then it is sealed here).
    pub async fn wait_for_chunk(&self) {
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

/// What the next record of a spool is.
#[derive(Debug, PartialEq)]
pub enum Record {
    /// A chunk to send.
    Chunk(LogChunk),
    /// A record of this many bytes that cannot be read (a damaged write).
    Damaged(usize),
}

/// Reads records from where delivery left off.
pub struct ChunkReader {
    reader: BufReader<File>,
    /// Where the next record starts.
    position: u64,
    offset_path: PathBuf,
    /// Whether a writer may still append (else a partial record at the end
    /// is a crash's cut, and is truncated).
    live: bool,
}

impl ChunkReader {
    /// The reader of an entry's spool; `None` when it has none.
    pub fn open(entry: &OutboxEntry, live: bool) -> io::Result<Option<ChunkReader>> {
        let offset_path = offset_path(entry);
        let offset = fs::read_to_string(&offset_path)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0);
        let file = match OpenOptions::new()
            .read(true)
            .write(!live)
            .open(chunks_path(entry))
        {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        // An offset past the end (a crash cut the file's tail after its
        // records were delivered) is the end.
        let offset = offset.min(file.metadata()?.len());
        let mut reader = BufReader::new(file);
        reader.seek(SeekFrom::Start(offset))?;
        Ok(Some(ChunkReader {
            reader,
            position: offset,
            offset_path,
            live,
        }))
    }

    /// The next whole record and the offset after it; `None` at the end.
    pub fn next_record(&mut self) -> io::Result<Option<(Record, u64)>> {
        // Lone newlines (the fresh start after a failed write) are no
        // records: passed over in a loop, as a spool may hold any number.
        let mut passed_over = false;
        loop {
            let mut bytes = Vec::new();
            let read = self.reader.read_until(b'\n', &mut bytes)? as u64;
            if read == 0 {
                return self.at_end(passed_over);
            }
            if !bytes.ends_with(b"\n") {
                if !self.live {
                    // A crash cut the last record: it never was, and the next
                    // write starts on a clean end.
                    tracing::warn!("a log spool record cut by a crash is truncated ({read} bytes)");
                    self.reader.get_ref().set_len(self.position)?;
                }
                self.reader.seek(SeekFrom::Start(self.position))?;
                return self.at_end(passed_over);
            }
            let next = self.position + read;
            self.position = next;
            match serde_json::from_slice::<LogChunk>(&bytes) {
                Ok(chunk) => return Ok(Some((Record::Chunk(chunk), next))),
                Err(_) if bytes.len() == 1 => passed_over = true,
                Err(_) => return Ok(Some((Record::Damaged(bytes.len()), next))),
            }
        }
    }

    /// No record is left: lone newlines passed over on the way are
    /// committed (before a record, its own commit covers them).
    fn at_end(&mut self, passed_over: bool) -> io::Result<Option<(Record, u64)>> {
        if passed_over {
            self.commit(self.position)?;
        }
        Ok(None)
    }

    /// Records that everything before `offset` was delivered.
    pub fn commit(&mut self, offset: u64) -> io::Result<()> {
        write_private_file(&self.offset_path, offset.to_string().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::outbox::Outbox;

    fn entry() -> (PathBuf, OutboxEntry) {
        let root = std::env::temp_dir().join(format!(
            "tendril-spool-test-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let entry = Outbox::open(&root).unwrap().create_entry("job-1").unwrap();
        (root, entry)
    }

    fn read_all(entry: &OutboxEntry, live: bool) -> Vec<Record> {
        let mut reader = ChunkReader::open(entry, live).unwrap().unwrap();
        let mut records = Vec::new();
        while let Some((record, next)) = reader.next_record().unwrap() {
            records.push(record);
            reader.commit(next).unwrap();
        }
        records
    }

    fn chunk(stream: StreamType, text: &str) -> Record {
        Record::Chunk(LogChunk {
            log_chunk: text.into(),
            stream_type: stream,
        })
    }

    fn append(entry: &OutboxEntry, bytes: &[u8]) {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(chunks_path(entry))
            .unwrap();
        file.write_all(bytes).unwrap();
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
        assert_eq!(
            read_all(&entry, false),
            vec![
                chunk(StreamType::Stdout, "one\ntwo\n"),
                chunk(StreamType::Stderr, "three\n"),
                chunk(StreamType::Stdout, "four\n")
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
        let sizes: Vec<usize> = read_all(&entry, false)
            .into_iter()
            .map(|record| match record {
                Record::Chunk(chunk) => chunk.log_chunk.len(),
                Record::Damaged(_) => panic!("damaged"),
            })
            .collect();
        assert!(sizes.len() >= 4);
        assert!(sizes.iter().all(|size| *size <= MAX_CHUNK_BYTES));
        assert_eq!(sizes.iter().sum::<usize>(), 200 * 1001);
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_record_cut_inside_a_character_is_truncated_and_delivery_goes_on() {
        let (root, entry) = entry();
        let spool = Spool::create(&entry).unwrap();
        spool.push(StreamType::Stdout, "first");
        spool.close();
        let mut reader = ChunkReader::open(&entry, false).unwrap().unwrap();
        let (_, next) = reader.next_record().unwrap().unwrap();
        reader.commit(next).unwrap();
        // A crash in the middle of a record, inside "é" (0xC3 0xA9).
        append(&entry, b"{\"log_chunk\":\"caf\xC3");
        assert!(
            read_all(&entry, false).is_empty(),
            "the cut record is no record"
        );
        assert_eq!(
            fs::metadata(chunks_path(&entry)).unwrap().len(),
            next,
            "truncated at the cut"
        );
        // The next run writes on a clean end.
        let spool = Spool::create(&entry).unwrap();
        spool.push(StreamType::Stderr, "second");
        spool.close();
        assert_eq!(
            read_all(&entry, false),
            vec![chunk(StreamType::Stderr, "second\n")]
        );
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn an_offset_past_the_end_of_a_cut_spool_reads_what_comes_after() {
        let (root, entry) = entry();
        append(
            &entry,
            b"{\"log_chunk\":\"old\\n\",\"stream_type\":\"STDOUT\"}\n",
        );
        // The tail the offset counted was lost in a crash.
        fs::write(offset_path(&entry), b"4096").unwrap();
        let mut reader = ChunkReader::open(&entry, true).unwrap().unwrap();
        assert!(
            reader.next_record().unwrap().is_none(),
            "everything before was delivered"
        );
        append(
            &entry,
            b"{\"log_chunk\":\"new\\n\",\"stream_type\":\"STDOUT\"}\n",
        );
        let (record, _) = reader.next_record().unwrap().unwrap();
        assert_eq!(record, chunk(StreamType::Stdout, "new\n"));
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_live_spool_waits_for_a_record_being_written() {
        let (root, entry) = entry();
        append(&entry, b"{\"log_chunk\":\"half");
        let mut reader = ChunkReader::open(&entry, true).unwrap().unwrap();
        assert!(reader.next_record().unwrap().is_none());
        append(&entry, b"\\n\",\"stream_type\":\"STDOUT\"}\n");
        assert_eq!(
            reader.next_record().unwrap().unwrap().0,
            chunk(StreamType::Stdout, "half\n")
        );
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn any_number_of_lone_newlines_is_passed_over() {
        // Found by tests/properties.rs: each lone newline was passed over by
        // a recursive call (and a commit), and a few thousand of them
        // overflowed the stack.
        let (root, entry) = entry();
        append(&entry, &[b'\n'; 20_000]);
        append(
            &entry,
            b"{\"log_chunk\":\"after\\n\",\"stream_type\":\"STDOUT\"}\n",
        );
        append(&entry, &[b'\n'; 20_000]);
        assert_eq!(
            read_all(&entry, false),
            vec![chunk(StreamType::Stdout, "after\n")]
        );
        let offset = fs::read_to_string(offset_path(&entry)).unwrap();
        assert_eq!(
            offset.parse::<u64>().unwrap(),
            fs::metadata(chunks_path(&entry)).unwrap().len(),
            "the newlines after the last record are committed too"
        );
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_damaged_record_is_reported_in_its_place() {
        let (root, entry) = entry();
        append(
            &entry,
            b"{\"log_chunk\":\"one\\n\",\"stream_type\":\"STDOUT\"}\n",
        );
        append(&entry, b"{\"log_ch\xFF\xFEunk\n\n");
        append(
            &entry,
            b"{\"log_chunk\":\"two\\n\",\"stream_type\":\"STDOUT\"}\n",
        );
        assert_eq!(
            read_all(&entry, false),
            vec![
                chunk(StreamType::Stdout, "one\n"),
                Record::Damaged(14),
                chunk(StreamType::Stdout, "two\n")
            ]
        );
        fs::remove_dir_all(root).unwrap();
    }
}
