//! The process runner: every tool a job runs is started here.
//!
//! A tool runs in its own process group, with exactly the environment and
//! working directory the job gives it, stdin closed, and its stdout and
//! stderr streamed line by line into the job's log while it runs. A
//! supervisor task owns the child from spawn to reap: however a run ends
//! (the tool exits, the job is stopped, the job's future is dropped or
//! panics), the supervisor ends the tool the same way and reaps it: SIGINT
//! to the group, the grace for the whole group, SIGKILL to whatever of it is
//! left, and only then is the tool stopped. The grace is the group's, not
//! only the tool's: a process the tool started that ignores SIGINT (a
//! background job of a non-interactive shell does) outlives the tool, and
//! is killed at the end of the grace before the run returns. What a tool
//! that ends by itself leaves in its group is killed too, and so is what it
//! started outside its group (`setsid`, job control, a daemon) once no tool
//! runs any more (see `orphans`). Reading output is bounded after the tool
//! exits, so a grandchild that keeps stdout open cannot hang a job.
//!
//! A tool never outlives Tendril: the kernel SIGKILLs it when the thread
//! that started it dies (`PR_SET_PDEATHSIG`; tools are started from the
//! runtime's own worker threads, which live as long as Tendril, and never
//! from a `spawn_blocking` or `block_in_place` thread, which may end when
//! idle and would take the tool with it). So when Tendril
//! is killed, so is every Terraform it ran, and a state lock such a
//! Terraform left has a holder that is provably dead (`jobs::state_lock`).

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::orphans;
use crate::logs::{JobLog, MAX_LINE_BYTES};
use crate::secrets;
use crate::trellis::StreamType;

/// How many of a tool's last stderr lines a failure message carries.
const STDERR_TAIL_LINES: usize = 20;
/// How long output is still read after the tool itself has exited.
const READ_AFTER_EXIT: Duration = Duration::from_secs(2);
/// How long the processes sent SIGKILL (a tool's group, its orphans) get
/// to be gone.
pub(crate) const GONE_AFTER_KILL: Duration = Duration::from_secs(5);
/// How often a stopping group is looked at.
const GROUP_POLL: Duration = Duration::from_millis(50);

/// One tool run, fully described.
#[derive(Debug, Clone)]
pub struct ToolCommand {
    pub program: String,
    pub args: Vec<String>,
    /// The whole environment of the tool: nothing is inherited.
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
    /// Time between SIGINT and SIGKILL when the run is stopped.
    pub grace: Duration,
    /// Keep stdout (for a JSON answer) instead of logging it.
    pub capture_stdout: bool,
}

impl ToolCommand {
    pub fn new(
        program: &str,
        args: &[&str],
        env: BTreeMap<String, String>,
        cwd: PathBuf,
        grace: Duration,
    ) -> Self {
        ToolCommand {
            program: program.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env,
            cwd,
            grace,
            capture_stdout: false,
        }
    }

    /// Keeps stdout for the caller instead of logging it.
    pub fn capturing_stdout(mut self) -> Self {
        self.capture_stdout = true;
        self
    }

    /// How the command reads in a log line: the program and its arguments.
    pub fn display(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A finished run.
#[derive(Debug)]
pub struct ToolOutput {
    pub status: ExitStatus,
    /// Stdout, when it was captured.
    pub stdout: String,
    /// The last lines of stderr, masked.
    pub stderr_tail: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{program} is not installed or not on PATH")]
    NotFound { program: String },
    #[error("cannot start {program}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("{program} failed ({status}){}", tail_suffix(.stderr_tail))]
    Failed {
        program: String,
        status: String,
        stderr_tail: Vec<String>,
    },
    #[error("{program} was stopped before it finished")]
    Stopped {
        program: String,
        /// How it ended once stopped (`killed by signal 9`), when known.
        ended: Option<String>,
    },
    #[error("lost track of {program}: {source}")]
    Wait { program: String, source: io::Error },
}

fn tail_suffix(tail: &[String]) -> String {
    let lines: Vec<&str> = tail
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        String::new()
    } else {
        format!(":\n{}", lines.join("\n"))
    }
}

/// Describes an exit status the way an operator reads it.
pub fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("{KILLED_BY_SIGNAL}{signal}"),
        _ => "unknown exit".into(),
    }
}

const KILLED_BY_SIGNAL: &str = "killed by signal ";

/// The signal that killed a tool, from a status [`describe_status`] wrote.
pub fn killing_signal(status: &str) -> Option<i32> {
    status.strip_prefix(KILLED_BY_SIGNAL)?.parse().ok()
}

/// Refuses a program the kernel cannot start (ENOEXEC), as `posix_spawn`
/// does: a tool is started with fork and `execvp` (for [`die_with_parent`]),
/// and glibc's `execvp` would hand such a file to `/bin/sh` instead. A
/// program not found on the tool's PATH is left to the spawn to report.
fn refuse_what_exec_cannot_start(command: &ToolCommand) -> Result<(), ToolError> {
    let path = command.env.get("PATH").map(String::as_str).unwrap_or("");
    let found = match command.program.contains('/') {
        true => Some(command.cwd.join(&command.program)),
        false => std::env::split_paths(path)
            .map(|dir| command.cwd.join(dir).join(&command.program))
            .find(|candidate| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::metadata(candidate)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            }),
    };
    let mut head = [0u8; 4];
    let startable = found
        .and_then(|file| std::fs::File::open(file).ok())
        .map(|mut file| {
            use std::io::Read;
            let read = file.read(&mut head).unwrap_or(0);
            head[..read].starts_with(b"#!") || head[..read] == *b"\x7fELF"
        });
    match startable {
        Some(false) => Err(ToolError::Spawn {
            program: command.program.clone(),
            source: io::Error::from_raw_os_error(libc::ENOEXEC),
        }),
        _ => Ok(()),
    }
}

/// Asks the kernel to SIGKILL the tool when the thread that started it
/// exits (`PR_SET_PDEATHSIG` follows the thread, not the process: the
/// children of an exiting thread move to another thread of the process and
/// get the signal on the way, which is why tools are started only from the
/// runtime's own threads, see `main`). Fails the spawn if Tendril itself
/// died before the request took hold (`parent` is its PID, and the child's
/// parent is then another process): the check says nothing of the thread.
/// Runs in the child between fork and exec: system calls only.
fn die_with_parent(parent: libc::pid_t) -> io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) and getppid(2) have no memory-safety
    // preconditions and are async-signal-safe.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::getppid() != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    Ok(())
}

/// The supervisors of every running tool; the agent waits on them before
/// the process exits so that no tool is left behind unreaped.
pub fn supervisors() -> &'static TaskTracker {
    static TRACKER: OnceLock<TaskTracker> = OnceLock::new();
    TRACKER.get_or_init(TaskTracker::new)
}

/// Sends `signal` to every process of the process group `group`; nothing
/// for a group id that is not one (0 would be Tendril's own group, -1 every
/// process it may signal).
pub(crate) fn signal_group(group: i32, signal: i32) {
    if group <= 1 {
        return;
    }
    // SAFETY: kill(2) with a negative pid signals a process group; it has no
    // memory-safety preconditions.
    unsafe {
        libc::kill(-group, signal);
    }
}

/// The processes of `group` that still run (a zombie, dead and waiting for
/// its parent to reap it, does not), from `/proc`.
fn running_in_group(group: i32) -> Vec<i32> {
    // SAFETY: signal 0 only asks whether any process of the group exists.
    if group <= 1 || unsafe { libc::kill(-group, 0) } != 0 {
        return Vec::new();
    }
    orphans::processes()
        .into_iter()
        .filter(|p| p.group == group && !matches!(p.state, 'Z' | 'X'))
        .map(|p| p.pid)
        .collect()
}

/// Waits until no process of `group` runs, at most until `deadline`;
/// whether none does.
async fn group_gone_by(group: i32, deadline: Instant) -> bool {
    loop {
        if running_in_group(group).is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep_until(deadline.min(Instant::now() + GROUP_POLL)).await;
    }
}

/// SIGKILL to what is left of `group`, then waits for it to be gone (a
/// process stuck in the kernel may take a moment, or never go: it is named).
async fn kill_group(group: i32) {
    signal_group(group, libc::SIGKILL);
    if !group_gone_by(group, Instant::now() + GONE_AFTER_KILL).await {
        tracing::warn!(
            "processes {:?} of a stopped tool's group are still there {} after SIGKILL",
            running_in_group(group),
            crate::units::format_duration(GONE_AFTER_KILL)
        );
    }
}

/// Stops a tool: SIGINT to its group, then the grace for the whole group
/// (the tool and what it started), then SIGKILL to what is left. Returns the
/// tool's status once no process of the group runs.
async fn stop_group(
    child: &mut tokio::process::Child,
    group: i32,
    grace: Duration,
) -> io::Result<ExitStatus> {
    signal_group(group, libc::SIGINT);
    let deadline = Instant::now() + grace;
    let status = match tokio::time::timeout_at(deadline, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            signal_group(group, libc::SIGKILL);
            child.wait().await
        }
    };
    // The tool has ended; what it started has the rest of the grace.
    if !group_gone_by(group, deadline).await {
        kill_group(group).await;
    }
    status
}

/// Aborts a reading task if its owner goes away.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs a tool to its end, or until `stop` is cancelled. Its output goes to
/// `log`; a non-zero exit is a [`ToolError::Failed`] carrying the last
/// stderr lines.
pub async fn run(
    command: &ToolCommand,
    log: &JobLog,
    stop: &CancellationToken,
) -> Result<ToolOutput, ToolError> {
    let output = run_to_exit(command, log, stop).await?;
    if output.status.success() {
        return Ok(output);
    }
    Err(ToolError::Failed {
        program: command.program.clone(),
        status: describe_status(output.status),
        stderr_tail: output.stderr_tail,
    })
}

/// Like [`run`], for a caller that judges the exit status itself: a tool
/// that ran to its end is `Ok` whatever its status.
pub async fn run_to_exit(
    command: &ToolCommand,
    log: &JobLog,
    stop: &CancellationToken,
) -> Result<ToolOutput, ToolError> {
    let program = command.program.clone();
    if stop.is_cancelled() {
        return Err(ToolError::Stopped {
            program,
            ended: None,
        });
    }
    refuse_what_exec_cannot_start(command)?;
    let parent = std::process::id() as libc::pid_t;
    let mut child = tokio::process::Command::new(&command.program);
    // SAFETY: the hook makes system calls only (see die_with_parent).
    unsafe {
        child.pre_exec(move || die_with_parent(parent));
    }
    child
        .args(&command.args)
        .env_clear()
        .envs(&command.env)
        .current_dir(&command.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let (mut child, own_tool) =
        orphans::spawn(&mut child).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => ToolError::NotFound {
                program: program.clone(),
            },
            _ => ToolError::Spawn {
                program: program.clone(),
                source,
            },
        })?;
    // The tool leads a process group of its own.
    let group = own_tool.pid();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    // The supervisor: owns the child until it is reaped. The drop guard
    // ends the tool if this future goes away (dropped, or a panic above).
    let end_tool = CancellationToken::new();
    let _end_when_dropped = end_tool.clone().drop_guard();
    let (exit_sender, mut exit) = oneshot::channel();
    let (grace, supervised) = (command.grace, end_tool.clone());
    supervisors().spawn(async move {
        let status = tokio::select! {
            status = child.wait() => status,
            _ = supervised.cancelled() => stop_group(&mut child, group, grace).await,
        };
        // What the tool left in its group (a provider plugin, a
        // provisioner's command, after a tool killed by the OOM killer)
        // ends with it, and so does what it started outside its group.
        let orphans = own_tool.end(&mut child).await;
        let _ = exit_sender.send((status, orphans));
    });

    let readers = Readers {
        stdout: AbortOnDrop(tokio::spawn(read_stdout(
            stdout,
            log.clone(),
            command.capture_stdout,
        ))),
        stderr: AbortOnDrop(tokio::spawn(read_stderr(stderr, log.clone()))),
    };

    let exited = tokio::select! {
        ended = &mut exit => Some(ended),
        _ = stop.cancelled() => None,
    };
    let status_of = |ended: Result<(io::Result<ExitStatus>, usize), _>| {
        ended.map(|(status, orphans)| {
            if orphans > 0 {
                log.system(&format!(
                    "{orphans} processes that tools started outside their process groups (setsid, job control, a \
                     daemon) were still running after {program}: they were killed"
                ));
            }
            status
        })
    };
    let exited = exited.map(status_of);
    let Some(status) = exited else {
        log.system(&format!(
            "stopping {program}: SIGINT to its process group, SIGKILL after {}",
            crate::units::format_duration(grace)
        ));
        end_tool.cancel();
        let status = status_of(exit.await);
        readers.finish(group, log).await;
        let ended = match status {
            Ok(Ok(status)) => Some(describe_status(status)),
            _ => None,
        };
        if let Some(ended) = &ended {
            log.system(&format!("{program} stopped ({ended})"));
        }
        return Err(ToolError::Stopped { program, ended });
    };
    let (stdout, stderr_tail) = readers.finish(group, log).await;
    match status {
        Ok(Ok(status)) => Ok(ToolOutput {
            status,
            stdout,
            stderr_tail,
        }),
        Ok(Err(source)) => Err(ToolError::Wait { program, source }),
        Err(_) => Err(ToolError::Stopped {
            program,
            ended: None,
        }),
    }
}

/// The two tasks reading a tool's output.
struct Readers {
    stdout: AbortOnDrop<String>,
    stderr: AbortOnDrop<Vec<String>>,
}

impl Readers {
    /// Once the tool has exited: reads what is still in flight for a moment,
    /// then kills whatever in the group still holds the pipes open.
    async fn finish(mut self, group: i32, log: &JobLog) -> (String, Vec<String>) {
        let both = async { ((&mut self.stdout.0).await, (&mut self.stderr.0).await) };
        match tokio::time::timeout(READ_AFTER_EXIT, both).await {
            Ok((stdout, stderr)) => (stdout.unwrap_or_default(), stderr.unwrap_or_default()),
            Err(_) => {
                kill_group(group).await;
                log.system(
                    "the tool exited but left processes holding its output open; they were killed",
                );
                (String::new(), Vec::new())
            }
        }
    }
}

/// Reads one line of at most [`MAX_LINE_BYTES`] bytes (without its
/// newline); a longer line comes back in pieces, cut on a UTF-8 boundary.
/// Returns whether the line ended with this piece, or `None` at the end of
/// the stream.
async fn read_line<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    line: &mut Vec<u8>,
) -> io::Result<Option<bool>> {
    line.clear();
    loop {
        let buffer = reader.fill_buf().await?;
        if buffer.is_empty() {
            return Ok((!line.is_empty()).then_some(true));
        }
        let room = MAX_LINE_BYTES - line.len();
        let search = &buffer[..buffer.len().min(room + 1)];
        if let Some(newline) = search.iter().position(|b| *b == b'\n') {
            line.extend_from_slice(&buffer[..newline]);
            reader.consume(newline + 1);
            return Ok(Some(true));
        }
        if buffer.len() < room {
            let taken = buffer.len();
            line.extend_from_slice(buffer);
            reader.consume(taken);
            continue;
        }
        let take = match utf8_prefix(&buffer[..room]) {
            0 => room,
            whole => whole,
        };
        line.extend_from_slice(&buffer[..take]);
        reader.consume(take);
        return Ok(Some(false));
    }
}

/// The longest prefix of `bytes` that does not end inside a UTF-8 character.
fn utf8_prefix(bytes: &[u8]) -> usize {
    let len = bytes.len();
    for back in 1..=len.min(4) {
        let byte = bytes[len - back];
        if byte & 0b1100_0000 != 0b1000_0000 {
            let width = match byte {
                0xF0.. => 4,
                0xE0.. => 3,
                0xC0.. => 2,
                _ => 1,
            };
            return if width > back { len - back } else { len };
        }
    }
    len
}

/// A piece of a line as text (invalid UTF-8 decoded lossily); a line's
/// last piece loses a trailing carriage return.
fn text(line: &[u8], ended: bool) -> String {
    let text = String::from_utf8_lossy(line);
    match text.strip_suffix('\r') {
        Some(stripped) if ended => stripped.to_string(),
        _ => text.into_owned(),
    }
}

/// Reads a stream's lines into the log, masked whole even when a line comes
/// in pieces; calls `each` with every masked part logged.
async fn log_lines<R: AsyncRead + Unpin>(
    reader: R,
    log: &JobLog,
    stream: StreamType,
    mut each: impl FnMut(&str),
) {
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    let mut masker = secrets::LineMasker::default();
    while let Ok(Some(ended)) = read_line(&mut reader, &mut line).await {
        let masked = masker.feed(&text(&line, ended), ended);
        if ended || !masked.is_empty() {
            log.line(stream, &masked);
            each(&masked);
        }
    }
}

async fn read_stdout(
    stdout: Option<tokio::process::ChildStdout>,
    log: JobLog,
    capture: bool,
) -> String {
    let Some(stdout) = stdout else {
        return String::new();
    };
    let mut reader = BufReader::new(stdout);
    if capture {
        let mut bytes = Vec::new();
        if let Err(error) = reader.read_to_end(&mut bytes).await {
            log.system(&format!("reading the tool's output failed: {error}"));
        }
        return String::from_utf8_lossy(&bytes).into_owned();
    }
    log_lines(reader, &log, StreamType::Stdout, |_| {}).await;
    String::new()
}

async fn read_stderr(stderr: Option<tokio::process::ChildStderr>, log: JobLog) -> Vec<String> {
    let Some(stderr) = stderr else {
        return Vec::new();
    };
    let mut tail = VecDeque::with_capacity(STDERR_TAIL_LINES);
    log_lines(stderr, &log, StreamType::Stderr, |line| {
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.to_string());
    })
    .await;
    tail.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_id_that_is_no_tools_group_signals_nothing() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        // SIGWINCH: ignored by default by whatever else is in this group.
        let received = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(libc::SIGWINCH, received.clone()).unwrap();
        // kill(0, ...) would signal Tendril's own process group.
        signal_group(0, libc::SIGWINCH);
        std::thread::sleep(Duration::from_millis(200));
        assert!(!received.load(Ordering::SeqCst));
    }

    #[test]
    fn a_utf8_prefix_never_ends_inside_a_character() {
        let text = "abé€😀".as_bytes();
        for cut in 0..=text.len() {
            let prefix = &text[..utf8_prefix(&text[..cut])];
            assert!(std::str::from_utf8(prefix).is_ok(), "cut at {cut}");
            assert!(cut - prefix.len() < 4);
        }
    }

    #[tokio::test]
    async fn long_lines_come_back_in_pieces_and_short_ones_whole() {
        let mut input = "é".repeat(MAX_LINE_BYTES).into_bytes();
        input.extend_from_slice(b"\nshort\r\nlast");
        let mut reader = BufReader::new(&input[..]);
        let mut line = Vec::new();
        let mut pieces = Vec::new();
        while let Some(ended) = read_line(&mut reader, &mut line).await.unwrap() {
            assert!(line.len() <= MAX_LINE_BYTES);
            pieces.push((text(&line, ended), ended));
        }
        assert_eq!(
            pieces.len(),
            5,
            "two bytes per é: a line of 2 x MAX in 3 pieces, then 2 lines"
        );
        let texts: Vec<&str> = pieces.iter().map(|(text, _)| text.as_str()).collect();
        assert_eq!(texts[..3].concat(), "é".repeat(MAX_LINE_BYTES));
        assert_eq!(&texts[3..], ["short", "last"]);
        let ends: Vec<bool> = pieces.iter().map(|(_, ended)| *ended).collect();
        assert_eq!(ends, [false, false, true, true, true]);
    }
}
