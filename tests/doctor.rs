//! `tendril doctor` against real peers: the fake Trellis (the right token,
//! a wrong one, none listening), real moto (the state bucket and Tendril's
//! own AWS identity), the real tools on PATH, a strict fake of the ECS
//! agent; its JSON document, its exit codes, and secrets in no output.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::IntoResponse;

use crate::support::fake_trellis::FakeTrellis;
use crate::support::moto::{Moto, STATE_SECRET_KEY};
use crate::support::tendril::{worker_env, TendrilProcess, WorkerEnv};
use crate::support::TempDir;

/// Every check, in the order doctor prints them.
const CHECKS: [&str; 16] = [
    "settings",
    "trellis",
    "work-dir",
    "terraform",
    "helm",
    "kubectl",
    "aws",
    "gcloud",
    "az",
    "infracost",
    "state-bucket",
    "aws-identity",
    "ecs-agent",
    "vine-templates",
    "worker-template",
    "argocd-templates",
];

/// One finished `tendril doctor`.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The line of check `name`; panics with the whole output if absent.
    fn line(&self, name: &str) -> &str {
        let prefix = format!("{name}: ");
        self.stdout
            .lines()
            .find(|line| {
                line.split_once(' ')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with(&prefix))
            })
            .unwrap_or_else(|| panic!("no {name} line in:\n{}", self.stdout))
    }

    /// The mark of check `name`: ok, warning or failed.
    fn mark(&self, name: &str) -> &str {
        self.line(name)
            .split_whitespace()
            .next()
            .unwrap_or_default()
    }

    /// Asserts the exit code, and that check `name` has `mark` and says
    /// `says`.
    fn expect(&self, code: i32, name: &str, mark: &str, says: &str) {
        assert_eq!(
            (self.code, self.mark(name)),
            (code, mark),
            "{}",
            self.stdout
        );
        assert!(self.line(name).contains(says), "{}", self.stdout);
    }

    /// Fails the test when `secret` is in stdout or stderr.
    fn assert_never_shows(&self, secret: &str) {
        assert!(
            !self.stdout.contains(secret) && !self.stderr.contains(secret),
            "a secret in doctor's output:\n{}{}",
            self.stdout,
            self.stderr
        );
    }
}

/// The repository's own directory.
fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A templates directory as the image lays it out: the example vine and
/// ArgoCD applications beside this repository's worker template.
fn full_templates(scratch: &Path) -> PathBuf {
    let dir = scratch.join("templates");
    std::fs::create_dir_all(&dir).unwrap();
    let link =
        |target: PathBuf, name: &str| std::os::unix::fs::symlink(target, dir.join(name)).unwrap();
    link(repository().join("examples/templates/vine"), "vine");
    link(repository().join("examples/templates/argocd"), "argocd");
    link(repository().join("templates/worker"), "worker");
    dir
}

/// The environment of a worker of `trellis` working in `scratch/work`,
/// with templates, no cloud credentials and no instance metadata.
fn worker(trellis: &FakeTrellis, scratch: &Path) -> WorkerEnv {
    let work_dir = scratch.join("work");
    std::fs::create_dir_all(&work_dir).unwrap();
    let mut worker = worker_env(trellis, &work_dir);
    let nowhere = scratch.join("no-such-aws-file").display().to_string();
    worker.vars.extend(
        [
            (
                "TENDRIL_TEMPLATES_DIR",
                full_templates(scratch).display().to_string(),
            ),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", nowhere.clone()),
            ("AWS_SHARED_CREDENTIALS_FILE", nowhere),
        ]
        .map(|(name, value)| (name.to_string(), value)),
    );
    worker
}

/// Runs `tendril doctor ARGS` as `worker`, with `env` added (an empty value
/// removes a variable).
fn doctor(worker: &WorkerEnv, args: &[&str], env: &[(String, String)]) -> Run {
    let mut command = worker.command();
    command.arg("doctor").args(args);
    for (name, value) in env {
        match value.is_empty() {
            true => command.env_remove(name),
            false => command.env(name, value),
        };
    }
    let mut process = TendrilProcess::spawn(command);
    let status = process
        .wait_timeout(Duration::from_secs(180))
        .unwrap_or_else(|| panic!("doctor did not finish:\n{}", process.output()));
    Run {
        code: status.code().unwrap_or(-1),
        stdout: process.stdout(),
        stderr: process.stderr(),
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

#[test]
fn with_the_right_token_trellis_is_ok_nothing_changes_and_the_run_exits_0() {
    let scratch = TempDir::new("tendril-doctor");
    let trellis = FakeTrellis::start();
    let worker = worker(&trellis, scratch.path());
    let run = doctor(&worker, &[], &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.mark("trellis"), "ok");
    assert!(run.line("trellis").contains(&worker.id), "{}", run.stdout);
    for name in CHECKS {
        assert_ne!(run.mark(name), "failed", "{}", run.stdout);
    }
    // One read of a job that does not exist: no heartbeat, no claim.
    let requests: Vec<(String, String, u16)> = trellis
        .requests()
        .into_iter()
        .map(|r| (r.method, r.path, r.status))
        .collect();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let (method, path, status) = &requests[0];
    assert_eq!((method.as_str(), *status), ("GET", 404), "{requests:?}");
    assert!(path.starts_with("/api/jobs/"), "{path}");
    assert!(trellis.heartbeats(&worker.id).is_empty());
    // No lock file, no probe: the work dir is as it was.
    let left: Vec<_> = std::fs::read_dir(scratch.path().join("work"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "doctor left {left:?}");
    run.assert_never_shows(&worker.token);
}

#[test]
fn a_wrong_token_fails_the_trellis_line_naming_grape_worker_token() {
    let scratch = TempDir::new("tendril-doctor");
    let trellis = FakeTrellis::start();
    let worker = worker(&trellis, scratch.path());
    let wrong = "tok-wrong-token-for-doctor-test";
    let run = doctor(&worker, &[], &pairs(&[("GRAPE_WORKER_TOKEN", wrong)]));
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(run.mark("trellis"), "failed");
    assert!(
        run.line("trellis").contains("GRAPE_WORKER_TOKEN"),
        "{}",
        run.stdout
    );
    run.assert_never_shows(wrong);
    run.assert_never_shows(&worker.token);
}

#[test]
fn a_token_pasted_as_the_worker_id_is_masked_where_doctor_prints_the_id() {
    let scratch = TempDir::new("tendril-doctor");
    let trellis = FakeTrellis::start();
    let worker = worker(&trellis, scratch.path());
    for json in [false, true] {
        let args: &[&str] = if json { &["--json"] } else { &[] };
        let run = doctor(&worker, args, &pairs(&[("GRAPE_WORKER_ID", &worker.token)]));
        assert_eq!(run.code, 1, "{}", run.stdout);
        assert!(
            run.stdout.contains("self-hosted worker ***"),
            "{}",
            run.stdout
        );
        run.assert_never_shows(&worker.token);
    }
}

#[test]
fn an_unreachable_trellis_names_trellis_url() {
    let scratch = TempDir::new("tendril-doctor");
    let trellis = FakeTrellis::start();
    let worker = worker(&trellis, scratch.path());
    let nobody = format!("http://127.0.0.1:{}", crate::support::free_port());
    let run = doctor(&worker, &[], &pairs(&[("TRELLIS_URL", &nobody)]));
    run.expect(1, "trellis", "failed", "TRELLIS_URL");
}

#[test]
fn the_state_bucket_and_the_platform_identity_are_checked_in_moto() {
    let scratch = TempDir::new("tendril-doctor");
    let trellis = FakeTrellis::start();
    let moto = Moto::start();
    let worker = worker(&trellis, scratch.path());
    let mut env = moto.state_bucket_env();
    env.extend(moto.platform_env());
    env.extend(pairs(&[("GRAPE_WORKER_MODE", "cloud-hosted")]));

    // moto takes any keys, but it does refuse a bucket that does not exist.
    let missing = doctor(&worker, &[], &env);
    assert_eq!(missing.code, 1, "{}", missing.stdout);
    assert_eq!(missing.mark("state-bucket"), "failed");
    assert!(
        missing
            .line("state-bucket")
            .contains("the bucket does not exist")
            && missing
                .line("state-bucket")
                .contains("create the bucket vine-terraform-state"),
        "{}",
        missing.stdout
    );

    moto.aws(&["s3api", "create-bucket", "--bucket", "vine-terraform-state"]);
    let run = doctor(&worker, &[], &env);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.mark("state-bucket"), "ok");
    assert_eq!(run.mark("aws-identity"), "ok");
    assert!(
        run.line("aws-identity").contains("123456789012"),
        "{}",
        run.stdout
    );
    for run in [&missing, &run] {
        run.assert_never_shows(STATE_SECRET_KEY);
        run.assert_never_shows(&worker.token);
    }
}

#[test]
fn without_aws_credentials_a_cloud_hosted_worker_fails_and_a_self_hosted_one_is_warned() {
    let scratch = TempDir::new("tendril-doctor");
    let trellis = FakeTrellis::start();
    let moto = Moto::start();
    moto.aws(&["s3api", "create-bucket", "--bucket", "vine-terraform-state"]);
    let worker = worker(&trellis, scratch.path());
    let mut cloud = moto.state_bucket_env();
    cloud.extend(pairs(&[("GRAPE_WORKER_MODE", "cloud-hosted")]));
    let run = doctor(&worker, &[], &cloud);
    run.expect(1, "aws-identity", "failed", "GetCallerIdentity");

    let run = doctor(&worker, &[], &[]);
    assert_eq!(
        (run.code, run.mark("aws-identity")),
        (0, "warning"),
        "{}",
        run.stdout
    );
}

#[test]
fn json_is_one_document_with_every_check() {
    let scratch = TempDir::new("tendril-doctor");
    let trellis = FakeTrellis::start();
    let worker = worker(&trellis, scratch.path());
    let run = doctor(&worker, &["--json"], &[]);
    let document: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", run.stdout));
    assert_eq!(document["exit_code"], run.code);
    assert_eq!(document["mode"], "self-hosted");
    let checks = document["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, CHECKS);
    for check in checks {
        let mark = check["mark"].as_str().unwrap();
        assert!(["ok", "warning", "failed"].contains(&mark), "{check}");
        assert!(check["detail"].is_string(), "{check}");
        assert_eq!(check["hint"].is_null(), mark == "ok", "{check}");
    }
    run.assert_never_shows(&worker.token);
}

#[test]
fn a_tool_missing_from_path_is_reported() {
    let scratch = TempDir::new("tendril-doctor");
    let trellis = FakeTrellis::start();
    let worker = worker(&trellis, scratch.path());
    let bin = scratch.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink("/usr/local/bin/terraform", bin.join("terraform")).unwrap();
    let only_terraform = bin.display().to_string();
    let run = doctor(&worker, &[], &pairs(&[("PATH", &only_terraform)]));
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.mark("terraform"), "ok");
    assert_eq!(run.mark("helm"), "warning");
    assert!(
        run.line("helm").contains("missing from PATH"),
        "{}",
        run.stdout
    );

    std::fs::remove_file(bin.join("terraform")).unwrap();
    let run = doctor(&worker, &[], &pairs(&[("PATH", &only_terraform)]));
    run.expect(1, "terraform", "failed", "install terraform (1.10");
}

/// A FAKE of the ECS agent's task protection endpoint that answers GET
/// with the task's state and records every method it is called with.
fn fake_ecs_agent(methods: Arc<Mutex<Vec<String>>>) -> crate::support::http_fake::HttpFake {
    use axum::http::Method;
    crate::support::http_fake::HttpFake::serve(move |_| {
        axum::Router::new().route(
            "/v3/task-1/task-protection/v1/state",
            axum::routing::any(move |method: Method| async move {
                methods.lock().unwrap().push(method.to_string());
                match method {
                    Method::GET => axum::Json(serde_json::json!({"protection": {
                        "ProtectionEnabled": false,
                        "TaskArn": "arn:aws:ecs:us-east-1:123456789012:task/pool/task-1",
                    }}))
                    .into_response(),
                    _ => axum::http::StatusCode::METHOD_NOT_ALLOWED.into_response(),
                }
            }),
        )
    })
}

#[test]
fn the_ecs_agent_is_read_and_never_changed() {
    let scratch = TempDir::new("tendril-doctor");
    let trellis = FakeTrellis::start();
    let worker = worker(&trellis, scratch.path());
    let methods = Arc::new(Mutex::new(Vec::new()));
    let agent = fake_ecs_agent(methods.clone());
    let uri = format!("{}/v3/task-1", agent.url());
    let run = doctor(&worker, &[], &pairs(&[("ECS_AGENT_URI", &uri)]));
    assert_eq!(
        (run.code, run.mark("ecs-agent")),
        (0, "ok"),
        "{}",
        run.stdout
    );
    assert!(
        run.line("ecs-agent")
            .contains("task/pool/task-1: scale-in protection off"),
        "{}",
        run.stdout
    );
    assert_eq!(*methods.lock().unwrap(), ["GET"]);

    let nobody = format!("http://127.0.0.1:{}/v3/task-1", crate::support::free_port());
    let run = doctor(&worker, &[], &pairs(&[("ECS_AGENT_URI", &nobody)]));
    assert_eq!(
        (run.code, run.mark("ecs-agent")),
        (0, "warning"),
        "{}",
        run.stdout
    );
}

#[test]
fn invalid_settings_exit_2_after_the_whole_report() {
    let scratch = TempDir::new("tendril-doctor");
    let trellis = FakeTrellis::start();
    let worker = worker(&trellis, scratch.path());
    let run = doctor(&worker, &[], &pairs(&[("TENDRIL_POLL_INTERVAL", "soon")]));
    run.expect(2, "settings", "failed", "TENDRIL_POLL_INTERVAL");
    for name in CHECKS {
        run.line(name);
    }
    // The rule `start` applies: a cloud-hosted worker needs the bucket.
    let run = doctor(
        &worker,
        &[],
        &pairs(&[("GRAPE_WORKER_MODE", "cloud-hosted")]),
    );
    run.expect(2, "settings", "failed", "SUPABASE_S3_ENDPOINT");
    // Only what clap cannot parse stops doctor before any check.
    let run = doctor(&worker, &["--no-such-flag"], &[]);
    assert_eq!((run.code, run.stdout.as_str()), (2, ""), "{}", run.stderr);
}

#[test]
fn a_work_dir_short_of_space_fails_and_a_missing_one_is_not_created() {
    let scratch = TempDir::new("tendril-doctor");
    let trellis = FakeTrellis::start();
    let worker = worker(&trellis, scratch.path());
    let run = doctor(
        &worker,
        &[],
        &pairs(&[("TENDRIL_MIN_FREE_SPACE", "1000000000GiB")]),
    );
    run.expect(1, "work-dir", "failed", "TENDRIL_MIN_FREE_SPACE");

    let later = scratch.path().join("not-yet").join("work");
    let run = doctor(
        &worker,
        &[],
        &pairs(&[("TENDRIL_WORK_DIR", &later.display().to_string())]),
    );
    run.expect(0, "work-dir", "ok", "does not exist yet");
    assert!(!scratch.path().join("not-yet").exists());
}

#[test]
fn doctor_runs_beside_a_running_worker() {
    let scratch = TempDir::new("tendril-doctor");
    let trellis = FakeTrellis::start();
    let worker = worker(&trellis, scratch.path());
    let mut running = TendrilProcess::spawn({
        let mut command = worker.command();
        command.arg("start");
        command
    });
    trellis.wait_until(Duration::from_secs(60), "the worker's announcement", |t| {
        !t.heartbeats(&worker.id).is_empty()
    });
    let run = doctor(&worker, &[], &[]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.mark("work-dir"), "ok");
    running.signal(libc::SIGTERM);
    let status = running
        .wait_timeout(Duration::from_secs(60))
        .expect("the worker drains");
    assert_eq!(status.code(), Some(0), "{}", running.output());
}

#[test]
fn a_templates_dir_without_vines_fails() {
    let scratch = TempDir::new("tendril-doctor");
    let trellis = FakeTrellis::start();
    let worker = worker(&trellis, scratch.path());
    let empty = scratch.path().join("empty-templates");
    std::fs::create_dir_all(&empty).unwrap();
    let run = doctor(
        &worker,
        &[],
        &pairs(&[("TENDRIL_TEMPLATES_DIR", &empty.display().to_string())]),
    );
    run.expect(1, "vine-templates", "failed", "TENDRIL_TEMPLATES_DIR");
    assert_eq!(run.mark("worker-template"), "warning");
}
