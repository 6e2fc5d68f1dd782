//! `tendril start` end to end: the compiled binary against the fake Trellis
//! (tests/support/fake_trellis.rs, a fake: no real Trellis runs here) and
//! real moto for AWS, with the real `aws` CLI.
//!
//! Tests that need a job to run for a while, print, or misbehave under a
//! signal put a test wrapper named `aws` first on the job's PATH: it runs a
//! hook script the test writes (print lines, sleep, ignore SIGINT), then
//! hands over to the real `aws` CLI, which answers from moto.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::fake_trellis::FakeTrellis;
use crate::support::moto::Moto;
use crate::support::tendril::{worker_env, Tendril, TendrilProcess};
use crate::support::write_executable;
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(90);

/// One test's world: moto, the fake Trellis, a work dir and the hook.
struct World {
    moto: Moto,
    trellis: FakeTrellis,
    scratch: crate::support::TempDir,
    worker_id: String,
    worker_token: String,
    vars: Vec<(String, String)>,
}

impl World {
    fn new() -> World {
        let moto = Moto::start();
        let trellis = FakeTrellis::start();
        let scratch = crate::support::TempDir::new("tendril-worker-test");
        let work_dir = scratch.path().join("work");
        let env = worker_env(&trellis, &work_dir);
        let tools = scratch.path().join("tools");
        std::fs::create_dir_all(&tools).unwrap();
        let real_aws = which("aws");
        write_executable(
            &tools.join("aws"),
            "#!/bin/sh\n# Test wrapper in front of the real aws CLI: runs the test's hook, then the real CLI.\n\
             if [ -f \"$TENDRIL_TEST_HOOK\" ]; then . \"$TENDRIL_TEST_HOOK\"; fi\nexec \"$TENDRIL_TEST_REAL_AWS\" \"$@\"\n",
        );
        let mut vars = env.vars.clone();
        let path = format!("{}:{}", tools.display(), std::env::var("PATH").unwrap());
        vars.retain(|(k, _)| k != "PATH");
        vars.extend(moto.platform_env());
        vars.extend(moto.state_bucket_env());
        vars.extend([
            ("PATH".to_string(), path),
            ("TENDRIL_AWS_REGIONS".into(), "us-east-1".into()),
            (
                "TENDRIL_PASS_ENV".into(),
                "TENDRIL_TEST_HOOK,TENDRIL_TEST_REAL_AWS,AWS_EC2_METADATA_DISABLED".into(),
            ),
            (
                "TENDRIL_TEST_HOOK".into(),
                scratch.path().join("hook.sh").display().to_string(),
            ),
            (
                "TENDRIL_TEST_REAL_AWS".into(),
                real_aws.display().to_string(),
            ),
            ("TENDRIL_CANCEL_GRACE".into(), "2s".into()),
            ("TENDRIL_RETRY_MAX_DELAY".into(), "1s".into()),
            ("GRAPE_WORKER_MODE".into(), "cloud-hosted".into()),
        ]);
        World {
            moto,
            trellis,
            scratch,
            worker_id: env.id,
            worker_token: env.token,
            vars,
        }
    }

    /// Sets the hook every `aws` call of the job runs first.
    fn hook(&self, script: &str) {
        std::fs::write(self.scratch.path().join("hook.sh"), script).unwrap();
    }

    /// Sets a hook that runs on the job's first `aws` call only.
    fn hook_once(&self, script: &str) {
        let marker = self.scratch.path().join("hook-ran");
        self.hook(&format!(
            "if [ ! -f {m} ]; then touch {m}\n{script}\nfi\n",
            m = marker.display()
        ));
    }

    fn work_dir(&self) -> PathBuf {
        self.scratch.path().join("work")
    }

    fn start(&self) -> TendrilProcess {
        self.start_with(&[])
    }

    fn start_with(&self, extra: &[(&str, &str)]) -> TendrilProcess {
        let mut command = Tendril::command();
        command.arg("start");
        command.envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command.envs(extra.iter().copied());
        TendrilProcess::spawn(command)
    }

    /// Queues an AWS job acting as a role in `account` (moto keeps each
    /// account apart).
    fn enqueue_aws(&self, job_type: &str, account: &str) -> String {
        let role = format!("arn:aws:iam::{account}:role/vintner-tendril");
        self.trellis.enqueue_with_identity(
            json!({"job_type": job_type, "config_snapshot": {"role_arn": role, "account_id": account}}),
            json!({"provider": "aws", "role_arn": role, "external_id": "ext-4242", "account_id": account}),
        )
    }

    fn wait_status(&self, job: &str, status: &str) -> Value {
        self.trellis
            .wait_until(LONG, &format!("job {job} to be {status}"), |t| {
                t.job(job).is_some_and(|row| row["status"] == status)
            });
        self.trellis.job(job).unwrap()
    }

    fn heartbeat_statuses(&self) -> Vec<String> {
        self.trellis
            .heartbeats(&self.worker_id)
            .iter()
            .map(|h| h["status"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

fn which(tool: &str) -> PathBuf {
    std::env::var("PATH")
        .unwrap()
        .split(':')
        .map(|dir| Path::new(dir).join(tool))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("{tool} not found on PATH: run scripts/install-peers.sh"))
}

/// Starts Tendril with the debug build's failpoint `at` and waits for the
/// SIGKILL it gives itself there.
fn run_until_killed_at(world: &World, at: &str) {
    use std::os::unix::process::ExitStatusExt;
    let mut killed = world.start_with(&[("TENDRIL_TEST_KILL_AT", at)]);
    let status = killed
        .wait_timeout(LONG)
        .unwrap_or_else(|| panic!("tendril was not killed at {at}:\n{}", killed.output()));
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{}", killed.output());
}

/// Starts Tendril again on the world's work dir, waits for its first claim
/// (what the earlier run left is delivered before it) and drains it.
fn restart_until_a_claim(world: &World) {
    let claims = |t: &FakeTrellis| {
        t.requests()
            .iter()
            .filter(|r| r.path == "/api/jobs/claim")
            .count()
    };
    let claims_before = claims(&world.trellis);
    let mut restarted = world.start();
    world
        .trellis
        .wait_until(LONG, "a claim after the restart", |t| {
            claims(t) > claims_before
        });
    assert_eq!(drain(&mut restarted), 0);
}

/// SIGTERM, then the exit code.
fn drain(process: &mut TendrilProcess) -> i32 {
    process.signal(libc::SIGTERM);
    wait_exit(process)
}

fn wait_exit(process: &mut TendrilProcess) -> i32 {
    let status = process
        .wait_timeout(LONG)
        .unwrap_or_else(|| panic!("tendril did not exit; its output:\n{}", process.output()));
    status.code().unwrap_or(-1)
}

#[test]
fn connection_test_and_fetch_resources_discover_moto_through_the_assumed_role() {
    let world = World::new();
    // A VPC of the user's own, made in the role's account.
    let created = world.moto.aws_as(
        "111111111111",
        &["ec2", "create-vpc", "--cidr-block", "10.42.0.0/16"],
    );
    let vpc_id = created["Vpc"]["VpcId"].as_str().unwrap().to_string();

    world.moto.start_recording();
    let test = world.enqueue_aws("CONNECTION_TEST", "111111111111");
    let fetch = world.enqueue_aws("FETCH_RESOURCES", "111111111111");
    let mut tendril = world.start();
    let tested = world.wait_status(&test, "SUCCESS");
    let fetched = world.wait_status(&fetch, "SUCCESS");
    world.moto.stop_recording();
    assert_eq!(drain(&mut tendril), 0);

    let metadata = &tested["execution_metadata"];
    assert_eq!(metadata["identity"]["account"], "111111111111");
    assert!(metadata["identity"]["arn"]
        .as_str()
        .unwrap()
        .contains("vintner-tendril"));
    for row in [&tested, &fetched] {
        let cached = &row["execution_metadata"]["cached_resources"];
        assert_eq!(cached["regions"], json!(["us-east-1"]));
        let vpcs = cached["vpcs"]["us-east-1"].as_array().unwrap();
        assert!(vpcs.iter().any(|v| v["ID"] == vpc_id.as_str()), "{vpcs:?}");
        assert!(cached["subnets"]["us-east-1"].is_object());
        assert!(
            cached["security_groups"]["us-east-1"]
                .as_array()
                .unwrap()
                .len()
                >= 2
        );
        assert!(cached["hosted_zones"].is_array() && cached["iam_users"].is_array());
    }
    assert!(fetched["execution_metadata"].get("identity").is_none());

    let assume_roles: Vec<String> = world
        .moto
        .recorded_bodies()
        .into_iter()
        .filter(|body| body.contains("Action=AssumeRole"))
        .collect();
    assert!(!assume_roles.is_empty(), "moto recorded no AssumeRole");
    for body in &assume_roles {
        assert!(
            body.contains("ExternalId=ext-4242"),
            "AssumeRole without the external id: {body}"
        );
        assert!(body.contains("RoleSessionName=tendril-"), "{body}");
    }
}

#[test]
fn logs_arrive_whole_ordered_and_masked() {
    let world = World::new();
    world.hook_once(
        "i=1; while [ $i -le 3000 ]; do echo \"line $i of the test tool\" >&2; i=$((i+1)); done\necho \"key=$AWS_SECRET_ACCESS_KEY token=$AWS_SESSION_TOKEN\" >&2",
    );
    let job = world.enqueue_aws("FETCH_RESOURCES", "222222222222");
    let mut tendril = world.start();
    world.wait_status(&job, "SUCCESS");
    assert_eq!(drain(&mut tendril), 0);

    let chunks = world.trellis.logs(&job);
    assert!(
        chunks.iter().all(|(_, chunk)| chunk.ends_with('\n')),
        "every chunk holds whole lines"
    );
    assert!(chunks.iter().all(|(_, chunk)| chunk.len() <= 64 * 1024));
    let stderr: String = chunks
        .iter()
        .filter(|(s, _)| s == "STDERR")
        .map(|(_, c)| c.as_str())
        .collect();
    let numbered: Vec<&str> = stderr.lines().filter(|l| l.starts_with("line ")).collect();
    let expected: Vec<String> = (1..=3000)
        .map(|i| format!("line {i} of the test tool"))
        .collect();
    assert_eq!(numbered, expected, "all lines, whole and in order");
    assert!(
        stderr.contains("key=*** token=***"),
        "assumed keys are masked: {}",
        &stderr[stderr.len().saturating_sub(300)..]
    );
    let system: String = chunks
        .iter()
        .filter(|(s, _)| s == "SYSTEM")
        .map(|(_, c)| c.as_str())
        .collect();
    assert!(
        system.contains("==> discovering AWS resources"),
        "phases are SYSTEM lines"
    );
    assert!(
        !tendril.output().contains(&world.worker_token),
        "the worker token never reaches Tendril's own log"
    );
}

#[test]
fn a_trellis_outage_of_twenty_seconds_loses_no_line_and_no_status() {
    let world = World::new();
    world.hook_once(
        "i=1; while [ $i -le 120 ]; do echo \"outage line $i\" >&2; sleep 0.1; i=$((i+1)); done",
    );
    let job = world.enqueue_aws("FETCH_RESOURCES", "333333333333");
    let mut tendril = world.start();
    world.trellis.wait_for_log(LONG, &job, "outage line 1\n");
    world.trellis.outage(Duration::from_secs(20));
    world.wait_status(&job, "SUCCESS");
    assert_eq!(drain(&mut tendril), 0);

    // Delivery is at least once: a chunk whose answer the outage cut off is
    // sent again, right after itself. Such repeats aside, nothing is lost.
    let mut chunks = world.trellis.logs(&job);
    chunks.dedup();
    let text: String = chunks.into_iter().map(|(_, chunk)| chunk).collect();
    let unique: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("outage line"))
        .collect();
    let expected: Vec<String> = (1..=120).map(|i| format!("outage line {i}")).collect();
    assert_eq!(
        unique, expected,
        "every line once, in order (a retried chunk may repeat, never reorder)"
    );
    let history = world.trellis.status_history(&job);
    assert_eq!(history.first().unwrap()["status"], "PROCESSING");
    assert_eq!(history.last().unwrap()["status"], "SUCCESS");
    assert!(history.last().unwrap()["execution_metadata"]["cached_resources"].is_object());
}

#[test]
fn a_terminal_status_left_by_sigkill_is_delivered_at_the_next_start() {
    let world = World::new();
    let job = world.enqueue_aws("FETCH_RESOURCES", "444444444444");
    let mut tendril = world.start();
    world.trellis.wait_until(LONG, "PROCESSING", |t| {
        t.job(&job).is_some_and(|r| r["status"] == "PROCESSING")
    });
    world
        .trellis
        .fail_next_matching("PUT", "/api/jobs/", 100_000, 503);
    let outbox = world.work_dir().join("outbox");
    let terminal_saved = || {
        std::fs::read_dir(&outbox)
            .map(|entries| {
                entries
                    .flatten()
                    .any(|e| e.path().join("terminal.json").exists())
            })
            .unwrap_or(false)
    };
    let deadline = Instant::now() + LONG;
    while !terminal_saved() {
        assert!(
            Instant::now() < deadline,
            "no terminal status in the outbox:\n{}",
            tendril.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    tendril.signal(libc::SIGKILL);
    wait_exit(&mut tendril);
    assert_eq!(world.trellis.job(&job).unwrap()["status"], "PROCESSING");

    world.trellis.clear_faults();
    let mut restarted = world.start();
    let row = world.wait_status(&job, "SUCCESS");
    assert!(row["execution_metadata"]["cached_resources"].is_object());
    assert!(world
        .trellis
        .log_text(&job)
        .contains("==> FETCH_RESOURCES succeeded"));
    assert_eq!(drain(&mut restarted), 0);
    assert!(
        std::fs::read_dir(&outbox).unwrap().next().is_none(),
        "the outbox is empty once delivered"
    );
}

#[test]
fn a_kill_while_a_delivered_entry_is_removed_resends_nothing_at_the_next_start() {
    let world = World::new();
    // A log of several chunks (one is sealed at least every second).
    world.hook_once("for i in 1 2 3; do echo \"numbered-line-$i\" >&2; sleep 1.2; done");
    let job = world.enqueue_aws("FETCH_RESOURCES", "454545454545");
    // The debug build's failpoint: SIGKILL right after the delivered entry
    // is taken out of the outbox, before it is deleted.
    run_until_killed_at(&world, "outbox-entry-taken-out");
    assert_eq!(world.trellis.job(&job).unwrap()["status"], "SUCCESS");
    let outbox = world.work_dir().join("outbox");
    let left: Vec<String> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.len() == 1 && left[0].starts_with(".removed-"),
        "the kill left the entry taken out, not deleted: {left:?}"
    );
    let log = world.trellis.log_text(&job);
    let history = world.trellis.status_history(&job).len();

    // What an earlier run left is delivered before anything is claimed.
    restart_until_a_claim(&world);
    assert_eq!(world.trellis.log_text(&job), log, "no chunk was sent again");
    assert_eq!(log.matches("numbered-line-1").count(), 1, "{log}");
    assert_eq!(
        world.trellis.status_history(&job).len(),
        history,
        "no status was sent again"
    );
    assert_eq!(world.trellis.job(&job).unwrap()["status"], "SUCCESS");
    assert!(
        std::fs::read_dir(&outbox).unwrap().next().is_none(),
        "the taken-out entry was deleted at the start"
    );
}

#[test]
fn a_terminal_status_trellis_took_just_before_a_kill_is_not_sent_again_at_the_next_start() {
    let world = World::new();
    let job = world.enqueue_aws("FETCH_RESOURCES", "464646464646");
    // The debug build's failpoint: SIGKILL right after Trellis took the
    // terminal status, before its entry leaves the outbox.
    run_until_killed_at(&world, "terminal-status-taken");
    assert_eq!(world.trellis.job(&job).unwrap()["status"], "SUCCESS");
    let history = world.trellis.status_history(&job).len();
    let outbox = world.work_dir().join("outbox");
    assert_eq!(
        std::fs::read_dir(&outbox).unwrap().count(),
        1,
        "the kill left the entry"
    );

    restart_until_a_claim(&world);
    assert_eq!(
        world.trellis.status_history(&job).len(),
        history,
        "the SUCCESS Trellis had was not sent again"
    );
    assert!(
        std::fs::read_dir(&outbox).unwrap().next().is_none(),
        "the entry is gone"
    );
}

#[test]
fn a_database_outage_longer_than_the_refusal_limit_loses_no_line() {
    let world = World::new();
    world.hook_once(
        "echo 'before the outage' >&2; sleep 2\n\
         for i in 1 2 3 4 5 6 7 8; do echo \"during-$i\" >&2; sleep 1; done\n\
         echo 'after the outage' >&2",
    );
    let job = world.enqueue_aws("FETCH_RESOURCES", "565656565656");
    let mut tendril = world.start();
    world.trellis.wait_for_log(LONG, &job, "before the outage");
    // Three times the refusal limit (4 x TENDRIL_RETRY_MAX_DELAY of 1s):
    // every call gets Trellis's own 500, as while its database is down.
    world.trellis.database_outage(
        Duration::from_secs(12),
        "connection to server at \"db\" failed",
    );
    world.wait_status(&job, "SUCCESS");
    assert_eq!(drain(&mut tendril), 0);
    let log = world.trellis.log_text(&job);
    for i in 1..=8 {
        assert_eq!(log.matches(&format!("during-{i}\n")).count(), 1, "{log}");
    }
    assert!(log.contains("after the outage"), "{log}");
    assert!(!log.contains("could not be stored"), "{log}");
}

#[test]
fn an_idle_sigterm_reports_draining_then_offline_and_exits_zero() {
    let world = World::new();
    let mut tendril = world.start();
    world.trellis.wait_until(LONG, "the first claim", |t| {
        t.requests().iter().any(|r| r.path == "/api/jobs/claim")
    });
    let first = &world.trellis.heartbeats(&world.worker_id)[0];
    assert_eq!(first["status"], "ONLINE");
    assert_eq!(first["mode"], "cloud-hosted");
    assert!(first["hostname"].is_string());
    world.trellis.wait_until(LONG, "the tools' versions", |t| {
        t.heartbeats(&world.worker_id)
            .iter()
            .any(|h| h["tools"]["aws"].is_string())
    });
    assert_eq!(drain(&mut tendril), 0);
    assert_last_heartbeats_are_draining_then_offline(&world);
    assert!(
        !world.trellis.requests().iter().any(|r| r.method == "PATCH"),
        "the worker never replaces its own metadata"
    );
}

/// On the image `az` and `gcloud` take seconds to tell their version: a
/// worker scaled from zero claims at once and reports the tools when they
/// have answered; a tool whose version command fails is reported failing.
#[test]
fn the_first_claim_never_waits_for_the_tools_versions() {
    let world = World::new();
    let tools = world.scratch.path().join("tools");
    let slow =
        "#!/bin/sh\n# Stand-in for a CLI that takes seconds to start.\nsleep 3\necho 2.67.0\n";
    write_executable(&tools.join("az"), slow);
    write_executable(&tools.join("gcloud"), slow);
    write_executable(
        &tools.join("infracost"),
        "#!/bin/sh\n# Stand-in for a broken infracost.\necho 'Infracost v0.10.41'\nexit 1\n",
    );
    let mut tendril = world.start();
    world.trellis.wait_until(LONG, "the tools' versions", |t| {
        t.heartbeats(&world.worker_id)
            .iter()
            .any(|h| h["tools"].is_object())
    });
    let requests = world.trellis.requests();
    let position =
        |what: &str, found: &dyn Fn(&crate::support::fake_trellis::RecordedRequest) -> bool| {
            requests
                .iter()
                .position(found)
                .unwrap_or_else(|| panic!("no {what}"))
        };
    let first_claim = position("claim", &|r| r.path == "/api/jobs/claim");
    let with_tools = position("heartbeat with the tools", &|r| {
        r.path == "/api/workers/heartbeat" && r.json().unwrap()["tools"].is_object()
    });
    assert!(
        first_claim < with_tools,
        "the first claim came before the slow tools answered"
    );
    let heartbeat = requests[with_tools].json().unwrap();
    assert_eq!(heartbeat["tools"]["az"], "2.67.0");
    assert_eq!(heartbeat["tools"]["gcloud"], "2.67.0");
    assert_eq!(heartbeat["tools"]["infracost"], "failing (exit code 1)");
    assert_eq!(heartbeat["status"], "ONLINE");
    assert_eq!(drain(&mut tendril), 0);
}

#[test]
fn a_sigterm_while_the_announcement_is_unanswered_still_reports_offline() {
    let world = World::new();
    // Trellis records the announcement but answers a second later.
    world.trellis.set_delay(Duration::from_secs(1));
    let mut tendril = world.start();
    world.trellis.wait_until(LONG, "the announcement", |t| {
        !t.heartbeats(&world.worker_id).is_empty()
    });
    assert_eq!(drain(&mut tendril), 0);
    assert_last_heartbeats_are_draining_then_offline(&world);
}

fn assert_last_heartbeats_are_draining_then_offline(world: &World) {
    let statuses = world.heartbeat_statuses();
    let tail: Vec<&str> = statuses
        .iter()
        .rev()
        .take(2)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(tail, ["DRAINING", "OFFLINE"], "{statuses:?}");
}

#[test]
fn sigterm_during_a_job_lets_it_finish() {
    let world = World::new();
    world.hook_once("echo busy >&2; sleep 4");
    let job = world.enqueue_aws("FETCH_RESOURCES", "555555555555");
    let mut tendril = world.start();
    world.trellis.wait_for_log(LONG, &job, "busy");
    assert_eq!(drain(&mut tendril), 0);
    assert_eq!(world.trellis.job(&job).unwrap()["status"], "SUCCESS");
    let heartbeats = world.trellis.heartbeats(&world.worker_id);
    assert!(
        heartbeats
            .iter()
            .any(|h| h["status"] == "DRAINING" && h["current_job_id"] == job.as_str()),
        "DRAINING while the job runs: {heartbeats:?}"
    );
    assert_eq!(heartbeats.last().unwrap()["status"], "OFFLINE");
}

#[test]
fn a_second_sigterm_interrupts_the_tool_with_sigint() {
    let world = World::new();
    world
        .hook("trap 'echo tool-got-sigint >&2; exit 130' INT\necho waiting >&2\nsleep 60 & wait\n");
    let job = world.enqueue_aws("FETCH_RESOURCES", "666666666666");
    let mut tendril = world.start();
    world.trellis.wait_for_log(LONG, &job, "waiting");
    tendril.signal(libc::SIGTERM);
    world.trellis.wait_until(LONG, "DRAINING", |t| {
        t.heartbeats(&world.worker_id)
            .iter()
            .any(|h| h["status"] == "DRAINING")
    });
    tendril.signal(libc::SIGTERM);
    assert_eq!(wait_exit(&mut tendril), 1);
    let row = world.trellis.job(&job).unwrap();
    assert_eq!(row["status"], "FAILED");
    assert_eq!(
        row["error_message"],
        "interrupted: the worker was shut down"
    );
    assert!(
        world.trellis.log_text(&job).contains("tool-got-sigint"),
        "the tool received SIGINT"
    );
    assert_eq!(
        world.trellis.heartbeats(&world.worker_id).last().unwrap()["status"],
        "OFFLINE"
    );
}

#[test]
fn a_tool_that_ignores_sigint_is_killed_after_the_grace() {
    let world = World::new();
    world.hook("trap '' INT TERM\necho stubborn >&2\nsleep 120\n");
    let job = world.enqueue_aws("FETCH_RESOURCES", "777777777777");
    let mut tendril = world.start_with(&[("TENDRIL_DRAIN_GRACE", "1s")]);
    world.trellis.wait_for_log(LONG, &job, "stubborn");
    let signalled = Instant::now();
    tendril.signal(libc::SIGTERM);
    assert_eq!(
        wait_exit(&mut tendril),
        1,
        "the drain grace ran out: the job was interrupted"
    );
    assert!(
        signalled.elapsed() < Duration::from_secs(60),
        "the tool was killed, not waited for"
    );
    let row = world.trellis.job(&job).unwrap();
    assert_eq!(row["status"], "FAILED");
    assert_eq!(
        row["error_message"],
        "interrupted: the worker was shut down"
    );
    assert!(world.trellis.log_text(&job).contains("SIGKILL after 2s"));
}

#[test]
fn a_stopped_tools_background_processes_are_gone_before_its_job_is_reported() {
    let world = World::new();
    let pids = world.scratch.path().join("pids");
    // The tool (the aws wrapper's shell) dies of SIGINT; what it started in
    // the background ignores SIGINT and holds none of its output.
    world.hook(&format!(
        "sleep 120 > /dev/null 2>&1 &\necho $! >> {pids}\n(sleep 120 > /dev/null 2>&1 & echo $! >> {pids}; wait) > /dev/null 2>&1 &\necho started >&2\nsleep 120\n",
        pids = pids.display()
    ));
    let job = world.enqueue_aws("FETCH_RESOURCES", "787878787878");
    let mut tendril = world.start_with(&[("TENDRIL_DRAIN_GRACE", "1s")]);
    world.trellis.wait_for_log(LONG, &job, "started");
    while crate::support::pids_in(&pids).len() < 2 {
        std::thread::sleep(Duration::from_millis(50));
    }
    tendril.signal(libc::SIGTERM);
    world.wait_status(&job, "FAILED");
    // The job was reported only once the tool's whole group was gone.
    for pid in crate::support::pids_in(&pids) {
        assert!(
            !crate::support::process_runs(pid),
            "process {pid} the stopped tool started is gone"
        );
    }
    assert_eq!(wait_exit(&mut tendril), 1);
}

#[test]
fn a_job_cancelled_in_trellis_stops_and_gets_no_further_status() {
    let world = World::new();
    world.hook_once("echo long-running >&2; sleep 120");
    let cancelled = world.enqueue_aws("FETCH_RESOURCES", "888888888888");
    let mut tendril = world.start();
    world.trellis.wait_for_log(LONG, &cancelled, "long-running");
    world.trellis.cancel_job(&cancelled);
    let next = world.trellis.enqueue(json!({"job_type": "MAKE_COFFEE"}));
    world.wait_status(&next, "FAILED");
    assert_eq!(
        world.trellis.job(&cancelled).unwrap()["status"],
        "CANCELLED"
    );
    let history = world.trellis.status_history(&cancelled);
    assert!(
        history.iter().all(|u| u["status"] == "PROCESSING"),
        "no status after the cancel: {history:?}"
    );
    assert_eq!(drain(&mut tendril), 0);
}

#[test]
fn malformed_and_unknown_jobs_fail_with_a_message_and_the_worker_goes_on() {
    let world = World::new();
    let malformed = world
        .trellis
        .enqueue_raw(json!({"id": "malformed-1", "job_type": "PLAN", "config_snapshot": "oops"}));
    let unknown = world
        .trellis
        .enqueue(json!({"job_type": "MAKE_COFFEE", "config_snapshot": {}}));
    let mut tendril = world.start();
    let failed = world.wait_status(&malformed, "FAILED");
    assert_eq!(
        failed["error_message"],
        "malformed job: `job.config_snapshot` is a string; it must be a JSON object",
        "{failed}"
    );
    let failed = world.wait_status(&unknown, "FAILED");
    assert!(
        failed["error_message"]
            .as_str()
            .unwrap()
            .starts_with("unknown job type 'MAKE_COFFEE'"),
        "{failed}"
    );
    assert!(world
        .trellis
        .log_text(&unknown)
        .contains("unknown job type"));
    assert_eq!(drain(&mut tendril), 0);
}

#[test]
fn a_claim_a_gateway_answered_502_is_not_sent_again_and_the_possibly_lost_job_is_named() {
    let world = World::new();
    // A gateway's 502 may come after Trellis claimed a job.
    world
        .trellis
        .fail_next_matching("POST", "/api/jobs/claim", 1, 502);
    let mut tendril = world.start();
    tendril.wait_for_output("Trellis may have claimed a job for this worker", LONG);
    let job = world.enqueue_aws("FETCH_RESOURCES", "606060606060");
    world.wait_status(&job, "SUCCESS");
    assert_eq!(drain(&mut tendril), 0);
    let output = tendril.output();
    assert!(
        !output.contains(
            "claiming a job: Trellis is unavailable (HTTP 502): Injected failure; retrying"
        ),
        "{output}"
    );
}

#[test]
fn a_claim_trellis_refuses_waits_for_the_next_poll() {
    let world = World::new();
    // Trellis's own 500 may come after its claim was taken: not at once
    // again, but at the next poll.
    world.trellis.fail_next_with(
        "POST",
        "/api/jobs/claim",
        1,
        500,
        "Failed to claim job: canceling statement due to lock timeout",
    );
    let mut tendril = world.start();
    tendril.wait_for_output("trying again at the next poll", LONG);
    let job = world.enqueue_aws("FETCH_RESOURCES", "616161616161");
    world.wait_status(&job, "SUCCESS");
    assert_eq!(drain(&mut tendril), 0);
    let output = tendril.output();
    assert!(
        !output.contains("claiming a job: Trellis refused"),
        "not sent again at once:\n{output}"
    );
}

#[test]
fn a_job_whose_id_cannot_be_addressed_is_left_and_the_worker_goes_on() {
    let world = World::new();
    // Trellis's ids are UUIDs; one that is no safe name would address
    // another route (`..`) or flood a request line and a log.
    let dots = world
        .trellis
        .enqueue_raw(json!({"id": "..", "job_type": "PLAN", "config_snapshot": {}}));
    let long_id = "x".repeat(20_000);
    world
        .trellis
        .enqueue_raw(json!({"id": long_id, "job_type": "PLAN", "config_snapshot": {}}));
    let next = world.enqueue_aws("FETCH_RESOURCES", "585858585858");
    let mut tendril = world.start();
    world.wait_status(&next, "SUCCESS");
    assert_eq!(drain(&mut tendril), 0);
    assert_eq!(world.trellis.job(&dots).unwrap()["status"], "CLAIMED");
    let output = tendril.output();
    assert!(
        output.contains("Trellis gave a job that cannot be run or reported: the job id '..'"),
        "{output}"
    );
    assert!(
        !output.contains(&"x".repeat(100)),
        "the long id is cut in the log"
    );
    assert!(
        world
            .trellis
            .requests()
            .iter()
            .all(|r| r.method != "PUT" || r.path.starts_with(&format!("/api/jobs/{next}"))),
        "nothing was reported for them"
    );
}

#[test]
fn a_claim_too_large_to_read_is_failed_through_the_outbox_whatever_trellis_refuses_meanwhile() {
    let world = World::new();
    let big = world
        .trellis
        .enqueue(json!({"job_type": "PLAN", "config_snapshot": {"blob": "x".repeat(100 * 1024)}}));
    // Trellis refuses every status of that job for longer than the refusal
    // limit (4 x TENDRIL_RETRY_MAX_DELAY of 1s).
    world.trellis.fail_next_with(
        "PUT",
        &format!("/api/jobs/{big}/status"),
        1_000_000,
        500,
        "Failed to update status: could not extend file",
    );
    let next = world.enqueue_aws("FETCH_RESOURCES", "595959595959");
    let mut tendril = world.start_with(&[("TENDRIL_MAX_JOB_SIZE", "64KiB")]);
    world.wait_status(&next, "SUCCESS");
    tendril.wait_for_output("Trellis keeps refusing it", LONG);
    assert_eq!(world.trellis.job(&big).unwrap()["status"], "CLAIMED");
    world.trellis.clear_faults();
    let row = world.wait_status(&big, "FAILED");
    assert!(
        row["error_message"]
            .as_str()
            .unwrap_or_default()
            .contains("TENDRIL_MAX_JOB_SIZE"),
        "{row}"
    );
    assert_eq!(drain(&mut tendril), 0);
}

#[test]
fn an_announcement_trellis_keeps_refusing_exits_1_in_trelliss_words() {
    let world = World::new();
    let refusal = "Failed to update heartbeat: value too long for type character varying(64)";
    world
        .trellis
        .fail_next_with("POST", "/api/workers/heartbeat", 100_000, 500, refusal);
    // Refusals are waited out for 20 x TENDRIL_RETRY_MAX_DELAY: 5s here.
    let mut tendril = world.start_with(&[("TENDRIL_RETRY_MAX_DELAY", "250ms")]);
    assert_eq!(wait_exit(&mut tendril), 1, "{}", tendril.output());
    let output = tendril.output();
    assert!(
        output.contains(&format!(
            "Trellis refused the heartbeat (HTTP 500): {refusal}: Trellis kept refusing the worker's \
             announcement for 5s"
        )),
        "{output}"
    );
    assert!(!output.contains("unavailable"), "{output}");
    let announcements = world
        .trellis
        .requests()
        .iter()
        .filter(|r| r.path == "/api/workers/heartbeat")
        .count();
    assert!(
        announcements > 3,
        "retried for a time, not a few times: {announcements}"
    );
}

#[test]
fn an_announcement_refused_while_trelliss_database_restarts_is_waited_out() {
    let world = World::new();
    // More refusals than a few attempts would take, all within the time
    // refusals are waited out (20 x TENDRIL_RETRY_MAX_DELAY of 1s).
    world.trellis.fail_next_with(
        "POST",
        "/api/workers/heartbeat",
        6,
        500,
        "Failed to update heartbeat: the database system is starting up",
    );
    let mut tendril = world.start();
    let job = world.enqueue_aws("FETCH_RESOURCES", "575757575757");
    world.wait_status(&job, "SUCCESS");
    assert_eq!(drain(&mut tendril), 0);
}

#[test]
fn a_bad_token_exits_2_with_the_message() {
    let world = World::new();
    let mut tendril = world.start_with(&[("GRAPE_WORKER_TOKEN", "not-the-token")]);
    assert_eq!(wait_exit(&mut tendril), 2);
    assert!(
        tendril
            .output()
            .contains("Trellis rejected the worker ID or token"),
        "{}",
        tendril.output()
    );
    assert!(!tendril.output().contains("not-the-token"));
}

#[test]
fn a_job_past_its_timeout_is_stopped_and_fails_with_the_reason() {
    let world = World::new();
    world.hook("echo slow >&2\nsleep 120\n");
    let job = world.enqueue_aws("FETCH_RESOURCES", "121212121212");
    let mut tendril = world.start_with(&[("TENDRIL_JOB_TIMEOUT", "3s")]);
    let row = world.wait_status(&job, "FAILED");
    assert_eq!(
        row["error_message"],
        "timed out after 3s (TENDRIL_JOB_TIMEOUT)"
    );
    tendril.signal(libc::SIGTERM);
    assert_eq!(
        wait_exit(&mut tendril),
        0,
        "a timed-out job is not an interrupted worker"
    );
}

#[test]
fn a_job_requeued_to_another_worker_stops_without_a_status() {
    let world = World::new();
    world.hook_once("echo long-running >&2; sleep 120");
    let job = world.enqueue_aws("FETCH_RESOURCES", "131313131313");
    let mut tendril = world.start();
    world.trellis.wait_for_log(LONG, &job, "long-running");
    world.trellis.add_worker("w-other", "tok-other-worker");
    world.trellis.reassign_job(&job, "w-other");
    let next = world.trellis.enqueue(json!({"job_type": "MAKE_COFFEE"}));
    world.wait_status(&next, "FAILED");
    let history = world.trellis.status_history(&job);
    assert!(
        history.iter().all(|u| u["status"] == "PROCESSING"),
        "{history:?}"
    );
    assert_eq!(drain(&mut tendril), 0);
    assert!(
        tendril.output().contains("w-other"),
        "Tendril's log says who took the job"
    );
}

#[test]
fn a_silent_job_gets_still_running_lines_and_a_long_log_is_truncated() {
    let world = World::new();
    world.hook_once(
        "i=1; while [ $i -le 500 ]; do echo \"filler line $i with some padding to make it longer\" >&2; i=$((i+1)); done\nsleep 3",
    );
    let job = world.enqueue_aws("FETCH_RESOURCES", "141414141414");
    let mut tendril = world.start_with(&[
        ("TENDRIL_PROGRESS_INTERVAL", "1s"),
        ("TENDRIL_LOG_LIMIT", "8KiB"),
    ]);
    world.wait_status(&job, "SUCCESS");
    assert_eq!(drain(&mut tendril), 0);
    let text = world.trellis.log_text(&job);
    assert!(
        text.contains("log truncated: this job's log reached its limit of 8.0 KiB"),
        "{text}"
    );
    assert!(
        !text.contains("filler line 500 "),
        "output past the limit is dropped"
    );
    assert!(
        text.contains("still running: discovering AWS resources, "),
        "{text}"
    );
    let system: usize = world
        .trellis
        .logs(&job)
        .iter()
        .filter(|(s, _)| s == "SYSTEM")
        .map(|(_, c)| c.len())
        .sum();
    assert!(system > 0, "SYSTEM lines still flow past the limit");
}

#[test]
fn on_ecs_the_task_is_protected_from_claim_to_terminal_status() {
    let world = World::new();
    let agent_uri = format!("{}/ecs-agent/task-1", world.trellis.url());
    let job = world.enqueue_aws("FETCH_RESOURCES", "232323232323");
    let mut tendril = world.start_with(&[
        ("ECS_AGENT_URI", agent_uri.as_str()),
        ("TENDRIL_JOB_TIMEOUT", "1h"),
    ]);
    world.wait_status(&job, "SUCCESS");
    world
        .trellis
        .wait_until(LONG, "the protection to be lifted", |t| {
            t.requests()
                .iter()
                .filter(|r| r.path.starts_with("/ecs-agent/"))
                .count()
                == 2
        });
    assert_eq!(drain(&mut tendril), 0);
    let calls: Vec<(String, Value)> = world
        .trellis
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/ecs-agent/") || r.method == "PUT")
        .map(|r| (r.path.clone(), r.json().unwrap_or(Value::Null)))
        .collect();
    let protection = |enabled: bool| {
        let body = if enabled {
            json!({"ProtectionEnabled": true, "ExpiresInMinutes": 75})
        } else {
            json!({"ProtectionEnabled": false})
        };
        (
            "/ecs-agent/task-1/task-protection/v1/state".to_string(),
            body,
        )
    };
    assert_eq!(
        calls.first(),
        Some(&protection(true)),
        "on before anything else: {calls:?}"
    );
    assert_eq!(
        calls.last(),
        Some(&protection(false)),
        "off after the terminal status: {calls:?}"
    );
    assert_eq!(calls[calls.len() - 2].1["status"], "SUCCESS");
}

#[test]
fn off_ecs_there_is_no_protection_call() {
    let world = World::new();
    let job = world.enqueue_aws("FETCH_RESOURCES", "242424242424");
    let mut tendril = world.start();
    world.wait_status(&job, "SUCCESS");
    assert_eq!(drain(&mut tendril), 0);
    assert!(!world
        .trellis
        .requests()
        .iter()
        .any(|r| r.path.starts_with("/ecs-agent/")));
    assert!(!tendril.output().contains("task protection"));
}

// ---- nothing lost, nothing stuck ----------------------------------------

#[test]
fn a_nul_a_tool_prints_is_stored_as_a_replacement_character_and_the_worker_goes_on() {
    let world = World::new();
    world.hook_once("printf 'before\\000after\\n' >&2");
    let job = world.enqueue_aws("FETCH_RESOURCES", "505050505050");
    let next = world.enqueue_aws("FETCH_RESOURCES", "505050505050");
    let mut tendril = world.start();
    world.wait_status(&job, "SUCCESS");
    world.wait_status(&next, "SUCCESS");
    assert_eq!(drain(&mut tendril), 0);
    let log = world.trellis.log_text(&job);
    assert!(log.contains("before\u{FFFD}after\n"), "{log}");
}

#[test]
fn a_chunk_trellis_keeps_refusing_is_replaced_by_a_note_and_delivery_goes_on_in_order() {
    let world = World::new();
    world.trellis.refuse_logs_containing("POISON");
    // A chunk is sealed when its first line is half a second old: the
    // refused one holds one line.
    world.hook_once(
        "echo 'clean before' >&2; sleep 0.8; echo 'POISON line' >&2; sleep 0.8; echo 'clean after' >&2",
    );
    let job = world.enqueue_aws("FETCH_RESOURCES", "515151515151");
    let next = world.enqueue_aws("FETCH_RESOURCES", "515151515151");
    let mut tendril = world.start();
    world.wait_status(&job, "SUCCESS");
    world.wait_status(&next, "SUCCESS");
    assert_eq!(drain(&mut tendril), 0);
    let log = world.trellis.log_text(&job);
    let note = "[tendril] 12 B of Stderr output could not be stored by Trellis (HTTP 500: Failed to insert log: \
                invalid input syntax (injected refusal)) and are missing here";
    let (before, note_at, after) = (
        log.find("clean before").expect("the line before"),
        log.find(note)
            .unwrap_or_else(|| panic!("no note in:\n{log}")),
        log.find("clean after").expect("the line after"),
    );
    assert!(before < note_at && note_at < after, "in order:\n{log}");
    assert!(!log.contains("POISON"));
}

#[test]
fn what_a_finished_job_owes_is_delivered_while_the_next_job_runs() {
    let world = World::new();
    let owed = world.enqueue_aws("FETCH_RESOURCES", "525252525252");
    // Trellis refuses every status of the first job for now.
    world
        .trellis
        .fail_next_matching("PUT", &format!("/api/jobs/{owed}/status"), 1_000_000, 500);
    let next = world.enqueue_aws("FETCH_RESOURCES", "525252525252");
    let mut tendril = world.start();
    world.wait_status(&next, "SUCCESS");
    let row = world.trellis.job(&owed).unwrap();
    assert_eq!(
        row["status"], "CLAIMED",
        "the first job's status is still owed: {row}"
    );
    world.trellis.clear_faults();
    let row = world.wait_status(&owed, "SUCCESS");
    assert!(
        row["execution_metadata"]["cached_resources"].is_object(),
        "the whole terminal status, from the outbox: {row}"
    );
    assert!(world
        .trellis
        .log_text(&owed)
        .contains("==> FETCH_RESOURCES succeeded"));
    assert_eq!(drain(&mut tendril), 0);
    assert!(
        std::fs::read_dir(world.work_dir().join("outbox"))
            .unwrap()
            .next()
            .is_none(),
        "the outbox is empty"
    );
}

#[test]
fn a_terminal_status_refused_as_too_large_goes_again_without_its_biggest_metadata() {
    let world = World::new();
    world.hook_once("sleep 3");
    let job = world.enqueue_aws("FETCH_RESOURCES", "535353535353");
    let mut tendril = world.start();
    world.wait_status(&job, "PROCESSING");
    world.trellis.fail_next_with(
        "PUT",
        &format!("/api/jobs/{job}/status"),
        1,
        413,
        "Payload too large",
    );
    let row = world.wait_status(&job, "SUCCESS");
    assert_eq!(drain(&mut tendril), 0);
    let message = row["error_message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            "Trellis refused this job's result (HTTP 413: Payload too large), so it was sent without its metadata \
             (cached_resources ("
        ),
        "{row}"
    );
}

#[test]
fn a_claimed_job_that_cannot_be_recorded_is_failed_at_once_and_the_worker_goes_on() {
    let world = World::new();
    let role = "arn:aws:iam::545454545454:role/vintner-tendril";
    let job = world.trellis.enqueue_with_identity(
        json!({"id": "job-without-a-record", "job_type": "FETCH_RESOURCES", "config_snapshot": {}}),
        json!({"provider": "aws", "role_arn": role, "external_id": "ext-4242"}),
    );
    // Where its outbox entry would go, a file stands in the way.
    std::fs::create_dir_all(world.work_dir().join("outbox")).unwrap();
    std::fs::write(world.work_dir().join("outbox").join(&job), "in the way").unwrap();
    let next = world.enqueue_aws("FETCH_RESOURCES", "545454545454");
    let mut tendril = world.start();
    let row = world.wait_status(&job, "FAILED");
    assert!(
        row["error_message"]
            .as_str()
            .unwrap()
            .starts_with("Tendril could not record this job in its work dir ("),
        "{row}"
    );
    world.wait_status(&next, "SUCCESS");
    assert_eq!(drain(&mut tendril), 0);
}

/// A tmpfs of `size` mounted at `dir` for the test's life (a real file
/// system that can be filled), unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount");
        assert!(
            status.success(),
            "this test mounts a small tmpfs and needs root (CI runs as root)"
        );
        SmallDisk(dir.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .args(["-l"])
            .arg(&self.0)
            .status();
    }
}

#[test]
fn no_job_is_claimed_while_the_work_dir_is_full_and_the_heartbeat_goes_on() {
    let world = World::new();
    let disk = SmallDisk::mount(&world.work_dir(), "4m");
    let mut tendril = world.start_with(&[("TENDRIL_MIN_FREE_SPACE", "1MiB")]);
    world.trellis.wait_until(LONG, "the first claim", |t| {
        t.requests().iter().any(|r| r.path == "/api/jobs/claim")
    });
    let filler = disk.0.join("filler");
    let fill = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=64k", "count=52"])
        .arg(format!("of={}", filler.display()))
        .output()
        .unwrap();
    assert!(fill.status.success(), "{fill:?}");
    tendril.wait_for_output("not claiming jobs: the work dir", LONG);
    let job = world.enqueue_aws("FETCH_RESOURCES", "555555555555");
    let beats = world.trellis.heartbeats(&world.worker_id).len();
    world.trellis.wait_until(LONG, "two more heartbeats", |t| {
        t.heartbeats(&world.worker_id).len() >= beats + 2
    });
    assert_eq!(world.trellis.job(&job).unwrap()["status"], "QUEUED");
    std::fs::remove_file(&filler).unwrap();
    world.wait_status(&job, "SUCCESS");
    assert_eq!(drain(&mut tendril), 0);
    assert!(tendril
        .output()
        .contains("the work dir can take jobs again: claiming"));
}

#[test]
fn a_spool_cut_inside_a_character_by_a_crash_is_delivered_at_the_next_start() {
    let world = World::new();
    let job = world.trellis.insert_job(
        json!({"job_type": "FETCH_RESOURCES", "status": "PROCESSING",
                                               "worker_id": world.worker_id}),
    );
    // What a Tendril killed while writing a record leaves: a whole record,
    // then one cut inside "é" (0xC3 0xA9), and no terminal status.
    let entry = world.work_dir().join("outbox").join(&job);
    std::fs::create_dir_all(&entry).unwrap();
    std::fs::write(entry.join("job.json"), json!({"job_id": job}).to_string()).unwrap();
    let mut spool =
        br#"{"log_chunk":"delivered after the crash\n","stream_type":"STDOUT"}"#.to_vec();
    spool.extend_from_slice(b"\n{\"log_chunk\":\"caf\xC3");
    std::fs::write(entry.join("chunks.jsonl"), spool).unwrap();
    let mut tendril = world.start();
    let row = world.wait_status(&job, "FAILED");
    assert!(
        row["error_message"]
            .as_str()
            .unwrap()
            .starts_with("interrupted: Tendril stopped while running this job"),
        "{row}"
    );
    assert_eq!(world.trellis.log_text(&job), "delivered after the crash\n");
    assert_eq!(drain(&mut tendril), 0);
    assert!(!entry.exists());
}

#[test]
fn a_second_tendril_on_the_same_work_dir_exits_2_naming_the_first() {
    let world = World::new();
    let mut first = world.start();
    world.trellis.wait_until(LONG, "the first claim", |t| {
        t.requests().iter().any(|r| r.path == "/api/jobs/claim")
    });
    let mut second = world.start();
    assert_eq!(wait_exit(&mut second), 2);
    let stderr = second.stderr();
    assert!(
        stderr.contains(&format!("another Tendril (PID {}) is using", first.pid())),
        "{stderr}"
    );
    assert_eq!(drain(&mut first), 0);
}

#[test]
fn a_404_that_is_not_trelliss_own_while_a_job_runs_does_not_abandon_it() {
    let world = World::new();
    world.hook_once("sleep 5");
    let job = world.enqueue_aws("FETCH_RESOURCES", "565656565656");
    let mut tendril = world.start();
    world.wait_status(&job, "PROCESSING");
    // An ingress's page during a Trellis redeploy, for every ownership check.
    world.trellis.fail_next_with(
        "GET",
        &format!("/api/jobs/{job}"),
        1_000,
        404,
        "<html>404</html>",
    );
    world.wait_status(&job, "SUCCESS");
    assert_eq!(drain(&mut tendril), 0);
}

#[test]
fn a_not_owned_answer_that_a_second_read_contradicts_does_not_abandon_the_job() {
    let world = World::new();
    world.hook_once("echo 'a line while Trellis blips' >&2; sleep 2");
    let job = world.enqueue_aws("FETCH_RESOURCES", "575757575757");
    let mut tendril = world.start();
    world.wait_status(&job, "PROCESSING");
    world.trellis.fail_next_with(
        "POST",
        &format!("/api/jobs/{job}/logs"),
        2,
        500,
        "Failed to insert log: Job not found or not owned by this worker",
    );
    let row = world.wait_status(&job, "SUCCESS");
    assert!(row["execution_metadata"]["cached_resources"].is_object());
    assert!(world
        .trellis
        .log_text(&job)
        .contains("==> FETCH_RESOURCES succeeded"));
    assert_eq!(drain(&mut tendril), 0);
}

#[test]
fn a_secret_cut_by_a_long_lines_split_and_its_base64_are_masked() {
    let world = World::new();
    // The worker's token stands for any registered secret: the tool prints
    // it right across the cut of a line longer than a chunk, and encoded.
    let token = world.worker_token.clone();
    world.hook_once(&format!(
        "printf '%065520d%s after\\n' 0 '{token}' >&2; echo \"b64 $(printf %s '{token}' | base64 -w0)\" >&2"
    ));
    let job = world.enqueue_aws("FETCH_RESOURCES", "585858585858");
    let mut tendril = world.start();
    world.wait_status(&job, "SUCCESS");
    assert_eq!(drain(&mut tendril), 0);
    let log = world.trellis.log_text(&job);
    assert!(
        log.contains("*** after") && log.contains("b64 ***"),
        "{}",
        &log[log.len() - 500..]
    );
    for window in token.as_bytes().windows(12) {
        let piece = std::str::from_utf8(window).unwrap();
        assert!(!log.contains(piece), "a piece of the token leaked: {piece}");
    }
}
