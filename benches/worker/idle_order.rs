//! `bash scripts/bench.sh idle-order`: makes `idle-functions.order` beside
//! this file, the functions an idle `tendril start` runs, which `build.rs`
//! has the linker place together at the start of the release binary's code.
//!
//! It runs the release binary that ships, linked once more with its symbols
//! by the script (the same code and names, only not stripped; its path in
//! `TENDRIL_BENCH_BINARY`), under Valgrind's
//! callgrind, which records every function that runs, against the fake
//! Trellis: start-up, the announcement, claims that find no job, heartbeats,
//! the health and metrics endpoints asked a few times, and the drain on
//! SIGTERM.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::fake_trellis::FakeTrellis;
use crate::support::tendril::{worker_env, TendrilProcess};
use crate::support::{free_port, TempDir};

const ORDER_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/benches/worker/idle-functions.order"
);

/// The first lines of the order file: what it is, what made it and how to
/// make it again. The linker (lld) skips lines that start with `#`.
const ORDER_FILE_HEADER: &str = "\
# GENERATED: do not edit by hand.
#
# The functions an idle `tendril start` runs (start-up, claims, heartbeats,
# health and metrics, the drain), one symbol a line. build.rs has the linker
# place them together at the start of the release binary's code, which keeps
# the idle worker's resident memory small (README, \"Benchmarks\").
#
# Made by the benchmark benches/worker/idle_order.rs: the release binary,
# linked once more with its symbols, runs idle under Valgrind's callgrind
# against the fake Trellis, and every function of the binary that ran is
# listed here. Make it again (about ten minutes; needs valgrind) after
# changes to what an idle worker runs, or to the dependencies or the release
# profile, which rename symbols:
#
#     bash scripts/bench.sh idle-order
#
# A function missing from the list only lands among the rest of the code.
";

/// How long the worker idles under callgrind (about fifty times slower than
/// natively), with a poll every 2 s and a heartbeat every 5 s.
const IDLE: Duration = Duration::from_secs(40);

pub fn make_order_file() {
    let binary = std::env::var("TENDRIL_BENCH_BINARY")
        .expect("TENDRIL_BENCH_BINARY is not set: run `bash scripts/bench.sh idle-order`");
    let binary = binary.as_str();
    let elf = std::fs::read(binary).expect("read TENDRIL_BENCH_BINARY");
    assert!(
        crate::has_symbol_table(&elf),
        "{binary} is stripped: `bash scripts/bench.sh idle-order` links one that is not"
    );
    let valgrind = Command::new("valgrind").arg("--version").output();
    assert!(
        valgrind.is_ok_and(|out| out.status.success()),
        "valgrind is not installed (Debian: apt-get install valgrind)"
    );
    let trellis = FakeTrellis::start();
    let scratch = TempDir::new("tendril-bench-order");
    let profile = scratch.path().join("callgrind.out");
    let health = format!("127.0.0.1:{}", free_port());
    let env = worker_env(&trellis, &scratch.path().join("work"));
    let mut command = Command::new("valgrind");
    command
        .env_clear()
        .envs(std::env::vars_os().filter(|(key, _)| key == "PATH" || key == "HOME"))
        .envs(env.vars.iter().map(|(key, value)| (key, value)))
        .env("TENDRIL_POLL_INTERVAL", "2s")
        .env("TENDRIL_HEARTBEAT_INTERVAL", "5s")
        .env("TENDRIL_LOG_LEVEL", "info")
        .env("TENDRIL_HEALTH_ADDR", &health)
        .arg("--tool=callgrind")
        .arg("--demangle=no")
        .arg(format!("--callgrind-out-file={}", profile.display()))
        .arg(binary)
        .arg("start");
    let mut tendril = TendrilProcess::spawn(command);
    tendril.wait_for_output("announced to Trellis", Duration::from_secs(120));
    let asked = (0..4)
        .map(|_| {
            std::thread::sleep(IDLE / 4);
            ask(&health, "/healthz") && ask(&health, "/metrics")
        })
        .filter(|answered| *answered)
        .count();
    tendril.signal(libc::SIGTERM);
    let status = tendril.wait_timeout(Duration::from_secs(120));
    assert!(
        status.is_some_and(|s| s.success()),
        "the worker drained and exited 0 under callgrind; its output:\n{}",
        tendril.output()
    );
    assert_eq!(asked, 4, "the health endpoint answered every time");
    let functions = functions_run(&profile, binary);
    assert!(
        functions.len() > 100,
        "callgrind recorded the binary's functions ({} found)",
        functions.len()
    );
    let mut text = String::from(ORDER_FILE_HEADER);
    for function in &functions {
        text.push_str(function);
        text.push('\n');
    }
    std::fs::write(ORDER_FILE, text).expect("write the order file");
    println!("{} functions written to {ORDER_FILE}", functions.len());
}

/// Whether `GET path` on the worker's health address got an answer.
fn ask(address: &str, path: &str) -> bool {
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

/// The symbol names of `binary`'s functions in a callgrind profile, sorted.
///
/// The profile names each object (`ob=(n) path`) and function
/// (`fn=(n) name`) in full once, by number after that; a function belongs to
/// the object current where it is first named (`cob=`/`cfn=`: the object and
/// function of a call's callee).
fn functions_run(profile: &Path, binary: &str) -> Vec<String> {
    let text = std::fs::read_to_string(profile).expect("read the callgrind profile");
    let binary = std::fs::canonicalize(binary).expect("the binary's path");
    let mut objects = std::collections::HashMap::new();
    let (mut current, mut callee) = (String::new(), None::<String>);
    let mut functions = std::collections::BTreeSet::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (number, name) = match value.split_once(") ") {
            Some((number, name)) => (number.trim_start_matches('('), Some(name)),
            None => (value.trim_start_matches('(').trim_end_matches(')'), None),
        };
        match key {
            "ob" | "cob" => {
                if let Some(name) = name {
                    objects.insert(number.to_string(), name.to_string());
                }
                let object = objects.get(number).cloned().unwrap_or_default();
                if key == "ob" {
                    current = object;
                } else {
                    callee = Some(object);
                }
            }
            "fn" | "cfn" => {
                let object = if key == "cfn" {
                    callee.take().unwrap_or_else(|| current.clone())
                } else {
                    current.clone()
                };
                let ours = Path::new(&object) == binary;
                // Symbols only: callgrind names code without one by address.
                let symbol = |name: &&str| !name.starts_with("0x") && *name != "(below main)";
                if let Some(name) = name.filter(|name| ours && symbol(name)) {
                    functions.insert(name.split('\'').next().unwrap_or(name).to_string());
                }
            }
            _ => {}
        }
    }
    functions.into_iter().collect()
}
