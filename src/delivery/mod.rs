//! Delivery: everything Tendril owes Trellis about a job, its log lines,
//! its progress and its terminal status, taken there in order and never
//! lost on the way.
//!
//! A line's way from a tool to Trellis:
//!
//! 1. The tool's output is read line by line by the process runner
//!    (`tools::process`) and handed to the job's log (`logs::JobLog`), which
//!    masks every registered secret, applies the log limit and frames it.
//! 2. The log writes the line into the job's [`spool::Spool`]: lines of one
//!    stream gather into a chunk, and a sealed chunk is appended as one
//!    record to `chunks.jsonl` in the job's [`outbox::OutboxEntry`] on disk.
//!    Memory holds one open chunk, whatever Trellis does.
//! 3. While the job runs, its [`job_report::JobReport`] reads sealed chunks
//!    from the spool and sends them one at a time ([`send`]), each until
//!    Trellis takes it, beside the job's progress updates
//!    ([`status_queue::StatusQueue`]), which go out one at a time in order.
//! 4. When the job ends its terminal status is written, durably, into the
//!    entry; the spool is sealed and synced; the last chunks go out; pending
//!    progress is dropped (a late PROCESSING would reopen the job); then the
//!    terminal status is sent, and the entry is removed once Trellis took it.
//! 5. Whatever a finished job still owes (Trellis was down, a call was
//!    refused, Tendril was killed) stays in its entry, and the [`backlog`]
//!    delivers it in the background, from disk, while the next job runs and
//!    after a restart.
//!
//! Every chunk and status is made storable first (U+0000, which PostgreSQL
//! text cannot hold, is replaced), and no single refusal blocks a job's
//! delivery for good: a chunk Trellis keeps refusing is replaced by a SYSTEM
//! line saying so, and a terminal status it refuses is sent again with its
//! biggest metadata dropped. A "job gone" answer is believed only when a
//! second read of the job agrees.

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
