//! State locks end to end: a crash never leaves a vine locked, and a lock
//! that may be alive is never touched. The compiled binary, the fake
//! Trellis (a fake), real Terraform on the fixture vine with state in real
//! moto's S3 (`use_lockfile`) or in a local directory. A stand-in first on
//! PATH records the PID of `terraform apply` and `terraform destroy` and
//! then execs the real binary, so that process is Terraform itself. A
//! Terraform, a worker, or both are SIGKILLed mid-apply, the bucket stops
//! answering, a person's Terraform holds the lock (or takes it while the
//! job's Terraform starts), two workers meet on one vine, an errored state
//! push takes its time, or what is in the bucket is hostile or unreadable:
//! what each later job finds and does, and that no lock or lease is left in
//! the bucket once the vine's jobs have ended.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::fake_trellis::FakeTrellis;
use crate::support::moto::Moto;
use crate::support::tendril::{worker_env, TendrilProcess, WorkerEnv};
use crate::support::{process_runs, write_executable, TempDir};
use crate::vine_jobs::{require_real_terraform, snapshot};

const LONG: Duration = Duration::from_secs(180);
const BUCKET: &str = "vine-terraform-state";
/// Short enough for a test, and consistent with it: the lease is renewed
/// every second (the heartbeat), and a worker that cannot renew it stops
/// Terraform after min(20s / 2, 20s * 0.9 - 5s grace - 4s cleanup) = 9s.
const SHORT_LEASE: [(&str, &str); 3] = [
    ("TENDRIL_LOCK_LEASE_EXPIRY", "20s"),
    ("TENDRIL_TERRAFORM_GRACE", "5s"),
    ("TENDRIL_STOP_CLEANUP_TIMEOUT", "4s"),
];

/// An apply (or destroy) command that prints `<name>-42` once it runs
/// (the plan shows it unexpanded) and then takes its time.
fn slow(name: &str) -> String {
    format!("echo {name}-$((40+2)); sleep 600")
}

/// What [`slow`] prints once it runs.
fn running(name: &str) -> String {
    format!("{name}-42")
}

/// A vine job for `worker` on the vine of `project`, with `settings` added
/// to its snapshot.
fn vine_job(job_type: &str, worker: &WorkerEnv, project: &str, settings: Value) -> Value {
    let mut snapshot = snapshot(project);
    if let (Some(snapshot), Some(settings)) = (snapshot.as_object_mut(), settings.as_object()) {
        snapshot.extend(settings.clone());
    }
    json!({"job_type": job_type, "vineyard_id": "vy-1", "vine_id": "vine-1",
           "assigned_worker_id": worker.id, "config_snapshot": snapshot})
}

fn key(project: &str) -> String {
    format!("vy-1/{project}-test-eu-west-1/terraform.tfstate")
}

/// The real `terraform` on PATH.
fn real_terraform() -> String {
    let found = Command::new("sh")
        .args(["-c", "command -v terraform"])
        .output()
        .unwrap()
        .stdout;
    String::from_utf8(found).unwrap().trim().to_string()
}

fn signal(pid: i32, signal: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, signal) };
}

/// This host's name, as Terraform writes it in a lock's `Who`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// The user this test (and the worker it starts) runs as.
fn user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Now, in RFC 3339, as a lock's `Created` says it.
fn now_rfc3339() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%NZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Seconds since the epoch of an HTTP date (an object's Last-Modified).
fn epoch_seconds(http_date: &str) -> f64 {
    let out = Command::new("date")
        .args(["-u", "-d", http_date, "+%s"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + LONG;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Locks {
    moto: Moto,
    trellis: FakeTrellis,
    scratch: TempDir,
    /// PATH with the stand-in first.
    path: String,
}

impl Locks {
    fn new() -> Locks {
        require_real_terraform();
        let moto = Moto::start();
        moto.aws(&["s3api", "create-bucket", "--bucket", BUCKET]);
        let scratch = TempDir::new("tendril-locks-test");
        let tools = scratch.path().join("standin");
        std::fs::create_dir_all(&tools).unwrap();
        write_executable(
            &tools.join("terraform"),
            &format!(
                "#!/bin/sh\ncase \"$1\" in apply|destroy) echo $$ > {}/terraform-$1.pid ;; esac\nexec {} \"$@\"\n",
                scratch.path().display(),
                real_terraform()
            ),
        );
        let path = format!("{}:{}", tools.display(), std::env::var("PATH").unwrap());
        Locks {
            moto,
            trellis: FakeTrellis::start(),
            scratch,
            path,
        }
    }

    /// A worker of its own (id, token, work dir), not started.
    fn worker(&self, name: &str) -> WorkerEnv {
        worker_env(&self.trellis, &self.scratch.path().join(name))
    }

    /// `tendril start` as `worker`, cloud-hosted, state in moto's bucket.
    fn start(&self, worker: &WorkerEnv, extra: &[(&str, &str)]) -> TendrilProcess {
        let mut command = self.command(worker);
        command
            .envs(self.moto.platform_env())
            .envs(self.moto.state_bucket_env())
            .env("GRAPE_WORKER_MODE", "cloud-hosted")
            .envs(extra.iter().copied());
        TendrilProcess::spawn(command)
    }

    /// `tendril start` as `worker`, self-hosted, state in `state_dir`.
    fn start_local(
        &self,
        worker: &WorkerEnv,
        state_dir: &Path,
        extra: &[(&str, &str)],
    ) -> TendrilProcess {
        let mut command = self.command(worker);
        command
            .env("TENDRIL_STATE_DIR", state_dir)
            .envs(extra.iter().copied());
        TendrilProcess::spawn(command)
    }

    fn command(&self, worker: &WorkerEnv) -> Command {
        let templates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/templates");
        let mut command = worker.command();
        command
            .arg("start")
            .env("TENDRIL_TEMPLATES_DIR", templates)
            .env("TENDRIL_RETRY_MAX_DELAY", "1s")
            .env("PATH", &self.path);
        command
    }

    /// Queues a vine job for `worker` on the vine of `project`, with
    /// `settings` added to its snapshot (`apply_command`, ...).
    fn enqueue(
        &self,
        job_type: &str,
        worker: &WorkerEnv,
        project: &str,
        settings: Value,
    ) -> String {
        self.trellis.enqueue_with_identity(
            vine_job(job_type, worker, project, settings),
            json!({"provider": "aws", "role_arn": "arn:aws:iam::262626262626:role/vintner-tendril",
                   "external_id": "ext-1"}),
        )
    }

    /// The same, for a self-hosted worker (no identity).
    fn enqueue_local(
        &self,
        job_type: &str,
        worker: &WorkerEnv,
        project: &str,
        settings: Value,
    ) -> String {
        self.trellis
            .enqueue(vine_job(job_type, worker, project, settings))
    }

    /// Queues a BOOTSTRAP on `project` whose apply holds the state (and
    /// its lock) until it is killed, and waits until it runs.
    fn start_slow_apply(&self, worker: &WorkerEnv, project: &str) -> String {
        let job = self.enqueue(
            "BOOTSTRAP",
            worker,
            project,
            json!({"apply_command": slow(project)}),
        );
        self.trellis.wait_for_log(LONG, &job, &running(project));
        job
    }

    /// Queues a quick BOOTSTRAP on `project` and waits for its SUCCESS.
    fn next_job_succeeds(&self, worker: &WorkerEnv, project: &str) -> String {
        let next = self.enqueue(
            "BOOTSTRAP",
            worker,
            project,
            json!({"apply_command": "echo recovered"}),
        );
        self.succeed(&next);
        next
    }

    fn succeed(&self, job: &str) {
        let row = self.trellis.wait_for_end(LONG, job);
        assert_eq!(
            row["status"],
            "SUCCESS",
            "{row}\n{}",
            self.trellis.log_text(job)
        );
    }

    fn fail(&self, job: &str) -> String {
        let row = self.trellis.wait_for_end(LONG, job);
        assert_eq!(
            row["status"],
            "FAILED",
            "{row}\n{}",
            self.trellis.log_text(job)
        );
        row["error_message"].as_str().unwrap().to_string()
    }

    fn lock(&self, project: &str) -> Option<Value> {
        self.moto
            .s3_object(BUCKET, &format!("{}.tflock", key(project)))
    }

    fn lease(&self, project: &str) -> Option<Value> {
        self.moto
            .s3_object(BUCKET, &format!("{}.tendril-lease", key(project)))
    }

    /// Waits until Terraform holds the state's lock and Tendril's lease
    /// names it; returns the lock's ID.
    fn wait_for_named_lock(&self, project: &str) -> String {
        let mut id = String::new();
        wait_until("the lease to name the lock", || {
            let (Some(lock), Some(lease)) = (self.lock(project), self.lease(project)) else {
                return false;
            };
            id = lock["ID"].as_str().unwrap().to_string();
            lease["lock_id"] == lock["ID"]
        });
        id
    }

    /// A lock as a person's (or another tool's) Terraform writes it on the
    /// state of `project`, created now.
    fn put_lock(&self, project: &str, id: &str, who: &str) {
        self.moto.put_s3_object(
            BUCKET,
            &format!("{}.tflock", key(project)),
            &json!({"ID": id, "Operation": "OperationTypeApply", "Info": "", "Who": who,
                    "Version": "1.11.4", "Created": now_rfc3339(),
                    "Path": format!("{BUCKET}/{}", key(project))}),
        );
    }

    /// The lease of a dead worker's job (Trellis shows it FAILED on `w-gone`)
    /// on the state of `project`; the job's id.
    fn put_dead_lease(&self, project: &str, lock_id: Option<&str>) -> String {
        let dead_job = self.trellis.insert_job(json!({
            "job_type": "BOOTSTRAP", "status": "FAILED", "worker_id": "w-gone",
            "error_message": "interrupted: Tendril stopped while running this job (it was killed or crashed)"
        }));
        self.moto.put_s3_object(
            BUCKET,
            &format!("{}.tendril-lease", key(project)),
            &json!({"lease_id": "0123456789abcdef0123456789abcdef", "job_id": dead_job, "worker_id": "w-gone",
                    "host": "gone-host", "pid": 1, "process_id": "fedcba9876543210fedcba9876543210",
                    "who": "root@gone-host", "operation": "apply", "lock_operation": "OperationTypeApply",
                    "started": "2026-01-05T10:00:00Z", "renewed": "2026-01-05T10:00:30Z",
                    "renew_every_seconds": 30, "lock_id": lock_id, "tendril_version": "0.1.0"}),
        );
        dead_job
    }

    /// Replaces the `terraform` stand-in: `cases` are the arms of a shell
    /// `case "$1" in` run before the real Terraform is exec'd.
    fn stand_in(&self, cases: &str) {
        write_executable(
            &self.scratch.path().join("standin/terraform"),
            &format!(
                "#!/bin/sh\ncase \"$1\" in apply|destroy) echo $$ > {d}/terraform-$1.pid ;; esac\ncase \"$1\" in \
                 {cases} esac\nexec {tf} \"$@\"\n",
                d = self.scratch.path().display(),
                tf = real_terraform()
            ),
        );
    }

    /// Locks and leases in the bucket.
    fn leftovers(&self) -> Vec<String> {
        self.moto
            .s3_keys(BUCKET)
            .into_iter()
            .filter(|k| k.ends_with(".tflock") || k.ends_with(".tendril-lease"))
            .collect()
    }

    /// The PID of the last `terraform <command>` (apply or destroy).
    fn terraform_pid(&self, command: &str) -> i32 {
        let file = self.scratch.path().join(format!("terraform-{command}.pid"));
        std::fs::read_to_string(file)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Locks {
    /// A worker SIGKILLed here took its Terraform with it, but not what
    /// that Terraform ran (a provisioner's `sleep`): those are ended too.
    fn drop(&mut self) {
        let Ok(processes) = std::fs::read_dir("/proc") else {
            return;
        };
        for process in processes.flatten() {
            let Ok(pid) = process.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cwd = std::fs::read_link(process.path().join("cwd")).unwrap_or_default();
            if cwd.starts_with(self.scratch.path()) {
                signal(pid, libc::SIGKILL);
            }
        }
    }
}

/// Drains a worker: exit 0.
fn drain(mut tendril: TendrilProcess) {
    tendril.signal(libc::SIGTERM);
    let status = tendril.wait_timeout(LONG).expect("the worker exits");
    assert_eq!(status.code(), Some(0), "{}", tendril.output());
}

/// A person's `terraform apply` on a vine's state, outside Tendril: it
/// holds the lock while its provisioner sleeps. Killed on drop.
struct ByHand {
    child: Child,
    dir: PathBuf,
}

impl ByHand {
    /// `backend` is the body of the configuration's `terraform {}` block.
    fn start(locks: &Locks, name: &str, backend: &str) -> ByHand {
        let dir = locks.scratch.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("main.tf"),
            format!(
                "terraform {{\n{backend}\n}}\n\nresource \"terraform_data\" \"by_hand\" {{\n  provisioner \
                 \"local-exec\" {{\n    command = \"sleep 600\"\n  }}\n}}\n"
            ),
        )
        .unwrap();
        std::fs::write(dir.join("cli.rc"), "disable_checkpoint = true\n").unwrap();
        let terraform = |args: &[&str]| {
            let mut command = Command::new(real_terraform());
            command
                .args(args)
                .current_dir(&dir)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap())
                .env("HOME", &dir)
                .env("TF_CLI_CONFIG_FILE", dir.join("cli.rc"))
                .env("CHECKPOINT_DISABLE", "1")
                .env("TF_IN_AUTOMATION", "1")
                .env("AWS_EC2_METADATA_DISABLED", "true");
            command
        };
        let init = terraform(&["init", "-input=false", "-no-color"])
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "{}",
            String::from_utf8_lossy(&init.stderr)
        );
        let log = std::fs::File::create(dir.join("apply.log")).unwrap();
        let child = terraform(&["apply", "-auto-approve", "-input=false", "-no-color"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        ByHand { child, dir }
    }

    /// The S3 backend of a vine's state in moto, as a person configures it.
    fn s3_backend(locks: &Locks, project: &str) -> String {
        format!(
            "  backend \"s3\" {{\n    bucket = \"{BUCKET}\"\n    key = \"{}\"\n    region = \"us-east-1\"\n    \
             endpoints = {{ s3 = \"{}\" }}\n    use_path_style = true\n    use_lockfile = true\n    \
             skip_credentials_validation = true\n    skip_requesting_account_id = true\n    \
             skip_metadata_api_check = true\n    skip_region_validation = true\n    access_key = \"testing\"\n    \
             secret_key = \"testing\"\n  }}",
            key(project),
            locks.moto.endpoint()
        )
    }

    fn kill(&mut self) {
        signal(-(self.child.id() as i32), libc::SIGKILL);
        let _ = self.child.wait();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("apply.log")).unwrap_or_default()
    }
}

impl Drop for ByHand {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn a_sigkilled_terraforms_lock_is_released_and_the_next_job_on_another_worker_succeeds() {
    let locks = Locks::new();
    let (a, b) = (locks.worker("a"), locks.worker("b"));
    let first = locks.start(&a, &[]);
    let job = locks.start_slow_apply(&a, "oom");
    let id = locks.lock("oom").expect("the apply holds the lock")["ID"]
        .as_str()
        .unwrap()
        .to_string();
    // What the OOM killer does to Terraform; Tendril itself lives.
    signal(locks.terraform_pid("apply"), libc::SIGKILL);
    assert_eq!(
        locks.fail(&job),
        format!("the apply was killed (signal 9); its state lock {id} was released")
    );
    let log = locks.trellis.log_text(&job);
    assert!(
        log.contains(&format!(
            "terraform apply ended without releasing its state lock {id}; it has ended, so Tendril released the lock"
        )),
        "{log}"
    );
    assert_eq!(locks.leftovers(), Vec::<String>::new());

    let second = locks.start(&b, &[]);
    locks.next_job_succeeds(&b, "oom");
    assert_eq!(locks.leftovers(), Vec::<String>::new());
    drain(first);
    drain(second);
}

#[test]
fn a_worker_sigkilled_mid_apply_releases_its_lock_when_restarted_before_it_claims() {
    let locks = Locks::new();
    let (a, b) = (locks.worker("a"), locks.worker("b"));
    let mut first = locks.start(&a, &[]);
    let job = locks.start_slow_apply(&a, "crash");
    let id = locks.wait_for_named_lock("crash");
    let terraform = locks.terraform_pid("apply");
    first.signal(libc::SIGKILL);
    first.wait_timeout(LONG).expect("the worker is dead");
    // Its Terraform died with it; what they held is still in the bucket.
    wait_until("Terraform to die with its worker", || {
        !process_runs(terraform)
    });
    assert!(locks.lock("crash").is_some() && locks.lease("crash").is_some());
    assert_eq!(locks.trellis.job(&job).unwrap()["status"], "PROCESSING");

    let restarted = locks.start(&a, &[]);
    assert_eq!(
        locks.fail(&job),
        format!(
            "interrupted: Tendril stopped while running this job (it was killed or crashed); after the restart, \
             the state lock {id} its terraform apply left was released (that Terraform died with Tendril)"
        )
    );
    assert_eq!(locks.leftovers(), Vec::<String>::new());

    let second = locks.start(&b, &[]);
    locks.next_job_succeeds(&b, "crash");
    assert_eq!(locks.leftovers(), Vec::<String>::new());
    drain(restarted);
    drain(second);
}

#[test]
fn a_dead_workers_lock_is_released_by_another_workers_job_once_its_lease_expires() {
    let locks = Locks::new();
    let (a, b) = (locks.worker("a"), locks.worker("b"));
    let mut first = locks.start(&a, &SHORT_LEASE);
    let job = locks.start_slow_apply(&a, "gone");
    let id = locks.wait_for_named_lock("gone");
    // Fargate's stop timeout, a host crash: the worker is never restarted.
    first.signal(libc::SIGKILL);
    first.wait_timeout(LONG).expect("the worker is dead");

    let mut settings = SHORT_LEASE.to_vec();
    settings.push(("TENDRIL_TERRAFORM_LOCK_TIMEOUT", "90s"));
    let second = locks.start(&b, &settings);
    let next = locks.next_job_succeeds(&b, "gone");
    let log = locks.trellis.log_text(&next);
    let holder = format!("Tendril job {job} on worker {} (host ", a.id);
    assert!(
        log.contains(&format!(
            "waiting for the state at s3://{BUCKET}/{}: it is in use by {holder}",
            key("gone")
        )),
        "it waited while the lease lived: {log}"
    );
    assert!(
        log.contains(&format!("released the state lock {id} of {holder}")),
        "{log}"
    );
    assert!(
        log.contains("its holder is dead (its lease was last renewed")
            && log.contains("longer than the lease expiry of 20s (TENDRIL_LOCK_LEASE_EXPIRY))"),
        "{log}"
    );
    assert_eq!(
        locks.trellis.job(&job).unwrap()["status"],
        "PROCESSING",
        "the expiry alone showed the holder dead"
    );
    assert_eq!(locks.leftovers(), Vec::<String>::new());
    drain(second);
}

#[test]
fn two_live_workers_on_one_vine_never_release_each_others_fresh_lock() {
    let locks = Locks::new();
    let (a, b) = (locks.worker("a"), locks.worker("b"));
    let first = locks.start(&a, &[]);
    let job = locks.enqueue(
        "BOOTSTRAP",
        &a,
        "busy",
        json!({"apply_command": "echo busy-$((40+2)); sleep 30"}),
    );
    locks.trellis.wait_for_log(LONG, &job, &running("busy"));
    let id = locks.wait_for_named_lock("busy");

    let second = locks.start(&b, &[("TENDRIL_TERRAFORM_LOCK_TIMEOUT", "5s")]);
    let plan = locks.enqueue("PLAN", &b, "busy", json!({}));
    let message = locks.fail(&plan);
    for words in [
        format!("the state at s3://{BUCKET}/{} is in use by Tendril job {job} on worker {} (host ", key("busy"), a.id),
        "running terraform apply since ".to_string(),
        "This job waited 5s (TENDRIL_TERRAFORM_LOCK_TIMEOUT) and gave up: Tendril releases a lock only when its \
         holder is provably dead."
            .to_string(),
        format!("Its state lock is held by {}@{}, for a terraform apply or destroy since ", user(), hostname()),
        format!("lock ID {id}). If that job has died, its lease expires in about "),
        "(sooner once Trellis shows that job ended) (TENDRIL_LOCK_LEASE_EXPIRY), and the next job on this state \
         after that releases its lock by itself: run this job again then."
            .to_string(),
    ] {
        assert!(message.contains(&words), "{words:?} in {message}");
    }
    assert!(
        !message.contains("force-unlock"),
        "a live lease's lock is not for an operator to release: {message}"
    );
    assert!(
        !message.contains("412") && !message.contains("PreconditionFailed"),
        "{message}"
    );
    let log = locks.trellis.log_text(&plan);
    assert!(
        log.contains(&format!(
            "waiting for the state at s3://{BUCKET}/{}: it is in use by Tendril job {job}",
            key("busy")
        )) && log.contains(&format!(
            "lock ID {id}); this job waits up to 5s (TENDRIL_TERRAFORM_LOCK_TIMEOUT)"
        )),
        "the holder and its lock are named while the job waits: {log}"
    );
    assert_eq!(
        locks.lock("busy").unwrap()["ID"],
        id.as_str(),
        "the first's lock is untouched"
    );

    locks.succeed(&job);
    assert_eq!(locks.leftovers(), Vec::<String>::new());
    drain(first);
    drain(second);
}

#[test]
fn a_lock_no_lease_covers_is_never_released_and_is_named() {
    let locks = Locks::new();
    // A person's terraform apply, killed: its lock outlives it, and no
    // lease shows that.
    let mut by_hand = ByHand::start(&locks, "by-hand", &ByHand::s3_backend(&locks, "manual"));
    wait_until("the person's terraform to take the lock", || {
        locks.lock("manual").is_some()
    });
    by_hand.kill();
    let lock = locks.lock("manual").unwrap();
    let (id, who) = (lock["ID"].as_str().unwrap(), lock["Who"].as_str().unwrap());

    let a = locks.worker("a");
    // Waiting longer than the lease expiry: an expiry says nothing of a
    // lock no lease covers.
    let mut settings = SHORT_LEASE.to_vec();
    settings.push(("TENDRIL_TERRAFORM_LOCK_TIMEOUT", "25s"));
    let worker = locks.start(&a, &settings);
    let plan = locks.enqueue("PLAN", &a, "manual", json!({}));
    let message = locks.fail(&plan);
    for words in [
        format!(
            "the state lock at s3://{BUCKET}/{}.tflock is held by {who}, for a terraform apply or destroy since ",
            key("manual")
        ),
        format!("lock ID {id}), and this job gave up waiting for it after 25s (TENDRIL_TERRAFORM_LOCK_TIMEOUT)"),
        format!("release it with `terraform force-unlock {id}` and run the job again"),
    ] {
        assert!(message.contains(&words), "{words:?} in {message}\n{}", by_hand.log());
    }
    assert!(
        !message.contains("412") && !message.contains("PreconditionFailed"),
        "{message}"
    );
    let log = locks.trellis.log_text(&plan);
    assert!(
        log.contains(&format!(
            "Terraform waits (up to 25s) for the state lock held by {who}"
        )) && log.contains("no Tendril lease covers it"),
        "named while it waited: {log}"
    );
    assert_eq!(locks.lock("manual").unwrap()["ID"], id, "never released");
    assert_eq!(
        locks.leftovers(),
        vec![format!("{}.tflock", key("manual"))],
        "no lease is left"
    );
    drain(worker);
}

#[test]
fn a_worker_that_cannot_renew_its_lease_stops_its_terraform_before_the_lease_expires() {
    let locks = Locks::new();
    let a = locks.worker("a");
    let worker = locks.start(&a, &SHORT_LEASE);
    let job = locks.start_slow_apply(&a, "cut");
    let id = locks.wait_for_named_lock("cut");
    // A partition from the state bucket: no renewal gets through.
    locks.moto.freeze();
    locks.trellis.wait_for_log(
        LONG,
        &job,
        "the lease on the state is lost (it could not be renewed for 9s",
    );
    locks
        .trellis
        .wait_for_log(LONG, &job, "terraform stopped (");
    locks.moto.thaw();
    let message = locks.fail(&job);
    assert!(
        message.starts_with("the lease on the state could not be kept (it could not be renewed for 9s: ")
            && message.contains(
                "): the apply was stopped so that it never works behind an expired lease\nit left its state lock"
            )
            && message.ends_with(&format!("{id}, which was released: the apply has ended")),
        "{message}"
    );
    assert_eq!(locks.leftovers(), Vec::<String>::new());
    drain(worker);
}

#[test]
fn a_destroy_whose_terraform_is_sigkilled_leaves_no_lock() {
    let locks = Locks::new();
    let a = locks.worker("a");
    let worker = locks.start(&a, &[]);
    let settings = json!({"apply_command": "true", "destroy_command": slow("teardown")});
    let deployed = locks.enqueue("BOOTSTRAP", &a, "torn", settings.clone());
    locks.succeed(&deployed);
    let destroy = locks.enqueue("DESTROY", &a, "torn", settings);
    locks
        .trellis
        .wait_for_log(LONG, &destroy, &running("teardown"));
    let id = locks.lock("torn").expect("the destroy holds the lock")["ID"]
        .as_str()
        .unwrap()
        .to_string();
    signal(locks.terraform_pid("destroy"), libc::SIGKILL);
    assert_eq!(
        locks.fail(&destroy),
        format!("the destroy was killed (signal 9); its state lock {id} was released")
    );
    assert_eq!(locks.leftovers(), Vec::<String>::new());
    drain(worker);
}

/// Found by experiment with Terraform 1.11: a local state's lock is an OS
/// lock on the state file, gone with its holder; only the lock's info file
/// stays behind, and the next run replaces it.
#[test]
fn a_local_state_lock_dies_with_its_terraform_and_a_live_one_is_named() {
    let locks = Locks::new();
    let state_dir = locks.scratch.path().join("state");
    let state = state_dir.join(key("local"));
    let info = state.with_file_name(".terraform.tfstate.lock.info");
    let a = locks.worker("a");
    let worker = locks.start_local(&a, &state_dir, &[("TENDRIL_TERRAFORM_LOCK_TIMEOUT", "3s")]);
    let job = locks.enqueue_local(
        "BOOTSTRAP",
        &a,
        "local",
        json!({"apply_command": slow("local")}),
    );
    locks.trellis.wait_for_log(LONG, &job, &running("local"));
    assert!(info.is_file(), "Terraform holds the local lock");
    signal(locks.terraform_pid("apply"), libc::SIGKILL);
    assert_eq!(locks.fail(&job), "terraform failed (killed by signal 9)");
    assert!(info.is_file(), "the lock's info file outlives Terraform");

    let next = locks.enqueue_local(
        "BOOTSTRAP",
        &a,
        "local",
        json!({"apply_command": "echo recovered"}),
    );
    locks.succeed(&next);
    assert!(!info.exists(), "the next run took the lock and released it");

    // A person's terraform holds the lock, alive.
    let backend = format!(
        "  backend \"local\" {{\n    path = \"{}\"\n  }}",
        state.display()
    );
    let by_hand = ByHand::start(&locks, "by-hand", &backend);
    wait_until("the person's terraform to take the lock", || info.is_file());
    let holder: Value = serde_json::from_slice(&std::fs::read(&info).unwrap()).unwrap();
    let plan = locks.enqueue_local("PLAN", &a, "local", json!({}));
    let message = locks.fail(&plan);
    let expected = format!(
        "the state at {} is locked by {}, for a terraform apply or destroy since ",
        state.display(),
        holder["Who"].as_str().unwrap()
    );
    assert!(
        message.starts_with(&expected),
        "{message}\n{}",
        by_hand.log()
    );
    assert!(
        message.ends_with(&format!(
            "lock ID {}), and this job gave up waiting for it after 3s (TENDRIL_TERRAFORM_LOCK_TIMEOUT). A local \
             state's lock is held by a running process and ends with it: run the job again once that process has \
             ended",
            holder["ID"].as_str().unwrap()
        )),
        "{message}"
    );
    drop(by_hand);
    drain(worker);
}

/// A DESTROY whose Terraform is held back until a person's lock is in
/// place on its state (taken after the job's lease, from this host, as
/// `who`): Terraform waits for it and gives up. Returns the job's error,
/// its log, and the lock IDs the lease named meanwhile.
fn destroy_meeting_a_persons_lock(
    locks: &Locks,
    project: &str,
    id: &str,
    who: &str,
) -> (String, String, Vec<Value>) {
    let dir = locks.scratch.path();
    locks.stand_in(&format!(
        "destroy) touch {d}/destroy-wants; while [ ! -e {d}/go ]; do sleep 0.1; done ;;",
        d = dir.display()
    ));
    let a = locks.worker("a");
    let worker = locks.start(&a, &[("TENDRIL_TERRAFORM_LOCK_TIMEOUT", "8s")]);
    let settings = json!({"apply_command": "true", "destroy_command": "true"});
    let deployed = locks.enqueue("BOOTSTRAP", &a, project, settings.clone());
    locks.succeed(&deployed);
    let destroy = locks.enqueue("DESTROY", &a, project, settings);
    wait_until("the destroy to start", || {
        dir.join("destroy-wants").exists()
    });
    locks.put_lock(project, id, who);
    std::fs::write(dir.join("go"), "").unwrap();
    let mut named = Vec::new();
    while !matches!(
        locks.trellis.job(&destroy).unwrap()["status"].as_str(),
        Some("SUCCESS" | "FAILED")
    ) {
        if let Some(lease) = locks.lease(project) {
            named.push(lease["lock_id"].clone());
        }
    }
    let message = locks.fail(&destroy);
    let log = locks.trellis.log_text(&destroy);
    drain(worker);
    (message, log, named)
}

#[test]
fn a_lock_another_user_on_this_host_takes_while_terraform_starts_is_neither_claimed_nor_released() {
    let locks = Locks::new();
    let id = "11111111-2222-3333-4444-555555555555";
    let who = format!("alice@{}", hostname());
    let (message, log, named) = destroy_meeting_a_persons_lock(&locks, "person", id, &who);
    assert_eq!(
        locks.lock("person").unwrap()["ID"],
        id,
        "the person's lock is untouched"
    );
    assert!(
        named.iter().all(|named| named != id),
        "the lease never named the person's lock as its own: {named:?}"
    );
    assert!(
        message.starts_with(&format!(
            "the state lock at s3://{BUCKET}/{}.tflock is held by {who}, for a terraform apply or destroy",
            key("person")
        )) && message.contains(&format!("release it with `terraform force-unlock {id}` and run the job again")),
        "{message}"
    );
    assert!(!log.contains("released"), "{log}");
    assert_eq!(locks.leftovers(), vec![format!("{}.tflock", key("person"))]);
}

/// The same lock, as if the person ran Terraform as Tendril's own user:
/// nothing in the lock tells it from the job's own, but Terraform said it
/// could not take it, so it is another's.
#[test]
fn a_lock_terraform_could_not_take_is_never_released_even_with_the_jobs_own_who() {
    let locks = Locks::new();
    let id = "66666666-7777-8888-9999-000000000000";
    let who = format!("{}@{}", user(), hostname());
    let (message, log, _) = destroy_meeting_a_persons_lock(&locks, "same-user", id, &who);
    assert_eq!(locks.lock("same-user").unwrap()["ID"], id, "never released");
    assert!(
        message.starts_with(&format!(
            "the state lock at s3://{BUCKET}/{}.tflock is held by {who}, for a terraform apply or destroy",
            key("same-user")
        )),
        "{message}"
    );
    assert!(
        !message.contains("was released") && !log.contains("Tendril released the lock"),
        "{message}\n{log}"
    );
    assert_eq!(
        locks.leftovers(),
        vec![format!("{}.tflock", key("same-user"))]
    );
}

#[test]
fn a_hostile_lock_is_named_on_one_printable_bounded_line_and_never_as_a_command() {
    let locks = Locks::new();
    let id = "abc\u{1b}[31mRED\u{7}; rm -rf ~";
    let who = format!("mallory\u{1b}[2J\u{202e}@{}", "h".repeat(5000));
    locks.put_lock("hostile", id, &who);
    let a = locks.worker("a");
    let worker = locks.start(&a, &[("TENDRIL_TERRAFORM_LOCK_TIMEOUT", "3s")]);
    let plan = locks.enqueue("PLAN", &a, "hostile", json!({}));
    let message = locks.fail(&plan);
    let clean = |text: &str| {
        !text
            .chars()
            .any(|c| c.is_control() && c != '\n' || c == '\u{202e}')
    };
    assert!(clean(&message) && !message.contains('\n'), "{message:?}");
    assert!(message.len() < 2000, "{} bytes: {message}", message.len());
    assert!(
        message.contains("is held by mallory?[2J?@hhh")
            && message.contains("h..., for a terraform apply or destroy since ")
            && message.contains("lock ID abc?[31mRED?; rm -rf ~)")
            && message.ends_with(&format!(
                "look at the lock object at s3://{BUCKET}/{}.tflock and remove it by hand (its ID is not one \
                 Terraform writes, so no command to copy is given) and run the job again",
                key("hostile")
            )),
        "{message}"
    );
    for (stream, chunk) in locks.trellis.logs(&plan) {
        // Terraform's own lines are its own; Tendril's say nothing raw.
        if stream == "SYSTEM" {
            assert!(clean(&chunk), "{chunk:?}");
        }
    }
    drain(worker);
}

/// Accepted settings, the bucket frozen right after a renewal: the worker
/// stops Terraform 10s after the start of that renewal (the settings check
/// leaves its 10s grace and 1s cleanup room before the 24s expiry), not
/// when a later renewal has timed out.
#[test]
fn no_terraform_outlives_its_lease_when_the_bucket_stops_answering_right_after_a_renewal() {
    let locks = Locks::new();
    let a = locks.worker("a");
    let settings = [
        ("TENDRIL_HEARTBEAT_INTERVAL", "5s"),
        ("TENDRIL_TERRAFORM_GRACE", "10s"),
        ("TENDRIL_STOP_CLEANUP_TIMEOUT", "1s"),
        ("TENDRIL_LOCK_LEASE_EXPIRY", "24s"),
    ];
    let worker = locks.start(&a, &settings);
    let job = locks.start_slow_apply(&a, "part");
    locks.wait_for_named_lock("part");
    let terraform = locks.terraform_pid("apply");
    let lease_key = format!("{}.tendril-lease", key("part"));
    let written = || {
        locks.moto.aws(&[
            "s3api",
            "head-object",
            "--bucket",
            BUCKET,
            "--key",
            &lease_key,
        ])["LastModified"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let before = written();
    let mut renewed = before.clone();
    wait_until("a renewal", || {
        renewed = written();
        renewed != before
    });
    locks.moto.freeze();
    wait_until("Terraform to die", || !process_runs(terraform));
    let lived = now_seconds() - epoch_seconds(&renewed);
    locks.moto.thaw();
    assert!(
        lived < 24.0,
        "Terraform died {lived:.1}s after its lease's last write, past the 24s expiry"
    );
    let message = locks.fail(&job);
    assert!(
        message.starts_with(
            "the lease on the state could not be kept (it could not be renewed for 10s: "
        ),
        "{message}"
    );
    drain(worker);
}

/// A push that ignores SIGINT and takes its time (a store that answers
/// slowly): it is stopped half-way through the stop cleanup (10s
/// cloud-hosted) and killed a quarter later, and only then is the lock
/// released, with a quarter of the cleanup of its own.
#[test]
fn an_errored_state_push_past_its_time_is_reaped_before_the_lock_is_released_and_the_job_ends() {
    let locks = Locks::new();
    let dir = locks.scratch.path();
    locks.stand_in(&format!(
        "state) if [ \"$2\" = push ]; then echo $$ > {d}/push.pid; trap '' INT; sleep 25; echo pushed >> {d}/push.log; \
         fi ;;",
        d = dir.display()
    ));
    let a = locks.worker("a");
    let worker = locks.start(&a, &[]);
    // The apply leaves an errored.tfstate, as Terraform does when it
    // cannot write its state, then takes its time.
    let job = locks.enqueue(
        "BOOTSTRAP",
        &a,
        "push",
        json!({"apply_command": format!("terraform state pull > errored.tfstate; {}", slow("push"))}),
    );
    locks.trellis.wait_for_log(LONG, &job, &running("push"));
    let id = locks.wait_for_named_lock("push");
    signal(locks.terraform_pid("apply"), libc::SIGKILL);
    let message = locks.fail(&job);
    let push: i32 = std::fs::read_to_string(dir.join("push.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!process_runs(push), "the push outlived the job");
    assert_eq!(
        message,
        format!("the apply was killed (signal 9); its state lock {id} was released")
    );
    assert_eq!(locks.leftovers(), Vec::<String>::new());
    let log = locks.trellis.log_text(&job);
    assert!(
        log.contains(
            "pushing errored.tfstate takes longer than half of TENDRIL_STOP_CLEANUP_TIMEOUT: stopping it, so that \
             the state lock can still be released in time"
        ) && log.contains("pushing errored.tfstate failed (terraform was stopped before it finished)"),
        "{log}"
    );
    assert!(
        !dir.join("push.log").exists(),
        "the push wrote nothing after it was killed"
    );
    drain(worker);
}

#[test]
fn an_unreadable_lock_object_is_named_as_such_left_alone_and_a_dead_lease_over_it_removed() {
    let locks = Locks::new();
    let garbage = locks.scratch.path().join("garbage");
    std::fs::write(&garbage, "garbage{").unwrap();
    let lock_key = format!("{}.tflock", key("odd"));
    locks.moto.aws(&[
        "s3api",
        "put-object",
        "--bucket",
        BUCKET,
        "--key",
        &lock_key,
        "--body",
        garbage.to_str().unwrap(),
    ]);
    let dead_job = locks.put_dead_lease("odd", None);
    let a = locks.worker("a");
    let worker = locks.start(&a, &[("TENDRIL_TERRAFORM_LOCK_TIMEOUT", "3s")]);
    let plan = locks.enqueue("PLAN", &a, "odd", json!({}));
    let message = locks.fail(&plan);
    let unreadable =
        format!("the object at s3://{BUCKET}/{lock_key} is not a Terraform lock Tendril can read");
    assert_eq!(
        message,
        format!(
            "Terraform could not take the state lock within 3s (TENDRIL_TERRAFORM_LOCK_TIMEOUT): {unreadable}. \
             Tendril leaves an object it cannot read alone; if no one is running Terraform on this state, look at \
             it, remove it by hand and run the job again"
        )
    );
    let log = locks.trellis.log_text(&plan);
    assert!(
        log.contains(&format!(
            "is dead (its job {dead_job} ended FAILED on that worker), but {unreadable}: Tendril leaves it alone"
        )),
        "{log}"
    );
    assert!(!log.contains("cannot be used now"), "{log}");
    assert_eq!(
        locks.leftovers(),
        vec![lock_key],
        "the dead lease is gone, the object stays"
    );
    drain(worker);
}
