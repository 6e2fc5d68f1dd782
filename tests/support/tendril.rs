//! A driver for the compiled `tendril` binary: a clean `Command`, a child
//! process guard whose stdout and stderr go to files (so nothing blocks and
//! the text can be read at any time), signals, bounded waits, and the
//! environment that points a worker at a `FakeTrellis`.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::fake_trellis::FakeTrellis;
use super::{random_hex, TempDir};

pub struct Tendril;

impl Tendril {
    /// The binary driven: the one cargo built for these targets, or the one
    /// `TENDRIL_BENCH_BINARY` names (`scripts/bench.sh` has the benchmark
    /// measure the release build that ships this way: cargo builds the
    /// benchmark's own with the dependency features of the tests).
    pub fn binary() -> std::ffi::OsString {
        std::env::var_os("TENDRIL_BENCH_BINARY")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_tendril").into())
    }

    /// The `tendril` binary with an empty environment except `PATH`, `HOME`
    /// and `RUST_BACKTRACE=0`.
    pub fn command() -> Command {
        let mut cmd = Command::new(Self::binary());
        cmd.env_clear().env("RUST_BACKTRACE", "0");
        for key in ["PATH", "HOME"] {
            if let Some(value) = std::env::var_os(key) {
                cmd.env(key, value);
            }
        }
        cmd
    }
}

/// A running `tendril`; SIGKILLed and reaped on drop if still running.
pub struct TendrilProcess {
    child: Child,
    status: Option<ExitStatus>,
    dir: TempDir,
}

impl TendrilProcess {
    pub fn spawn(mut cmd: Command) -> TendrilProcess {
        let dir = TempDir::new("tendril-proc");
        let file = |name: &str| File::create(dir.path().join(name)).expect("output file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file("stdout"))
            .stderr(file("stderr"))
            .spawn()
            .expect("spawn tendril");
        TendrilProcess {
            child,
            status: None,
            dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` (e.g. `libc::SIGTERM`) unless the process has exited.
    pub fn signal(&mut self, sig: i32) {
        if self.try_wait().is_none() {
            let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
            // SAFETY: kill(2) on our own, not yet reaped, child.
            unsafe { libc::kill(pid, sig) };
        }
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Waits up to `timeout` for the exit; `None` if still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until stdout or stderr contains `needle`; panics with the
    /// output after `timeout` (generous: this catches hangs).
    pub fn wait_for_output(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.output().contains(needle) {
            let exited = self.try_wait();
            if exited.is_some() || Instant::now() > deadline {
                let why = exited.map_or(format!("{timeout:?} passed"), |s| format!("exit {s}"));
                panic!(
                    "no {needle:?} in tendril output ({why}):\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stdout(&self) -> String {
        self.read("stdout")
    }

    pub fn stderr(&self) -> String {
        self.read("stderr")
    }

    /// stdout followed by stderr, as written so far.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout(), self.stderr())
    }

    fn read(&self, name: &str) -> String {
        let bytes = std::fs::read(self.dir.path().join(name)).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Drop for TendrilProcess {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A fresh worker registered in a `FakeTrellis`, and the environment that
/// makes `tendril` run as it.
pub struct WorkerEnv {
    pub id: String,
    pub token: String,
    pub vars: Vec<(String, String)>,
}

impl WorkerEnv {
    /// `Tendril::command()` with these variables set.
    pub fn command(&self) -> Command {
        let mut cmd = Tendril::command();
        cmd.envs(self.vars.iter().map(|(k, v)| (k, v)));
        cmd
    }
}

/// Adds a worker (`w-<random>`, `tok-<random>`) to `trellis` and returns the
/// environment for a fast-polling, debug-logging worker using `work_dir`.
pub fn worker_env(trellis: &FakeTrellis, work_dir: &Path) -> WorkerEnv {
    let (id, token) = (
        format!("w-{}", random_hex(12)),
        format!("tok-{}", random_hex(48)),
    );
    trellis.add_worker(&id, &token);
    let vars = [
        ("TRELLIS_URL", trellis.url()),
        ("GRAPE_WORKER_ID", id.clone()),
        ("GRAPE_WORKER_TOKEN", token.clone()),
        ("TENDRIL_WORK_DIR", work_dir.display().to_string()),
        ("TENDRIL_POLL_INTERVAL", "200ms".to_string()),
        ("TENDRIL_HEARTBEAT_INTERVAL", "1s".to_string()),
        ("TENDRIL_LOG_LEVEL", "debug".to_string()),
    ];
    let vars = vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    WorkerEnv { id, token, vars }
}

/// Runs `tendril exec` on `claim` (written to `dir/<name>.json`, results in
/// `dir/out-<name>/`) with `env`; returns the exit code, `result.json` and
/// the output.
pub fn exec_claim(
    dir: &Path,
    name: &str,
    claim: &serde_json::Value,
    env: &[(&str, String)],
) -> (i32, serde_json::Value, String) {
    let job_file = dir.join(format!("{name}.json"));
    std::fs::write(&job_file, claim.to_string()).unwrap();
    let out = dir.join(format!("out-{name}"));
    let mut command = Tendril::command();
    command.arg("exec").arg(&job_file).arg("--out").arg(&out);
    command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let mut process = TendrilProcess::spawn(command);
    let status = process
        .wait_timeout(Duration::from_secs(60))
        .expect("exec finished");
    let result = serde_json::from_slice(&std::fs::read(out.join("result.json")).unwrap()).unwrap();
    (status.code().unwrap_or(-1), result, process.output())
}
