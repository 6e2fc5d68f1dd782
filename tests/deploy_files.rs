//! What `deploy/` ships for operators, checked with the real tools that
//! read it.

use std::path::Path;

const UNIT: &str = "deploy/systemd/tendril.service";

fn unit() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(UNIT)).unwrap()
}

#[test]
fn the_systemd_unit_verifies_with_the_binary_it_names() {
    let unit = unit();
    let exec_start = "ExecStart=/usr/local/bin/tendril start";
    assert!(
        unit.lines().any(|l| l == exec_start),
        "the unit runs {exec_start}"
    );
    // The binary the unit names is this build's, at the path of the test's copy.
    let scratch = crate::support::TempDir::new("tendril-unit-test");
    let copy = scratch.path().join("tendril.service");
    let binary = env!("CARGO_BIN_EXE_tendril");
    std::fs::write(&copy, unit.replace("/usr/local/bin/tendril", binary)).unwrap();
    let output = std::process::Command::new("systemd-analyze")
        .args(["verify"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze not found: apt-get install systemd");
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_unit_lets_tendril_drain_and_does_not_restart_on_a_configuration_error() {
    let unit = unit();
    let setting = |name: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} is not set"))
            .to_string()
    };
    assert_eq!(
        setting("KillMode"),
        "mixed",
        "SIGTERM reaches Tendril alone; its tools are stopped by Tendril"
    );
    assert_eq!(setting("Restart"), "on-failure");
    assert_eq!(setting("RestartPreventExitStatus"), "2");
    let stop_timeout = setting("TimeoutStopSec");
    let minutes: u64 = stop_timeout.trim_end_matches("min").parse().unwrap();
    // Drain (10m) + Terraform's grace (5m) + stop cleanup (1m) + final
    // delivery (10s), the self-hosted defaults.
    assert!(
        minutes * 60 > 600 + 300 + 60 + 10,
        "TimeoutStopSec={stop_timeout} is too short"
    );
    assert_eq!(setting("ProtectSystem"), "strict");
    assert_eq!(
        setting("StateDirectory"),
        "tendril",
        "the workspace and outbox stay writable"
    );
}

#[test]
fn the_unit_keeps_workspaces_outbox_and_local_state_in_its_state_directory() {
    let unit = unit();
    assert!(
        unit.lines().any(|l| l == "StateDirectory=tendril"),
        "systemd makes /var/lib/tendril, writable under ProtectSystem=strict"
    );
    let environment: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .flat_map(str::split_whitespace)
        .collect();
    assert!(
        environment.contains(&"TENDRIL_WORK_DIR=/var/lib/tendril"),
        "{environment:?}"
    );
    assert!(
        environment.contains(&"TENDRIL_STATE_DIR=/var/lib/tendril/state"),
        "{environment:?}"
    );
}

fn deploy_file(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/terraform")
            .join(name),
    )
    .unwrap()
}

#[test]
fn the_terraform_pool_sets_what_the_worker_template_declares() {
    let main = deploy_file("main.tf");
    let module = main
        .split("module \"worker\" {")
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .expect("a worker module");
    assert!(module.contains("source   = \"../../templates/worker/aws\""));
    assert!(module.contains("for_each = var.workers"));
    let set: std::collections::BTreeSet<String> = module
        .lines()
        .filter_map(|line| {
            line.trim()
                .split_once(" = ")
                .or_else(|| line.trim().split_once(" ="))
        })
        .map(|(name, _)| name.trim().to_string())
        .filter(|name| !["source", "for_each"].contains(&name.as_str()))
        .collect();
    crate::support::terraform::assert_sets_what_it_declares(
        "the pool",
        &set,
        "templates/worker/aws",
    );
}

#[test]
fn the_pool_takes_secrets_as_sensitive_variables_never_in_tfvars() {
    let variables = deploy_file("variables.tf");
    let example = deploy_file("terraform.tfvars.example");
    for secret in [
        "worker_tokens",
        "state_key_id",
        "state_secret_key",
        "infracost_api_key",
    ] {
        let block = variables
            .split(&format!("variable \"{secret}\" {{"))
            .nth(1)
            .and_then(|rest| rest.split("\n}").next())
            .unwrap_or_else(|| panic!("deploy/terraform does not declare {secret}"));
        assert!(
            block.contains("sensitive   = true"),
            "{secret} is not sensitive"
        );
        assert!(
            example.contains(&format!("TF_VAR_{secret}")),
            "the example does not say to pass {secret} as TF_VAR_{secret}"
        );
        assert!(
            !example
                .lines()
                .any(|l| l.starts_with(&format!("{secret} "))),
            "the example sets {secret} in tfvars"
        );
    }
    for setting in ["state_endpoint", "state_region"] {
        assert!(
            example
                .lines()
                .any(|l| l.starts_with(&format!("{setting} "))),
            "the example does not show {setting}"
        );
    }
}

#[test]
fn the_scaler_lambda_is_wired_as_the_scaler_expects() {
    let scaler = deploy_file("scaler.tf");
    for needed in [
        "runtime                        = \"provided.al2023\"",
        "handler                        = \"bootstrap\"",
        "reserved_concurrent_executions = 1",
        "schedule_expression = \"rate(1 minute)\"",
        "authorization_type = var.scaler_url_auth == \"aws-iam\" ? \"AWS_IAM\" : \"NONE\"",
        "variable = \"aws:ResourceTag/tendril:pool\"",
        "values   = local.scaler_tag_keys",
        "invoked_via_function_url = true",
        "maximum_retry_attempts = 0",
    ] {
        assert!(scaler.contains(needed), "scaler.tf lacks {needed}");
    }
    assert!(!scaler.contains("\"ecs:*\""), "least privilege");
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_tendril"))
        .args(["scaler", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).to_string();
    // The tags the role may write are those the scaler keeps (its help
    // names each), and both tag statements are limited to them.
    let tag_keys = scaler
        .lines()
        .find_map(|line| line.trim().strip_prefix("scaler_tag_keys = "))
        .expect("scaler.tf names the tags the scaler writes");
    let tag_keys: Vec<String> = serde_json::from_str(tag_keys).unwrap();
    assert_eq!(
        tag_keys,
        ["tendril:idle-since", "tendril:starting-since"],
        "the scaler's time tags"
    );
    assert!(tag_keys.iter().all(|t| help.contains(t.as_str())), "{help}");
    assert_eq!(
        scaler.matches("values   = local.scaler_tag_keys").count(),
        2,
        "tagged and listed services alike"
    );
    // Every setting the Lambda is given is one `tendril scaler` reads.
    let environment = scaler
        .split("variables = merge(")
        .nth(1)
        .unwrap()
        .split("\n  }")
        .next()
        .unwrap();
    let names: Vec<&str> = environment
        .lines()
        .filter_map(|line| {
            line.trim()
                .trim_start_matches("local.url_secret == 1 ? {")
                .trim()
                .split_once(" = ")
        })
        .map(|(name, _)| name.trim())
        .filter(|name| name.chars().all(|c| c.is_ascii_uppercase() || c == '_') && !name.is_empty())
        .collect();
    assert!(names.len() >= 8, "{names:?}");
    for name in names {
        let base = name.strip_suffix("_SECRET_ARN").unwrap_or(name);
        let known = help.contains(name) || help.contains(base);
        assert!(
            known,
            "the Lambda sets {name}, which `tendril scaler` does not read:\n{help}"
        );
    }
}
