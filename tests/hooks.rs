//! Terraform hooks: real shell scripts in `TENDRIL_HOOKS_DIR` around the
//! real Terraform plans and applies of `tendril exec`, on the fixture vine
//! of `tests/fixtures/templates/vine/aws` with local state. The hooks record
//! what they see to files; the fixture's `apply_command` (a local-exec at
//! apply time) shows what the apply's Terraform received.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::tendril::{exec_claim, Tendril, TendrilProcess};
use crate::support::{pids_in, process_runs, TempDir};
use serde_json::{json, Value};

const SECRET: &str = "ghp_hookstestsecret4321";

/// A scratch directory with a hooks directory, a state directory and a
/// work dir, and the files hooks record to.
struct Scene {
    scratch: TempDir,
}

impl Scene {
    fn new() -> Scene {
        let scene = Scene {
            scratch: TempDir::new("tendril-hooks"),
        };
        std::fs::create_dir_all(scene.hooks()).unwrap();
        scene
    }

    fn path(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }

    fn hooks(&self) -> PathBuf {
        self.path("hooks")
    }

    /// Writes an executable hook: `#!/bin/sh` and `body`.
    fn hook(&self, name: &str, body: &str) -> PathBuf {
        let path = self.hooks().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// A hook body that appends one line of what it sees to `record`.
    fn recording(&self, name: &str) -> String {
        format!(
            r#"echo "{name} type=$TENDRIL_JOB_TYPE job=$TENDRIL_JOB_ID pwd=$PWD env_file=$TENDRIL_HOOK_ENV mode=$(stat -c %a "$TENDRIL_HOOK_ENV") home=$HOME automation=$TF_IN_AUTOMATION plan_file=$(test -f terraform.plan.out && echo yes || echo no) mark=${{HOOK_MARK:-unset}}" >> {record}"#,
            record = self.path("record").display()
        )
    }

    /// The lines hooks (and the fixture's apply) appended to `record`.
    fn record(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("record"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// The environment of `tendril exec` here, with `extra`.
    fn env<'a>(&self, extra: &[(&'a str, &str)]) -> Vec<(&'a str, String)> {
        let mut env = vec![
            (
                "TENDRIL_TEMPLATES_DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/templates").to_string(),
            ),
            (
                "TENDRIL_STATE_DIR",
                self.path("state").display().to_string(),
            ),
            ("TENDRIL_WORK_DIR", self.path("work").display().to_string()),
            ("TENDRIL_HOOKS_DIR", self.hooks().display().to_string()),
        ];
        env.extend(extra.iter().map(|(key, value)| (*key, value.to_string())));
        env
    }

    /// A job of `job_type` on the fixture vine.
    fn claim(job_type: &str, id: &str, snapshot_extra: Value) -> Value {
        let mut snapshot = json!({
            "project_name": "hooks", "environment_stage": "dev", "region": "eu-west-1",
            "git_access_token": SECRET
        });
        if let (Some(snapshot), Value::Object(extra)) = (snapshot.as_object_mut(), snapshot_extra) {
            snapshot.extend(extra);
        }
        json!({
            "job": {"id": id, "job_type": job_type, "vineyard_id": "vy-hooks", "vine_id": "vine-hooks",
                    "config_snapshot": snapshot},
            "cloud_identity": null
        })
    }

    /// Runs the job with `tendril exec`: its result and its log.
    fn exec(&self, claim: &Value, extra_env: &[(&str, &str)]) -> (Value, String) {
        let name = claim["job"]["id"].as_str().unwrap().to_string();
        let (code, result, output) =
            exec_claim(self.scratch.path(), &name, claim, &self.env(extra_env));
        let log = std::fs::read_to_string(self.path(&format!("out-{name}/job.log"))).unwrap();
        let succeeded = result["status"] == "SUCCESS";
        assert_eq!(code, if succeeded { 0 } else { 1 }, "{result}\n{output}");
        (result, log)
    }
}

/// The `key=value` fields of a recorded line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

/// Whether a process runs (a zombie no one reaped is not running).
fn error_message(result: &Value) -> &str {
    result["error_message"].as_str().unwrap_or_default()
}

#[test]
fn hooks_run_in_order_around_plan_and_apply_and_their_env_reaches_later_terraform_runs() {
    let scene = Scene::new();
    let record = scene.path("record");
    let pre_plan = format!(
        "{}\necho 'HOOK_MARK=from-pre-plan' >> \"$TENDRIL_HOOK_ENV\"\n\
         printf '# what the apply runs\\n\\nTF_VAR_apply_command=echo \"apply sees $HOOK_MARK\" >> {}\\n' >> \"$TENDRIL_HOOK_ENV\"",
        scene.recording("terraform-pre-plan"),
        record.display()
    );
    scene.hook("terraform-pre-plan", &pre_plan);
    for name in [
        "terraform-post-plan",
        "terraform-pre-apply",
        "terraform-post-apply",
    ] {
        scene.hook(name, &scene.recording(name));
    }

    let (result, log) = scene.exec(
        &Scene::claim("BOOTSTRAP", "hooks-bootstrap", json!({})),
        &[],
    );
    assert_eq!(result["status"], "SUCCESS", "{result}\n{log}");
    let lines = scene.record();
    let order: Vec<&str> = lines
        .iter()
        .map(|l| l.split_whitespace().next().unwrap_or_default())
        .collect();
    assert_eq!(
        order,
        [
            "terraform-pre-plan",
            "terraform-post-plan",
            "terraform-pre-apply",
            "apply",
            "terraform-post-apply"
        ],
        "{lines:#?}"
    );
    assert_eq!(
        lines[3], "apply sees from-pre-plan",
        "the pre-plan hook's TF_VAR_ reached the plan and its HOOK_MARK the apply"
    );
    let hooks = [&lines[0], &lines[1], &lines[2], &lines[4]];
    let pwd = field(&lines[0], "pwd");
    assert!(
        pwd.ends_with("/vine"),
        "hooks run in the stack's directory: {pwd}"
    );
    let workspace = Path::new(pwd).parent().unwrap();
    for line in hooks {
        assert_eq!(field(line, "type"), "BOOTSTRAP", "{line}");
        assert_eq!(field(line, "job"), "hooks-bootstrap", "{line}");
        assert_eq!(field(line, "pwd"), pwd, "{line}");
        assert_eq!(
            Path::new(field(line, "env_file")),
            workspace.join("hook.env"),
            "{line}"
        );
        assert_eq!(field(line, "mode"), "600", "{line}");
        assert_eq!(
            Path::new(field(line, "home")),
            workspace.join("home"),
            "the job's tool environment: {line}"
        );
        assert_eq!(field(line, "automation"), "1", "{line}");
        assert_eq!(
            field(line, "mark"),
            "unset",
            "what a hook writes is for Terraform, not the next hook: {line}"
        );
    }
    let plan_files: Vec<&str> = hooks.iter().map(|l| field(l, "plan_file")).collect();
    assert_eq!(
        plan_files,
        ["no", "yes", "yes", "yes"],
        "pre-plan ran before the plan"
    );
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in the log:\n{log}"))
    };
    assert!(at("==> hook terraform-pre-plan") < at("$ terraform plan"));
    assert!(at("$ terraform plan") < at("==> hook terraform-post-plan"));
    assert!(at("==> hook terraform-pre-apply") < at("$ terraform apply"));
    assert!(at("$ terraform apply") < at("==> hook terraform-post-apply"));
    at("hook terraform-pre-plan set HOOK_MARK, TF_VAR_apply_command for the job's later Terraform runs");

    // DESTROY's destroy is its apply: the apply hooks run around it, no plan hook.
    std::fs::remove_file(&record).unwrap();
    let (result, log) = scene.exec(&Scene::claim("DESTROY", "hooks-destroy", json!({})), &[]);
    assert_eq!(result["status"], "SUCCESS", "{result}\n{log}");
    let lines = scene.record();
    let seen: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l.split_whitespace().next().unwrap(), field(l, "type")))
        .collect();
    assert_eq!(
        seen,
        [
            ("terraform-pre-apply", "DESTROY"),
            ("terraform-post-apply", "DESTROY")
        ]
    );
    assert!(at_in(&log, "==> hook terraform-pre-apply") < at_in(&log, "$ terraform destroy"));
    assert!(at_in(&log, "$ terraform destroy") < at_in(&log, "==> hook terraform-post-apply"));
}

fn at_in(log: &str, needle: &str) -> usize {
    log.find(needle)
        .unwrap_or_else(|| panic!("no {needle:?} in the log:\n{log}"))
}

#[test]
fn a_failing_pre_hook_fails_the_job_with_its_exit_and_its_step_does_not_run() {
    let scene = Scene::new();
    let applied = scene.path("applied");
    scene.hook(
        "terraform-post-plan",
        &scene.recording("terraform-post-plan"),
    );
    scene.hook("terraform-pre-apply", "echo refusing this apply; exit 3");
    scene.hook(
        "terraform-post-apply",
        &scene.recording("terraform-post-apply"),
    );
    let claim = Scene::claim(
        "BOOTSTRAP",
        "hooks-exit",
        json!({"apply_command": format!("touch {}", applied.display())}),
    );
    let (result, log) = scene.exec(&claim, &[]);
    assert_eq!(result["status"], "FAILED");
    assert_eq!(
        error_message(&result),
        "hook terraform-pre-apply failed (exit 3)",
        "{log}"
    );
    assert!(log.contains("refusing this apply"), "{log}");
    assert!(!log.contains("$ terraform apply"), "{log}");
    assert!(!applied.exists(), "the apply did not run");
    let lines = scene.record();
    assert_eq!(
        lines.len(),
        1,
        "post-plan ran, post-apply did not: {lines:?}"
    );
    assert!(lines[0].starts_with("terraform-post-plan"), "{lines:?}");

    // A hook killed by a signal says which.
    std::fs::remove_file(scene.hooks().join("terraform-pre-apply")).unwrap();
    scene.hook("terraform-pre-plan", "kill -KILL $$");
    let (result, log) = scene.exec(&Scene::claim("PLAN", "hooks-signal", json!({})), &[]);
    assert_eq!(
        error_message(&result),
        "hook terraform-pre-plan failed (killed by SIGKILL, signal 9)",
        "{log}"
    );
    assert!(!log.contains("$ terraform plan"), "{log}");
}

#[test]
fn a_post_hook_runs_after_a_failed_plan_and_the_plan_error_stays_the_jobs() {
    let scene = Scene::new();
    // A hook's variable reaches the plan: this one makes it fail.
    scene.hook(
        "terraform-pre-plan",
        "echo 'TF_VAR_eks_ng_min_size=several' >> \"$TENDRIL_HOOK_ENV\"",
    );
    scene.hook(
        "terraform-post-plan",
        &format!("{}\nexit 4", scene.recording("terraform-post-plan")),
    );
    scene.hook(
        "terraform-pre-apply",
        &scene.recording("terraform-pre-apply"),
    );
    let (result, log) = scene.exec(
        &Scene::claim("BOOTSTRAP", "hooks-failed-plan", json!({})),
        &[],
    );
    assert_eq!(result["status"], "FAILED");
    let message = error_message(&result);
    assert!(
        message.starts_with("terraform failed") && message.contains("eks_ng_min_size"),
        "{message}\n{log}"
    );
    let lines = scene.record();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("terraform-post-plan"), "{lines:?}");
    assert!(
        log.contains(
            "hook terraform-post-plan failed (exit 4) (after the failed step, whose error is the job's)"
        ),
        "{log}"
    );
}

#[test]
fn a_hook_that_cannot_run_or_writes_a_bad_env_line_fails_the_job_naming_it() {
    let scene = Scene::new();
    let hook = scene.hook("terraform-pre-plan", "exit 0");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (result, log) = scene.exec(
        &Scene::claim("PLAN", "hooks-not-executable", json!({})),
        &[],
    );
    let hooks_dir = scene.hooks().canonicalize().unwrap();
    assert_eq!(
        error_message(&result),
        format!(
            "hook {} is not executable: make it executable (chmod +x) or remove it",
            hooks_dir.join("terraform-pre-plan").display()
        ),
        "{log}"
    );
    assert!(!log.contains("$ terraform plan"), "{log}");

    std::fs::write(&hook, "#!/no/such/shell\nexit 0\n").unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (result, log) = scene.exec(&Scene::claim("PLAN", "hooks-no-shell", json!({})), &[]);
    assert_eq!(
        error_message(&result),
        format!(
            "hook {} cannot run: the interpreter its #! line names is missing",
            hooks_dir.join("terraform-pre-plan").display()
        ),
        "{log}"
    );

    std::fs::write(&hook, "echo a script without its #! line\n").unwrap();
    let (result, log) = scene.exec(&Scene::claim("PLAN", "hooks-no-shebang", json!({})), &[]);
    assert_eq!(
        error_message(&result),
        format!(
            "hook {} cannot run: the system cannot start it (a script needs a #! line)",
            hooks_dir.join("terraform-pre-plan").display()
        ),
        "{log}"
    );

    scene.hook(
        "terraform-pre-plan",
        "printf 'TF_LOG=off\\n# fine\\n\\nnot a pair\\n' >> \"$TENDRIL_HOOK_ENV\"",
    );
    let (result, log) = scene.exec(&Scene::claim("PLAN", "hooks-bad-env", json!({})), &[]);
    assert_eq!(
        error_message(&result),
        "hook terraform-pre-plan wrote a TENDRIL_HOOK_ENV that cannot be used: line 4 is not KEY=VALUE",
        "{log}"
    );
    assert!(!log.contains("$ terraform plan"), "{log}");
}

#[test]
fn a_hook_past_its_timeout_is_stopped_with_sigint_then_sigkill_and_fails_the_job() {
    let scene = Scene::new();
    let pids = scene.path("pids");
    scene.hook(
        "terraform-pre-plan",
        &format!(
            "trap '' INT\necho $$ > {pids}\nsleep 30 &\necho $! >> {pids}\nwait\necho survived >> {pids}",
            pids = pids.display()
        ),
    );
    let started = Instant::now();
    let (result, log) = scene.exec(
        &Scene::claim("PLAN", "hooks-timeout", json!({})),
        &[
            ("TENDRIL_HOOK_TIMEOUT", "2s"),
            ("TENDRIL_CANCEL_GRACE", "1s"),
        ],
    );
    assert_eq!(
        error_message(&result),
        "hook terraform-pre-plan timed out after 2s (TENDRIL_HOOK_TIMEOUT) and was stopped",
        "{log}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
    assert!(
        log.contains("SIGINT to its process group, SIGKILL after 1s"),
        "{log}"
    );
    assert!(!log.contains("$ terraform plan"), "{log}");
    let text = std::fs::read_to_string(&pids).unwrap();
    assert!(!text.contains("survived"), "{text}");
    for pid in pids_in(&pids) {
        assert!(!process_runs(pid), "the hook's process {pid} is gone");
    }
}

#[test]
fn a_hook_printing_a_secret_has_it_masked() {
    let scene = Scene::new();
    scene.hook(
        "terraform-pre-plan",
        &format!("echo \"out {SECRET} out\"\necho \"err {SECRET} err\" >&2"),
    );
    let (result, log) = scene.exec(&Scene::claim("PLAN", "hooks-secret", json!({})), &[]);
    assert_eq!(result["status"], "SUCCESS", "{result}\n{log}");
    assert!(
        log.contains("out *** out") && log.contains("err *** err"),
        "{log}"
    );
    assert!(!log.contains(SECRET), "{log}");
}

#[test]
fn a_shutdown_stops_a_running_hook_and_its_step_does_not_run() {
    let scene = Scene::new();
    let pids = scene.path("pids");
    // The hook's shell dies of SIGINT; its background jobs ignore SIGINT (a
    // non-interactive shell starts them so), one holding the hook's output
    // open, one not: both must be gone before the job ends.
    scene.hook(
        "terraform-pre-plan",
        &format!(
            "echo $$ > {pids}\nsleep 30 &\necho $! >> {pids}\nsleep 30 > /dev/null 2>&1 &\necho $! >> {pids}\nwait",
            pids = pids.display()
        ),
    );
    let claim = Scene::claim("PLAN", "hooks-shutdown", json!({}));
    let job_file = scene.path("hooks-shutdown.json");
    std::fs::write(&job_file, claim.to_string()).unwrap();
    let out = scene.path("out-hooks-shutdown");
    let mut command = Tendril::command();
    command.arg("exec").arg(&job_file).arg("--out").arg(&out);
    command.envs(scene.env(&[("TENDRIL_CANCEL_GRACE", "5s")]));
    let mut process = TendrilProcess::spawn(command);
    process.wait_for_output("==> hook terraform-pre-plan", Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(60);
    while pids_in(&pids).len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the hook did not record its processes:\n{}",
            process.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    process.signal(libc::SIGTERM);
    let status = process
        .wait_timeout(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("exec did not stop:\n{}", process.output()));
    assert_eq!(status.code(), Some(1), "{}", process.output());
    let result: Value =
        serde_json::from_slice(&std::fs::read(out.join("result.json")).unwrap()).unwrap();
    assert_eq!(
        error_message(&result),
        "interrupted: the worker was shut down"
    );
    let log = std::fs::read_to_string(out.join("job.log")).unwrap();
    assert!(log.contains("stopping "), "{log}");
    assert!(!log.contains("$ terraform plan"), "{log}");
    // Checked once, right after the exit: the job ended after its hook's
    // whole process group was gone.
    for pid in pids_in(&pids) {
        assert!(!process_runs(pid), "the hook's process {pid} is gone");
    }
}

/// SIGKILLs the processes a test's script recorded, however the test ends
/// (a failing one must not leave them running).
struct KillOnDrop(PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in pids_in(&self.0) {
            // SAFETY: kill(2) of a process the test's own script started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[test]
fn processes_a_hook_starts_outside_its_process_group_are_gone_when_its_job_ends() {
    let scene = Scene::new();
    let pids = scene.path("pids");
    let _cleanup = KillOnDrop(pids.clone());
    // One in a session of its own, one in a process group of its own (a
    // subshell with job control): neither gets the SIGKILL to the hook's
    // group, and both outlive the hook.
    scene.hook(
        "terraform-pre-plan",
        &format!(
            "setsid sleep 3001 > /dev/null 2>&1 &\necho $! >> {pids}\n\
             (set -m; sleep 3002 > /dev/null 2>&1 & echo $! >> {pids})\nexit 1",
            pids = pids.display()
        ),
    );
    let (result, log) = scene.exec(&Scene::claim("PLAN", "hooks-orphans", json!({})), &[]);
    assert_eq!(
        error_message(&result),
        "hook terraform-pre-plan failed (exit 1)",
        "{log}"
    );
    let recorded = pids_in(&pids);
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    for pid in recorded {
        assert!(!process_runs(pid), "the hook's process {pid} is gone");
    }
    assert!(
        log.contains("2 processes that tools started outside their process groups"),
        "{log}"
    );
}

#[test]
fn the_hook_settings_are_checked_at_start_up() {
    let scene = Scene::new();
    let run = |extra: &[(&str, String)]| {
        let output = Tendril::command()
            .arg("start")
            .env("TRELLIS_URL", "https://trellis.example.com")
            .env("GRAPE_WORKER_ID", "w-1")
            .env("GRAPE_WORKER_TOKEN", "tok-hooks-test-value")
            .env("TENDRIL_WORK_DIR", scene.path("work"))
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code().unwrap_or(-1), text)
    };
    let (code, text) = run(&[("TENDRIL_HOOK_TIMEOUT", "11m".into())]);
    assert_eq!((code, text.lines().count()), (2, 1), "{text}");
    assert_eq!(
        text.trim(),
        "tendril: TENDRIL_HOOK_TIMEOUT (--hook-timeout): 11m is longer than the 10m a hook may take"
    );
    let missing = scene.path("no-such-hooks");
    let (code, text) = run(&[("TENDRIL_HOOKS_DIR", missing.display().to_string())]);
    assert_eq!((code, text.lines().count()), (2, 1), "{text}");
    assert!(
        text.starts_with("tendril: TENDRIL_HOOKS_DIR (--hooks-dir): cannot use ")
            && text.contains("no-such-hooks"),
        "{text}"
    );
}
