//! A driver for podman, the OCI engine the image tests run Tendril's image
//! with (through `scripts/podman.sh`, which gives podman the project's
//! settings and image store): the images `scripts/build-image.sh` builds,
//! and a container guard that is removed on drop.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

/// The image `scripts/build-image.sh` builds for `variant`; panics, saying
/// how to build it, when it is not there.
pub fn built_image(variant: &str) -> String {
    let image = format!("localhost/tendril:ci-{variant}");
    let exists = podman(&["image", "exists", &image]);
    assert!(
        exists.status.success(),
        "no image {image}: build it with `bash scripts/build-image.sh {variant}` (scripts/install-peers.sh \
         builds the aws and all variants){}",
        String::from_utf8_lossy(&exists.stderr)
    );
    image
}

/// Runs podman with `args`, to its end.
pub fn podman(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/podman.sh"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/podman.sh ({e}): is bash installed?"))
}

/// Runs podman with `args` and returns its stdout; panics with its output
/// when it fails.
pub fn podman_ok(args: &[&str]) -> String {
    let output = podman(args);
    assert!(
        output.status.success(),
        "podman {args:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A container started with `podman run -d`, removed (forcibly) on drop.
pub struct Container {
    pub name: String,
}

impl Container {
    /// `podman run -d --name <unique> <options> <image> <args>`.
    pub fn run(options: &[&str], image: &str, args: &[&str]) -> Container {
        let name = format!("tendril-test-{}", super::random_hex(10));
        let mut all = vec!["run", "-d", "--name", &name];
        all.extend_from_slice(options);
        all.push(image);
        all.extend_from_slice(args);
        podman_ok(&all);
        Container { name }
    }

    /// A field of `podman inspect` (a Go template such as `{{.State.Pid}}`).
    pub fn inspect(&self, format: &str) -> String {
        podman_ok(&["inspect", "--format", format, &self.name])
            .trim()
            .to_string()
    }

    /// `podman exec` in the container, to its end.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut all = vec!["exec", self.name.as_str()];
        all.extend_from_slice(args);
        podman(&all)
    }

    /// The container's output so far (stdout and stderr).
    pub fn logs(&self) -> String {
        let output = podman(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    /// `podman stop` (SIGTERM, then SIGKILL after `timeout`); the exit code.
    pub fn stop(&self, timeout: Duration) -> i64 {
        podman_ok(&["stop", "-t", &timeout.as_secs().to_string(), &self.name]);
        self.inspect("{{.State.ExitCode}}")
            .parse()
            .expect("an exit code")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", "-t", "0", &self.name]);
    }
}
