//! The orphans of tools: processes a tool started that left its process
//! group (`setsid`, a shell's job control, `ssh -f`, `eval $(ssh-agent)`, a
//! daemon) and so outlive the SIGKILL to the group that ends every tool run
//! (see `process`). The kernel would hand them to PID 1, where they would
//! run on beside later jobs, as the same user.
//!
//! `start` and `exec` make Tendril their reaper instead
//! ([`adopt_orphans`], `PR_SET_CHILD_SUBREAPER`): an orphaned descendant of
//! a tool becomes Tendril's child. Every tool is spawned through [`spawn`],
//! which records it as Tendril's own until it is reaped; when a tool has
//! been reaped and no other tool runs, [`end_orphans`] SIGKILLs every other
//! child Tendril has (and its process group), reaps it by its pid, and does
//! the same for the orphans that leaves, until none is left. No tool is
//! running then, so none can still be using an orphan (an ssh master
//! connection, an agent). Children in Tendril's own process group are never
//! touched: they are Tendril's own helpers (an AWS `credential_process`),
//! not a tool's. A child is reaped by its pid only, never with
//! `waitpid(-1)`, which would take the exit of a tool the runtime waits for.
//!
//! A limit of that rule: an orphan left in Tendril's own group (a
//! background process a `credential_process` leaves behind) is adopted too
//! but never reaped: once it ends it stays a zombie (no memory, a pid)
//! until Tendril exits and PID 1 reaps it.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::tools::process::GONE_AFTER_KILL;

/// How often the orphans being ended are looked at.
const POLL: Duration = Duration::from_millis(20);

/// Whether this process adopts its tools' orphans.
static ADOPTING: AtomicBool = AtomicBool::new(false);

/// The pids of the tools Tendril started and has not reaped yet.
fn tools() -> MutexGuard<'static, HashSet<i32>> {
    static TOOLS: OnceLock<Mutex<HashSet<i32>>> = OnceLock::new();
    TOOLS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Makes this process the reaper of its tools' orphans, for the rest of
/// its life (`start` and `exec` call it first).
pub fn adopt_orphans() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) has no memory-safety
    // preconditions.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong) } != 0 {
        return Err(io::Error::last_os_error());
    }
    ADOPTING.store(true, Ordering::SeqCst);
    Ok(())
}

/// A tool Tendril started (in a process group of its own), known as its
/// own (no orphan) until this is dropped, which [`OwnTool::end`] does once
/// the tool is reaped.
pub struct OwnTool(i32);

impl OwnTool {
    /// The tool's pid, which is also its process group's id (0, which
    /// signals nothing, if it had none).
    pub fn pid(&self) -> i32 {
        self.0
    }

    /// Ends a tool run: SIGKILLs what is left in the tool's process group
    /// (a provider plugin, a wrapper's program), reaps the tool (at once
    /// when its owner did; one the kernel cannot end gets
    /// [`GONE_AFTER_KILL`]), stops counting it as Tendril's own and ends
    /// the orphans it left ([`end_orphans`]); returns how many there were.
    pub async fn end(self, child: &mut tokio::process::Child) -> usize {
        crate::tools::process::signal_group(self.0, libc::SIGKILL);
        let _ = tokio::time::timeout(GONE_AFTER_KILL, child.wait()).await;
        drop(self);
        end_orphans().await
    }
}

impl Drop for OwnTool {
    fn drop(&mut self) {
        tools().remove(&self.0);
    }
}

/// Spawns a tool, recorded as Tendril's own before anything can take it
/// for an orphan.
pub fn spawn(
    command: &mut tokio::process::Command,
) -> io::Result<(tokio::process::Child, OwnTool)> {
    let mut tools = tools();
    let child = command.spawn()?;
    // A child just spawned has not been waited for: it has its id.
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .unwrap_or(0);
    tools.insert(pid);
    Ok((child, OwnTool(pid)))
}

/// One process as `/proc/<pid>/stat` describes it.
pub(crate) struct ProcessStat {
    pub pid: i32,
    /// `R`, `S`, `D`, `Z` (a zombie: dead, waiting to be reaped), ...
    pub state: char,
    pub parent: i32,
    pub group: i32,
}

/// Every process of the system, from `/proc`.
pub(crate) fn processes() -> Vec<ProcessStat> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid pgrp ...`; comm may hold anything.
            let (_, rest) = stat.rsplit_once(") ")?;
            let mut fields = rest.split(' ');
            Some(ProcessStat {
                pid,
                state: fields.next()?.chars().next()?,
                parent: fields.next()?.parse().ok()?,
                group: fields.next()?.parse().ok()?,
            })
        })
        .collect()
}

/// Tendril's children that are neither its tools nor in its own process
/// group: its tools' orphans (zombies among them), with their groups.
fn adopted_orphans(tools: &HashSet<i32>) -> Vec<ProcessStat> {
    // SAFETY: getpid(2) and getpgrp(2) cannot fail.
    let (me, my_group) = unsafe { (libc::getpid(), libc::getpgrp()) };
    processes()
        .into_iter()
        .filter(|p| p.parent == me && p.group != my_group && !tools.contains(&p.pid))
        .collect()
}

/// Reaps `pid` if it has ended; whether it is gone (reaped now, or not
/// Tendril's child any more).
fn reaped(pid: i32) -> bool {
    let mut status = 0;
    // SAFETY: waitpid(2) of one pid, with a valid pointer to an int.
    let answer = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    answer != 0
}

/// Once a tool has been reaped: when no tool runs any more, SIGKILLs and
/// reaps every orphan of a tool that Tendril adopted (and the orphans
/// those leave). Returns how many there were.
pub async fn end_orphans() -> usize {
    if !ADOPTING.load(Ordering::SeqCst) {
        return 0;
    }
    let deadline = Instant::now() + GONE_AFTER_KILL;
    let mut ending: HashMap<i32, char> = HashMap::new();
    let mut ended = 0;
    loop {
        // Any orphan there now (the orphans of one just reaped among them).
        let mut found = false;
        {
            // Under the lock no tool can start and be taken for an orphan;
            // while one runs, its end looks again.
            let tools = tools();
            if tools.is_empty() {
                for orphan in adopted_orphans(&tools) {
                    found = true;
                    if ending.insert(orphan.pid, orphan.state).is_none() {
                        ended += 1;
                        kill(orphan.pid, orphan.group);
                    }
                }
            }
        }
        ending.retain(|pid, _| !reaped(*pid));
        if !found && ending.is_empty() {
            return ended;
        }
        if Instant::now() >= deadline {
            let left: Vec<String> = ending
                .iter()
                .map(|(pid, state)| format!("{pid} ({state})"))
                .collect();
            tracing::warn!(
                "processes {} that tools left outside their process groups are still there {} after SIGKILL",
                left.join(", "),
                crate::units::format_duration(GONE_AFTER_KILL)
            );
            return ended;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// SIGKILL to an orphan, and to its process group when it leads one (what
/// it started there goes with it).
fn kill(pid: i32, group: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is a
    // child of this process that has not been reaped, so it is no other's.
    unsafe {
        if group == pid && pid > 0 {
            libc::kill(-group, libc::SIGKILL);
        }
        libc::kill(pid, libc::SIGKILL);
    }
}
