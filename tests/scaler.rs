//! `tendril scaler` against real moto ECS and Secrets Manager (two
//! regions), a strict fake PostgREST, and a fake Lambda Runtime API.

mod support;

use std::process::Command;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use support::fake_lambda::{FakeLambda, Outcome};
use support::fake_postgrest::FakePostgrest;
use support::moto::Moto;
use support::rfc3339;
use support::tendril::{Tendril, TendrilProcess};

const KEY: &str = "sb-service-role-key-7f3a9c0d";
const URL_SECRET: &str = "scaler-url-secret-51e2b7";
const EAST: &str = "us-east-1";
const CENTRAL: &str = "eu-central-1";
const WAIT: Duration = Duration::from_secs(60);

struct World {
    moto: Moto,
    jobs: FakePostgrest,
}

/// One ECS service of a test, by region, cluster and name.
#[derive(Clone, Copy)]
struct Svc<'a>(&'a str, &'a str, &'a str);

impl World {
    fn new() -> World {
        World {
            moto: Moto::start(),
            jobs: FakePostgrest::start(KEY),
        }
    }

    fn ecs(&self, region: &str, args: &[&str]) -> Value {
        let mut all = vec!["ecs"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--region", region]);
        self.moto.aws(&all)
    }

    /// A Fargate service with these tags and desired count.
    fn service(&self, svc: Svc, tags: &[(&str, &str)], desired: u32) {
        let Svc(region, cluster, name) = svc;
        self.ecs(region, &["create-cluster", "--cluster-name", cluster]);
        let containers =
            json!([{"name": "tendril", "image": "ghcr.io/acme/tendril:1.0.0", "essential": true}]);
        self.ecs(
            region,
            &[
                "register-task-definition",
                "--family",
                name,
                "--requires-compatibilities",
                "FARGATE",
                "--network-mode",
                "awsvpc",
                "--cpu",
                "256",
                "--memory",
                "512",
                "--container-definitions",
                &containers.to_string(),
            ],
        );
        let tags: Vec<String> = tags
            .iter()
            .map(|(k, v)| format!("key={k},value={v}"))
            .collect();
        let mut args = vec![
            "create-service",
            "--cluster",
            cluster,
            "--service-name",
            name,
            "--task-definition",
            name,
            "--launch-type",
            "FARGATE",
        ];
        let desired = desired.to_string();
        args.extend(["--desired-count", &desired]);
        if !tags.is_empty() {
            args.push("--tags");
            args.extend(tags.iter().map(String::as_str));
        }
        self.ecs(region, &args);
    }

    /// A pool service (tagged) whose worker is `worker`.
    fn pool_service(&self, svc: Svc, worker: &str, desired: u32) {
        self.service(
            svc,
            &[("tendril:pool", "true"), ("tendril:worker-id", worker)],
            desired,
        );
    }

    /// us-east-1 pool/tendril-a of worker-a: running, idle for an hour.
    fn service_idle_for_an_hour(&self) -> Svc<'static> {
        let svc = Svc(EAST, "pool", "tendril-a");
        self.pool_service(svc, "worker-a", 1);
        self.set_idle_since(svc, SystemTime::now() - Duration::from_secs(3600));
        svc
    }

    fn described(&self, svc: Svc) -> Value {
        let Svc(region, cluster, name) = svc;
        let answer = self.ecs(
            region,
            &[
                "describe-services",
                "--cluster",
                cluster,
                "--services",
                name,
                "--include",
                "TAGS",
            ],
        );
        answer["services"][0].clone()
    }

    fn desired(&self, svc: Svc) -> i64 {
        self.described(svc)["desiredCount"].as_i64().unwrap()
    }

    fn tag(&self, svc: Svc, key: &str) -> Option<String> {
        let described = self.described(svc);
        let tags = described["tags"].as_array().cloned().unwrap_or_default();
        tags.iter()
            .find(|t| t["key"] == key)
            .and_then(|t| t["value"].as_str().map(String::from))
    }

    fn set_idle_since(&self, svc: Svc, since: SystemTime) {
        let arn = self.described(svc)["serviceArn"]
            .as_str()
            .unwrap()
            .to_string();
        let stamp = rfc3339(since);
        let tag = format!("key=tendril:idle-since,value={stamp}");
        self.ecs(
            svc.0,
            &["tag-resource", "--resource-arn", &arn, "--tags", &tag],
        );
    }

    fn scaler(&self, extra: &[(&str, &str)]) -> Command {
        let mut command = Tendril::command();
        command
            .arg("scaler")
            .envs(self.moto.platform_env())
            .env("SUPABASE_URL", self.jobs.url())
            .env("TENDRIL_SCALER_REGIONS", format!("{EAST},{CENTRAL}"))
            .envs(extra.iter().copied());
        command
    }

    /// `tendril scaler --once`: exit code, JSON report, all output.
    fn pass(&self, extra: &[(&str, &str)]) -> (i32, Value, String) {
        let mut command = self.scaler(extra);
        command.arg("--once");
        if !extra
            .iter()
            .any(|(k, _)| k.starts_with("SUPABASE_SERVICE_ROLE_KEY"))
        {
            command.env("SUPABASE_SERVICE_ROLE_KEY", KEY);
        }
        let mut process = TendrilProcess::spawn(command);
        let status = process
            .wait_timeout(WAIT)
            .unwrap_or_else(|| panic!("the pass did not end:\n{}", process.output()));
        let output = process.output();
        assert!(
            !output.contains(KEY),
            "the service-role key leaked:\n{output}"
        );
        let report = serde_json::from_str(&process.stdout()).unwrap_or(Value::Null);
        (status.code().unwrap_or(-1), report, output)
    }
}

fn decision<'a>(report: &'a Value, service: &str) -> &'a str {
    report["services"]
        .as_array()
        .unwrap_or_else(|| panic!("no services in {report}"))
        .iter()
        .find(|s| s["service"] == service)
        .unwrap_or_else(|| panic!("no {service} in {report}"))["decision"]
        .as_str()
        .unwrap()
}

#[test]
fn waiting_jobs_start_one_pool_service_each_in_both_regions_and_no_other_service() {
    let world = World::new();
    let a = Svc(EAST, "pool", "tendril-a");
    let b = Svc(EAST, "pool", "tendril-b");
    let c = Svc(CENTRAL, "pool-eu", "tendril-c");
    let other = Svc(EAST, "pool", "other-app");
    world.pool_service(a, "worker-a", 0);
    world.pool_service(b, "worker-b", 0);
    // Not tagged for the pool: it is in the pool because WORKERS lists it.
    world.service(c, &[], 0);
    world.service(other, &[("team", "web")], 0);
    let workers = json!([{"region": CENTRAL, "cluster": "pool-eu", "service": "tendril-c", "worker_id": "worker-c"}]);
    let secret = world.moto.aws(&[
        "secretsmanager",
        "create-secret",
        "--name",
        "tendril/supabase-service-role-key",
        "--secret-string",
        KEY,
    ]);
    let secret_arn = secret["ARN"].as_str().unwrap().to_string();
    world.jobs.add_job("QUEUED", None, None);
    world.jobs.add_job("QUEUED", None, None);
    // Jobs of a worker outside the pool are not the pool's to take.
    world.jobs.add_job("QUEUED", Some("outsider"), None);
    world
        .jobs
        .add_job("PROCESSING", Some("outsider"), Some("outsider"));
    let env = [
        ("WORKERS", workers.to_string()),
        ("SUPABASE_SERVICE_ROLE_KEY_SECRET_ARN", secret_arn),
        ("TENDRIL_SCALER_RECOVER_STALE_JOBS", "true".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let (code, report, output) = world.pass(&env);
    assert_eq!(code, 0, "{output}");
    assert_eq!(
        (report["unassigned"].as_u64(), report["assigned"].as_u64()),
        (Some(2), Some(0))
    );
    let up: Vec<i64> = [a, b, c].iter().map(|s| world.desired(*s)).collect();
    assert_eq!(
        up.iter().sum::<i64>(),
        2,
        "two jobs, two services: {up:?}\n{output}"
    );
    assert_eq!(
        world.desired(other),
        0,
        "a service outside the pool is never touched"
    );
    assert_eq!(report["services"].as_array().unwrap().len(), 3, "{report}");
    for name in ["tendril-a", "tendril-b", "tendril-c"] {
        let lines = output
            .lines()
            .filter(|l| l.contains(name) && l.contains("desired"))
            .count();
        assert_eq!(lines, 1, "one summary line for {name}:\n{output}");
    }

    // A job assigned to the worker still at zero starts it.
    let idle = [(a, "tendril-a"), (b, "tendril-b"), (c, "tendril-c")]
        .into_iter()
        .find(|(s, _)| world.desired(*s) == 0)
        .unwrap();
    let worker = format!("worker-{}", idle.1.trim_start_matches("tendril-"));
    world.jobs.add_job("QUEUED", Some(&worker), None);
    let (code, report, output) = world.pass(&env);
    assert_eq!(code, 0, "{output}");
    assert_eq!(world.desired(idle.0), 1, "{report}");
    let all: Vec<i64> = [a, b, c].iter().map(|s| world.desired(*s)).collect();
    assert_eq!(all, [1, 1, 1], "both regions' services are up");
    assert!(
        decision(&report, idle.1).starts_with("scaled up: 1 job assigned"),
        "{report}"
    );

    let requests = world.jobs.requests();
    assert_eq!(requests[0].path, "/rest/v1/rpc/recover_stale_jobs");
    let counts: Vec<_> = requests
        .iter()
        .filter(|r| r.path.ends_with("provision_jobs"))
        .collect();
    assert!(!counts.is_empty());
    for count in counts {
        assert_eq!(count.prefer.as_deref(), Some("count=exact"), "{count:?}");
        assert_eq!(count.range.as_deref(), Some("0-0"), "{count:?}");
    }
}

#[test]
fn an_idle_worker_goes_to_zero_only_after_the_idle_time_and_a_busy_one_never() {
    let world = World::new();
    let busy = Svc(EAST, "pool", "tendril-busy");
    let idle = Svc(CENTRAL, "pool", "tendril-idle");
    world.pool_service(busy, "worker-busy", 1);
    world.pool_service(idle, "worker-idle", 1);
    let job = world.jobs.add_job("PROCESSING", None, Some("worker-busy"));
    let env = [("TENDRIL_SCALER_IDLE_TIME", "10m")];

    let before = SystemTime::now() - Duration::from_secs(1);
    let (code, report, output) = world.pass(&env);
    assert_eq!(code, 0, "{output}");
    assert_eq!(
        decision(&report, "tendril-busy"),
        "kept: its worker is busy"
    );
    assert!(decision(&report, "tendril-idle").starts_with("idle: its idle time starts now"));
    let since = world
        .tag(idle, "tendril:idle-since")
        .expect("the idle time is a tag");
    assert!(
        since >= rfc3339(before) && since <= rfc3339(SystemTime::now()),
        "{since}"
    );
    assert_eq!(world.tag(busy, "tendril:idle-since"), None);

    // Each pass is a new process: the idle time lives in the tag only.
    let (_, report, _) = world.pass(&env);
    assert!(
        decision(&report, "tendril-idle").starts_with("idle for"),
        "{report}"
    );
    assert_eq!(world.tag(idle, "tendril:idle-since"), Some(since));

    // Time passes (the tag is moved back): not yet, then past the idle time.
    world.set_idle_since(idle, SystemTime::now() - Duration::from_secs(9 * 60));
    let (_, report, _) = world.pass(&env);
    assert!(
        decision(&report, "tendril-idle").starts_with("idle for 9m"),
        "{report}"
    );
    assert_eq!((world.desired(busy), world.desired(idle)), (1, 1));
    world.set_idle_since(idle, SystemTime::now() - Duration::from_secs(11 * 60));
    world.set_idle_since(busy, SystemTime::now() - Duration::from_secs(11 * 60));
    let (code, report, output) = world.pass(&env);
    assert_eq!(code, 0, "{output}");
    assert!(
        decision(&report, "tendril-idle").starts_with("scaled down: idle for 11m"),
        "{report}"
    );
    assert_eq!(world.desired(idle), 0);
    assert_eq!(world.tag(idle, "tendril:idle-since"), None);
    assert_eq!(world.desired(busy), 1, "a busy worker is never scaled down");
    assert_eq!(world.tag(busy, "tendril:idle-since"), None, "nor idle");

    world.jobs.set_status(&job, "SUCCESS");
    let (_, report, _) = world.pass(&env);
    assert!(decision(&report, "tendril-busy").starts_with("idle: its idle time starts now"));
    assert_eq!(world.desired(busy), 1);
}

#[test]
fn new_work_resets_the_idle_time() {
    let world = World::new();
    let svc = world.service_idle_for_an_hour();
    let job = world.jobs.add_job("QUEUED", None, None);

    let (code, report, output) = world.pass(&[]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(
        decision(&report, "tendril-a"),
        "kept: its worker will take a waiting job"
    );
    assert_eq!(
        world.tag(svc, "tendril:idle-since"),
        None,
        "work reset the idle time"
    );

    world.jobs.set_status(&job, "SUCCESS");
    let (_, report, _) = world.pass(&[]);
    assert!(decision(&report, "tendril-a").starts_with("idle: its idle time starts now"));
    assert_eq!(world.desired(svc), 1, "the old idle time no longer counts");

    // A job that came and went between two passes counts as work too.
    world.set_idle_since(svc, SystemTime::now() - Duration::from_secs(3600));
    world.jobs.add_job("SUCCESS", None, Some("worker-a"));
    let (_, report, _) = world.pass(&[]);
    assert!(
        decision(&report, "tendril-a").starts_with("idle: its idle time starts now"),
        "{report}"
    );
    assert_eq!(world.desired(svc), 1);
}

#[test]
fn a_job_claimed_while_the_pass_runs_keeps_the_service_up() {
    let world = World::new();
    let svc = world.service_idle_for_an_hour();
    // The pass counts four times (waiting, assigned, busy, finished since
    // the tag), then asks again before scaling down: by then it has a job.
    world.jobs.add_job_later(4, "CLAIMED", Some("worker-a"));
    let (code, report, output) = world.pass(&[]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(
        decision(&report, "tendril-a"),
        "kept: work came while the pass ran"
    );
    assert_eq!(world.desired(svc), 1);
}

#[test]
fn a_postgrest_error_changes_no_service_and_the_pass_reports_it() {
    let world = World::new();
    let svc = world.service_idle_for_an_hour();
    let before = world.tag(svc, "tendril:idle-since");
    world.jobs.fail_next(&[503]);

    let (code, _, output) = world.pass(&[]);
    assert_eq!(code, 1, "{output}");
    assert!(
        output.contains("cannot count jobs, so no service was changed"),
        "{output}"
    );
    assert!(output.contains("503"), "{output}");
    assert_eq!(world.desired(svc), 1);
    assert_eq!(world.tag(svc, "tendril:idle-since"), before);

    // A wrong key is refused by PostgREST and changes nothing either.
    let (code, _, output) = world.pass(&[("SUPABASE_SERVICE_ROLE_KEY", "not-the-key")]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("401"), "{output}");
    assert_eq!(world.desired(svc), 1);
}

fn url_call(headers: Value) -> Value {
    json!({"version": "2.0", "rawPath": "/", "headers": headers, "isBase64Encoded": false,
           "requestContext": {"http": {"method": "POST", "path": "/", "sourceIp": "198.51.100.7"}}})
}

#[test]
fn the_lambda_loop_refuses_url_calls_without_the_secret_scales_otherwise_and_reports_errors() {
    let world = World::new();
    let svc = Svc(EAST, "pool", "tendril-a");
    world.pool_service(svc, "worker-a", 0);
    world.jobs.add_job("QUEUED", None, None);
    let lambda = FakeLambda::start();
    // As Lambda runs it: the binary is `bootstrap`, started with no argument.
    let mut command = Tendril::command();
    command
        .envs(world.moto.platform_env())
        .env("SUPABASE_URL", world.jobs.url())
        .env("SUPABASE_SERVICE_ROLE_KEY", KEY)
        .env("TENDRIL_SCALER_SECRET", URL_SECRET)
        .env("AWS_LAMBDA_RUNTIME_API", lambda.address())
        .env("AWS_LAMBDA_FUNCTION_NAME", "tendril-scaler");
    let mut scaler = TendrilProcess::spawn(command);

    for headers in [json!({}), json!({"x-tendril-scaler-secret": "guess"})] {
        let id = lambda.invoke(url_call(headers));
        let Outcome::Response(answer) = lambda.wait_outcome(&id, WAIT) else {
            panic!("a refusal is a response")
        };
        assert_eq!(answer["statusCode"], 401, "{answer}");
        assert_eq!(world.desired(svc), 0, "a refused call starts no pass");
    }

    let id = lambda.invoke(url_call(json!({"x-tendril-scaler-secret": URL_SECRET})));
    let Outcome::Response(answer) = lambda.wait_outcome(&id, WAIT) else {
        panic!("a pass is a response")
    };
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let report: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(report["services"][0]["desired_after"], 1, "{report}");
    assert_eq!(world.desired(svc), 1);

    world.jobs.fail_next(&[500]);
    let scheduled = json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
    let id = lambda.invoke(scheduled.clone());
    match lambda.wait_outcome(&id, WAIT) {
        Outcome::Error(body, kind) => {
            assert!(
                body["errorMessage"]
                    .as_str()
                    .unwrap()
                    .contains("cannot count jobs"),
                "{body}"
            );
            assert_eq!(kind.as_deref(), Some("Tendril.ScalerError"));
        }
        other => panic!("a failed pass is an error report, not {other:?}"),
    }
    // The loop goes on after an error.
    let id = lambda.invoke(scheduled);
    let Outcome::Response(report) = lambda.wait_outcome(&id, WAIT) else {
        panic!("the next scheduled pass is a response")
    };
    assert_eq!(report["unassigned"], 1, "{report}");
    scaler.signal(libc::SIGKILL);
    let output = scaler.output();
    assert!(
        !output.contains(URL_SECRET) && !output.contains(KEY),
        "{output}"
    );
    assert!(
        output.contains("refused a Function URL call from 198.51.100.7"),
        "{output}"
    );
}

#[test]
fn on_lambda_a_url_without_its_secret_is_an_init_error() {
    let world = World::new();
    let lambda = FakeLambda::start();
    let mut command = world.scaler(&[("AWS_LAMBDA_RUNTIME_API", &lambda.address())]);
    command.env("SUPABASE_SERVICE_ROLE_KEY", KEY);
    let mut scaler = TendrilProcess::spawn(command);
    let status = scaler.wait_timeout(WAIT).expect("the scaler exits");
    assert_eq!(status.code(), Some(2), "{}", scaler.output());
    let errors = lambda.init_errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("TENDRIL_SCALER_SECRET"),
        "{errors:?}"
    );
}
