//! `tendril exec`: one job from a file, no Trellis, against real moto.

use crate::support::moto::Moto;
use crate::support::tendril::{Tendril, TendrilProcess};
use crate::support::TempDir;
use serde_json::Value;

fn exec(moto: &Moto, job_file: &str, out: &std::path::Path) -> (i32, String) {
    let mut command = Tendril::command();
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["exec", job_file, "--out"])
        .arg(out)
        .envs(moto.platform_env())
        .env("TENDRIL_AWS_REGIONS", "us-east-1");
    let mut process = TendrilProcess::spawn(command);
    let status = process
        .wait_timeout(std::time::Duration::from_secs(120))
        .unwrap_or_else(|| panic!("exec did not finish:\n{}", process.output()));
    (status.code().unwrap_or(-1), process.output())
}

fn result(out: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("result.json")).unwrap()).unwrap()
}

#[test]
fn exec_runs_the_example_connection_test_and_writes_its_result() {
    let moto = Moto::start();
    let scratch = TempDir::new("tendril-exec-test");
    let out = scratch.path().join("out");
    let (code, output) = exec(&moto, "examples/connection-test.json", &out);
    assert_eq!(code, 0, "{output}");
    let result = result(&out);
    let log = std::fs::read_to_string(out.join("job.log")).unwrap();
    let context = format!("result: {result}\njob log:\n{log}");
    assert_eq!(result["status"], "SUCCESS", "{context}");
    assert_eq!(
        result["execution_metadata"]["identity"]["account"], "210987654321",
        "{context}"
    );
    assert!(
        result["execution_metadata"]["cached_resources"]["vpcs"]["us-east-1"].is_array(),
        "{context}"
    );
    assert!(log.contains("==> CONNECTION_TEST succeeded"), "{log}");
    assert!(
        output.contains("$ aws ec2 describe-vpcs --region us-east-1"),
        "logs go to the terminal"
    );
}

#[test]
fn exec_of_a_job_it_cannot_run_fails_with_exit_1_and_a_result() {
    let moto = Moto::start();
    let scratch = TempDir::new("tendril-exec-test");
    let job_file = scratch.path().join("job.json");
    std::fs::write(
        &job_file,
        r#"{"job": {"id": "j-oci", "job_type": "FETCH_RESOURCES", "config_snapshot": {}},
        "cloud_identity": {"provider": "oci", "project_id": "p"}}"#,
    )
    .unwrap();
    let out = scratch.path().join("out");
    let (code, output) = exec(&moto, job_file.to_str().unwrap(), &out);
    assert_eq!(code, 1, "{output}");
    let result = result(&out);
    assert_eq!(result["status"], "FAILED");
    assert_eq!(result["error_message"], "provider oci is not supported yet");
}

#[test]
fn exec_of_a_malformed_job_fails_naming_the_field_and_never_quoting_a_secret() {
    let moto = Moto::start();
    let scratch = TempDir::new("tendril-exec-test");
    let run = |claim: &str| {
        let job_file = scratch.path().join("job.json");
        std::fs::write(&job_file, claim).unwrap();
        let out = scratch.path().join("out");
        let _ = std::fs::remove_dir_all(&out);
        let (code, output) = exec(&moto, job_file.to_str().unwrap(), &out);
        assert_eq!(code, 1, "{output}");
        let result = result(&out);
        assert_eq!(result["status"], "FAILED", "{result}");
        (
            result["error_message"].as_str().unwrap().to_string(),
            output,
        )
    };
    // The issue's reproduction.
    let (message, _) = run(r#"{"job": {"id": "j1", "job_type": 7, "config_snapshot": {}}}"#);
    assert_eq!(
        message,
        "malformed job: `job.job_type` is a number; it must be a string"
    );
    let (message, _) = run(
        r#"{"job": {"id": "j1", "job_type": "PLAN", "config_snapshot": "{\"worker_token\": \"tok-9f8e7d\"}"}}"#,
    );
    assert_eq!(
        message,
        "malformed job: `job.config_snapshot` is a string; it must be a JSON object"
    );
    let (message, output) = run(
        r#"{"job": {"id": "j1", "job_type": "CONNECTION_TEST", "config_snapshot": {}},
            "cloud_identity": {"provider": "aws", "role_arn": "arn:aws:iam::1:role/x", "external_id": 424242}}"#,
    );
    assert_eq!(
        message,
        "malformed cloud identity: `cloud_identity.external_id` is a number; it must be a string"
    );
    assert!(!output.contains("424242"), "{output}");
}

#[test]
fn exec_of_a_file_that_is_not_a_job_exits_2_naming_it() {
    let moto = Moto::start();
    let scratch = TempDir::new("tendril-exec-test");
    let job_file = scratch.path().join("job.json");
    std::fs::write(&job_file, "not json").unwrap();
    let (code, output) = exec(
        &moto,
        job_file.to_str().unwrap(),
        &scratch.path().join("out"),
    );
    assert_eq!(code, 2);
    assert!(output.contains("is not a claim"), "{output}");
    // Nested past the parser's limit: said in words.
    let deep = format!(
        r#"{{"job": {{"id": "j1", "job_type": "PLAN", "config_snapshot": {{"x": {}{}}}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    std::fs::write(&job_file, deep).unwrap();
    let (code, output) = exec(
        &moto,
        job_file.to_str().unwrap(),
        &scratch.path().join("out"),
    );
    assert_eq!(code, 2);
    assert!(
        output.contains("it nests arrays and objects more than 128 deep"),
        "{output}"
    );

    for not_a_claim in ["[]", "{}", r#"{"job": null}"#, r#"{"job": [1]}"#] {
        std::fs::write(&job_file, not_a_claim).unwrap();
        let (code, output) = exec(
            &moto,
            job_file.to_str().unwrap(),
            &scratch.path().join("out"),
        );
        assert_eq!(code, 2, "{not_a_claim}: {output}");
        assert!(
            output.contains("is not a claim: it needs a \"job\" object"),
            "{not_a_claim}: {output}"
        );
    }
}

#[test]
fn exec_of_a_deploy_without_its_plan_says_to_give_plan_from() {
    let moto = Moto::start();
    let scratch = TempDir::new("tendril-exec-test");
    let (code, output) = exec(&moto, "examples/deploy.json", &scratch.path().join("out"));
    assert_eq!(code, 2, "{output}");
    assert!(
        output.contains("applies the plan of PLAN job example-plan")
            && output.contains("--plan-from DIR"),
        "{output}"
    );
}

#[test]
fn exec_plans_and_deploys_the_example_vine_with_local_state() {
    let scratch = TempDir::new("tendril-exec-vine");
    let state_dir = scratch.path().join("state");
    let run = |args: &[&str]| {
        let mut command = Tendril::command();
        command
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .env("TENDRIL_TEMPLATES_DIR", "examples/templates")
            .env("TENDRIL_STATE_DIR", &state_dir);
        let mut process = TendrilProcess::spawn(command);
        let status = process
            .wait_timeout(std::time::Duration::from_secs(180))
            .expect("exec finished");
        (status.code().unwrap_or(-1), process.output())
    };
    let plan_out = scratch.path().join("plan");
    let deploy_out = scratch.path().join("deploy");
    let (code, output) = run(&[
        "exec",
        "examples/plan.json",
        "--out",
        plan_out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(
        result(&plan_out)["execution_metadata"]["plan_file_key"],
        "example-plan/terraform.plan.out"
    );
    assert!(plan_out.join("terraform.plan.out").is_file());

    let (code, output) = run(&[
        "exec",
        "examples/deploy.json",
        "--out",
        deploy_out.to_str().unwrap(),
        "--plan-from",
        plan_out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{output}");
    let deployed = result(&deploy_out);
    assert_eq!(
        deployed["execution_metadata"]["outputs"]["database_password"],
        "(sensitive)"
    );
    let state_file = state_dir.join("example-vineyard/shop-dev-eu-west-1/terraform.tfstate");
    let state: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    assert_eq!(
        state["resources"].as_array().unwrap().len(),
        2,
        "the local default state holds the vine"
    );

    let (code, output) = run(&[
        "exec",
        "examples/deploy.json",
        "--out",
        deploy_out.to_str().unwrap(),
    ]);
    assert_eq!(
        code, 2,
        "without --plan-from there is no reviewed plan to apply: {output}"
    );
    assert!(output.contains("--plan-from DIR"), "{output}");
}

#[test]
fn exec_without_out_refuses_a_job_id_that_is_no_directory_name() {
    let scratch = TempDir::new("tendril-exec-test");
    let cwd = scratch.path().join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    std::fs::write(
        cwd.join("job.json"),
        r#"{"job": {"id": "../../escaped", "job_type": "CONNECTION_TEST", "config_snapshot": {}},
        "cloud_identity": {"provider": "aws", "role_arn": "arn:aws:iam::1:role/r"}}"#,
    )
    .unwrap();
    let mut command = Tendril::command();
    command.current_dir(&cwd).args(["exec", "job.json"]);
    let mut process = TendrilProcess::spawn(command);
    let status = process
        .wait_timeout(std::time::Duration::from_secs(60))
        .unwrap_or_else(|| panic!("exec did not finish:\n{}", process.output()));
    let output = process.output();
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(
        output.contains("the job id '../../escaped' cannot be used in a path")
            && output.contains("--out DIR"),
        "{output}"
    );
    assert!(!scratch.path().join("escaped").exists());
    assert!(!cwd.join("tendril-out").exists());
}
