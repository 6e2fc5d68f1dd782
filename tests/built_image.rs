//! Tendril's image as `scripts/build-image.sh` builds it from the Dockerfile
//! (podman; the tool downloads replaced by local files, everything else as
//! written), run: `tendril version` and `tendril doctor` in it, and `tendril
//! start` against the fake Trellis (a fake) on the host's loopback. The
//! worker runs as uid 10001, heartbeats, plans the example vine from the
//! image's own templates with local state, passes its HEALTHCHECK, and
//! drains on `podman stop` with exit 0. Each variant carries its own
//! cloud's CLIs and no other.

use std::time::Duration;

use crate::support::fake_trellis::FakeTrellis;
use crate::support::podman::{built_image, podman_ok, Container};
use crate::support::tendril::worker_env;
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(180);

/// What `tendril version` prints in the image: tool name to version.
fn versions(image: &str) -> (String, Vec<(String, String)>) {
    let printed = podman_ok(&["run", "--rm", "--no-healthcheck", image, "version"]);
    let mut lines = printed.lines();
    let tendril = lines.next().unwrap_or_default().to_string();
    let tools = lines
        .filter_map(|line| line.split_once(' '))
        .map(|(tool, version)| (tool.to_string(), version.to_string()))
        .collect();
    (tendril, tools)
}

fn version_of<'a>(tools: &'a [(String, String)], tool: &str) -> &'a str {
    tools
        .iter()
        .find(|(name, _)| name == tool)
        .map(|(_, version)| version.as_str())
        .unwrap_or_else(|| panic!("`tendril version` names no {tool}: {tools:?}"))
}

/// The real uid of a process of this host.
fn uid_of(pid: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().to_string()
}

/// The PLAN of the example vine (`examples/plan.json`), as Trellis queues it.
fn example_plan() -> Value {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/plan.json");
    let claim: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    let job = &claim["job"];
    json!({"job_type": "PLAN", "vineyard_id": job["vineyard_id"], "vine_id": job["vine_id"],
           "config_snapshot": job["config_snapshot"]})
}

/// Runs the worker of `image` against a fake Trellis and checks it end to
/// end; returns the version it reported.
fn a_worker_runs_a_job_and_drains(image: &str) -> String {
    let trellis = FakeTrellis::start();
    let env = worker_env(&trellis, std::path::Path::new("/unused"));
    let health_port = crate::support::free_port().to_string();
    let mut options = vec!["--network=host".to_string()];
    let mut vars: Vec<(String, String)> = env
        .vars
        .iter()
        .filter(|(name, _)| name != "TENDRIL_WORK_DIR")
        .cloned()
        .collect();
    vars.extend([
        ("GRAPE_WORKER_MODE".into(), "self-hosted".into()),
        ("TENDRIL_STATE_DIR".into(), "/var/lib/tendril/state".into()),
        // The host's loopback is shared: a port of this test's own.
        (
            "TENDRIL_HEALTH_ADDR".into(),
            format!("127.0.0.1:{health_port}"),
        ),
    ]);
    for (name, value) in &vars {
        options.extend(["--env".to_string(), format!("{name}={value}")]);
    }
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    let worker = Container::run(&options, image, &[]);

    trellis.wait_until(LONG, "the worker's heartbeat", |t| {
        !t.heartbeats(&env.id).is_empty()
    });
    let version = trellis.heartbeats(&env.id)[0]["version"]
        .as_str()
        .unwrap()
        .to_string();

    // tini is PID 1 and Tendril its child, both as the image's user.
    let tini = worker.inspect("{{.State.Pid}}");
    let children = std::fs::read_to_string(format!("/proc/{tini}/task/{tini}/children")).unwrap();
    let tendril = children
        .split_whitespace()
        .next()
        .expect("tini has a child");
    let comm = std::fs::read_to_string(format!("/proc/{tendril}/comm")).unwrap();
    assert_eq!(comm.trim(), "tendril");
    assert_eq!(uid_of(&tini), "10001");
    assert_eq!(uid_of(tendril), "10001");
    let id = worker.exec(&["id"]);
    assert_eq!(
        String::from_utf8_lossy(&id.stdout).trim(),
        "uid=10001(tendril) gid=10001(tendril) groups=10001(tendril)"
    );

    // `tendril doctor` with the worker's own settings, beside it.
    let doctor = worker.exec(&["tendril", "doctor", "--json"]);
    let report: Value = serde_json::from_slice(&doctor.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&doctor.stderr)));
    assert_eq!(doctor.status.code(), Some(0), "{report:#}");
    let check = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} check in {report:#}"))
            .clone()
    };
    for name in ["trellis", "work-dir", "terraform", "vine-templates"] {
        assert_eq!(check(name)["mark"], "ok", "{report:#}");
    }

    let job = trellis.enqueue(example_plan());
    trellis.wait_until(LONG, "the PLAN to end", |t| {
        t.job(&job)
            .is_some_and(|r| r["status"] == "SUCCESS" || r["status"] == "FAILED")
    });
    let row = trellis.job(&job).unwrap();
    assert_eq!(
        row["status"],
        "SUCCESS",
        "{row}\n{}\n{}",
        trellis.log_text(&job),
        worker.logs()
    );
    assert!(trellis.artifact(&job).is_some(), "the plan was uploaded");
    let log = trellis.log_text(&job);
    assert!(
        log.contains("/opt/tendril/templates/vine/aws")
            || log.contains("state: /var/lib/tendril/state/"),
        "{log}"
    );

    // The image's HEALTHCHECK (`tendril health`) passes.
    podman_ok(&["healthcheck", "run", &worker.name]);

    assert_eq!(
        worker.stop(Duration::from_secs(60)),
        0,
        "podman stop drains it: {}",
        worker.logs()
    );
    let heartbeats = trellis.heartbeats(&env.id);
    assert_eq!(heartbeats.last().unwrap()["status"], "OFFLINE");
    version
}

/// What the image is configured to run, read from the built image.
#[test]
fn the_image_runs_tendril_under_tini_as_its_user_in_var_lib_tendril() {
    let image = built_image("aws");
    let inspected: Value = serde_json::from_str(&podman_ok(&["image", "inspect", &image])).unwrap();
    let config = &inspected[0]["Config"];
    assert_eq!(
        config["Entrypoint"],
        json!(["/usr/bin/tini", "--", "tendril"])
    );
    assert_eq!(config["Cmd"], json!(["start"]));
    assert_eq!(config["User"], "10001");
    assert_eq!(config["WorkingDir"], "/var/lib/tendril");
    let env: Vec<&str> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for expected in [
        "TENDRIL_WORK_DIR=/var/lib/tendril",
        "TENDRIL_TEMPLATES_DIR=/opt/tendril/templates",
        "TENDRIL_HEALTH_ADDR=127.0.0.1:9460",
        "TENDRIL_ARGOCD_CHART=/opt/tendril/charts/argo-cd.tgz",
    ] {
        assert!(env.contains(&expected), "{expected} in {env:?}");
    }
    assert!(
        !env.iter().any(|e| e.starts_with("TENDRIL_STATE_DIR=")),
        "no local state on a container's disposable disk"
    );
    let health = &inspected[0]["Healthcheck"];
    assert_eq!(
        health["Test"],
        json!(["CMD", "tendril", "health"]),
        "{health}"
    );
    // No build tools, and the files Tendril reads where the settings say.
    let listing = podman_ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        &image,
        "-c",
        "for t in cargo rustc gcc cc curl; do command -v $t; done; \
         ls /opt/tendril/templates/vine/aws/main.tf /opt/tendril/templates/worker/aws/main.tf \
            /opt/tendril/charts/argo-cd.tgz; stat -c '%u:%g %a' /var/lib/tendril",
    ]);
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(
        lines,
        [
            "/opt/tendril/charts/argo-cd.tgz",
            "/opt/tendril/templates/vine/aws/main.tf",
            "/opt/tendril/templates/worker/aws/main.tf",
            "10001:10001 700",
        ],
        "no build tools on PATH; the templates, the chart and the work dir"
    );
}

#[test]
fn the_aws_image_runs_a_worker_with_the_aws_cli_only() {
    let image = built_image("aws");
    let (tendril, tools) = versions(&image);
    assert_eq!(version_of(&tools, "terraform"), "1.11.4");
    assert_eq!(version_of(&tools, "helm"), "4.1.4+g05fa379");
    assert_eq!(version_of(&tools, "aws"), "1.45.11");
    assert_eq!(version_of(&tools, "az"), "missing");
    assert_eq!(version_of(&tools, "gcloud"), "missing");
    let reported = a_worker_runs_a_job_and_drains(&image);
    assert_eq!(tendril, format!("tendril {reported}"));
    let python = podman_ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "/opt/cli/bin/pip",
        &image,
        "list",
    ]);
    assert!(python.contains("awscli"), "{python}");
    for other in ["azure-cli", "google-cloud"] {
        assert!(
            !python.contains(other),
            "no {other} in the aws image: {python}"
        );
    }
}

#[test]
fn the_all_clouds_image_runs_a_worker_with_every_cloud_cli() {
    let image = built_image("all");
    let (tendril, tools) = versions(&image);
    assert_eq!(version_of(&tools, "aws"), "1.45.11");
    assert_eq!(version_of(&tools, "az"), "2.67.0");
    assert_eq!(version_of(&tools, "gcloud"), "528.0.0");
    let reported = a_worker_runs_a_job_and_drains(&image);
    assert_eq!(tendril, format!("tendril {reported}"));
}
