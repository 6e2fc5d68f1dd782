//! GCP jobs with `tendril exec`, against a local fake of Google's STS, IAM
//! Credentials, Compute and Cloud DNS (tests/support/fake_gcp.rs; no real
//! GCP is reachable here): the identity check and discovery, what a
//! `wif_config` (user data) may make Tendril read and call on each kind of
//! worker, and what the tools of a GCP job act with (seen by a real
//! Terraform's local-exec).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::fake_gcp::{
    FakeGcp, AUDIENCE, FEDERATED_TOKEN, SERVICE_ACCOUNT_TOKEN, SUBJECT_TOKEN_PATH,
};
use crate::support::tendril::exec_claim;
use crate::support::trellis_reads::{gcp_dns_picker, gcp_network_picker, gcp_subnets, Choice};
use crate::support::TempDir;
use serde_json::{json, Value};

const SUBJECT: &str = "eyJhbGciOiJSUzI1NiJ9.oidc-subject-token.signature";
const SERVICE_ACCOUNT: &str = "tendril@shop-prod.iam.gserviceaccount.com";
/// The platform's own AWS secret key, which no user job may see.
const PLATFORM_SECRET: &str = "platform-secret-access-key-0123456789";

/// A scratch directory with `creds/`, the directory a self-hosted worker is
/// told it may read subject token files from.
struct Scratch {
    dir: TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = TempDir::new("tendril-gcp-test");
        std::fs::create_dir(dir.path().join("creds")).unwrap();
        Scratch { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn creds(&self) -> PathBuf {
        self.path().join("creds")
    }

    /// A subject token file (`{"id_token": ...}`) at `path`.
    fn token_file(&self, path: &Path, subject: &str) -> String {
        std::fs::write(path, json!({"id_token": subject}).to_string()).unwrap();
        path.display().to_string()
    }
}

fn file_source(path: &str) -> Value {
    json!({"file": path, "format": {"type": "json", "subject_token_field_name": "id_token"}})
}

fn url_source(url: &str) -> Value {
    json!({"url": url, "headers": {"Metadata-Flavor": "Google"},
           "format": {"type": "json", "subject_token_field_name": "id_token"}})
}

fn aws_source() -> Value {
    json!({"environment_id": "aws1",
           "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"})
}

/// A wif_config whose exchange and impersonation are the fake's.
fn wif_config(gcp: &FakeGcp, source: Value) -> Value {
    let subject_token_type = match source.get("environment_id") {
        Some(_) => "urn:ietf:params:aws:token-type:aws4_request",
        None => "urn:ietf:params:oauth:token-type:jwt",
    };
    json!({
        "type": "external_account",
        "audience": AUDIENCE,
        "subject_token_type": subject_token_type,
        "token_url": format!("{}/v1/token", gcp.url()),
        "service_account_impersonation_url":
            format!("{}/v1/projects/-/serviceAccounts/{SERVICE_ACCOUNT}:generateAccessToken", gcp.url()),
        "credential_source": source
    })
}

fn claim(job_type: &str, config: &Value) -> Value {
    json!({"job": {"id": format!("gcp-{}", job_type.to_lowercase()), "job_type": job_type, "config_snapshot": {}},
           "cloud_identity": {"provider": "gcp", "project_id": "shop-prod",
                              "service_account_email": SERVICE_ACCOUNT,
                              "wif_config": config.to_string()}})
}

/// The worker settings of these tests: the fake's APIs, the fake allowed as
/// Google's STS and IAM Credentials, `creds/` allowed for token files, and
/// the platform's own AWS identity in Tendril's environment.
fn settings(gcp: &FakeGcp, scratch: &Scratch) -> Vec<(&'static str, String)> {
    vec![
        (
            "TENDRIL_GCP_COMPUTE_ENDPOINT",
            format!("{}/compute/v1", gcp.url()),
        ),
        ("TENDRIL_GCP_DNS_ENDPOINT", format!("{}/dns/v1", gcp.url())),
        ("TENDRIL_GCP_ALLOWED_HOSTS", "127.0.0.1".to_string()),
        (
            "TENDRIL_GCP_CREDENTIAL_DIRS",
            scratch.creds().display().to_string(),
        ),
        (
            "TENDRIL_WORK_DIR",
            scratch.path().join("work").display().to_string(),
        ),
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", PLATFORM_SECRET.to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ]
}

fn cloud_hosted(mut env: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
    env.push(("GRAPE_WORKER_MODE", "cloud-hosted".to_string()));
    env
}

fn exec(
    scratch: &Scratch,
    name: &str,
    claim: &Value,
    env: &[(&str, String)],
) -> (i32, Value, String) {
    exec_claim(scratch.path(), name, claim, env)
}

/// Runs a CONNECTION_TEST that must fail, and returns its error message.
fn refused(scratch: &Scratch, name: &str, config: &Value, env: &[(&str, String)]) -> String {
    let (code, result, output) = exec(scratch, name, &claim("CONNECTION_TEST", config), env);
    assert_eq!(code, 1, "{output}");
    result["error_message"].as_str().unwrap().to_string()
}

#[test]
fn gcp_identity_is_checked_by_the_token_exchange_and_its_resources_discovered() {
    let gcp = FakeGcp::start(SUBJECT);
    let scratch = Scratch::new();
    let token = scratch.token_file(&scratch.creds().join("subject.json"), SUBJECT);
    let config = wif_config(&gcp, file_source(&token));
    let env = settings(&gcp, &scratch);
    let (code, result, output) = exec(&scratch, "ct", &claim("CONNECTION_TEST", &config), &env);
    assert_eq!(code, 0, "{output}");
    assert_eq!(gcp.exchanges(), 1, "one token serves every page");
    let metadata = &result["execution_metadata"];
    assert_eq!(metadata["identity"]["principal"], SERVICE_ACCOUNT);
    let cached = &metadata["cached_resources"];
    assert_eq!(
        cached["regions"],
        json!(["europe-west1", "us-central1"]),
        "both pages"
    );
    // The vine form's pickers read these fields (see crate::support::trellis_reads).
    let shop_vpc =
        "https://www.googleapis.com/compute/v1/projects/shop-prod/global/networks/shop-vpc";
    let networks = gcp_network_picker(cached);
    assert_eq!(
        networks[1],
        Choice {
            id: shop_vpc.into(),
            label: "shop-vpc".into()
        }
    );
    assert_eq!(cached["networks"][1]["autoCreateSubnetworks"], false);
    assert_eq!(
        gcp_subnets(cached, "europe-west1", shop_vpc),
        [("shop-eu".to_string(), "10.10.0.0/20".to_string())]
    );
    assert!(gcp_subnets(cached, "europe-west1", &networks[0].id).is_empty());
    assert_eq!(
        gcp_dns_picker(cached),
        [Choice {
            id: "shop".into(),
            label: "shop.example".into()
        }],
        "the private zone is not offered"
    );
    assert_eq!(
        cached["managed_zones"][0]["dnsName"], "shop.example.",
        "dnsName as the API gives it"
    );
    for token in [SUBJECT, FEDERATED_TOKEN, SERVICE_ACCOUNT_TOKEN] {
        assert!(!output.contains(token), "{token} in the output");
    }
    let (code, result, _) = exec(&scratch, "fr", &claim("FETCH_RESOURCES", &config), &env);
    assert_eq!(code, 0);
    assert!(result["execution_metadata"].get("identity").is_none());
}

#[test]
fn a_wrong_subject_token_fails_with_the_providers_message() {
    let gcp = FakeGcp::start(SUBJECT);
    let scratch = Scratch::new();
    let token = scratch.token_file(
        &scratch.creds().join("subject.json"),
        "eyJ.some-other-token.sig",
    );
    let config = wif_config(&gcp, file_source(&token));
    assert_eq!(
        refused(&scratch, "wrong", &config, &settings(&gcp, &scratch)),
        "gcp: the token exchange failed: The audience in ID Token does not match the expected audience."
    );
}

#[test]
fn a_wif_config_naming_a_local_host_is_refused_without_the_test_setting() {
    let gcp = FakeGcp::start(SUBJECT);
    let scratch = Scratch::new();
    let token = scratch.token_file(&scratch.creds().join("subject.json"), SUBJECT);
    let config = wif_config(&gcp, file_source(&token));
    let env: Vec<_> = settings(&gcp, &scratch)
        .into_iter()
        .filter(|(name, _)| *name != "TENDRIL_GCP_ALLOWED_HOSTS")
        .collect();
    assert_eq!(
        refused(&scratch, "local", &config, &env),
        format!(
            "gcp: refusing wif_config's token_url {}/v1/token: only https://sts.googleapis.com/ may receive this token",
            gcp.url()
        )
    );
    assert_eq!(gcp.exchanges(), 0);
}

#[test]
fn a_token_url_on_another_googleapis_host_is_refused() {
    let gcp = FakeGcp::start(SUBJECT);
    let scratch = Scratch::new();
    let mut config = wif_config(&gcp, aws_source());
    // A user's own bucket takes uploads: the signed subject token would land there.
    let upload = "https://storage.googleapis.com/upload/storage/v1/b/users-bucket/o?uploadType=media&name=token";
    config["token_url"] = json!(upload);
    let env = cloud_hosted(settings(&gcp, &scratch));
    assert_eq!(
        refused(&scratch, "storage", &config, &env),
        format!("gcp: refusing wif_config's token_url {upload}: only https://sts.googleapis.com/ may receive this token")
    );
}

#[test]
fn an_impersonation_url_on_another_googleapis_host_is_refused() {
    let gcp = FakeGcp::start(SUBJECT);
    let scratch = Scratch::new();
    let mut config = wif_config(&gcp, aws_source());
    let elsewhere = format!(
        "https://iam.googleapis.com/v1/projects/-/serviceAccounts/{SERVICE_ACCOUNT}:generateAccessToken"
    );
    config["service_account_impersonation_url"] = json!(elsewhere);
    let env = cloud_hosted(settings(&gcp, &scratch));
    assert_eq!(
        refused(&scratch, "iam", &config, &env),
        format!(
            "gcp: refusing wif_config's service_account_impersonation_url {elsewhere}: \
             only https://iamcredentials.googleapis.com/ may receive this token"
        )
    );
    assert_eq!(gcp.exchanges(), 0, "refused before any exchange");
}

#[test]
fn a_cloud_hosted_worker_refuses_file_and_url_sources() {
    let gcp = FakeGcp::start(SUBJECT);
    let scratch = Scratch::new();
    // Even a file in a directory the settings allow, and the fake's own URL.
    let token = scratch.token_file(&scratch.creds().join("subject.json"), SUBJECT);
    let sources = [
        ("file", "a file", file_source(&token)),
        (
            "url",
            "a URL",
            url_source(&format!("{}{SUBJECT_TOKEN_PATH}", gcp.url())),
        ),
    ];
    let env = cloud_hosted(settings(&gcp, &scratch));
    for (kind, what, source) in sources {
        let message = refused(&scratch, kind, &wif_config(&gcp, source), &env);
        assert_eq!(
            message,
            format!(
                "gcp: refusing wif_config's credential_source.{kind} on a cloud-hosted worker: it would read \
                 {what} from the platform's own machine, not yours; a cloud-hosted worker accepts only the \
                 AWS-sourced federation (credential_source.environment_id \"aws1\"), whose subject is the \
                 platform's AWS identity"
            )
        );
    }
    assert_eq!(gcp.subject_fetches(), 0, "the URL was never fetched");
    assert_eq!(gcp.exchanges(), 0);
}

#[test]
fn a_self_hosted_worker_reads_token_files_only_under_its_allowed_dirs() {
    let gcp = FakeGcp::start(SUBJECT);
    let scratch = Scratch::new();
    let env = settings(&gcp, &scratch);
    let creds = scratch.creds().display().to_string();
    // A file outside that holds a token the fake would accept: only the
    // check stands between it and a successful exchange.
    let outside = scratch.token_file(&scratch.path().join("outside.json"), SUBJECT);
    let link = scratch.creds().join("link.json");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let escapes = [
        (
            "/proc/self/environ".to_string(),
            format!("it is not under a directory of TENDRIL_GCP_CREDENTIAL_DIRS ({creds})"),
        ),
        (
            format!("{creds}/../outside.json"),
            "it must be an absolute path without '..'".to_string(),
        ),
        (
            link.display().to_string(),
            format!(
                "it leads out of the directories of TENDRIL_GCP_CREDENTIAL_DIRS ({creds}) through a symbolic link"
            ),
        ),
    ];
    for (index, (path, why)) in escapes.iter().enumerate() {
        let config = wif_config(&gcp, file_source(path));
        assert_eq!(
            refused(&scratch, &format!("escape-{index}"), &config, &env),
            format!("gcp: refusing wif_config's credential_source.file {path}: {why}")
        );
    }
    assert_eq!(gcp.exchanges(), 0);
    let inside = scratch.token_file(&scratch.creds().join("subject.json"), SUBJECT);
    let config = wif_config(&gcp, file_source(&inside));
    let (code, _, output) = exec(&scratch, "inside", &claim("CONNECTION_TEST", &config), &env);
    assert_eq!(code, 0, "{output}");
}

#[test]
fn a_self_hosted_worker_fetches_a_subject_token_url_only_from_allowed_hosts() {
    let gcp = FakeGcp::start(SUBJECT);
    let scratch = Scratch::new();
    let env = settings(&gcp, &scratch);
    // 192.0.2.0/24 is reserved for documentation: refused before any traffic.
    let far = "http://192.0.2.10/token";
    assert_eq!(
        refused(&scratch, "far", &wif_config(&gcp, url_source(far)), &env),
        format!(
            "gcp: refusing wif_config's credential_source.url {far}: a subject token is fetched only from \
             loopback, a metadata server (169.254.169.254, metadata.google.internal, [fd00:ec2::254]) or a \
             host of TENDRIL_GCP_CREDENTIAL_URL_HOSTS, over http or https"
        )
    );
    let local = format!("{}{SUBJECT_TOKEN_PATH}", gcp.url());
    let config = wif_config(&gcp, url_source(&local));
    let (code, result, output) = exec(&scratch, "local", &claim("CONNECTION_TEST", &config), &env);
    assert_eq!(code, 0, "{output}");
    assert_eq!(
        result["execution_metadata"]["identity"]["principal"],
        SERVICE_ACCOUNT
    );
    assert_eq!(gcp.subject_fetches(), 1);
}

#[test]
fn a_wif_config_sourced_from_aws_is_signed_with_the_platforms_aws_identity() {
    let gcp = FakeGcp::start(SUBJECT);
    let scratch = Scratch::new();
    let mut config = wif_config(&gcp, aws_source());
    config
        .as_object_mut()
        .unwrap()
        .remove("service_account_impersonation_url");
    let env = cloud_hosted(settings(&gcp, &scratch));
    let (code, result, output) = exec(&scratch, "aws", &claim("CONNECTION_TEST", &config), &env);
    // The fake's STS accepts only a signed GetCallerIdentity of the platform's
    // keys bound to the audience (tests/support/fake_gcp.rs).
    assert_eq!(code, 0, "{output}");
    let metadata = &result["execution_metadata"];
    assert_eq!(
        metadata["identity"]["principal"],
        format!("federated principal of {AUDIENCE}")
    );
    assert_eq!(
        metadata["cached_resources"]["regions"],
        json!(["europe-west1", "us-central1"])
    );
    assert!(
        !output.contains("testing/"),
        "the signed request is masked, never logged"
    );
}

#[test]
fn an_aws_sourced_jobs_tools_get_a_fresh_google_token_and_not_the_platforms_aws_keys() {
    // Tokens of ten minutes: less than a tool must start with, so every
    // tool process gets a new one.
    let gcp = FakeGcp::with_token_lifetime(SUBJECT, Duration::from_secs(600));
    let scratch = Scratch::new();
    let dump = scratch.path().join("tool-env");
    let template = scratch.path().join("templates/vine/gcp");
    std::fs::create_dir_all(&template).unwrap();
    std::fs::write(
        template.join("main.tf"),
        format!(
            "terraform {{\n  backend \"s3\" {{}}\n}}\n\n\
             resource \"terraform_data\" \"tool_env\" {{\n  provisioner \"local-exec\" {{\n    \
             command = \"env > {}; echo token=$GOOGLE_OAUTH_ACCESS_TOKEN\"\n  }}\n}}\n",
            dump.display()
        ),
    )
    .unwrap();
    let mut env = cloud_hosted(settings(&gcp, &scratch));
    env.extend([
        (
            "TENDRIL_TEMPLATES_DIR",
            scratch.path().join("templates").display().to_string(),
        ),
        (
            "TENDRIL_STATE_DIR",
            scratch.path().join("state").display().to_string(),
        ),
    ]);
    let mut claim = claim("BOOTSTRAP", &wif_config(&gcp, aws_source()));
    claim["job"]["vineyard_id"] = json!("vy-gcp");
    claim["job"]["config_snapshot"] =
        json!({"project_name": "shop", "environment_stage": "test", "region": "europe-west1"});
    let (code, _, output) = exec(&scratch, "tools", &claim, &env);
    assert_eq!(code, 0, "{output}");

    let seen: BTreeMap<String, String> = std::fs::read_to_string(&dump)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    assert_eq!(seen["GOOGLE_OAUTH_ACCESS_TOKEN"], SERVICE_ACCOUNT_TOKEN);
    assert_eq!(seen["CLOUDSDK_AUTH_ACCESS_TOKEN"], SERVICE_ACCOUNT_TOKEN);
    assert_eq!(seen["CLOUDSDK_CORE_PROJECT"], "shop-prod");
    assert_eq!(seen["GOOGLE_PROJECT"], "shop-prod");
    for platform in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "GOOGLE_APPLICATION_CREDENTIALS",
    ] {
        assert!(!seen.contains_key(platform), "the tool got {platform}");
    }
    assert!(!std::fs::read_to_string(&dump)
        .unwrap()
        .contains(PLATFORM_SECRET));

    let terraform_runs = output.matches("$ terraform ").count();
    assert!(terraform_runs >= 4, "init, plan, apply, output:\n{output}");
    assert_eq!(
        gcp.exchanges(),
        terraform_runs,
        "a new token for each tool process"
    );
    assert!(
        output.contains("token=***"),
        "the tool's print of the token is masked:\n{output}"
    );
    for token in [FEDERATED_TOKEN, SERVICE_ACCOUNT_TOKEN] {
        assert!(!output.contains(token), "{token} in the output");
    }
}
