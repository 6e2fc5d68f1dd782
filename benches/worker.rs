//! Benchmarks of the worker (figures printed, not asserted; run with
//! `cargo bench`, not by CI):
//!
//! 1. Idle cost: resident memory, threads and wakeups per second of a
//!    `tendril start` that has idled a minute against the fake Trellis.
//! 2. Log throughput: lines per second from a child process, through the log
//!    pipeline, into the fake Trellis, with the worker's peak memory (the
//!    median of five runs, each printed).
//! 3. The size of the release binary (also the AWS Lambda `bootstrap`), and
//!    whether it is stripped.
//! 4. A cold start: the time from exec to the first claim, with stand-in
//!    `az` and `gcloud` (scripts, named so below) that take 3 s to tell their
//!    version, as the image's Python CLIs do (the median of five runs).
//!
//! The targets are printed next to the figures they bound. A fourth part,
//! `idle-order`, run only when named (by `scripts/bench.sh idle-order`), makes
//! the list of functions the idle worker runs that the linker places first
//! (`benches/worker/idle_order.rs`).
//!
//! The job of the second is a FETCH_RESOURCES whose `aws` is a stand-in
//! script (named so below) that prints the lines and answers `{}`: only the
//! pipeline is measured, and no request leaves the machine.

// The tests' support; the benchmark uses little of it.
#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

// Beside this file, not in `benches/`, where cargo would take it for a
// benchmark of its own.
#[path = "worker/idle_order.rs"]
mod idle_order;

use std::time::{Duration, Instant};

use serde_json::json;
use support::fake_trellis::FakeTrellis;
use support::tendril::{worker_env, Tendril, TendrilProcess};

const LINES: usize = 1_000_000;
const THROUGHPUT_RUNS: usize = 5;

/// The idle worker's budget.
const TARGET_WAKEUPS_PER_SECOND: f64 = 0.5;
const TARGET_IDLE_RSS_KIB: u64 = 8 * 1024;
/// The stripped release binary's budget.
const TARGET_BINARY_BYTES: u64 = 16 * 1024 * 1024;
/// A cold start's budget, from exec to the first claim.
const TARGET_FIRST_CLAIM: Duration = Duration::from_millis(100);
const FIRST_CLAIM_RUNS: usize = 5;

/// Whether a figure is within its target, as printed beside it.
fn verdict(within: bool) -> &'static str {
    if within {
        "within"
    } else {
        "OVER"
    }
}

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
    let rss = proc_status(pid, "VmRSS:");
    let wakeups = (after - before) as f64 / 60.0;
    println!("idle after a minute (10 s poll, 30 s heartbeat):");
    println!(
        "  resident memory   {rss} KiB (target at most {TARGET_IDLE_RSS_KIB} KiB: {})",
        verdict(rss <= TARGET_IDLE_RSS_KIB)
    );
    println!(
        "    of which         {} KiB anonymous, {} KiB mapped files (the binary's and libraries' pages)",
        proc_status(pid, "RssAnon:"),
        proc_status(pid, "RssFile:")
    );
    println!("  threads           {}", proc_status(pid, "Threads:"));
    println!(
        "  wakeups/s         {wakeups:.2} (target at most {TARGET_WAKEUPS_PER_SECOND}: {})",
        verdict(wakeups <= TARGET_WAKEUPS_PER_SECOND)
    );
    tendril.signal(libc::SIGTERM);
    tendril.wait_timeout(Duration::from_secs(30));
}

/// `tendril start` against `trellis`, with `tools` first on its PATH.
fn worker_with_tools(
    trellis: &FakeTrellis,
    work: &std::path::Path,
    tools: &std::path::Path,
) -> std::process::Command {
    let mut command = worker_env(trellis, work).command();
    command.arg("start").env(
        "PATH",
        format!("{}:{}", tools.display(), std::env::var("PATH").unwrap()),
    );
    command
}

/// One run of the log pipeline: lines per second, chunks, peak KiB.
fn throughput_run() -> (f64, usize, u64) {
    let trellis = FakeTrellis::start();
    let scratch = support::TempDir::new("tendril-bench-logs");
    let tools = scratch.path().join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    support::write_executable(
        &tools.join("aws"),
        &format!("#!/bin/sh\n# Benchmark stand-in for aws: the first job call prints the lines; every call answers {{}}.\n\
                 if [ \"$1\" = ec2 ] && [ ! -f {m} ]; then touch {m}; seq 1 {LINES} | sed 's/^/benchmark line /' >&2; fi\necho '{{}}'\n",
                m = scratch.path().join("printed").display()),
    );
    let mut command = worker_with_tools(&trellis, &scratch.path().join("work"), &tools);
    command
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
    let figures = (
        LINES as f64 / took.as_secs_f64(),
        trellis.logs(&job).len(),
        proc_status(pid, "VmHWM:"),
    );
    tendril.signal(libc::SIGTERM);
    tendril.wait_timeout(Duration::from_secs(30));
    figures
}

fn throughput() {
    println!("log pipeline, {LINES} lines from a child into the fake Trellis:");
    let mut rates = Vec::new();
    for run in 1..=THROUGHPUT_RUNS {
        let (rate, chunks, peak) = throughput_run();
        println!("  run {run}: {rate:.0} lines/s, {chunks} chunks, peak memory {peak} KiB");
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!("  lines/s           {:.0} (median)", rates[rates.len() / 2]);
}

/// One cold start: the time from exec to the first claim Trellis receives.
fn first_claim_run() -> Duration {
    let trellis = FakeTrellis::start();
    let scratch = support::TempDir::new("tendril-bench-cold");
    let tools = scratch.path().join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    for slow in ["az", "gcloud"] {
        support::write_executable(
            &tools.join(slow),
            "#!/bin/sh\n# Benchmark stand-in for a Python CLI that takes 3 s to start.\nsleep 3\necho 2.67.0\n",
        );
    }
    let mut command = worker_with_tools(&trellis, &scratch.path().join("work"), &tools);
    command.env("TENDRIL_LOG_LEVEL", "warn");
    let started = Instant::now();
    let mut tendril = TendrilProcess::spawn(command);
    trellis.wait_until(Duration::from_secs(60), "the first claim", |t| {
        t.requests().iter().any(|r| r.path == "/api/jobs/claim")
    });
    let claimed = trellis
        .requests()
        .into_iter()
        .find(|r| r.path == "/api/jobs/claim")
        .map(|r| r.received_at)
        .unwrap();
    tendril.signal(libc::SIGTERM);
    tendril.wait_timeout(Duration::from_secs(30));
    claimed - started
}

fn first_claim() {
    println!("cold start, exec to the first claim (az and gcloud take 3 s to answer):");
    let mut times = Vec::new();
    for run in 1..=FIRST_CLAIM_RUNS {
        let took = first_claim_run();
        println!("  run {run}: {:.1} ms", took.as_secs_f64() * 1000.0);
        times.push(took);
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "  exec to claim     {:.1} ms (median; target below {} ms: {})",
        median.as_secs_f64() * 1000.0,
        TARGET_FIRST_CLAIM.as_millis(),
        verdict(median < TARGET_FIRST_CLAIM)
    );
}

/// Whether an ELF file has a symbol table (`.symtab`), i.e. is not stripped.
fn has_symbol_table(elf: &[u8]) -> bool {
    let word = |at: usize, len: usize| -> usize {
        elf.get(at..at + len).map_or(0, |bytes| {
            bytes
                .iter()
                .rev()
                .fold(0usize, |value, byte| (value << 8) | usize::from(*byte))
        })
    };
    // ELF64, little-endian: the section headers, their size and count, and
    // the index of the section holding their names.
    let (table, entry, count, names) = (word(0x28, 8), word(0x3a, 2), word(0x3c, 2), word(0x3e, 2));
    let name_table = word(table + names * entry + 0x18, 8);
    (0..count).any(|index| {
        let name = name_table + word(table + index * entry, 4);
        elf.get(name..name + 8) == Some(b".symtab\0".as_slice())
    })
}

fn binary_size() {
    let binary = Tendril::binary();
    let elf = std::fs::read(&binary).expect("read the tendril binary");
    let path = binary.to_string_lossy();
    let size = elf.len() as u64;
    let stripped = !has_symbol_table(&elf);
    println!("release binary ({path}):");
    println!(
        "  size              {:.1} MiB{} (target at most {} MiB stripped: {})",
        size as f64 / (1024.0 * 1024.0),
        if stripped {
            ", stripped"
        } else {
            ", NOT stripped"
        },
        TARGET_BINARY_BYTES / (1024 * 1024),
        if stripped {
            verdict(size <= TARGET_BINARY_BYTES)
        } else {
            "strip it to compare"
        }
    );
}

/// `cargo bench --bench worker [-- size|throughput|idle|first-claim|idle-order ...]`:
/// the parts named, else all but `idle-order`.
fn main() {
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let wanted = |part: &str| named.is_empty() || named.iter().any(|name| name == part);
    if std::env::var_os("TENDRIL_BENCH_BINARY").is_none() {
        println!(
            "note: measuring the benchmark's own build of tendril, whose dependencies have the \
             tests' features (other code, and not the code benches/worker/idle-functions.order names); \
             scripts/bench.sh measures the release build that ships"
        );
    }
    if wanted("size") {
        binary_size();
    }
    if wanted("throughput") {
        throughput();
    }
    if wanted("idle") {
        idle();
    }
    if wanted("first-claim") {
        first_claim();
    }
    if named.iter().any(|name| name == "idle-order") {
        idle_order::make_order_file();
    }
}
