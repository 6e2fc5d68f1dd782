//! `tendril scaler` against real moto ECS and Secrets Manager (two
//! regions), a strict fake PostgREST, and a fake Lambda Runtime API.
//!
//! Tasks never run in moto: a service created with a desired count has
//! runningCount 0 (its tasks stay pending), one scaled by UpdateService
//! reports runningCount equal to its new desired count, and the primary
//! deployment's createdAt is when the service was created. So a service
//! created at desired 1 is one still getting its task: within the start-up
//! budget (5m unless a test sets it) it counts as a worker, as on ECS.

use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::support::fake_lambda::{FakeLambda, Outcome};
use crate::support::fake_postgrest::FakePostgrest;
use crate::support::moto::Moto;
use crate::support::rfc3339;
use crate::support::tendril::{Tendril, TendrilProcess};
use serde_json::{json, Value};

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
    // The pass recovers stale jobs, counts four times (waiting, assigned,
    // busy, finished since the tag), then asks again before scaling down:
    // by then it has a job.
    world.jobs.add_job_later(5, "CLAIMED", Some("worker-a"));
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
    // The stale-job recovery fails (a warning), then the first count.
    world.jobs.fail_next(&[503, 503]);

    let (code, _, output) = world.pass(&[]);
    assert_eq!(code, 1, "{output}");
    assert!(
        output.contains("cannot count jobs, so no service was changed"),
        "{output}"
    );
    // PostgREST's 503 (its database unreachable) is an outage, not a refusal.
    assert!(
        output.contains("PostgREST is unavailable for count of provision_jobs")
            && output.contains("HTTP 503"),
        "{output}"
    );
    assert!(!output.contains("refused"), "{output}");
    assert_eq!(world.desired(svc), 1);
    assert_eq!(world.tag(svc, "tendril:idle-since"), before);

    // A wrong key is refused by PostgREST and changes nothing either; the
    // message says what to check.
    let (code, _, output) = world.pass(&[("SUPABASE_SERVICE_ROLE_KEY", "not-the-key")]);
    assert_eq!(code, 1, "{output}");
    assert!(
        output.contains("PostgREST refused count of provision_jobs")
            && output.contains("(HTTP 401): Invalid API key; check SUPABASE_SERVICE_ROLE_KEY"),
        "{output}"
    );
    assert_eq!(world.desired(svc), 1);
}

#[test]
fn stale_jobs_are_recovered_by_default_and_not_when_turned_off() {
    let world = World::new();
    world.service_idle_for_an_hour();
    let (code, _, output) = world.pass(&[]);
    assert_eq!(code, 0, "{output}");
    let requests = world.jobs.requests();
    assert_eq!(requests[0].path, "/rest/v1/rpc/recover_stale_jobs");
    let recoveries = |requests: &[crate::support::fake_postgrest::RecordedQuery]| {
        requests
            .iter()
            .filter(|r| r.path.ends_with("recover_stale_jobs"))
            .count()
    };
    assert_eq!(recoveries(&requests), 1);

    let (code, _, output) = world.pass(&[("TENDRIL_SCALER_RECOVER_STALE_JOBS", "false")]);
    assert_eq!(code, 0, "{output}");
    let later = world.jobs.requests();
    assert!(later.len() > requests.len(), "the pass counted");
    assert_eq!(recoveries(&later), 1, "no second recovery: {later:?}");
}

#[test]
fn a_service_not_starting_takes_no_job_another_starts_and_only_idleness_stops_it() {
    let world = World::new();
    let stuck = Svc(EAST, "pool", "tendril-stuck");
    let spare = Svc(EAST, "pool", "tendril-spare");
    // Created at desired 1: in moto its task never runs.
    world.pool_service(stuck, "worker-stuck", 1);
    world.pool_service(spare, "worker-spare", 0);
    let job = world.jobs.add_job("QUEUED", None, None);

    // Within its start-up budget it is a worker that will take the job.
    let (code, report, output) = world.pass(&[]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(
        decision(&report, "tendril-stuck"),
        "kept: its worker will take a waiting job"
    );
    assert_eq!(world.desired(spare), 0, "{report}");
    assert!(
        world.tag(stuck, "tendril:starting-since").is_some(),
        "its start-up clock is a tag"
    );
    assert_eq!(report["not_starting"], json!([]), "{report}");

    // Past the budget (a short one here; the clock started with the
    // service) it is not starting: the spare is started for the job.
    std::thread::sleep(Duration::from_secs(3));
    let short = [("TENDRIL_SCALER_STARTUP_BUDGET", "1s")];
    let (code, report, output) = world.pass(&short);
    assert_eq!(code, 0, "{output}");
    let said = decision(&report, "tendril-stuck");
    assert!(
        said.starts_with("not starting: desired 1, no task running for ")
            && said.ends_with("; kept: work is waiting in the pool"),
        "{report}"
    );
    assert!(
        decision(&report, "tendril-spare").starts_with("scaled up: 1 job waiting"),
        "{report}"
    );
    assert_eq!((world.desired(stuck), world.desired(spare)), (1, 1));
    let flagged = report["not_starting"].as_array().unwrap();
    assert_eq!(flagged.len(), 1, "{report}");
    let flagged = flagged[0].as_str().unwrap();
    assert!(
        flagged.starts_with("us-east-1 pool/tendril-stuck: not starting: desired 1"),
        "{flagged}"
    );
    assert!(
        output.lines().any(|l| l.contains("WARN")
            && l.contains("tendril-stuck")
            && l.contains("not starting")),
        "a warning for the log's alarms:\n{output}"
    );
    assert!(world.tag(spare, "tendril:starting-since").is_some());

    // Nothing waits: the idle rules only. The spare's task runs (moto says
    // so once UpdateService set it), which stops its start-up clock.
    world.jobs.set_status(&job, "SUCCESS");
    let (code, report, output) = world.pass(&short);
    assert_eq!(code, 0, "{output}");
    let said = decision(&report, "tendril-stuck");
    assert!(
        said.starts_with("not starting: ") && said.contains("; idle: its idle time starts now"),
        "{report}"
    );
    assert_eq!(world.desired(stuck), 1, "not starting alone stops nothing");
    assert_eq!(world.tag(spare, "tendril:starting-since"), None, "{report}");
    world.set_idle_since(stuck, SystemTime::now() - Duration::from_secs(3600));
    let (code, report, output) = world.pass(&short);
    assert_eq!(code, 0, "{output}");
    assert!(
        decision(&report, "tendril-stuck").contains("scaled down: idle for 1h"),
        "{report}"
    );
    assert_eq!(world.desired(stuck), 0);
    assert_eq!(world.tag(stuck, "tendril:starting-since"), None);
    assert_eq!(world.tag(stuck, "tendril:idle-since"), None);
}

/// A Function URL call as AWS hands it to the function (payload 2.0): a
/// POST with no body and the headers every HTTP client sends, plus these.
fn url_call(extra_headers: Value) -> Value {
    let mut headers = json!({"content-length": "0", "host": "abc123.lambda-url.us-east-1.on.aws",
                             "x-forwarded-for": "198.51.100.7", "x-forwarded-proto": "https",
                             "user-agent": "Deno/2.1.4", "accept": "*/*"});
    for (name, value) in extra_headers.as_object().unwrap() {
        headers[name] = value.clone();
    }
    json!({"version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
           "headers": headers, "isBase64Encoded": false,
           "requestContext": {"accountId": "anonymous", "apiId": "abc123",
                              "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1",
                                       "sourceIp": "198.51.100.7", "userAgent": "Deno/2.1.4"}}})
}

/// What Trellis sends when it queues a job: a bare POST.
fn ping() -> Value {
    url_call(json!({}))
}

fn scheduled() -> Value {
    json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}})
}

/// The scaler as Lambda runs it: the binary is `bootstrap`, started with no
/// argument, against a fake Runtime API.
struct OnLambda {
    lambda: FakeLambda,
    scaler: TendrilProcess,
}

impl OnLambda {
    fn start(world: &World, extra: &[(&str, &str)]) -> OnLambda {
        let lambda = FakeLambda::start();
        let mut command = Tendril::command();
        command
            .envs(world.moto.platform_env())
            .env("SUPABASE_URL", world.jobs.url())
            .env("SUPABASE_SERVICE_ROLE_KEY", KEY)
            .env("TENDRIL_SCALER_SECRET", URL_SECRET)
            .env("AWS_LAMBDA_RUNTIME_API", lambda.address())
            .env("AWS_LAMBDA_FUNCTION_NAME", "tendril-scaler")
            .envs(extra.iter().copied());
        let scaler = TendrilProcess::spawn(command);
        OnLambda { lambda, scaler }
    }

    /// Invokes with `event`; the response (a failed invocation panics).
    fn invoke(&self, event: Value) -> Value {
        let id = self.lambda.invoke(event);
        match self.lambda.wait_outcome(&id, WAIT) {
            Outcome::Response(answer) => answer,
            other => panic!("an invocation error: {other:?}"),
        }
    }

    /// Stops the scaler; its output, checked for secrets.
    fn stop(mut self) -> String {
        self.scaler.signal(libc::SIGKILL);
        let output = self.scaler.output();
        assert!(
            !output.contains(URL_SECRET) && !output.contains(KEY),
            "{output}"
        );
        output
    }
}

#[test]
fn a_bare_url_call_starts_a_stopped_service_for_a_waiting_job_and_answers_202() {
    let world = World::new();
    let a = Svc(EAST, "pool", "tendril-a");
    world.pool_service(a, "worker-a", 0);
    world.jobs.add_job("QUEUED", None, None);
    let on_lambda = OnLambda::start(&world, &[]);

    let answer = on_lambda.invoke(ping());
    assert_eq!(answer["statusCode"], 202, "{answer}");
    assert!(
        !answer.to_string().contains("tendril-a"),
        "a caller without the secret learns nothing of the pool: {answer}"
    );
    assert_eq!(world.desired(a), 1);
    assert!(world.tag(a, "tendril:starting-since").is_some());
    let requests = world.jobs.requests();
    assert!(
        !requests
            .iter()
            .any(|r| r.path.contains("recover_stale_jobs")),
        "a ping pass recovers no jobs: {requests:?}"
    );
    let output = on_lambda.stop();
    assert!(
        output.contains("a ping from 198.51.100.7: a scale-up-only pass"),
        "{output}"
    );
}

#[test]
fn a_bare_url_call_never_scales_an_idle_service_down_where_a_full_pass_does() {
    let world = World::new();
    let svc = world.service_idle_for_an_hour();
    let tags_before = world.described(svc)["tags"].clone();
    let on_lambda = OnLambda::start(&world, &[]);

    let answer = on_lambda.invoke(ping());
    assert_eq!(answer["statusCode"], 202, "{answer}");
    assert_eq!(world.desired(svc), 1, "a ping never scales down");
    assert_eq!(
        world.described(svc)["tags"],
        tags_before,
        "nor touches a tag of a service it does not start"
    );

    let report = on_lambda.invoke(scheduled());
    assert!(
        decision(&report, "tendril-a").starts_with("scaled down: idle for 1h"),
        "{report}"
    );
    assert_eq!(world.desired(svc), 0);
    on_lambda.stop();
}

#[test]
fn two_bare_calls_within_the_ping_interval_run_one_pass() {
    let world = World::new();
    let a = Svc(EAST, "pool", "tendril-a");
    let b = Svc(EAST, "pool", "tendril-b");
    world.pool_service(a, "worker-a", 0);
    world.pool_service(b, "worker-b", 0);
    world.jobs.add_job("QUEUED", None, None);
    let on_lambda = OnLambda::start(&world, &[("TENDRIL_SCALER_PING_INTERVAL", "1h")]);

    assert_eq!(on_lambda.invoke(ping())["statusCode"], 202);
    assert_eq!(world.desired(a) + world.desired(b), 1);
    let counted = world.jobs.requests().len();
    world.jobs.add_job("QUEUED", None, None);
    let answer = on_lambda.invoke(ping());
    assert_eq!(answer["statusCode"], 202, "{answer}");
    assert_eq!(world.jobs.requests().len(), counted, "no second pass");
    assert_eq!(world.desired(a) + world.desired(b), 1);

    // The secret still gets a full pass at any time.
    let answer = on_lambda.invoke(url_call(json!({"x-tendril-scaler-secret": URL_SECRET})));
    assert_eq!(answer["statusCode"], 200, "{answer}");
    assert_eq!((world.desired(a), world.desired(b)), (1, 1));
    let output = on_lambda.stop();
    assert!(
        output.contains("a ping from 198.51.100.7: no pass, one ran less than 1h ago"),
        "{output}"
    );
}

#[test]
fn a_wrong_secret_is_refused_and_changes_nothing_the_right_one_and_the_schedule_run_full_passes() {
    let world = World::new();
    let svc = Svc(EAST, "pool", "tendril-a");
    world.pool_service(svc, "worker-a", 0);
    world.jobs.add_job("QUEUED", None, None);
    let on_lambda = OnLambda::start(&world, &[]);

    for guess in ["guess", ""] {
        let answer = on_lambda.invoke(url_call(json!({ "x-tendril-scaler-secret": guess })));
        assert_eq!(answer["statusCode"], 401, "{answer}");
        assert_eq!(world.desired(svc), 0, "a refused call starts no pass");
        assert!(world.jobs.requests().is_empty(), "nor counts anything");
    }

    let answer = on_lambda.invoke(url_call(json!({"x-tendril-scaler-secret": URL_SECRET})));
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let report: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(report["services"][0]["desired_after"], 1, "{report}");
    assert_eq!(world.desired(svc), 1);
    assert_eq!(
        world.jobs.requests()[0].path,
        "/rest/v1/rpc/recover_stale_jobs",
        "a full pass recovers stale jobs"
    );

    // The recovery and the first count fail: the pass cannot count.
    world.jobs.fail_next(&[500, 500]);
    let id = on_lambda.lambda.invoke(scheduled());
    match on_lambda.lambda.wait_outcome(&id, WAIT) {
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
    let report = on_lambda.invoke(scheduled());
    assert_eq!(report["unassigned"], 1, "{report}");
    let output = on_lambda.stop();
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
