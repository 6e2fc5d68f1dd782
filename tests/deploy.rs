//! What `deploy/` ships for operators, checked with the real tools that
//! read it.

mod support;

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
    let scratch = support::TempDir::new("tendril-unit-test");
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
    // Drain (10m) + Terraform's grace (5m) + final delivery (10s), the self-hosted defaults.
    assert!(
        minutes * 60 > 600 + 300 + 10,
        "TimeoutStopSec={stop_timeout} is too short"
    );
    assert_eq!(setting("ProtectSystem"), "strict");
    assert_eq!(
        setting("StateDirectory"),
        "tendril",
        "the workspace and outbox stay writable"
    );
}
