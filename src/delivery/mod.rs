//! Delivery: everything Tendril owes Trellis about a job, its log lines,
//! its progress and its terminal status, taken there in order and never
//! lost on the way. Delivery sits above `logs` (it implements the log's
//! `LineSink`) and below `report` (whose Trellis arm is [`reporter`]).
//!
//! One log line, from a tool's stdout to Trellis:
//!
//! 1. `tools/process.rs` reads the tool's output line by line and hands
//!    each line to the job's log, `logs::JobLog::line` (`logs/mod.rs`),
//!    which masks every registered secret, applies the log limit, splits a
//!    line longer than a chunk and writes it to its `LineSink`.
//! 2. That sink is the job's spool ([`spool::Spool::push`], `spool.rs`):
//!    lines of one stream gather into a chunk, and a sealed chunk is
//!    appended as one record to `chunks.jsonl` in the job's outbox entry
//!    ([`outbox::OutboxEntry`], `outbox.rs`, a directory on disk). Memory
//!    holds one open chunk, whatever Trellis does.
//! 3. While the job runs, [`job_report::JobReport::deliver`]
//!    (`job_report.rs`) runs [`send::deliver_chunks`] (`send.rs`), which
//!    reads sealed records back ([`spool::ChunkReader`]) and hands each to
//!    [`send::send_chunk`], which makes it storable and sends it with
//!    `TrellisClient::send_logs` (`trellis/client/jobs.rs`) until Trellis
//!    takes it (a chunk Trellis keeps refusing is replaced by a SYSTEM line
//!    saying so); then the reader records the next offset in
//!    `chunks.offset`.
//! 4. When the job ends, `JobReport::close` seals and syncs the spool, and
//!    the same loop sends the last chunks.
//!
//! One status, from an executor to Trellis:
//!
//! 1. Progress: an executor calls `report::Reporter::progress`
//!    (`report/mod.rs`), whose Trellis arm, [`reporter::TrellisReporter`]
//!    (`reporter.rs`), pushes a PROCESSING update onto the job's
//!    [`status_queue::StatusQueue`] (`status_queue.rs`). `JobReport::deliver`
//!    sends the queue's updates one at a time, in order, through
//!    [`send::send_progress`] (`send.rs`: the job is read first, so that a
//!    cancelled job is not reopened) and `TrellisClient::update_status`.
//! 2. The terminal status: the agent hands it to `JobReport::close`, which
//!    writes it durably into the outbox entry (`terminal.json`) and closes
//!    the queue to new progress. Once the last chunk and the progress
//!    already queued are through (a PROCESSING after the terminal status
//!    would reopen the job), `JobReport::send_terminal`
//!    sends it ([`send::send_terminal`]; a refused one goes again with its
//!    biggest metadata dropped), and the entry is removed once Trellis took
//!    it.
//! 3. Whatever a finished job still owes (Trellis was down, a call was
//!    refused, Tendril was killed) stays in its entry, and the [`backlog`]
//!    (`backlog.rs`) delivers it in the background, from disk, log first
//!    and terminal status last ([`job_report::deliver_entry`]), while the
//!    next job runs and after a restart.
//!
//! Every chunk and status is made storable first (U+0000, which PostgreSQL
//! text cannot hold, is replaced), and no single refusal blocks a job's
//! delivery for good. A "job gone" answer is believed only when a second
//! read of the job agrees.

pub mod backlog;
pub mod job_report;
pub mod outbox;
pub mod reporter;
pub mod send;
pub mod spool;
pub mod status_queue;

pub use backlog::Backlog;
pub use job_report::JobReport;
pub use outbox::{Outbox, OutboxEntry};
