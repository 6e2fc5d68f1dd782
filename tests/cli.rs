//! The command line: settings errors, secrets kept out of `--help`, and
//! `tendril version`.

use crate::support::tendril::Tendril;

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let output = Tendril::command()
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

#[test]
fn a_missing_or_invalid_setting_is_one_line_naming_the_variable_and_exit_2() {
    let (code, text) = run(&["start"], &[]);
    assert_eq!(code, 2);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("TRELLIS_URL"), "{text}");

    let base = [
        ("TRELLIS_URL", "https://trellis.example.com"),
        ("GRAPE_WORKER_ID", "w-1"),
    ];
    let (code, text) = run(&["start"], &base);
    assert_eq!((code, text.lines().count()), (2, 1), "{text}");
    assert!(text.contains("GRAPE_WORKER_TOKEN"), "{text}");

    let mut env = base.to_vec();
    env.extend([
        ("GRAPE_WORKER_TOKEN", "tok-cli-test-value"),
        ("TENDRIL_POLL_INTERVAL", "soon"),
    ]);
    let (code, text) = run(&["start"], &env);
    assert_eq!((code, text.lines().count()), (2, 1), "{text}");
    assert!(text.contains("TENDRIL_POLL_INTERVAL"), "{text}");

    let (code, text) = run(&["start"], &[("GRAPE_WORKER_MODE", "sometimes")]);
    assert_eq!((code, text.lines().count()), (2, 1), "{text}");
    assert!(text.contains("GRAPE_WORKER_MODE"), "{text}");

    // Strict: a log filter naming no level, an unknown log format, a
    // duration without its unit, a health address without a port.
    for (variable, value) in [
        ("TENDRIL_LOG_LEVEL", "loud"),
        ("TENDRIL_LOG_FORMAT", "xml"),
        ("TENDRIL_POLL_INTERVAL", "30"),
        ("TENDRIL_HEALTH_ADDR", "localhost"),
    ] {
        let mut env = base.to_vec();
        env.extend([
            ("GRAPE_WORKER_TOKEN", "tok-cli-test-value"),
            (variable, value),
        ]);
        let (code, text) = run(&["start"], &env);
        assert_eq!(
            (code, text.lines().count()),
            (2, 1),
            "{variable}={value}: {text}"
        );
        assert!(
            text.starts_with(&format!("tendril: {variable}")),
            "{variable}={value}: {text}"
        );
    }
}

#[test]
fn plain_http_to_another_host_is_refused() {
    let env = [
        ("TRELLIS_URL", "http://trellis.example.com"),
        ("GRAPE_WORKER_ID", "w-1"),
        ("GRAPE_WORKER_TOKEN", "tok-cli-test-value"),
    ];
    let (code, text) = run(&["start"], &env);
    assert_eq!(code, 2);
    assert!(text.contains("refusing plain http://"), "{text}");
}

#[test]
fn help_never_shows_a_secret_and_secrets_are_no_flags() {
    let env = [
        ("GRAPE_WORKER_TOKEN", "tok-secret-in-env"),
        ("SUPABASE_STORAGE_SECRET_KEY", "storage-secret-in-env"),
        ("INFRACOST_API_KEY", "infracost-secret-in-env"),
    ];
    let (code, text) = run(&["start", "--help"], &env);
    assert_eq!(code, 0);
    assert!(!text.contains("secret-in-env"), "{text}");
    assert!(
        !text.contains("--worker-token") && !text.contains("--storage-secret"),
        "{text}"
    );
}

#[test]
fn the_token_can_come_from_a_file() {
    let scratch = crate::support::TempDir::new("tendril-cli-test");
    let token_file = scratch.path().join("token");
    std::fs::write(&token_file, "tok-from-file\n").unwrap();
    let trellis = crate::support::fake_trellis::FakeTrellis::start();
    trellis.add_worker("w-file", "tok-from-file");
    let mut command = Tendril::command();
    command.arg("start").envs([
        ("TRELLIS_URL", trellis.url().as_str()),
        ("GRAPE_WORKER_ID", "w-file"),
        ("GRAPE_WORKER_TOKEN_FILE", token_file.to_str().unwrap()),
        ("TENDRIL_WORK_DIR", scratch.path().to_str().unwrap()),
    ]);
    let mut process = crate::support::tendril::TendrilProcess::spawn(command);
    trellis.wait_until(
        std::time::Duration::from_secs(60),
        "the announcement",
        |t| !t.heartbeats("w-file").is_empty(),
    );
    process.signal(libc::SIGTERM);
    assert_eq!(
        process
            .wait_timeout(std::time::Duration::from_secs(60))
            .unwrap()
            .code(),
        Some(0)
    );
}

#[test]
fn version_lists_tendril_and_every_tool() {
    let (code, text) = run(&["version"], &[]);
    assert_eq!(code, 0);
    // Built from a checkout without TENDRIL_VERSION: the Cargo version and a
    // commit of this repository (HEAD when it was built).
    let version = text
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("tendril "))
        .unwrap_or_else(|| panic!("{text}"))
        .to_string();
    let commit = version
        .strip_prefix(&format!("{}+", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("not the Cargo version and a commit: {version}"));
    assert_eq!(commit.len(), 7, "{version}");
    let known = std::process::Command::new("git")
        .args(["cat-file", "-e", &format!("{commit}^{{commit}}")])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("git");
    assert!(known.success(), "{commit} is no commit of this repository");
    let (code, flag) = run(&["--version"], &[]);
    assert_eq!(
        (code, flag.trim()),
        (0, format!("tendril {version}").as_str())
    );
    for tool in [
        "terraform",
        "helm",
        "kubectl",
        "aws",
        "gcloud",
        "az",
        "infracost",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{tool} "))),
            "{tool} missing from:\n{text}"
        );
    }
    let (_, without_path) = {
        let output = Tendril::command()
            .arg("version")
            .env("PATH", "/nonexistent")
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    assert!(without_path.contains("aws missing"), "{without_path}");
}

#[test]
fn register_prints_the_environment_lines_of_a_new_worker() {
    let trellis = crate::support::fake_trellis::FakeTrellis::start();
    trellis.set_registration_secret("registration-secret-for-test");
    let url = trellis.url();
    let (code, text) = run(
        &["register", "--name", "vm-worker-1"],
        &[
            ("TRELLIS_URL", url.as_str()),
            (
                "TENDRIL_REGISTRATION_SECRET",
                "registration-secret-for-test",
            ),
        ],
    );
    assert_eq!(code, 0, "{text}");
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("GRAPE_WORKER_ID="))
        .expect("an id line");
    let token = text
        .lines()
        .find_map(|l| l.strip_prefix("GRAPE_WORKER_TOKEN="))
        .expect("a token line");
    assert!(trellis.worker_exists(id) && token.len() > 16);
    let body = trellis.requests().pop().unwrap().json().unwrap();
    assert_eq!(
        body,
        serde_json::json!({"name": "vm-worker-1", "mode": "self-hosted"})
    );

    let (code, text) = run(
        &["register", "--name", "vm-worker-2"],
        &[
            ("TRELLIS_URL", url.as_str()),
            ("TENDRIL_REGISTRATION_SECRET", "wrong-secret"),
        ],
    );
    assert_eq!(code, 2);
    assert!(
        text.contains("rejected the registration secret") && !text.contains("wrong-secret"),
        "{text}"
    );
}
