//! Operating Tendril: the health endpoint over a real socket, the metrics
//! read by a real Prometheus text-format parser (prometheus-parse),
//! `tendril health`, and the `--once` and `--exit-after-idle` modes, against
//! the fake Trellis (a fake) and real moto.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::fake_trellis::FakeTrellis;
use crate::support::moto::Moto;
use crate::support::tendril::{worker_env, Tendril, TendrilProcess, WorkerEnv};
use crate::support::TempDir;
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(90);

struct World {
    moto: Moto,
    trellis: FakeTrellis,
    _scratch: TempDir,
    worker: WorkerEnv,
}

impl World {
    fn new() -> World {
        let moto = Moto::start();
        let trellis = FakeTrellis::start();
        let scratch = TempDir::new("tendril-health-test");
        let worker = worker_env(&trellis, &scratch.path().join("work"));
        World {
            moto,
            trellis,
            _scratch: scratch,
            worker,
        }
    }

    fn start(&self, args: &[&str], extra: &[(&str, &str)]) -> TendrilProcess {
        let mut command = self.worker.command();
        command
            .arg("start")
            .args(args)
            .envs(self.moto.platform_env())
            .env("TENDRIL_AWS_REGIONS", "us-east-1")
            .envs(extra.iter().copied());
        TendrilProcess::spawn(command)
    }

    fn enqueue(&self, account: &str) -> String {
        let role = format!("arn:aws:iam::{account}:role/vintner-tendril");
        self.trellis.enqueue_with_identity(
            json!({"job_type": "FETCH_RESOURCES", "config_snapshot": {}}),
            json!({"provider": "aws", "role_arn": role, "external_id": "ext-1"}),
        )
    }

    fn wait_status(&self, job: &str, status: &str) {
        self.trellis
            .wait_until(LONG, &format!("{job} {status}"), |t| {
                t.job(job).is_some_and(|row| row["status"] == status)
            });
    }
}

/// The address the worker's health listener took (it binds port 0).
fn health_address(tendril: &mut TendrilProcess) -> String {
    tendril.wait_for_output("health and metrics on http://", LONG);
    let output = tendril.output();
    let rest = output
        .split("health and metrics on http://")
        .nth(1)
        .unwrap();
    rest.split_whitespace().next().unwrap().to_string()
}

/// A GET over a plain socket: (status, body).
fn get(address: &str, path: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let answer = reqwest::Client::new()
            .get(format!("http://{address}{path}"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        (answer.status().as_u16(), answer.text().await.unwrap())
    })
}

/// `tendril health` against `address`: its exit code and output.
fn tendril_health(address: &str) -> (i32, String) {
    let output = Tendril::command()
        .arg("health")
        .env("TENDRIL_HEALTH_ADDR", address)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

fn scrape(address: &str) -> prometheus_parse::Scrape {
    let (status, text) = get(address, "/metrics");
    assert_eq!(status, 200, "{text}");
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The value of the sample named `metric` whose labels include `labels`.
fn sample(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

#[test]
fn health_and_metrics_are_served_and_follow_trellis_and_the_jobs() {
    let world = World::new();
    let mut tendril = world.start(&[], &[("TENDRIL_HEALTH_ADDR", "127.0.0.1:0")]);
    let address = health_address(&mut tendril);
    world.trellis.wait_until(LONG, "the first claim", |t| {
        t.requests().iter().any(|r| r.path == "/api/jobs/claim")
    });
    let (status, body) = get(&address, "/healthz");
    assert_eq!(status, 200, "{body}");
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["draining"], false);
    assert!(health["current_job_id"].is_null());
    assert!(health["last_trellis_contact_seconds"].as_f64().unwrap() < 5.0);
    assert_eq!(tendril_health(&address).0, 0);
    assert_eq!(get(&address, "/elsewhere").0, 404);

    let job = world.enqueue("616161616161");
    world.wait_status(&job, "SUCCESS");
    let metrics = scrape(&address);
    let families: BTreeSet<&str> = metrics.docs.keys().map(String::as_str).collect();
    assert_eq!(
        families,
        BTreeSet::from([
            "tendril_jobs",
            "tendril_job_duration_seconds",
            "tendril_busy",
            "tendril_draining",
            "tendril_trellis_requests",
            "tendril_trellis_last_contact_timestamp_seconds",
            "tendril_log_bytes",
            "tendril_log_lines",
            "tendril_outbox_entries",
            "tendril_build_info",
        ]),
        "exactly these families"
    );
    let success = [("job_type", "FETCH_RESOURCES"), ("outcome", "success")];
    assert_eq!(sample(&metrics, "tendril_jobs_total", &success), Some(1.0));
    let version =
        String::from_utf8_lossy(&Tendril::command().arg("--version").output().unwrap().stdout)
            .trim()
            .trim_start_matches("tendril ")
            .to_string();
    assert_eq!(
        sample(
            &metrics,
            "tendril_build_info",
            &[("version", version.as_str())]
        ),
        Some(1.0)
    );
    assert!(
        sample(
            &metrics,
            "tendril_trellis_requests_total",
            &[("endpoint", "claim"), ("code", "200")]
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        sample(
            &metrics,
            "tendril_trellis_requests_total",
            &[("endpoint", "status"), ("code", "200")]
        )
        .unwrap()
            >= 2.0
    );
    assert!(sample(&metrics, "tendril_log_lines_total", &[]).unwrap() > 0.0);
    assert!(sample(&metrics, "tendril_log_bytes_total", &[]).unwrap() > 0.0);
    assert_eq!(sample(&metrics, "tendril_busy", &[]), Some(0.0));
    assert_eq!(sample(&metrics, "tendril_outbox_entries", &[]), Some(0.0));
    assert!(
        sample(
            &metrics,
            "tendril_trellis_last_contact_timestamp_seconds",
            &[]
        )
        .unwrap()
            > 1.7e9
    );
    let duration = metrics
        .samples
        .iter()
        .find(|s| s.metric == "tendril_job_duration_seconds")
        .expect("the duration histogram");
    assert!(matches!(
        duration.value,
        prometheus_parse::Value::Histogram(_)
    ));

    // Trellis gone for longer than two heartbeat intervals (1s here).
    world.trellis.go_down();
    std::thread::sleep(Duration::from_secs(4));
    let (status, body) = get(&address, "/healthz");
    assert_eq!(status, 503, "{body}");
    let (code, output) = tendril_health(&address);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("unhealthy"), "{output}");
    let errors = scrape(&address);
    assert!(
        sample(
            &errors,
            "tendril_trellis_requests_total",
            &[("endpoint", "heartbeat"), ("code", "error")]
        )
        .unwrap()
            >= 1.0
    );
    world.trellis.come_back();
    world.trellis.wait_until(LONG, "healthy again", |_| {
        get(&address, "/healthz").0 == 200
    });
    tendril.signal(libc::SIGTERM);
    assert_eq!(tendril.wait_timeout(LONG).and_then(|s| s.code()), Some(0));
}

#[test]
fn trelliss_own_errors_keep_the_worker_healthy_and_an_ingress_page_does_not() {
    let world = World::new();
    let mut tendril = world.start(&[], &[("TENDRIL_HEALTH_ADDR", "127.0.0.1:0")]);
    let address = health_address(&mut tendril);
    world
        .trellis
        .wait_until(LONG, "healthy", |_| get(&address, "/healthz").0 == 200);
    // Trellis's database down for longer than two heartbeat intervals (1s
    // here): every answer is Trellis's own 500, and Trellis is there.
    world.trellis.database_down("connection to server failed");
    std::thread::sleep(Duration::from_secs(4));
    let (status, body) = get(&address, "/healthz");
    assert_eq!(status, 200, "{body}");
    world.trellis.database_back();
    // An ingress answering its own 404 page (Trellis redeploying) is no
    // answer of Trellis's.
    world.trellis.ingress_pages(404);
    std::thread::sleep(Duration::from_secs(4));
    let (status, body) = get(&address, "/healthz");
    assert_eq!(status, 503, "{body}");
    world.trellis.clear_faults();
    world.trellis.wait_until(LONG, "healthy again", |_| {
        get(&address, "/healthz").0 == 200
    });
    tendril.signal(libc::SIGTERM);
    assert_eq!(tendril.wait_timeout(LONG).and_then(|s| s.code()), Some(0));
}

#[test]
fn tendril_health_without_an_address_is_a_setting_error() {
    let output = Tendril::command().arg("health").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("tendril: TENDRIL_HEALTH_ADDR"),
        "{stderr}"
    );
}

#[test]
fn once_runs_one_job_delivers_it_and_exits_with_its_outcome() {
    let world = World::new();
    let job = world.enqueue("626262626262");
    let later = world.enqueue("626262626262");
    let mut tendril = world.start(&["--once"], &[]);
    assert_eq!(
        tendril.wait_timeout(LONG).and_then(|s| s.code()),
        Some(0),
        "{}",
        tendril.output()
    );
    assert_eq!(world.trellis.job(&job).unwrap()["status"], "SUCCESS");
    assert_eq!(
        world.trellis.job(&later).unwrap()["status"],
        "QUEUED",
        "one job only"
    );
    let beats = world.trellis.heartbeats(&world.worker.id);
    assert_eq!(beats.last().unwrap()["status"], "OFFLINE");

    let failing = world.trellis.enqueue(json!({"job_type": "MAKE_COFFEE"}));
    world
        .trellis
        .set_job_field(&later, "status", json!("DONE-ELSEWHERE"));
    let mut tendril = world.start(&["--once"], &[]);
    assert_eq!(
        tendril.wait_timeout(LONG).and_then(|s| s.code()),
        Some(1),
        "{}",
        tendril.output()
    );
    assert_eq!(world.trellis.job(&failing).unwrap()["status"], "FAILED");
}

#[test]
fn exit_after_idle_exits_zero_after_an_empty_claim_past_the_time() {
    let world = World::new();
    let mut tendril = world.start(&["--exit-after-idle", "1s"], &[]);
    let status = tendril.wait_timeout(LONG).expect("it exits by itself");
    assert_eq!(status.code(), Some(0), "{}", tendril.output());
    assert!(
        tendril.output().contains("no job for 1s: exiting"),
        "{}",
        tendril.output()
    );
    let beats = world.trellis.heartbeats(&world.worker.id);
    assert_eq!(beats.last().unwrap()["status"], "OFFLINE");
    let last_request = world
        .trellis
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.path == "/api/jobs/claim")
        .unwrap();
    assert_eq!(
        last_request.status, 200,
        "it decided after an answered claim"
    );
}
