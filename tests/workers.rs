//! The worker-infrastructure jobs end to end: the compiled binary, the fake
//! Trellis (a fake) and real moto's ECS, with the platform's own
//! credentials.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::fake_trellis::FakeTrellis;
use support::moto::Moto;
use support::tendril::{worker_env, TendrilProcess};
use support::TempDir;

const LONG: Duration = Duration::from_secs(120);
const WORKER_ID: &str = "abcdef12-3456-4789-8abc-def012345678";

fn ecs(moto: &Moto, args: &[&str]) -> Value {
    let mut all = vec!["ecs"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--region", "eu-west-1"]);
    moto.aws(&all)
}

/// Without the image, what a task definition says.
fn settable_fields(definition: &Value) -> Value {
    let mut copy = definition.clone();
    for generated in [
        "taskDefinitionArn",
        "revision",
        "status",
        "registeredAt",
        "registeredBy",
        "requiresAttributes",
        "compatibilities",
    ] {
        copy.as_object_mut().unwrap().remove(generated);
    }
    copy
}

#[test]
fn update_worker_registers_a_copy_with_only_the_image_changed_and_redeploys() {
    let moto = Moto::start();
    let trellis = FakeTrellis::start();
    let scratch = TempDir::new("tendril-workers-test");
    ecs(
        &moto,
        &["create-cluster", "--cluster-name", "tendril-abcdef12"],
    );
    let containers = json!([
        {"name": "tendril", "image": "ghcr.io/acme/tendril:1.0.0", "essential": true,
         "environment": [{"name": "GRAPE_WORKER_MODE", "value": "cloud-hosted"}],
         "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/tendril/abcdef12"}}},
        {"name": "log-router", "image": "amazon/aws-for-fluent-bit:2.32.0", "essential": false}
    ]);
    ecs(
        &moto,
        &[
            "register-task-definition",
            "--family",
            "tendril-abcdef12",
            "--network-mode",
            "awsvpc",
            "--requires-compatibilities",
            "FARGATE",
            "--cpu",
            "1024",
            "--memory",
            "2048",
            "--execution-role-arn",
            "arn:aws:iam::123456789012:role/tendril-exec",
            "--task-role-arn",
            "arn:aws:iam::123456789012:role/tendril-task",
            "--runtime-platform",
            "cpuArchitecture=X86_64,operatingSystemFamily=LINUX",
            "--ephemeral-storage",
            "sizeInGiB=30",
            "--tags",
            "key=tendril:worker-id,value=abcdef12",
            "--container-definitions",
            &containers.to_string(),
        ],
    );
    ecs(
        &moto,
        &[
            "create-service",
            "--cluster",
            "tendril-abcdef12",
            "--service-name",
            "tendril-abcdef12",
            "--task-definition",
            "tendril-abcdef12:1",
            "--desired-count",
            "1",
            "--launch-type",
            "FARGATE",
        ],
    );

    let env = worker_env(&trellis, &scratch.path().join("work"));
    let mut command = env.command();
    command.arg("start").envs([
        ("AWS_ENDPOINT_URL", moto.endpoint().as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("GRAPE_WORKER_MODE", "cloud-hosted"),
    ]);
    let mut tendril = TendrilProcess::spawn(command);
    trellis.add_worker(WORKER_ID, "tok-updated-worker-secret");
    let job = trellis.enqueue(json!({"job_type": "UPDATE_WORKER", "config_snapshot": {
        "worker_id": WORKER_ID, "worker_token": "tok-updated-worker-secret", "worker_name": "pool-1",
        "image_tag": "1.1.0", "region": "eu-west-1", "cloud_provider": "aws",
        "trellis_url": "https://trellis.example.com", "cpu": 1024, "memory": 2048,
        "image_repository": null
    }}));
    trellis.wait_until(LONG, "the job to end", |t| {
        t.job(&job)
            .is_some_and(|r| r["status"] == "SUCCESS" || r["status"] == "FAILED")
    });
    let row = trellis.job(&job).unwrap();
    assert_eq!(
        row["status"],
        "SUCCESS",
        "{row}\n{}",
        trellis.log_text(&job)
    );
    tendril.signal(libc::SIGTERM);
    assert_eq!(tendril.wait_timeout(LONG).unwrap().code(), Some(0));

    let metadata = &row["execution_metadata"];
    assert!(metadata["old_task_definition"]
        .as_str()
        .unwrap()
        .ends_with("tendril-abcdef12:1"));
    assert!(metadata["new_task_definition"]
        .as_str()
        .unwrap()
        .ends_with("tendril-abcdef12:2"));
    assert_eq!(metadata["image"], "ghcr.io/acme/tendril:1.1.0");
    assert!(metadata["deployment_id"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));

    let describe = |revision: &str| {
        ecs(
            &moto,
            &[
                "describe-task-definition",
                "--task-definition",
                revision,
                "--include",
                "TAGS",
            ],
        )
    };
    let (old, new) = (
        describe("tendril-abcdef12:1"),
        describe("tendril-abcdef12:2"),
    );
    let mut expected = settable_fields(&old["taskDefinition"]);
    expected["containerDefinitions"][0]["image"] = json!("ghcr.io/acme/tendril:1.1.0");
    assert_eq!(
        settable_fields(&new["taskDefinition"]),
        expected,
        "only the Tendril image changed"
    );
    assert_eq!(new["tags"], old["tags"], "tags are copied");
    let service = ecs(
        &moto,
        &[
            "describe-services",
            "--cluster",
            "tendril-abcdef12",
            "--services",
            "tendril-abcdef12",
        ],
    );
    assert!(service["services"][0]["taskDefinition"]
        .as_str()
        .unwrap()
        .ends_with("tendril-abcdef12:2"));

    let patched = trellis
        .worker_metadata(WORKER_ID)
        .expect("the worker's metadata was replaced");
    assert_eq!(patched["deploy_config"]["image_tag"], "1.1.0");
    assert_eq!(patched["deploy_config"]["region"], "eu-west-1");
    assert!(
        !patched.to_string().contains("tok-updated-worker-secret"),
        "never the token"
    );
    assert!(!trellis.log_text(&job).contains("tok-updated-worker-secret"));
}
