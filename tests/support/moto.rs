//! `Moto`: a guard around a REAL moto server (`moto_server`, the AWS API
//! emulator) on a free 127.0.0.1 port, plus the real `aws` CLI pointed at it.
//!
//! The server runs in a scratch working directory (its request recorder
//! writes `moto_recording` there) and is killed by PID when the guard drops.
//! A missing `moto_server` or `aws` fails the test with the install step.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::TempDir;

const MOTO_MISSING: &str = "moto_server not found: install it with `pip install 'moto[server]'`";

/// The storage secret key of `Moto::state_bucket_env`.
pub const STATE_SECRET_KEY: &str = "storage-secret-key-value";

pub struct Moto {
    child: Child,
    port: u16,
    dir: TempDir,
}

/// The port of werkzeug's `Running on http://127.0.0.1:PORT` line.
fn listening_port(log: &str) -> Option<u16> {
    let rest = log.split("Running on http://127.0.0.1:").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

impl Moto {
    /// Starts `moto_server` on a port it picks itself and waits (up to 30 s)
    /// until it answers HTTP. The port is read from its own log: a port
    /// picked here and handed over could be taken in between by another
    /// test's server, which would then answer for this one (and vanish with
    /// its test, mid-job).
    pub fn start() -> Moto {
        let dir = TempDir::new("tendril-moto");
        let log = std::fs::File::create(dir.path().join("moto.log")).expect("moto log file");
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", "0"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == ErrorKind::NotFound => panic!("{MOTO_MISSING}"),
            Err(e) => panic!("cannot start moto_server: {e}"),
        };
        let mut moto = Moto {
            child,
            port: 0,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!(
                    "moto_server exited with {status} ({MOTO_MISSING}):\n{}",
                    moto.log()
                );
            }
            if moto.port == 0 {
                moto.port = listening_port(&moto.log()).unwrap_or(0);
            }
            if moto.port != 0 && http(moto.port, "GET", "/moto-api/").is_ok() {
                return moto;
            }
            if Instant::now() > deadline {
                panic!("moto_server did not answer within 30 s:\n{}", moto.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment that makes Tendril's own AWS identity (the
    /// platform's) this moto's test account in us-east-1.
    pub fn platform_env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
        .map(|(name, value)| (name.to_string(), value))
        .into()
    }

    /// The settings of a Terraform state bucket in this moto, as a worker
    /// is given them (a test that runs Terraform creates the
    /// `vine-terraform-state` bucket itself).
    pub fn state_bucket_env(&self) -> Vec<(String, String)> {
        [
            ("SUPABASE_S3_ENDPOINT", self.endpoint()),
            ("SUPABASE_S3_REGION", "us-east-1".into()),
            ("SUPABASE_STORAGE_KEY_ID", "storagekeyid".into()),
            ("SUPABASE_STORAGE_SECRET_KEY", STATE_SECRET_KEY.into()),
        ]
        .map(|(name, value)| (name.to_string(), value))
        .into()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Freezes the server (SIGSTOP): it accepts connections and answers
    /// nothing, like a state backend behind a network partition.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a frozen server answer again.
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: i32) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) on our own, not yet reaped, child.
        unsafe { libc::kill(pid, signal) };
    }

    /// The server's own stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    /// Wipes all moto state.
    pub fn reset(&self) {
        self.api("POST", "/moto-api/reset");
    }

    pub fn start_recording(&self) {
        self.api("POST", "/moto-api/recorder/start-recording");
    }

    pub fn stop_recording(&self) {
        self.api("POST", "/moto-api/recorder/stop-recording");
    }

    /// The recorded requests (headers, method, url, body), one per entry.
    /// The bodies of the recorded requests, decoded (moto stores them in
    /// base64 when `body_encoded` is set).
    pub fn recorded_bodies(&self) -> Vec<String> {
        use base64::Engine;
        self.recording()
            .iter()
            .map(|request| {
                let body = request["body"].as_str().unwrap_or_default();
                if request["body_encoded"] == Value::Bool(true) {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(body)
                        .unwrap_or_default();
                    String::from_utf8_lossy(&bytes).into_owned()
                } else {
                    body.to_string()
                }
            })
            .collect()
    }

    /// An S3 object, parsed as JSON (a Terraform state or lock); `None` if
    /// there is no such object.
    pub fn s3_object(&self, bucket: &str, key: &str) -> Option<Value> {
        let target = self.dir.path().join("s3-object.json");
        let output = Command::new("aws")
            .args(["s3api", "get-object", "--bucket", bucket, "--key", key])
            .arg(&target)
            .args(["--endpoint-url", &self.endpoint(), "--region", "us-east-1"])
            .envs([
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
            ])
            .output()
            .expect("aws CLI not found: pip install awscli");
        output
            .status
            .success()
            .then(|| serde_json::from_slice(&std::fs::read(&target).unwrap()).unwrap())
    }

    /// Writes `value` as the JSON object at `key` (a lock or a lease, as
    /// another party would have left it).
    pub fn put_s3_object(&self, bucket: &str, key: &str, value: &Value) {
        let body = self.dir.path().join("s3-put.json");
        std::fs::write(&body, value.to_string()).unwrap();
        let body = body.to_str().unwrap();
        self.aws(&[
            "s3api",
            "put-object",
            "--bucket",
            bucket,
            "--key",
            key,
            "--body",
            body,
        ]);
    }

    /// The keys of every object in `bucket`.
    pub fn s3_keys(&self, bucket: &str) -> Vec<String> {
        let listing = self.aws(&["s3api", "list-objects-v2", "--bucket", bucket]);
        listing["Contents"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| o["Key"].as_str().unwrap().to_string())
            .collect()
    }

    pub fn recording(&self) -> Vec<Value> {
        let text = self.api("GET", "/moto-api/recorder/download-recording");
        let lines = text.lines().filter(|l| !l.trim().is_empty());
        lines
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("recording line {l}: {e}")))
            .collect()
    }

    fn api(&self, method: &str, path: &str) -> String {
        match http(self.port, method, path) {
            Ok((200, body)) => body,
            Ok((status, body)) => panic!("moto {method} {path}: {status} {body}"),
            Err(e) => panic!("moto {method} {path}: {e}"),
        }
    }

    /// Runs the real `aws` CLI against this moto (region us-east-1, test
    /// credentials, JSON output) and returns its parsed stdout (`Null` when
    /// it prints nothing). Panics with stderr when the command fails.
    pub fn aws(&self, args: &[&str]) -> Value {
        self.aws_with(("testing", "testing", None), args)
    }

    /// Runs the real `aws` CLI acting as a role in `account` (moto keeps
    /// each account's resources apart). A later `--region` in `args` wins.
    pub fn aws_as(&self, account: &str, args: &[&str]) -> Value {
        let role = format!("arn:aws:iam::{account}:role/test-setup");
        let answer = self.aws(&[
            "sts",
            "assume-role",
            "--role-arn",
            &role,
            "--role-session-name",
            "test-setup",
        ]);
        let key = |name: &str| answer["Credentials"][name].as_str().unwrap().to_string();
        let (id, secret, token) = (
            key("AccessKeyId"),
            key("SecretAccessKey"),
            key("SessionToken"),
        );
        self.aws_with((&id, &secret, Some(&token)), args)
    }

    fn aws_with(
        &self,
        (key_id, secret, token): (&str, &str, Option<&str>),
        args: &[&str],
    ) -> Value {
        let nowhere = self.dir.path().join("no-such-aws-file");
        let mut command = Command::new("aws");
        if let Some(token) = token {
            command.env("AWS_SESSION_TOKEN", token);
        } else {
            command.env_remove("AWS_SESSION_TOKEN");
        }
        let output = command
            .args(["--endpoint-url", &self.endpoint(), "--region", "us-east-1"])
            .args(["--output", "json"])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", key_id)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", &nowhere)
            .env("AWS_SHARED_CREDENTIALS_FILE", &nowhere)
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null())
            .output();
        let output = match output {
            Ok(output) => output,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                panic!("aws CLI not found: pip install awscli")
            }
            Err(e) => panic!("cannot run aws: {e}"),
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "aws {args:?} failed ({}):\n{stderr}",
            output.status
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        if stdout.trim().is_empty() {
            return Value::Null;
        }
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("aws {args:?}: {e}:\n{stdout}"))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking HTTP/1.0 request with no body (so the answer is never
/// chunked): returns the status and the body text.
fn http(port: u16, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let request =
        format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok());
    let status = status.ok_or_else(|| std::io::Error::other(format!("bad answer: {head}")))?;
    Ok((status, body.to_string()))
}
