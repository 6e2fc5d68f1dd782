//! What a job's `wif_config` (an `external_account` credential
//! configuration: user data from Trellis) may make Tendril read and call,
//! checked before anything is read or sent.
//!
//! - The token exchange goes to `https://sts.googleapis.com/` and the
//!   service-account impersonation to `https://iamcredentials.googleapis.com/`,
//!   nowhere else (`TENDRIL_GCP_ALLOWED_HOSTS` adds hosts, for tests against
//!   a local fake only): whoever receives a subject token can use it.
//! - On a cloud-hosted worker the subject can only be the platform's own AWS
//!   identity (`credential_source.environment_id` `aws1`): a file or a URL
//!   read there would be one of the platform's machine (its environment holds
//!   the worker token), not the user's.
//! - On a self-hosted worker a file source must be under a directory of
//!   `TENDRIL_GCP_CREDENTIAL_DIRS` (its canonical path too, so that neither
//!   `..` nor a symbolic link leads out), and a URL source must be on
//!   loopback, a metadata server, or a host of
//!   `TENDRIL_GCP_CREDENTIAL_URL_HOSTS`.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Component, Path, PathBuf};

use reqwest::Url;
use serde_json::Value;

use super::gcp_error;
use crate::cloud::CloudError;
use crate::settings::{GcpSettings, WorkerMode};

/// The only host that may receive a subject token.
const TOKEN_HOST: &str = "sts.googleapis.com";
/// The only host that may receive a federated token for impersonation.
const IMPERSONATION_HOST: &str = "iamcredentials.googleapis.com";
/// The metadata servers a self-hosted URL source may name besides loopback
/// (GCE's and AWS's, whose IPv6 address is `fd00:ec2::254`).
const METADATA_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
const METADATA_NAME: &str = "metadata.google.internal";

/// A checked `wif_config`.
#[derive(Debug)]
pub struct WifConfig {
    pub audience: String,
    pub subject_token_type: String,
    pub token_url: Url,
    pub impersonation_url: Option<Url>,
    pub source: SubjectSource,
}

/// Where the subject token comes from.
#[derive(Debug)]
pub enum SubjectSource {
    /// The worker's own AWS identity: a signed GetCallerIdentity request for
    /// the source's `regional_cred_verification_url` ("" for the default).
    Aws { verification_url: String },
    /// A file under an allowed directory, as named (checked again at each read).
    File { path: String, format: TokenFormat },
    /// An allowed URL, fetched with the source's headers.
    Url {
        url: Url,
        headers: Vec<(String, String)>,
        format: TokenFormat,
    },
}

/// How a file's or a URL's content holds the token.
#[derive(Debug, PartialEq)]
pub enum TokenFormat {
    Text,
    Json { field: String },
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

impl WifConfig {
    /// Parses a `wif_config` and checks it against what a worker in `mode`
    /// may do; no file is read and nothing is sent.
    pub fn check(
        wif_config: &str,
        mode: WorkerMode,
        settings: &GcpSettings,
    ) -> Result<WifConfig, CloudError> {
        let config: Value = serde_json::from_str(wif_config).map_err(|e| {
            gcp_error(format!(
                "wif_config is not a JSON credential configuration: {e}"
            ))
        })?;
        if text(&config, "type") != "external_account" {
            return Err(gcp_error("wif_config is not an external_account (workload identity federation) configuration"));
        }
        let token_url = google_endpoint(
            "token_url",
            text(&config, "token_url"),
            TOKEN_HOST,
            &settings.extra_allowed_hosts,
        )?;
        let impersonation_url = match text(&config, "service_account_impersonation_url") {
            "" => None,
            given => Some(google_endpoint(
                "service_account_impersonation_url",
                given,
                IMPERSONATION_HOST,
                &settings.extra_allowed_hosts,
            )?),
        };
        Ok(WifConfig {
            audience: text(&config, "audience").to_string(),
            subject_token_type: text(&config, "subject_token_type").to_string(),
            token_url,
            impersonation_url,
            source: subject_source(&config["credential_source"], mode, settings)?,
        })
    }
}

/// A Google endpoint of the configuration: `https://<host>/...` exactly, or
/// a host of the test setting.
fn google_endpoint(
    field: &str,
    given: &str,
    host: &str,
    test_hosts: &[String],
) -> Result<Url, CloudError> {
    let url = Url::parse(given)
        .map_err(|_| gcp_error(format!("wif_config's {field} '{given}' is not a URL")))?;
    let named = url.host_str().unwrap_or_default();
    let google = url.scheme() == "https"
        && named == host
        && url.port().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    if google || test_hosts.iter().any(|allowed| allowed == named) {
        return Ok(url);
    }
    Err(gcp_error(format!(
        "refusing wif_config's {field} {given}: only https://{host}/ may receive this token"
    )))
}

fn subject_source(
    source: &Value,
    mode: WorkerMode,
    settings: &GcpSettings,
) -> Result<SubjectSource, CloudError> {
    let environment = text(source, "environment_id");
    if environment.starts_with("aws") {
        return Ok(SubjectSource::Aws {
            verification_url: text(source, "regional_cred_verification_url").to_string(),
        });
    }
    let unsupported = || {
        gcp_error(
            "wif_config's credential source is not supported (an AWS environment, a file and a url are; \
             an executable is not)",
        )
    };
    if !environment.is_empty() {
        return Err(unsupported());
    }
    let (kind, what) = match (source.get("file"), source.get("url")) {
        (Some(_), _) => ("file", "a file"),
        (None, Some(_)) => ("url", "a URL"),
        (None, None) => return Err(unsupported()),
    };
    if mode == WorkerMode::CloudHosted {
        return Err(gcp_error(format!(
            "refusing wif_config's credential_source.{kind} on a cloud-hosted worker: it would read {what} \
             from the platform's own machine, not yours; a cloud-hosted worker accepts only the AWS-sourced \
             federation (credential_source.environment_id \"aws1\"), whose subject is the platform's AWS identity"
        )));
    }
    let format = token_format(&source["format"]);
    let path = text(source, "file");
    if !path.is_empty() {
        allowed_file(path, &settings.credential_dirs)?;
        return Ok(SubjectSource::File {
            path: path.to_string(),
            format,
        });
    }
    let url = allowed_source_url(text(source, "url"), &settings.credential_url_hosts)?;
    let headers = source
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(name, value)| (name.clone(), value.as_str().unwrap_or_default().to_string()))
        .collect();
    Ok(SubjectSource::Url {
        url,
        headers,
        format,
    })
}

fn token_format(format: &Value) -> TokenFormat {
    match text(format, "type") {
        "json" => TokenFormat::Json {
            field: text(format, "subject_token_field_name").to_string(),
        },
        _ => TokenFormat::Text,
    }
}

/// The canonical path of a subject token file named `given`, when both the
/// name and the canonical path are under a directory of `dirs`.
pub fn allowed_file(given: &str, dirs: &[PathBuf]) -> Result<PathBuf, CloudError> {
    let refuse = |why: String| {
        gcp_error(format!(
            "refusing wif_config's credential_source.file {given}: {why}"
        ))
    };
    if dirs.is_empty() {
        return Err(refuse(
            "this worker allows no directory for subject token files (TENDRIL_GCP_CREDENTIAL_DIRS is not set)"
                .into(),
        ));
    }
    let listed = dirs
        .iter()
        .map(|dir| dir.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let path = Path::new(given);
    if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
        return Err(refuse("it must be an absolute path without '..'".into()));
    }
    let canonical_dirs: Vec<PathBuf> = dirs.iter().filter_map(|d| d.canonicalize().ok()).collect();
    if !dirs
        .iter()
        .chain(&canonical_dirs)
        .any(|d| path.starts_with(d))
    {
        return Err(refuse(format!(
            "it is not under a directory of TENDRIL_GCP_CREDENTIAL_DIRS ({listed})"
        )));
    }
    let canonical = path
        .canonicalize()
        .map_err(|e| gcp_error(format!("cannot read the subject token file {given}: {e}")))?;
    if !canonical_dirs.iter().any(|d| canonical.starts_with(d)) {
        return Err(refuse(format!(
            "it leads out of the directories of TENDRIL_GCP_CREDENTIAL_DIRS ({listed}) through a symbolic link"
        )));
    }
    Ok(canonical)
}

/// A URL source: http(s) to loopback, a metadata server, or a host of `hosts`.
fn allowed_source_url(given: &str, hosts: &[String]) -> Result<Url, CloudError> {
    let url = Url::parse(given).map_err(|_| {
        gcp_error(format!(
            "wif_config's credential_source.url '{given}' is not a URL"
        ))
    })?;
    let named = url.host_str().unwrap_or_default();
    let local = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback() || ip == METADATA_V4,
        Some(url::Host::Ipv6(ip)) => ip.is_loopback() || ip == METADATA_V6,
        Some(url::Host::Domain(name)) => name == "localhost" || name == METADATA_NAME,
        None => false,
    };
    let web = matches!(url.scheme(), "http" | "https");
    if web && (local || hosts.iter().any(|allowed| allowed == named)) {
        return Ok(url);
    }
    Err(gcp_error(format!(
        "refusing wif_config's credential_source.url {given}: a subject token is fetched only from loopback, \
         a metadata server ({METADATA_V4}, {METADATA_NAME}, [{METADATA_V6}]) or a host of \
         TENDRIL_GCP_CREDENTIAL_URL_HOSTS, over http or https"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(test_hosts: &[&str], url_hosts: &[&str], dirs: &[&Path]) -> GcpSettings {
        let strings = |list: &[&str]| list.iter().map(|h| h.to_string()).collect();
        GcpSettings {
            compute: String::new(),
            dns: String::new(),
            extra_allowed_hosts: strings(test_hosts),
            credential_dirs: dirs.iter().map(|d| d.to_path_buf()).collect(),
            credential_url_hosts: strings(url_hosts),
        }
    }

    fn config(token_url: &str, impersonation: &str, source: Value) -> String {
        serde_json::json!({"type": "external_account", "audience": "//iam.googleapis.com/x",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "token_url": token_url,
            "service_account_impersonation_url": impersonation, "credential_source": source})
        .to_string()
    }

    fn aws() -> Value {
        serde_json::json!({"environment_id": "aws1"})
    }

    fn check(text: &str, mode: WorkerMode, settings: &GcpSettings) -> Result<WifConfig, String> {
        WifConfig::check(text, mode, settings).map_err(|e| e.to_string())
    }

    #[test]
    fn the_exchange_goes_to_googles_sts_and_the_impersonation_to_iam_credentials_only() {
        let none = settings(&[], &[], &[]);
        let impersonation = "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/a@b.iam.gserviceaccount.com:generateAccessToken";
        let good = check(
            &config("https://sts.googleapis.com/v1/token", impersonation, aws()),
            WorkerMode::CloudHosted,
            &none,
        )
        .unwrap();
        assert_eq!(
            good.token_url.as_str(),
            "https://sts.googleapis.com/v1/token"
        );
        for token_url in [
            "https://storage.googleapis.com/upload/storage/v1/b/mine/o?uploadType=media&name=t",
            "http://sts.googleapis.com/v1/token",
            "https://sts.googleapis.com:8443/v1/token",
            "https://sts.googleapis.com.evil.example/v1/token",
            "https://user@sts.googleapis.com/v1/token",
            "https://googleapis.com/v1/token",
            "http://127.0.0.1:9/v1/token",
            "not a url",
        ] {
            let refused = check(
                &config(token_url, "", aws()),
                WorkerMode::CloudHosted,
                &none,
            );
            assert!(refused.is_err(), "{token_url} was accepted");
        }
        for impersonation in [
            "https://iam.googleapis.com/v1/projects/-/serviceAccounts/a:generateAccessToken",
            "https://sts.googleapis.com/v1/projects/-/serviceAccounts/a:generateAccessToken",
        ] {
            let refused = check(
                &config("https://sts.googleapis.com/v1/token", impersonation, aws()),
                WorkerMode::CloudHosted,
                &none,
            )
            .unwrap_err();
            assert!(
                refused.contains("only https://iamcredentials.googleapis.com/"),
                "{refused}"
            );
        }
        let fake = settings(&["127.0.0.1"], &[], &[]);
        assert!(check(
            &config(
                "http://127.0.0.1:9/v1/token",
                "http://127.0.0.1:9/v1/sa",
                aws()
            ),
            WorkerMode::CloudHosted,
            &fake
        )
        .is_ok());
    }

    #[test]
    fn a_cloud_hosted_worker_accepts_only_the_aws_source() {
        let dir = std::env::temp_dir();
        let lenient = settings(&[], &["example.com"], &[&dir]);
        let token_url = "https://sts.googleapis.com/v1/token";
        let file = serde_json::json!({"file": dir.join("t").display().to_string()});
        let url = serde_json::json!({"url": "http://127.0.0.1:9/token"});
        for (source, kind) in [(file, "file"), (url, "url")] {
            let refused = check(
                &config(token_url, "", source),
                WorkerMode::CloudHosted,
                &lenient,
            )
            .unwrap_err();
            assert!(
                refused.contains(&format!(
                    "credential_source.{kind} on a cloud-hosted worker"
                )),
                "{refused}"
            );
        }
        let executable = serde_json::json!({"executable": {"command": "/bin/true"}});
        assert!(check(
            &config(token_url, "", executable),
            WorkerMode::SelfHosted,
            &lenient
        )
        .unwrap_err()
        .contains("not supported"));
        let aws = check(
            &config(token_url, "", aws()),
            WorkerMode::CloudHosted,
            &lenient,
        )
        .unwrap();
        assert!(matches!(aws.source, SubjectSource::Aws { .. }));
    }

    #[test]
    fn a_url_source_is_loopback_a_metadata_server_or_an_allowed_host() {
        let hosts = ["vault.corp.example".to_string()];
        for good in [
            "http://127.0.0.1:8080/token",
            "http://localhost/token",
            "http://[::1]:9/token",
            "http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/identity",
            "http://metadata.google.internal/computeMetadata/v1/x",
            "http://[fd00:ec2::254]/latest/meta-data/",
            "https://vault.corp.example:8200/v1/identity/oidc/token/gcp",
        ] {
            assert!(
                allowed_source_url(good, &hosts).is_ok(),
                "{good} was refused"
            );
        }
        for bad in [
            "https://attacker.example/collect",
            "http://10.0.0.1/token",
            "http://169.254.170.2/v2/credentials",
            "file:///proc/self/environ",
            "ftp://127.0.0.1/token",
            "http://vault.corp.example.attacker.example/",
        ] {
            assert!(
                allowed_source_url(bad, &hosts).is_err(),
                "{bad} was accepted"
            );
        }
    }

    #[test]
    fn a_file_source_stays_under_an_allowed_directory() {
        let root = std::env::temp_dir().join(format!("tendril-wif-test-{}", std::process::id()));
        let allowed = root.join("allowed");
        std::fs::create_dir_all(&allowed).unwrap();
        std::fs::write(allowed.join("token"), "t").unwrap();
        std::fs::write(root.join("outside"), "t").unwrap();
        std::os::unix::fs::symlink(root.join("outside"), allowed.join("link")).unwrap();
        let dirs = [allowed.clone()];
        let name = |p: &Path| p.display().to_string();
        assert_eq!(
            allowed_file(&name(&allowed.join("token")), &dirs).unwrap(),
            allowed.join("token").canonicalize().unwrap()
        );
        let escapes = [
            ("/proc/self/environ".to_string(), "not under"),
            (name(&allowed.join("../outside")), "without '..'"),
            (name(&allowed.join("link")), "symbolic link"),
            ("allowed/token".to_string(), "absolute"),
        ];
        for (path, why) in escapes {
            let refused = allowed_file(&path, &dirs).unwrap_err().to_string();
            assert!(refused.contains(why), "{path}: {refused}");
        }
        assert!(allowed_file(&name(&allowed.join("token")), &[])
            .unwrap_err()
            .to_string()
            .contains("TENDRIL_GCP_CREDENTIAL_DIRS is not set"));
        std::fs::remove_dir_all(root).unwrap();
    }
}
