//! How the deployed Trellis reads what Tendril writes: each function here is
//! one screen or server action of the web app (`docs/trellis.md`, "What
//! Trellis reads back"), written as strictly as that code behaves. Where the
//! page would throw (a hosted zone whose `Name` is not a string, a VNet
//! whose `addressPrefixes` is not a list), these panic with the page's
//! complaint, so a contract test fails the way the screen would break.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// One entry of a picker: the value the form stores and the label it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub id: String,
    pub label: String,
}

fn string<'a>(record: &'a Value, field: &str, screen: &str) -> &'a str {
    record[field].as_str().unwrap_or_else(|| {
        panic!("{screen}: `{field}` is not a string in {record} (the page throws)")
    })
}

fn list<'a>(value: &'a Value, what: &str) -> &'a [Value] {
    value
        .as_array()
        .unwrap_or_else(|| panic!("{what} is not a list: {value}"))
}

/// The vine form's AWS network picker: the VPCs of a region, labelled with
/// the Name tag (or the id when it is "") and the CIDR.
pub fn aws_network_picker(cached: &Value, region: &str) -> Vec<Choice> {
    let screen = "AWS network picker";
    list(&cached["vpcs"][region], "vpcs[region]")
        .iter()
        .map(|vpc| {
            let (id, name, cidr) = (
                string(vpc, "ID", screen),
                string(vpc, "Name", screen),
                string(vpc, "CIDR", screen),
            );
            let is_default = vpc["IsDefault"]
                .as_bool()
                .unwrap_or_else(|| panic!("{screen}: IsDefault is not a bool in {vpc}"));
            let shown = if name.is_empty() { id } else { name };
            let default = if is_default { " (default)" } else { "" };
            Choice {
                id: id.into(),
                label: format!("{shown} {cidr}{default}"),
            }
        })
        .collect()
}

/// An AWS subnet as the form lists it under the chosen VPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSubnet {
    pub id: String,
    pub cidr: String,
    pub zone: String,
    pub public: bool,
}

/// The subnets of one VPC: `subnets[region][vpc id]`.
pub fn aws_subnets(cached: &Value, region: &str, vpc: &str) -> Vec<AwsSubnet> {
    let screen = "AWS subnet list";
    list(&cached["subnets"][region][vpc], "subnets[region][vpc]")
        .iter()
        .map(|subnet| {
            assert_eq!(string(subnet, "VpcID", screen), vpc, "{subnet}");
            AwsSubnet {
                id: string(subnet, "ID", screen).into(),
                cidr: string(subnet, "CIDR", screen).into(),
                zone: string(subnet, "AvailabilityZone", screen).into(),
                public: subnet["MapPublicIpOnLaunch"]
                    .as_bool()
                    .unwrap_or_else(|| panic!("{screen}: MapPublicIpOnLaunch is not a bool")),
            }
        })
        .collect()
}

/// The DNS picker: the zones whose `IsPrivate` is false, each `Name` with a
/// trailing dot removed (`Name.replace(/\.$/, "")`, which throws on a
/// zone without a string `Name` and so breaks the whole form).
pub fn aws_dns_picker(cached: &Value) -> Vec<Choice> {
    let screen = "DNS picker";
    list(&cached["hosted_zones"], "hosted_zones")
        .iter()
        .filter(|zone| zone["IsPrivate"] != Value::Bool(true))
        .map(|zone| Choice {
            id: string(zone, "ID", screen).into(),
            label: string(zone, "Name", screen).trim_end_matches('.').into(),
        })
        .collect()
}

/// The cluster admins picker: the account's IAM users by name.
pub fn iam_user_picker(cached: &Value) -> Vec<Choice> {
    let screen = "IAM user picker";
    list(&cached["iam_users"], "iam_users")
        .iter()
        .map(|user| {
            string(user, "path", screen);
            Choice {
                id: string(user, "arn", screen).into(),
                label: string(user, "username", screen).into(),
            }
        })
        .collect()
}

/// The GCP network picker: `selfLink` is the id, `name` the label.
pub fn gcp_network_picker(cached: &Value) -> Vec<Choice> {
    let screen = "GCP network picker";
    list(&cached["networks"], "networks")
        .iter()
        .map(|network| {
            assert!(
                network["autoCreateSubnetworks"].is_boolean(),
                "{screen}: {network}"
            );
            Choice {
                id: string(network, "selfLink", screen).into(),
                label: string(network, "name", screen).into(),
            }
        })
        .collect()
}

/// The GCP subnets of a region that belong to the chosen network (by its
/// selfLink): (name, ipCidrRange).
pub fn gcp_subnets(cached: &Value, region: &str, network: &str) -> Vec<(String, String)> {
    let screen = "GCP subnet list";
    list(&cached["subnets"][region], "subnets[region]")
        .iter()
        .filter(|subnet| string(subnet, "network", screen) == network)
        .map(|subnet| {
            assert_eq!(string(subnet, "region", screen), region);
            (
                string(subnet, "name", screen).into(),
                string(subnet, "ipCidrRange", screen).into(),
            )
        })
        .collect()
}

/// The GCP DNS picker: the managed zones whose visibility is "public".
pub fn gcp_dns_picker(cached: &Value) -> Vec<Choice> {
    let screen = "GCP DNS picker";
    list(&cached["managed_zones"], "managed_zones")
        .iter()
        .filter(|zone| string(zone, "visibility", screen) == "public")
        .map(|zone| Choice {
            id: string(zone, "name", screen).into(),
            label: string(zone, "dnsName", screen).trim_end_matches('.').into(),
        })
        .collect()
}

/// The Azure VNet picker: the VNets of a location, labelled with their
/// address prefixes (`addressPrefixes.join(", ")`, which must be a list).
pub fn azure_vnet_picker(cached: &Value, location: &str) -> Vec<Choice> {
    let screen = "Azure VNet picker";
    list(&cached["vnets"], "vnets")
        .iter()
        .filter(|vnet| string(vnet, "location", screen) == location)
        .map(|vnet| {
            let prefixes: Vec<&str> = list(&vnet["addressPrefixes"], "addressPrefixes")
                .iter()
                .map(|p| p.as_str().expect("a prefix string"))
                .collect();
            Choice {
                id: string(vnet, "id", screen).into(),
                label: format!("{} ({})", string(vnet, "name", screen), prefixes.join(", ")),
            }
        })
        .collect()
}

/// The subnets of a VNet (by name): (name, addressPrefix).
pub fn azure_subnets(cached: &Value, vnet: &str) -> Vec<(String, String)> {
    let screen = "Azure subnet list";
    list(&cached["subnets"][vnet], "subnets[vnet]")
        .iter()
        .map(|subnet| {
            assert_eq!(string(subnet, "vnetName", screen), vnet);
            string(subnet, "id", screen);
            (
                string(subnet, "name", screen).into(),
                string(subnet, "addressPrefix", screen).into(),
            )
        })
        .collect()
}

/// The Azure DNS picker: every zone by name, with its type.
pub fn azure_dns_picker(cached: &Value) -> Vec<Choice> {
    let screen = "Azure DNS picker";
    list(&cached["dns_zones"], "dns_zones")
        .iter()
        .map(|zone| Choice {
            id: string(zone, "id", screen).into(),
            label: format!(
                "{} ({})",
                string(zone, "name", screen),
                string(zone, "zoneType", screen)
            ),
        })
        .collect()
}

/// A priced resource as the plan page's cost panel shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct CostLine {
    pub name: String,
    pub resource_type: String,
    pub monthly: f64,
    pub hourly: f64,
    /// (name, monthly cost) of each subresource.
    pub subresources: Vec<(String, f64)>,
}

/// What the cost panel shows: the totals and every resource.
#[derive(Debug, Clone, PartialEq)]
pub struct CostPanel {
    pub total_monthly: f64,
    pub total_hourly: f64,
    pub resources: Vec<CostLine>,
}

/// Infracost's costs are strings of numbers (`parseFloat` on the page);
/// null is a free resource.
fn cost(value: &Value, what: &str) -> f64 {
    match value {
        Value::Null => 0.0,
        Value::String(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("cost panel: {what} {text:?} is not a number")),
        other => panic!("cost panel: {what} is not a string of a number: {other}"),
    }
}

/// The plan page's cost panel, from a PLAN's metadata.
pub fn cost_panel(metadata: &Value) -> CostPanel {
    let document = &metadata["cost_breakdown"];
    let resources = list(&document["projects"], "cost_breakdown.projects")
        .iter()
        .flat_map(|project| list(&project["breakdown"]["resources"], "breakdown.resources"))
        .map(|resource| CostLine {
            name: string(resource, "name", "cost panel").into(),
            resource_type: string(resource, "resourceType", "cost panel").into(),
            monthly: cost(&resource["monthlyCost"], "monthlyCost"),
            hourly: cost(&resource["hourlyCost"], "hourlyCost"),
            subresources: resource["subresources"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|sub| {
                    (
                        string(sub, "name", "cost panel").into(),
                        cost(&sub["monthlyCost"], "subresource monthlyCost"),
                    )
                })
                .collect(),
        })
        .collect();
    CostPanel {
        total_monthly: cost(&document["totalMonthlyCost"], "totalMonthlyCost"),
        total_hourly: cost(&document["totalHourlyCost"], "totalHourlyCost"),
        resources,
    }
}

/// The keys the deployment finalisation copies from a DEPLOY's metadata.
const FINALISED_TOP_LEVEL: [&str; 4] = [
    "cluster_name",
    "cluster_endpoint",
    "argocd_url",
    "argocd_admin_password",
];
const FINALISED_OUTPUTS: [&str; 9] = [
    "eks_cluster_arn",
    "rds_cluster_endpoint",
    "rds_cluster_identifier",
    "rds_cluster_arn",
    "rds_master_credentials_secret_arn",
    "rds_extra_credentials_secret_arn",
    "rds_credentials_kms_key_arn",
    "redis_primary_endpoint_address",
    "redis_reader_endpoint_address",
];

fn present(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) if text.is_empty() => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

/// The deployment finalisation on a DEPLOY's SUCCESS: every listed value
/// that is present and non-empty overwrites what the vine stored (`stored`),
/// which it returns.
pub fn finalize_deployment(
    metadata: &Value,
    mut stored: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    for key in FINALISED_TOP_LEVEL {
        if let Some(value) = present(&metadata[key]) {
            stored.insert(key.into(), value);
        }
    }
    for key in FINALISED_OUTPUTS {
        if let Some(value) = present(&metadata["outputs"][key]) {
            stored.insert(format!("outputs.{key}"), value);
        }
    }
    stored
}

/// The web app's own URL, which the Update button puts in a snapshot whose
/// `deploy_config` has no `trellis_url`.
pub const WEB_APP_URL: &str = "https://trellis.example.com";

/// The Tendrils page's Update button: the UPDATE_WORKER snapshot it queues
/// from the worker's `metadata.deploy_config` and the newest release, or
/// the page's refusal. What `deploy_config` lacks (absent or null) takes
/// the action's defaults, among them the original Go worker's image
/// repository.
pub fn update_button(
    worker_id: &str,
    worker_metadata: &Value,
    newest_release: &str,
) -> Result<Map<String, Value>, String> {
    let config = worker_metadata["deploy_config"]
        .as_object()
        .ok_or("Worker has no deploy configuration")?;
    let token = config
        .get("worker_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("Worker is missing deploy token — re-deploy required to enable updates")?;
    let mut snapshot = config.clone();
    let defaults = [
        ("image_tag", Value::from("latest")),
        ("cpu", Value::from(512)),
        ("memory", Value::from(1024)),
        ("trellis_url", Value::from(WEB_APP_URL)),
        (
            "image_repository",
            Value::from("ghcr.io/bobikenobi12/grape-worker"),
        ),
    ];
    for (key, default) in defaults {
        if snapshot.get(key).is_none_or(Value::is_null) {
            snapshot.insert(key.into(), default);
        }
    }
    snapshot.insert("worker_id".into(), Value::String(worker_id.into()));
    snapshot.insert("worker_token".into(), Value::String(token.into()));
    snapshot.insert("image_tag".into(), Value::String(newest_release.into()));
    Ok(snapshot)
}

/// The Tendrils page's "outdated" mark: the heartbeat's version differs
/// from the newest release's.
pub fn is_outdated(worker_row: &Value, newest_release: &str) -> bool {
    worker_row["version"].as_str() != Some(newest_release)
}
