//! CONNECTION_TEST and FETCH_RESOURCES on Azure, with `tendril exec`,
//! against a local fake of Microsoft Entra and Resource Manager
//! (tests/support/fake_azure.rs; no real Azure is reachable here).

use crate::support::fake_azure::{FakeAzure, ACCESS_TOKEN};
use crate::support::tendril::exec_claim;
use crate::support::trellis_reads::{azure_dns_picker, azure_subnets, azure_vnet_picker, Choice};
use crate::support::TempDir;
use serde_json::{json, Value};

const TENANT: &str = "11111111-2222-3333-4444-555555555555";
const CLIENT: &str = "66666666-7777-8888-9999-000000000000";
const SUBSCRIPTION: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
const FEDERATED: &str = "eyJhbGciOiJSUzI1NiJ9.federated-token-for-tests.signature";

fn exec(azure: &FakeAzure, scratch: &TempDir, job_type: &str, token: &str) -> (i32, Value, String) {
    let token_file = scratch.path().join(format!("token-{job_type}"));
    std::fs::write(&token_file, token).unwrap();
    let claim = json!({"job": {"id": format!("az-{}", job_type.to_lowercase()), "job_type": job_type, "config_snapshot": {}},
                       "cloud_identity": {"provider": "azure", "tenant_id": TENANT, "client_id": CLIENT,
                                          "subscription_id": SUBSCRIPTION}});
    let env = [
        (
            "AZURE_FEDERATED_TOKEN_FILE",
            token_file.display().to_string(),
        ),
        ("TENDRIL_AZURE_AUTHORITY_HOST", azure.url()),
        ("TENDRIL_AZURE_RESOURCE_MANAGER", azure.url()),
    ];
    exec_claim(scratch.path(), job_type, &claim, &env)
}

#[test]
fn azure_identity_is_checked_and_its_resources_discovered() {
    let azure = FakeAzure::start(TENANT, CLIENT, FEDERATED, SUBSCRIPTION);
    let scratch = TempDir::new("tendril-azure-test");
    let (code, result, output) = exec(&azure, &scratch, "CONNECTION_TEST", FEDERATED);
    assert_eq!(code, 0, "{output}");
    let metadata = &result["execution_metadata"];
    assert_eq!(metadata["identity"]["subscription_name"], "Vintner Test");
    assert_eq!(metadata["identity"]["client_id"], CLIENT);
    let cached = &metadata["cached_resources"];
    assert_eq!(cached["locations"], json!(["westeurope", "northeurope"]));
    let vnets: Vec<&str> = cached["vnets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vnets, ["hub", "spoke"], "both pages");
    // The vine form's pickers read these fields (see crate::support::trellis_reads).
    let network =
        format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/net-rg/providers/Microsoft.Network");
    assert_eq!(
        azure_vnet_picker(cached, "westeurope"),
        [Choice {
            id: format!("{network}/virtualNetworks/hub"),
            label: "hub (10.1.0.0/16)".into()
        }]
    );
    assert_eq!(azure_vnet_picker(cached, "northeurope").len(), 1);
    assert_eq!(
        azure_subnets(cached, "hub"),
        [("aks".to_string(), "10.1.1.0/24".to_string())]
    );
    assert!(azure_subnets(cached, "spoke").is_empty());
    assert_eq!(
        azure_dns_picker(cached),
        [Choice {
            id: format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/dns-rg/providers/Microsoft.Network/dnszones/shop.example"),
            label: "shop.example (Public)".into()
        }]
    );
    assert!(!output.contains(FEDERATED) && !output.contains(ACCESS_TOKEN));

    let (code, result, _) = exec(&azure, &scratch, "FETCH_RESOURCES", FEDERATED);
    assert_eq!(code, 0);
    assert!(result["execution_metadata"].get("identity").is_none());
    assert_eq!(
        result["execution_metadata"]["cached_resources"]["dns_zones"][0]["name"],
        "shop.example"
    );
}

#[test]
fn a_wrong_federated_token_fails_with_the_providers_message() {
    let azure = FakeAzure::start(TENANT, CLIENT, FEDERATED, SUBSCRIPTION);
    let scratch = TempDir::new("tendril-azure-test");
    let (code, result, _) = exec(
        &azure,
        &scratch,
        "CONNECTION_TEST",
        "eyJ.not-the-federated-token.sig",
    );
    assert_eq!(code, 1);
    let message = result["error_message"].as_str().unwrap();
    assert!(message.starts_with("azure: sign-in as "), "{message}");
    assert!(
        message.contains("AADSTS700213: No matching federated identity record found"),
        "{message}"
    );
}
