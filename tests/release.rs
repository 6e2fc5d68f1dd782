//! The release pipeline's steps that run here, as the workflows in
//! `.github/workflows/` call them: the version a tag gives, the image tags
//! of each variant, the release's files and their SHA256SUMS, the
//! self-hosted installer run against a release laid out here (with the
//! release binary of the image that `scripts/build-image.sh` built) into a
//! scratch root, and the announcement to Trellis (the fake Trellis, a fake).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::fake_trellis::FakeTrellis;
use crate::support::podman::{built_image, podman_ok};
use crate::support::TempDir;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

/// Runs `bash scripts/<name> <args>` with `env` added to a clean
/// environment of PATH and HOME.
fn run(name: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new("bash");
    command.arg(script(name)).args(args).env_clear();
    for key in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(key) {
            command.env(key, value);
        }
    }
    command.envs(env.iter().copied());
    command.output().expect("run bash")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn stdout_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn a_release_tag_gives_the_version_and_anything_else_is_refused() {
    for (tag, version) in [("v1.4.0", "1.4.0"), ("v2.0.0-rc.1", "2.0.0-rc.1")] {
        let output = run("release-version.sh", &[tag], &[]);
        assert!(output.status.success(), "{}", text(&output));
        assert_eq!(stdout_lines(&output), [version]);
    }
    for tag in [
        "1.4.0",
        "v1.4",
        "v01.2.3",
        "v1.2.3+build",
        "v1.2.3-",
        "v1.2.3 x",
    ] {
        let output = run("release-version.sh", &[tag], &[]);
        assert_eq!(output.status.code(), Some(2), "{tag} is refused");
        assert!(
            text(&output).contains("is no release tag"),
            "{}",
            text(&output)
        );
    }
}

#[test]
fn each_variant_is_tagged_with_its_cloud_and_only_the_newest_is_latest() {
    let tags = |version, variant, newest| {
        stdout_lines(&run("image-tags.sh", &[version, variant, newest], &[]))
    };
    assert_eq!(tags("1.4.0", "all", "true"), ["1.4.0", "latest"]);
    assert_eq!(tags("1.4.0", "aws", "true"), ["1.4.0-aws", "latest-aws"]);
    assert_eq!(tags("1.4.0", "azure", "true"), ["1.4.0-azure", "latest-azure"]);
    assert_eq!(tags("1.3.5", "gcp", "false"), ["1.3.5-gcp"]);
    let unknown = run("image-tags.sh", &["1.4.0", "oracle", "true"], &[]);
    assert_eq!(unknown.status.code(), Some(2));
}

/// Only the newest stable release is `latest`, GitHub's latest and
/// announced to Trellis: not a prerelease, nor a maintenance release of an
/// older line.
#[test]
fn only_the_newest_stable_release_is_the_newest() {
    let scratch = TempDir::new("tendril-tags-test");
    let git = |args: &[&str]| {
        let output = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(scratch.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "git {args:?}: {}", text(&output));
    };
    git(&["init", "-q"]);
    git(&["commit", "-q", "--allow-empty", "-m", "first"]);
    for tag in ["v1.2.0", "v1.4.0", "v1.10.0-rc.1", "not-a-version"] {
        git(&["tag", tag]);
    }
    let newest = |version: &str| {
        let output = Command::new("bash")
            .arg(script("release-is-newest.sh"))
            .arg(version)
            .current_dir(scratch.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output));
        stdout_lines(&output).join("")
    };
    assert_eq!(newest("1.4.0"), "true", "the newest tag itself");
    assert_eq!(newest("1.4.1"), "true", "newer than every tag");
    assert_eq!(newest("1.10.0"), "true", "compared as versions, not as text");
    assert_eq!(newest("1.3.5"), "false", "a maintenance release of an older line");
    assert_eq!(newest("1.5.0-rc.1"), "false", "a prerelease");
}

/// A release laid out by `scripts/release-assets.sh` in `dist`, with the
/// Dockerfile's release build of this source (from the built image) as
/// this machine's architecture's binary.
fn release_built_here(dist: &Path) {
    let image = built_image("aws");
    let binary = dist.with_file_name("tendril-release-build");
    let container = podman_ok(&["create", &image]);
    let container = container.trim();
    podman_ok(&[
        "cp",
        &format!("{container}:/usr/local/bin/tendril"),
        binary.to_str().unwrap(),
    ]);
    podman_ok(&["rm", container]);
    let arch = std::env::consts::ARCH;
    let pair = format!("{arch}={}", binary.display());
    let output = run("release-assets.sh", &[dist.to_str().unwrap(), &pair], &[]);
    assert!(output.status.success(), "{}", text(&output));
}

#[test]
fn the_installer_installs_a_checked_release_and_never_overwrites_the_settings() {
    let scratch = TempDir::new("tendril-install-test");
    let dist = scratch.path().join("dist");
    release_built_here(&dist);
    let sums = std::fs::read_to_string(dist.join("SHA256SUMS")).unwrap();
    let arch = std::env::consts::ARCH;
    for file in [
        format!("tendril-{arch}-linux"),
        "install.sh".into(),
        "tendril.service".into(),
        "tendril.env.example".into(),
    ] {
        assert!(
            sums.lines().any(|l| l.ends_with(&format!("  {file}"))),
            "SHA256SUMS lists {file}:\n{sums}"
        );
    }
    // The checksums are sha256sum's own.
    let check = Command::new("sha256sum")
        .args(["--check", "--quiet", "SHA256SUMS"])
        .current_dir(&dist)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", text(&check));

    let root = scratch.path().join("root");
    let install = |root: &Path| {
        run(
            "install.sh",
            &[
                "--base",
                dist.to_str().unwrap(),
                "--root",
                root.to_str().unwrap(),
            ],
            &[],
        )
    };
    let first = install(&root);
    assert!(first.status.success(), "{}", text(&first));
    let said = text(&first);
    for next in [
        "tendril register",
        "tendril doctor",
        "systemctl enable --now tendril",
    ] {
        assert!(said.contains(next), "the next steps name `{next}`: {said}");
    }
    let installed = root.join("usr/local/bin/tendril");
    let version = Command::new(&installed).arg("version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("tendril "));
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&installed), 0o755);
    let unit = root.join("etc/systemd/system/tendril.service");
    assert_eq!(
        std::fs::read(&unit).unwrap(),
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/systemd/tendril.service"
        ))
        .unwrap()
    );
    let env_file = root.join("etc/tendril/tendril.env");
    assert_eq!(mode(&env_file), 0o600, "the settings are private");
    assert!(std::fs::read_to_string(&env_file)
        .unwrap()
        .contains("GRAPE_WORKER_TOKEN="));

    // Filled-in settings survive a second installation (an upgrade).
    std::fs::write(&env_file, "GRAPE_WORKER_TOKEN=kept\n").unwrap();
    let again = install(&root);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("kept the existing"),
        "{}",
        text(&again)
    );
    assert_eq!(
        std::fs::read_to_string(&env_file).unwrap(),
        "GRAPE_WORKER_TOKEN=kept\n"
    );

    // A binary that does not match SHA256SUMS is never installed.
    let tampered_root = scratch.path().join("tampered");
    let binary = dist.join(format!("tendril-{arch}-linux"));
    let mut bytes = std::fs::read(&binary).unwrap();
    bytes.extend_from_slice(b"tampered");
    std::fs::write(&binary, bytes).unwrap();
    let refused = install(&tampered_root);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused).contains("does not match its checksum in SHA256SUMS"),
        "{}",
        text(&refused)
    );
    assert!(!tampered_root.join("usr/local/bin/tendril").exists());

    // Checksums over plain http prove nothing: refused before any download.
    let plain = run(
        "install.sh",
        &["--base", "http://127.0.0.1:9/release", "--root", tampered_root.to_str().unwrap()],
        &[],
    );
    assert_eq!(plain.status.code(), Some(1));
    assert!(text(&plain).contains("--base must be https://"), "{}", text(&plain));
}

#[test]
fn a_release_is_announced_to_trellis_once_and_a_wrong_secret_is_named() {
    let trellis = FakeTrellis::start();
    let secret = "release-secret-0123456789";
    trellis.set_release_secret(secret);
    let scratch = TempDir::new("tendril-announce-test");
    let secret_file = scratch.path().join("secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let url = trellis.url();
    let from_file = [
        ("TRELLIS_URL", url.as_str()),
        ("TRELLIS_RELEASE_SECRET_FILE", secret_file.to_str().unwrap()),
        ("RELEASE_NOTES", "Faster cold starts.\nUpdate when idle."),
        (
            "RELEASE_URL",
            "https://github.com/acme/tendril/releases/tag/v1.4.0",
        ),
        ("RELEASE_COMMIT", "0123456789abcdef0123456789abcdef01234567"),
        ("RELEASE_BREAKING", "true"),
    ];
    let announced = run("announce-release.sh", &["1.4.0"], &from_file);
    assert!(announced.status.success(), "{}", text(&announced));
    let releases = trellis.releases();
    assert_eq!(releases.len(), 1);
    let release = &releases[0];
    assert_eq!(release["version"], "1.4.0");
    assert_eq!(
        release["release_notes"],
        "Faster cold starts.\nUpdate when idle."
    );
    assert_eq!(
        release["github_release_url"],
        "https://github.com/acme/tendril/releases/tag/v1.4.0"
    );
    assert_eq!(
        release["commit_sha"],
        "0123456789abcdef0123456789abcdef01234567"
    );
    assert_eq!(release["is_breaking"], true);

    // Announced again (a re-run of the pipeline): Trellis's 409 is done.
    let again = run(
        "announce-release.sh",
        &["1.4.0"],
        &[("TRELLIS_URL", &url), ("TRELLIS_RELEASE_SECRET", secret)],
    );
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("already announced"),
        "{}",
        text(&again)
    );
    assert_eq!(trellis.releases().len(), 1);

    let wrong = "not-the-release-secret";
    let refused = run(
        "announce-release.sh",
        &["1.5.0"],
        &[("TRELLIS_URL", &url), ("TRELLIS_RELEASE_SECRET", wrong)],
    );
    assert_eq!(refused.status.code(), Some(1));
    let said = text(&refused);
    assert!(
        said.contains("refused the release secret (HTTP 401)"),
        "{said}"
    );
    for output in [&announced, &again, &refused] {
        let said = text(output);
        assert!(
            !said.contains(secret) && !said.contains(wrong),
            "no secret printed: {said}"
        );
    }
    let request = trellis
        .requests()
        .into_iter()
        .find(|r| r.path == "/api/releases/worker")
        .unwrap();
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {secret}").as_str())
    );

    // A secret never goes to a plain-http Trellis off this machine, however
    // much its name looks like loopback; nothing is sent.
    for off_machine in [
        "http://trellis.example.com",
        "http://127.0.0.1.example.com",
        "http://localhost@example.com/",
    ] {
        let plain = run(
            "announce-release.sh",
            &["1.5.0"],
            &[
                ("TRELLIS_URL", off_machine),
                ("TRELLIS_RELEASE_SECRET", secret),
            ],
        );
        assert_eq!(plain.status.code(), Some(2), "{off_machine}");
        assert!(text(&plain).contains("must be https://"), "{}", text(&plain));
    }
    // A secret with a newline would smuggle a header; a version that is no
    // release's would be offered by the Update button.
    let newline = run(
        "announce-release.sh",
        &["1.5.0"],
        &[
            ("TRELLIS_URL", &url),
            ("TRELLIS_RELEASE_SECRET", "first\nX-Injected: yes"),
        ],
    );
    assert_eq!(newline.status.code(), Some(2));
    assert!(!text(&newline).contains("X-Injected"), "{}", text(&newline));
    let tag = run(
        "announce-release.sh",
        &["v1.5.0"],
        &[("TRELLIS_URL", &url), ("TRELLIS_RELEASE_SECRET", secret)],
    );
    assert_eq!(tag.status.code(), Some(2));
    assert!(text(&tag).contains("is no release version"), "{}", text(&tag));
    let announcements = trellis
        .requests()
        .iter()
        .filter(|r| r.path == "/api/releases/worker")
        .count();
    assert_eq!(announcements, 3, "the refused runs sent nothing");
}
