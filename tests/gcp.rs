//! CONNECTION_TEST and FETCH_RESOURCES on GCP, with `tendril exec`, against
//! a local fake of Google's STS, IAM Credentials, Compute and Cloud DNS
//! (tests/support/fake_gcp.rs; no real GCP is reachable here).

mod support;

use serde_json::{json, Value};
use support::fake_gcp::{FakeGcp, AUDIENCE, FEDERATED_TOKEN, SERVICE_ACCOUNT_TOKEN};
use support::tendril::exec_claim;
use support::trellis_reads::{gcp_dns_picker, gcp_network_picker, gcp_subnets, Choice};
use support::TempDir;

const SUBJECT: &str = "eyJhbGciOiJSUzI1NiJ9.oidc-subject-token.signature";

fn wif_config(base: &str, token_file: &str) -> String {
    json!({
        "type": "external_account",
        "audience": AUDIENCE,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": format!("{base}/v1/token"),
        "service_account_impersonation_url":
            format!("{base}/v1/projects/-/serviceAccounts/tendril@shop-prod.iam.gserviceaccount.com:generateAccessToken"),
        "credential_source": {"file": token_file, "format": {"type": "json", "subject_token_field_name": "id_token"}}
    })
    .to_string()
}

fn exec(
    gcp: &FakeGcp,
    scratch: &TempDir,
    job_type: &str,
    subject: &str,
    allow_local: bool,
) -> (i32, Value, String) {
    let token_file = scratch.path().join(format!("subject-{job_type}.json"));
    std::fs::write(&token_file, json!({"id_token": subject}).to_string()).unwrap();
    let claim = json!({"job": {"id": format!("gcp-{}", job_type.to_lowercase()), "job_type": job_type, "config_snapshot": {}},
                       "cloud_identity": {"provider": "gcp", "project_id": "shop-prod",
                                          "service_account_email": "tendril@shop-prod.iam.gserviceaccount.com",
                                          "wif_config": wif_config(&gcp.url(), token_file.to_str().unwrap())}});
    let mut env = vec![
        (
            "TENDRIL_GCP_COMPUTE_ENDPOINT",
            format!("{}/compute/v1", gcp.url()),
        ),
        ("TENDRIL_GCP_DNS_ENDPOINT", format!("{}/dns/v1", gcp.url())),
    ];
    if allow_local {
        env.push(("TENDRIL_GCP_ALLOWED_HOSTS", "127.0.0.1".to_string()));
    }
    exec_claim(scratch.path(), job_type, &claim, &env)
}

#[test]
fn gcp_identity_is_checked_by_the_token_exchange_and_its_resources_discovered() {
    let gcp = FakeGcp::start(SUBJECT);
    let scratch = TempDir::new("tendril-gcp-test");
    let (code, result, output) = exec(&gcp, &scratch, "CONNECTION_TEST", SUBJECT, true);
    assert_eq!(code, 0, "{output}");
    let metadata = &result["execution_metadata"];
    assert_eq!(
        metadata["identity"]["principal"],
        "tendril@shop-prod.iam.gserviceaccount.com"
    );
    let cached = &metadata["cached_resources"];
    assert_eq!(
        cached["regions"],
        json!(["europe-west1", "us-central1"]),
        "both pages"
    );
    // The vine form's pickers read these fields (see support::trellis_reads).
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
    let (code, result, _) = exec(&gcp, &scratch, "FETCH_RESOURCES", SUBJECT, true);
    assert_eq!(code, 0);
    assert!(result["execution_metadata"].get("identity").is_none());
}

#[test]
fn a_wrong_subject_token_fails_with_the_providers_message() {
    let gcp = FakeGcp::start(SUBJECT);
    let scratch = TempDir::new("tendril-gcp-test");
    let (code, result, _) = exec(
        &gcp,
        &scratch,
        "CONNECTION_TEST",
        "eyJ.some-other-token.sig",
        true,
    );
    assert_eq!(code, 1);
    assert_eq!(
        result["error_message"],
        "gcp: the token exchange failed: The audience in ID Token does not match the expected audience."
    );
}

#[test]
fn a_wif_config_naming_another_host_is_refused() {
    let gcp = FakeGcp::start(SUBJECT);
    let scratch = TempDir::new("tendril-gcp-test");
    let (code, result, _) = exec(&gcp, &scratch, "CONNECTION_TEST", SUBJECT, false);
    assert_eq!(code, 1);
    assert_eq!(
        result["error_message"],
        "gcp: wif_config names 127.0.0.1, which is not googleapis.com: refusing to send a token there"
    );
}

#[test]
fn a_wif_config_sourced_from_aws_is_signed_with_the_platforms_aws_identity() {
    let gcp = FakeGcp::start(SUBJECT);
    let scratch = TempDir::new("tendril-gcp-test");
    let config = json!({
        "type": "external_account",
        "audience": AUDIENCE,
        "subject_token_type": "urn:ietf:params:aws:token-type:aws4_request",
        "token_url": format!("{}/v1/token", gcp.url()),
        "credential_source": {"environment_id": "aws1",
            "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"}
    });
    let claim = json!({"job": {"id": "gcp-aws", "job_type": "CONNECTION_TEST", "config_snapshot": {}},
                       "cloud_identity": {"provider": "gcp", "project_id": "shop-prod", "wif_config": config.to_string()}});
    let env = [
        ("TENDRIL_GCP_ALLOWED_HOSTS", "127.0.0.1".to_string()),
        (
            "TENDRIL_GCP_COMPUTE_ENDPOINT",
            format!("{}/compute/v1", gcp.url()),
        ),
        ("TENDRIL_GCP_DNS_ENDPOINT", format!("{}/dns/v1", gcp.url())),
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ];
    let (code, result, output) = exec_claim(scratch.path(), "aws-sourced", &claim, &env);
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
