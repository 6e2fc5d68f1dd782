//! Benchmarks of the worker (figures printed, not asserted; run with
//! `cargo bench`, not by CI):
//!
//! 1. Idle cost: resident memory, threads and wakeups per second of a
//!    `tendril start` that has idled a minute against the fake Trellis.
//! 2. Log throughput: lines per second from a child process, through the log
//!    pipeline, into the fake Trellis, with the worker's peak memory.
//!
//! The job of the second is a FETCH_RESOURCES whose `aws` is a stand-in
//! script (named so below) that prints the lines and answers `{}`: only the
//! pipeline is measured, and no request leaves the machine.

// The tests' support; the benchmark uses little of it.
#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::fake_trellis::FakeTrellis;
use support::tendril::{worker_env, TendrilProcess};

const LINES: usize = 1_000_000;

fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Context switches of every thread: each is a wakeup of the process.
fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .map(|task| {
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

fn idle() {
    let trellis = FakeTrellis::start();
    let scratch = support::TempDir::new("tendril-bench-idle");
    let env = worker_env(&trellis, scratch.path());
    let mut command = env.command();
    command
        .arg("start")
        .env("TENDRIL_POLL_INTERVAL", "10s")
        .env("TENDRIL_HEARTBEAT_INTERVAL", "30s")
        .env("TENDRIL_LOG_LEVEL", "info");
    let mut tendril = TendrilProcess::spawn(command);
    let pid = tendril.pid();
    std::thread::sleep(Duration::from_secs(5));
    let before = context_switches(pid);
    std::thread::sleep(Duration::from_secs(60));
    let after = context_switches(pid);
    println!("idle after a minute (10 s poll, 30 s heartbeat):");
    println!("  resident memory   {} KiB", proc_status(pid, "VmRSS:"));
    println!("  threads           {}", proc_status(pid, "Threads:"));
    println!("  wakeups/s         {:.2}", (after - before) as f64 / 60.0);
    tendril.signal(libc::SIGTERM);
    tendril.wait_timeout(Duration::from_secs(30));
}

fn throughput() {
    let trellis = FakeTrellis::start();
    let scratch = support::TempDir::new("tendril-bench-logs");
    let tools = scratch.path().join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    let stand_in = tools.join("aws");
    std::fs::write(
        &stand_in,
        format!("#!/bin/sh\n# Benchmark stand-in for aws: the first job call prints the lines; every call answers {{}}.\n\
                 if [ \"$1\" = ec2 ] && [ ! -f {m} ]; then touch {m}; seq 1 {LINES} | sed 's/^/benchmark line /' >&2; fi\necho '{{}}'\n",
                m = scratch.path().join("printed").display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755)).unwrap();
    let env = worker_env(&trellis, &scratch.path().join("work"));
    let mut command = env.command();
    command
        .arg("start")
        .env(
            "PATH",
            format!("{}:{}", tools.display(), std::env::var("PATH").unwrap()),
        )
        .env("TENDRIL_AWS_REGIONS", "us-east-1")
        .env("TENDRIL_LOG_LEVEL", "warn");
    let mut tendril = TendrilProcess::spawn(command);
    let pid = tendril.pid();
    let job = trellis.enqueue(json!({"job_type": "FETCH_RESOURCES", "config_snapshot": {}}));
    trellis.wait_until(Duration::from_secs(60), "the first line", |t| {
        t.last_log_chunk(&job).is_some()
    });
    let started = Instant::now();
    // The terminal status goes out only after the job's last log chunk.
    trellis.wait_until(Duration::from_secs(600), "the job to end", |t| {
        t.job(&job)
            .is_some_and(|row| row["status"] == "SUCCESS" || row["status"] == "FAILED")
    });
    let took = started.elapsed();
    let delivered = trellis
        .log_text(&job)
        .lines()
        .filter(|l| l.starts_with("benchmark line "))
        .count();
    assert_eq!(
        delivered,
        LINES,
        "every line was delivered; job: {}\nlog starts: {:.2000}",
        trellis.job(&job).unwrap(),
        trellis.log_text(&job)
    );
    println!("log pipeline, {LINES} lines from a child into the fake Trellis:");
    println!(
        "  lines/s           {:.0}",
        LINES as f64 / took.as_secs_f64()
    );
    println!("  chunks            {}", trellis.logs(&job).len());
    println!("  peak memory       {} KiB", proc_status(pid, "VmHWM:"));
    tendril.signal(libc::SIGTERM);
    tendril.wait_timeout(Duration::from_secs(30));
}

fn main() {
    throughput();
    idle();
}
