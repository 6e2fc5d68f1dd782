//! The process runner, as a library, with real processes: output streaming,
//! failure messages, and the supervisor's guarantees.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::{pids_in, process_runs, TempDir};
use tendril::logs::terminal::TerminalLog;
use tendril::logs::{Destination, JobLog};
use tendril::tools::{run, ToolCommand, ToolError};
use tokio_util::sync::CancellationToken;

fn command(dir: &TempDir, script: &str) -> ToolCommand {
    let env = BTreeMap::from([("PATH".to_string(), std::env::var("PATH").unwrap())]);
    ToolCommand::new(
        "sh",
        &["-c", script],
        env,
        dir.path().to_path_buf(),
        Duration::from_secs(1),
    )
}

fn log(dir: &TempDir) -> JobLog {
    let terminal = TerminalLog::create(&dir.path().join("job.log")).unwrap();
    JobLog::new(
        Destination::Terminal(terminal),
        1 << 20,
        Duration::from_secs(60),
    )
}

fn logged(dir: &TempDir) -> String {
    std::fs::read_to_string(dir.path().join("job.log")).unwrap()
}

/// Whether the process exists, a zombie too (the tool is the test's own
/// child: reaped, it is gone).
fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// The one process id in a file a test's script wrote.
fn pid_in(file: &std::path::Path) -> i32 {
    pids_in(file)
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no pid in {}", file.display()))
}

#[tokio::test]
async fn output_streams_and_a_failure_carries_the_last_stderr_lines() {
    let dir = TempDir::new("tendril-process-test");
    let log = log(&dir);
    let stop = CancellationToken::new();
    let error = run(
        &command(&dir, "echo out; echo 'Error: it broke' >&2; exit 3"),
        &log,
        &stop,
    )
    .await
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "sh failed (exit code 3):\nError: it broke"
    );
    let text = logged(&dir);
    assert!(
        text.contains("out\n") && text.contains("stderr| Error: it broke\n"),
        "{text}"
    );
    let missing = run(
        &ToolCommand {
            program: "no-such-tool".into(),
            ..command(&dir, "")
        },
        &log,
        &stop,
    )
    .await;
    assert!(matches!(missing, Err(ToolError::NotFound { .. })));
}

#[tokio::test]
async fn a_grandchild_holding_stdout_cannot_hang_the_run() {
    let dir = TempDir::new("tendril-process-test");
    let started = Instant::now();
    let output = run(
        &command(&dir, "sleep 60 & echo started"),
        &log(&dir),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(output.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "reading stopped shortly after the exit"
    );
    assert!(logged(&dir).contains("started"));
}

/// Cancels `stop` once the job's log shows `marker` (the tool is ready).
fn stop_when_logged(dir: &TempDir, marker: &'static str) -> CancellationToken {
    let stop = CancellationToken::new();
    let (stopper, log_file) = (stop.clone(), dir.path().join("job.log"));
    tokio::spawn(async move {
        while !std::fs::read_to_string(&log_file)
            .unwrap_or_default()
            .contains(marker)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stopper.cancel();
    });
    stop
}

#[tokio::test]
async fn a_stop_sends_sigint_to_the_group_then_sigkill_after_the_grace() {
    let dir = TempDir::new("tendril-process-test");
    let stop = stop_when_logged(&dir, "ready-1");
    let script = "trap 'echo got-sigint; exit 1' INT; echo ready-1; sleep 60 & wait";
    // A test run started in the background by a non-interactive shell
    // (`cargo test &`) has SIGINT ignored, which its tools inherit, and a
    // POSIX shell cannot trap a signal ignored at its start. Tendril itself
    // handles SIGINT (shutdown.rs), so its tools start with the default;
    // so does this one.
    // SAFETY: sets the default disposition, no handler.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
    let error = run(&command(&dir, script), &log(&dir), &stop)
        .await
        .unwrap_err();
    assert!(matches!(error, ToolError::Stopped { .. }));
    assert!(
        logged(&dir).contains("got-sigint"),
        "the tool ran its SIGINT trap; log:\n{}",
        logged(&dir)
    );

    let pid_file = dir.path().join("pid");
    let stubborn = format!(
        "trap '' INT; echo $$ > {}; echo ready-2; sleep 60",
        pid_file.display()
    );
    let stop = stop_when_logged(&dir, "ready-2");
    let started = Instant::now();
    run(&command(&dir, &stubborn), &log(&dir), &stop)
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(30));
    let pid = pid_in(&pid_file);
    assert!(!alive(pid), "the tool that ignored SIGINT was killed");
}

#[tokio::test]
async fn a_stopped_tools_whole_group_is_gone_when_the_run_returns() {
    let dir = TempDir::new("tendril-process-test");
    let pid_file = dir.path().join("pids");
    // The tool dies of SIGINT at once; what it started in the background
    // ignores SIGINT (a non-interactive shell starts background jobs so):
    // one holds the tool's output open, one does not, one is a grandchild
    // (a background subshell's own background job).
    let script = format!(
        "sleep 60 & echo $! >> {pids}; sleep 60 > /dev/null 2>&1 & echo $! >> {pids}; \
         (sleep 60 > /dev/null 2>&1 & echo $! >> {pids}; wait) > /dev/null 2>&1 & \
         while [ \"$(wc -l < {pids})\" -lt 3 ]; do sleep 0.05; done; echo ready-3; wait",
        pids = pid_file.display()
    );
    // SAFETY: sets the default disposition, no handler (see above).
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
    let stop = stop_when_logged(&dir, "ready-3");
    let error = run(&command(&dir, &script), &log(&dir), &stop)
        .await
        .unwrap_err();
    assert!(matches!(error, ToolError::Stopped { .. }));
    let pids = pids_in(&pid_file);
    assert_eq!(pids.len(), 3, "{pids:?}");
    for pid in pids {
        assert!(
            !process_runs(pid),
            "process {pid} of the stopped tool is gone when the run returns"
        );
    }
}

#[tokio::test]
async fn dropping_the_run_ends_and_reaps_the_tool() {
    let dir = TempDir::new("tendril-process-test");
    let pid_file = dir.path().join("pid");
    let script = format!(
        "echo $$ > {}.tmp; mv {0}.tmp {0}; exec sleep 60",
        pid_file.display()
    );
    let log = log(&dir);
    let stop = CancellationToken::new();
    let cmd = command(&dir, &script);
    let started = async {
        while !pid_file.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        _ = run(&cmd, &log, &stop) => panic!("the tool ended by itself"),
        _ = started => {}
    }
    let pid = pid_in(&pid_file);
    tokio::time::timeout(Duration::from_secs(10), async {
        while alive(pid) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the dropped run's tool was ended and reaped");
}

/// A tool never outlives the thread that started it, and so never
/// outlives Tendril (a killed worker's Terraform is dead too): the kernel
/// kills it, even when nothing ends it the usual way. Here the run is
/// abandoned on a runtime that never runs again, so its supervisor cannot
/// stop the tool, and the thread ends.
#[test]
fn a_tool_dies_with_the_thread_that_started_it() {
    let dir = TempDir::new("tendril-process-test");
    let pid_file = dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 600", pid_file.display());
    let started = pid_file.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (log, stop) = (log(&dir), CancellationToken::new());
            let command = command(&dir, &script);
            let running = run(&command, &log, &stop);
            let written = async {
                while !started.exists() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            tokio::select! {
                _ = running => panic!("sleep 600 ended"),
                _ = written => {}
            }
        });
        std::mem::forget(runtime);
        std::mem::forget(dir);
    })
    .join()
    .unwrap();
    let pid = pid_in(&pid_file);
    let deadline = Instant::now() + Duration::from_secs(60);
    while process_runs(pid) {
        assert!(
            Instant::now() < deadline,
            "the tool outlived the thread that started it"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(pid_file.parent().unwrap());
}

/// What a tool leaves in its process group when it ends (a provider
/// plugin, a provisioner's command) ends with it.
#[tokio::test]
async fn what_a_tool_leaves_in_its_group_ends_with_it() {
    let dir = TempDir::new("tendril-process-test");
    let pid_file = dir.path().join("pid");
    let script = format!(
        "sleep 600 >/dev/null 2>&1 & echo $! > {}",
        pid_file.display()
    );
    let output = run(
        &command(&dir, &script),
        &log(&dir),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(output.status.success());
    let pid = pid_in(&pid_file);
    let deadline = Instant::now() + Duration::from_secs(60);
    while process_runs(pid) {
        assert!(Instant::now() < deadline, "the tool's leftover outlived it");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
