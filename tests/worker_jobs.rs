//! The worker-infrastructure jobs end to end: the compiled binary, the fake
//! Trellis (a fake) and real moto's ECS, with the platform's own
//! credentials.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::fake_trellis::FakeTrellis;
use crate::support::moto::Moto;
use crate::support::tendril::{worker_env, TendrilProcess};
use crate::support::terraform::{assert_sets_what_it_declares, declarations};
use crate::support::trellis_reads::update_button;
use crate::support::TempDir;
use serde_json::{json, Value};

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
    command
        .arg("start")
        .envs(moto.platform_env())
        .envs(moto.state_bucket_env())
        .env("GRAPE_WORKER_MODE", "cloud-hosted");
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
    // The metadata is replaced whole: the token stays, for the next Update.
    assert_eq!(
        patched["deploy_config"]["worker_token"],
        "tok-updated-worker-secret"
    );
    let next = update_button(WORKER_ID, &patched, "1.2.0").expect("the Update button works again");
    assert_eq!(next["image_tag"], "1.2.0");
    assert!(!trellis.log_text(&job).contains("tok-updated-worker-secret"));
    assert!(!row["execution_metadata"]
        .to_string()
        .contains("tok-updated-worker-secret"));
}

#[test]
fn the_fixture_has_the_real_worker_templates_variables_and_outputs() {
    let (real_variables, real_outputs) = declarations("templates/worker/aws");
    let (fixture_variables, fixture_outputs) = declarations("tests/fixtures/templates/worker/aws");
    assert!(!real_variables.is_empty() && !real_outputs.is_empty());
    assert_eq!(fixture_variables, real_variables);
    assert_eq!(fixture_outputs, real_outputs);
}

#[test]
fn the_real_worker_template_gives_the_task_the_state_bucket() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/templates/worker/aws/main.tf"
    ))
    .unwrap();
    for needed in [
        // Endpoint and region as plain environment,
        r#"{ name = "SUPABASE_S3_ENDPOINT", value = var.state_endpoint }"#,
        r#"{ name = "SUPABASE_S3_REGION", value = var.state_region }"#,
        // the keys (and the Infracost key, when given) as secrets of their own,
        r#"SUPABASE_STORAGE_KEY_ID     = var.state_key_id"#,
        r#"SUPABASE_STORAGE_SECRET_KEY = var.state_secret_key"#,
        r#"INFRACOST_API_KEY           = var.infracost_api_key"#,
        r#"nonsensitive(var.infracost_api_key != "") ? { INFRACOST_API_KEY = "infracost-api-key" } : {}"#,
        r#"secret_string = local.secret_values[each.key]"#,
        // given to the container by reference, readable by its execution role alone.
        r#"for name, secret in aws_secretsmanager_secret.container : { name = name, valueFrom = secret.arn }"#,
        r#"resources = [for secret in aws_secretsmanager_secret.container : secret.arn]"#,
    ] {
        assert!(text.contains(needed), "the worker template lacks {needed}");
    }
    for (environment, secret) in [
        ("GRAPE_WORKER_TOKEN", "worker-token"),
        ("SUPABASE_STORAGE_KEY_ID", "storage-key-id"),
        ("SUPABASE_STORAGE_SECRET_KEY", "storage-secret-key"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.trim().starts_with(environment) && l.ends_with(&format!("\"{secret}\""))),
            "the worker template does not keep {environment} in the secret {secret}"
        );
    }
    let environment = text
        .split("environment = [")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .unwrap();
    assert!(
        !environment.contains("var.state_key_id")
            && !environment.contains("var.state_secret_key")
            && !environment.contains("var.infracost_api_key"),
        "a key in the plain environment: {environment}"
    );
}

#[test]
fn the_real_worker_template_grants_task_protection_and_keeps_one_task() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/templates/worker/aws/main.tf"
    ))
    .unwrap();
    for needed in [
        "ecs:UpdateTaskProtection",
        "ecs:GetTaskProtection",
        "stopTimeout = 120",
        "GRAPE_WORKER_MODE\", value = \"cloud-hosted\"",
        "deployment_maximum_percent         = 100",
        "ignore_changes = [desired_count, task_definition]",
        // An update to an image that cannot start rolls back.
        "deployment_circuit_breaker {\n    enable   = true\n    rollback = true",
        "\"tendril:pool\"      = \"true\"",
        "desired_count                      = 1",
        // The task's health check asks the worker's own health endpoint.
        r#"{ name = "TENDRIL_HEALTH_ADDR", value = "127.0.0.1:9460" }"#,
        r#"command     = ["CMD", "tendril", "health"]"#,
    ] {
        assert!(text.contains(needed), "the worker template lacks {needed}");
    }
    assert!(!text.contains("ingress"), "egress only");
    assert!(
        !text.contains("provider \"aws\""),
        "no provider block: deploy/terraform uses the template as a module with for_each"
    );
    assert!(text.contains("condition     = self.name == var.region"));
}

struct Fleet {
    moto: Moto,
    trellis: FakeTrellis,
    /// Holds the work directory for the life of the test.
    _scratch: TempDir,
    capture: std::path::PathBuf,
    tendril: TendrilProcess,
}

impl Fleet {
    fn start() -> Fleet {
        Fleet::start_with(&[])
    }

    /// A fleet whose worker has `extra` in its environment too.
    fn start_with(extra: &[(&str, &str)]) -> Fleet {
        let moto = Moto::start();
        moto.aws(&["s3api", "create-bucket", "--bucket", "vine-terraform-state"]);
        let trellis = FakeTrellis::start();
        trellis.set_registration_secret("platform-registration-secret");
        let scratch = TempDir::new("tendril-fleet-test");
        let capture = scratch.path().join("capture");
        std::fs::create_dir_all(&capture).unwrap();
        let env = worker_env(&trellis, &scratch.path().join("work"));
        let mut command = env.command();
        let templates = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/templates");
        command
            .arg("start")
            .envs(moto.platform_env())
            .envs(moto.state_bucket_env())
            .envs([
                ("GRAPE_WORKER_MODE", "cloud-hosted"),
                ("TENDRIL_TEMPLATES_DIR", templates),
                (
                    "TENDRIL_REGISTRATION_SECRET",
                    "platform-registration-secret",
                ),
                (
                    "TENDRIL_PASS_ENV",
                    "TENDRIL_TEST_CAPTURE_DIR,TENDRIL_TEST_NO_ECS",
                ),
                ("TENDRIL_TEST_CAPTURE_DIR", capture.to_str().unwrap()),
            ])
            .envs(extra.iter().copied());
        let tendril = TendrilProcess::spawn(command);
        Fleet {
            moto,
            trellis,
            _scratch: scratch,
            capture,
            tendril,
        }
    }

    /// Drains the worker: SIGTERM, then exit 0.
    fn drain(mut self) {
        self.tendril.signal(libc::SIGTERM);
        assert_eq!(self.tendril.wait_timeout(LONG).unwrap().code(), Some(0));
    }

    fn run(&self, job_type: &str, snapshot: Value) -> Value {
        self.run_for(job_type, snapshot, Value::Null)
    }

    /// Runs a DEPLOY_WORKER whose claim carries `identity` (null: none),
    /// which must succeed; its job row and the worker's id.
    fn deploy(&self, snapshot: Value, identity: Value) -> (Value, String) {
        let deployed = self.run_for("DEPLOY_WORKER", snapshot, identity);
        assert_eq!(deployed["status"], "SUCCESS", "{deployed}");
        let worker_id = deployed["execution_metadata"]["worker_id"]
            .as_str()
            .unwrap()
            .to_string();
        (deployed, worker_id)
    }

    /// Runs a job whose claim carries `identity` (null: none).
    fn run_for(&self, job_type: &str, snapshot: Value, identity: Value) -> Value {
        let job = self.trellis.enqueue_with_identity(
            json!({"job_type": job_type, "config_snapshot": snapshot}),
            identity,
        );
        self.trellis.wait_until(LONG, "the job to end", |t| {
            t.job(&job)
                .is_some_and(|r| r["status"] == "SUCCESS" || r["status"] == "FAILED")
        });
        let mut row = self.trellis.job(&job).unwrap();
        row["log"] = json!(self.trellis.log_text(&job));
        row
    }

    fn state(&self, key: &str) -> Option<Value> {
        self.moto.s3_object("vine-terraform-state", key)
    }

    /// What the worker's ECS service runs: the Tendril image, cpu and memory.
    fn service_runs(&self, worker_id: &str) -> (String, String, String) {
        let name = format!("tendril-{}", &worker_id[..8]);
        let service = ecs(
            &self.moto,
            &["describe-services", "--cluster", &name, "--services", &name],
        );
        let arn = service["services"][0]["taskDefinition"].as_str().unwrap();
        let definition = &ecs(
            &self.moto,
            &["describe-task-definition", "--task-definition", arn],
        )["taskDefinition"];
        let text = |v: &Value| v.as_str().unwrap().to_string();
        (
            text(&definition["containerDefinitions"][0]["image"]),
            text(&definition["cpu"]),
            text(&definition["memory"]),
        )
    }
}

fn worker_snapshot() -> Value {
    json!({"worker_name": "pool-eu-1", "image_tag": "1.0.0", "region": "eu-west-1", "cloud_provider": "aws",
           "trellis_url": "https://trellis.example.com", "cpu": 1024, "memory": 2048,
           "image_repository": "ghcr.io/acme/tendril"})
}

#[test]
fn a_registration_trellis_refuses_fails_deploy_worker_at_once_in_trelliss_words() {
    let fleet = Fleet::start();
    let refusal = "Failed to register tendril: duplicate key value violates unique constraint \"tendrils_name_key\"";
    fleet
        .trellis
        .fail_next_with("POST", "/api/tendrils/register", 100, 500, refusal);
    let deployed = fleet.run("DEPLOY_WORKER", worker_snapshot());
    assert_eq!(deployed["status"], "FAILED", "{deployed}");
    let message = deployed["error_message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "Trellis refused the registration (HTTP 500): {refusal}"
        )),
        "{message}"
    );
    assert!(!message.contains("unavailable"), "{message}");
    let registrations = fleet
        .trellis
        .requests()
        .iter()
        .filter(|r| r.path == "/api/tendrils/register")
        .count();
    assert_eq!(registrations, 1, "a refused registration is not sent again");
    fleet.drain();
}

#[test]
fn deploy_worker_registers_applies_and_records_and_destroy_worker_undoes_it() {
    let fleet = Fleet::start();
    let deployed = fleet.run("DEPLOY_WORKER", worker_snapshot());
    assert_eq!(deployed["status"], "SUCCESS", "{deployed}");
    let metadata = &deployed["execution_metadata"];
    let worker_id = metadata["worker_id"].as_str().unwrap().to_string();
    assert_eq!(metadata["registered"], true);
    assert!(
        fleet.trellis.worker_exists(&worker_id),
        "registered in Trellis"
    );
    let register = fleet
        .trellis
        .requests()
        .into_iter()
        .find(|r| r.path == "/api/tendrils/register")
        .unwrap();
    assert_eq!(
        register.json().unwrap(),
        json!({"name": "pool-eu-1", "mode": "cloud-hosted"})
    );
    let short = &worker_id[..8];
    assert_eq!(
        metadata["worker_outputs"]["cluster_name"],
        format!("tendril-{short}")
    );
    let key = format!("workers/{short}/terraform.tfstate");
    let state = fleet
        .state(&key)
        .expect("the worker's state is under the worker key");
    assert_eq!(state["resources"].as_array().unwrap().len(), 2);
    let recorded = fleet.trellis.worker_metadata(&worker_id).unwrap();
    assert_eq!(recorded["deploy_config"]["image_tag"], "1.0.0");
    assert_eq!(
        recorded["deploy_config"]["image_repository"],
        "ghcr.io/acme/tendril"
    );

    // The template has no provider block: the provider's region is the
    // worker's (Tendril's own is us-east-1).
    let region = std::fs::read_to_string(fleet.capture.join("aws_region")).unwrap();
    assert_eq!(region.trim(), "eu-west-1");

    // What the job set, against what the real template declares.
    let tfvars: Value = serde_json::from_slice(
        &std::fs::read(fleet.capture.join("terraform.tfvars.json")).unwrap(),
    )
    .unwrap();
    let mut set: BTreeSet<String> = tfvars.as_object().unwrap().keys().cloned().collect();
    // Secrets go as TF_VAR_ environment, never tfvars.
    set.extend(["worker_token", "state_key_id", "state_secret_key"].map(String::from));
    assert_sets_what_it_declares("the job", &set, "templates/worker/aws");
    let token = fleet.trellis.worker_token(&worker_id).unwrap();
    let everything = format!("{}{}{}", deployed["log"], metadata, tfvars);
    assert!(
        !everything.contains(&token),
        "the worker token is in no log, job metadata or tfvars"
    );
    // Trellis's Update and Destroy buttons need the token in deploy_config.
    assert_eq!(recorded["deploy_config"]["worker_token"], token.as_str());
    let update = update_button(&worker_id, &recorded, "1.1.0").expect("Update is offered");
    assert_eq!(update["worker_token"], token.as_str());
    assert_eq!(update["region"], "eu-west-1");
    assert_eq!(
        update_button(
            &worker_id,
            &json!({"deploy_config": {"region": "eu-west-1"}}),
            "1.1.0"
        ),
        Err("Worker is missing deploy token — re-deploy required to enable updates".into())
    );

    // A re-deploy of the same worker (what the Destroy and Update buttons'
    // deploy_config carries): no second registration, the same state.
    let mut again = worker_snapshot();
    again["worker_id"] = json!(worker_id);
    again["worker_token"] = json!(token);
    let redeployed = fleet.run("DEPLOY_WORKER", again);
    assert_eq!(redeployed["status"], "SUCCESS", "{redeployed}");
    assert_eq!(redeployed["execution_metadata"]["registered"], false);
    let registrations = fleet
        .trellis
        .requests()
        .iter()
        .filter(|r| r.path == "/api/tendrils/register")
        .count();
    assert_eq!(registrations, 1);
    assert!(!redeployed["log"].as_str().unwrap().contains(&token));

    let mut destroy = worker_snapshot();
    destroy["worker_id"] = json!(worker_id);
    destroy["worker_token"] = json!(token);
    let destroyed = fleet.run("DESTROY_WORKER", destroy.clone());
    assert_eq!(destroyed["status"], "SUCCESS", "{destroyed}");
    assert!(fleet.state(&key).unwrap()["resources"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(
        !fleet.trellis.worker_exists(&worker_id),
        "the registration is deleted"
    );

    fleet.trellis.add_worker(
        "0f0f0f0f-0000-4000-8000-000000000000",
        "tok-kept-worker-token",
    );
    destroy["worker_id"] = json!("0f0f0f0f-0000-4000-8000-000000000000");
    let empty = fleet.run("DESTROY_WORKER", destroy);
    assert_eq!(empty["status"], "FAILED");
    assert_eq!(
        empty["error_message"],
        "no state at workers/0f0f0f0f/terraform.tfstate: nothing was destroyed, and the worker's registration is kept"
    );
    assert!(fleet
        .trellis
        .worker_exists("0f0f0f0f-0000-4000-8000-000000000000"));
    fleet.drain();
}

/// The platform's Update button after a DEPLOY_WORKER that left the image
/// repository, cpu and memory to the template (Trellis sends them null):
/// `deploy_config` records what the service runs, never null, so Trellis's
/// defaults (the Go worker's image, 512 cpu, 1024 MiB) never reach the
/// UPDATE_WORKER, and the worker moves to the new tag of its own image, in
/// the variant of the identity it serves, with its cpu and memory.
#[test]
fn the_update_button_keeps_the_image_cpu_and_memory_a_worker_was_deployed_with() {
    let fleet = Fleet::start();
    let mut snapshot = worker_snapshot();
    for unset in ["image_repository", "cpu", "memory"] {
        snapshot[unset] = Value::Null;
    }
    // The identity the new worker will serve, in an account of its own: the
    // job must not act as it (worker jobs use the platform's credentials).
    let identity = json!({"provider": "aws", "role_arn": "arn:aws:iam::210987654321:role/user-role",
                          "external_id": "ext", "account_id": "210987654321"});
    let (_, worker_id) = fleet.deploy(snapshot, identity);
    let template_default = "ghcr.io/bobikenobi12/tendril";
    assert_eq!(
        fleet.service_runs(&worker_id),
        (
            format!("{template_default}:1.0.0-aws"),
            "1024".into(),
            "2048".into()
        ),
        "the template's defaults, in the platform's account, the identity's variant"
    );
    let recorded = fleet.trellis.worker_metadata(&worker_id).unwrap();
    let config = &recorded["deploy_config"];
    assert_eq!(config["image_repository"], template_default);
    assert_eq!(config["image_tag"], "1.0.0-aws");
    assert_eq!(config["cpu"], 1024);
    assert_eq!(config["memory"], 2048);
    assert_eq!(config["region"], "eu-west-1");
    assert_eq!(config["cloud_provider"], "aws");
    let nulls: Vec<_> = config
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v.is_null())
        .map(|(k, _)| k)
        .collect();
    assert!(nulls.is_empty(), "nothing recorded as null: {nulls:?}");

    let update = update_button(&worker_id, &recorded, "1.1.0").expect("Update is offered");
    let updated = fleet.run("UPDATE_WORKER", Value::Object(update));
    assert_eq!(updated["status"], "SUCCESS", "{updated}");
    assert_eq!(
        fleet.service_runs(&worker_id),
        (
            format!("{template_default}:1.1.0-aws"),
            "1024".into(),
            "2048".into()
        )
    );
    let recorded = fleet.trellis.worker_metadata(&worker_id).unwrap();
    assert_eq!(recorded["deploy_config"]["image_tag"], "1.1.0-aws");
    assert_eq!(recorded["deploy_config"]["cpu"], 1024);

    // A worker deployed before deploy_config recorded them: its metadata
    // has nulls, so the Update button sends the Go worker's repository and
    // its own cpu and memory. Only the tag moves.
    let mut old_style = recorded.clone();
    for unset in ["image_repository", "cpu", "memory"] {
        old_style["deploy_config"][unset] = Value::Null;
    }
    let update = update_button(&worker_id, &old_style, "1.2.0").unwrap();
    assert_eq!(
        update["image_repository"],
        "ghcr.io/bobikenobi12/grape-worker"
    );
    assert_eq!(update["cpu"], 512);
    let updated = fleet.run("UPDATE_WORKER", Value::Object(update));
    assert_eq!(updated["status"], "SUCCESS", "{updated}");
    assert_eq!(
        fleet.service_runs(&worker_id),
        (
            format!("{template_default}:1.2.0-aws"),
            "1024".into(),
            "2048".into()
        )
    );
    assert!(
        updated["log"].as_str().unwrap().contains(
            "the job names the image repository ghcr.io/bobikenobi12/grape-worker; the worker runs \
             ghcr.io/bobikenobi12/tendril, which it keeps"
        ),
        "{}",
        updated["log"]
    );
    fleet.drain();
}

#[test]
fn tendrils_own_repository_is_the_worker_templates_default() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/templates/worker/aws/variables.tf"
    ))
    .unwrap();
    let body = hcl::parse(&text).unwrap();
    let default = body
        .blocks()
        .find(|b| b.identifier() == "variable" && b.labels()[0].as_str() == "image_repository")
        .and_then(|b| b.body().attributes().find(|a| a.key() == "default"))
        .map(|a| a.expr().to_string());
    assert_eq!(
        default.as_deref(),
        Some("\"ghcr.io/bobikenobi12/tendril\""),
        "DEPLOY_WORKER deploys image variants by default for this repository only (src/jobs/hosted_workers/image.rs)"
    );
}

/// A worker template that makes no ECS service Tendril can read (another
/// platform's, say): the deployment still succeeds, and deploy_config holds
/// what the deployment was given (the snapshot's, else the template's
/// defaults), never null.
#[test]
fn without_a_service_to_read_deploy_config_records_what_the_deployment_was_given() {
    let fleet = Fleet::start_with(&[("TENDRIL_TEST_NO_ECS", "1")]);
    let mut snapshot = worker_snapshot();
    for unset in ["image_repository", "cpu"] {
        snapshot[unset] = Value::Null;
    }
    snapshot["memory"] = json!(4096);
    let (deployed, worker_id) = fleet.deploy(snapshot, Value::Null);
    assert!(
        deployed["log"]
            .as_str()
            .unwrap()
            .contains("could not be read from ECS"),
        "{}",
        deployed["log"]
    );
    let config = &fleet.trellis.worker_metadata(&worker_id).unwrap()["deploy_config"];
    assert_eq!(config["image_repository"], "ghcr.io/bobikenobi12/tendril");
    assert_eq!(config["image_tag"], "1.0.0");
    assert_eq!(config["cpu"], 1024, "the template's default");
    assert_eq!(config["memory"], 4096, "the snapshot's");
    fleet.drain();
}

/// A worker job locks its state like a vine job: a lock left under the
/// lease of a DEPLOY_WORKER that Trellis shows FAILED on its worker (that
/// worker died before it could release them) has a dead holder, and a
/// DESTROY_WORKER releases it, says so, and goes on.
#[test]
fn destroy_worker_releases_the_lock_of_a_job_that_ended_on_its_worker() {
    let fleet = Fleet::start();
    let deployed = fleet.run("DEPLOY_WORKER", worker_snapshot());
    assert_eq!(deployed["status"], "SUCCESS", "{deployed}");
    let worker_id = deployed["execution_metadata"]["worker_id"]
        .as_str()
        .unwrap()
        .to_string();
    let key = format!("workers/{}/terraform.tfstate", &worker_id[..8]);
    let dead_job = fleet.trellis.insert_job(json!({
        "job_type": "DEPLOY_WORKER", "status": "FAILED", "worker_id": "w-gone",
        "error_message": "interrupted: Tendril stopped while running this job (it was killed or crashed)"
    }));
    let lock_id = "6f1d2c3b-0a9e-4f8d-8c7b-5a4e3d2c1b0a";
    fleet.moto.put_s3_object(
        "vine-terraform-state",
        &format!("{key}.tflock"),
        &json!({"ID": lock_id, "Operation": "OperationTypeApply", "Info": "", "Who": "tendril@gone-host",
                "Version": "1.11.4", "Created": "2026-01-05T10:00:01.5Z",
                "Path": format!("vine-terraform-state/{key}")}),
    );
    fleet.moto.put_s3_object(
        "vine-terraform-state",
        &format!("{key}.tendril-lease"),
        &json!({"lease_id": "0123456789abcdef0123456789abcdef", "job_id": dead_job, "worker_id": "w-gone",
                "host": "gone-host", "pid": 4242, "process_id": "fedcba9876543210fedcba9876543210",
                "who": "tendril@gone-host", "operation": "apply", "lock_operation": "OperationTypeApply",
                "started": "2026-01-05T10:00:00Z", "renewed": "2026-01-05T10:00:30Z",
                "renew_every_seconds": 30, "lock_id": lock_id, "tendril_version": "0.1.0"}),
    );

    let mut destroy = worker_snapshot();
    destroy["worker_id"] = json!(worker_id);
    destroy["worker_token"] = json!(fleet.trellis.worker_token(&worker_id).unwrap());
    let destroyed = fleet.run("DESTROY_WORKER", destroy);
    assert_eq!(destroyed["status"], "SUCCESS", "{destroyed}");
    let log = destroyed["log"].as_str().unwrap();
    assert!(
        log.contains(&format!(
            "released the state lock {lock_id} of Tendril job {dead_job} on worker w-gone (host gone-host), \
             running terraform apply since 2026-01-05 10:00:00 UTC: its holder is dead (its job {dead_job} \
             ended FAILED on that worker)"
        )),
        "{log}"
    );
    let left: Vec<String> = fleet
        .moto
        .s3_keys("vine-terraform-state")
        .into_iter()
        .filter(|k| k.ends_with(".tflock") || k.ends_with(".tendril-lease"))
        .collect();
    assert_eq!(left, Vec::<String>::new());
    fleet.drain();
}

/// A worker the original Go worker deployed runs its image, where Tendril's
/// releases are not published: Update moves it to Tendril's repository (the
/// release's tag does not exist beside the Go worker's). A tag that is no
/// image tag fails the job naming the field, before ECS is asked.
#[test]
fn update_moves_a_go_worker_to_tendrils_image_and_refuses_a_bad_tag() {
    let fleet = Fleet::start();
    let (_, worker_id) = fleet.deploy(worker_snapshot(), Value::Null);
    // What the Go worker's deployment runs.
    let name = format!("tendril-{}", &worker_id[..8]);
    let go = json!([{"name": "tendril", "image": "ghcr.io/bobikenobi12/grape-worker:0.9.2", "essential": true}]);
    let registered = ecs(
        &fleet.moto,
        &[
            "register-task-definition",
            "--family",
            &name,
            "--requires-compatibilities",
            "FARGATE",
            "--network-mode",
            "awsvpc",
            "--cpu",
            "512",
            "--memory",
            "1024",
            "--container-definitions",
            &go.to_string(),
        ],
    );
    let arn = registered["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .unwrap();
    ecs(
        &fleet.moto,
        &[
            "update-service",
            "--cluster",
            &name,
            "--service",
            &name,
            "--task-definition",
            arn,
        ],
    );
    let token = fleet.trellis.worker_token(&worker_id).unwrap();
    let go_metadata = json!({"deploy_config": {"region": "eu-west-1", "worker_token": token}});
    let update = update_button(&worker_id, &go_metadata, "1.2.0").unwrap();
    assert_eq!(
        update["image_repository"],
        "ghcr.io/bobikenobi12/grape-worker"
    );
    let updated = fleet.run("UPDATE_WORKER", Value::Object(update.clone()));
    assert_eq!(updated["status"], "SUCCESS", "{updated}");
    assert_eq!(
        fleet.service_runs(&worker_id),
        (
            "ghcr.io/bobikenobi12/tendril:1.2.0".into(),
            "512".into(),
            "1024".into()
        )
    );
    assert!(
        updated["log"]
            .as_str()
            .unwrap()
            .contains("runs the original Go worker's image"),
        "{}",
        updated["log"]
    );

    let mut bad = update;
    bad.insert("image_tag".into(), json!("1.3.0\nnamespace: x"));
    let refused = fleet.run("UPDATE_WORKER", Value::Object(bad));
    assert_eq!(refused["status"], "FAILED");
    assert!(
        refused["error_message"]
            .as_str()
            .unwrap()
            .starts_with("image_tag '1.3.0\\nnamespace: x' is not an image tag"),
        "{}",
        refused["error_message"]
    );
    fleet.drain();
}
