//! CONNECTION_TEST and FETCH_RESOURCES: check a cloud identity and list
//! what the account already has, for the "use existing" choices of the web
//! app. Regions are discovered a few at a time (one after another would take
//! minutes); a region that fails is reported under `errors` and does not
//! sink the others.
//!
//! The records carry exactly the field names the web app's network and DNS
//! pickers read (see `docs/trellis.md`): AWS in PascalCase as the original
//! worker emitted them (`ID`, `CIDR`, `Name`, ...), GCP and Azure in the
//! camelCase of their own APIs (`selfLink`, `ipCidrRange`, `addressPrefix`, ...).

use futures::stream::{self, StreamExt};
use serde_json::{json, Map, Value};

use super::{JobContext, JobError};
use crate::cloud::aws::{self, DEFAULT_REGION};
use crate::trellis::Provider;

/// CONNECTION_TEST: verify the identity, record it, then discover.
pub async fn connection_test(context: &JobContext) -> Result<Map<String, Value>, JobError> {
    let phase = context.log.phase("verifying the cloud identity");
    let identity = match context.provider() {
        Provider::Aws => {
            let identity = match &context.aws_role {
                Some(role) => {
                    context.log.system(&format!("assuming {}", role.role_arn()));
                    role.caller_identity().await?
                }
                None => aws::ambient_caller_identity().await?,
            };
            context.log.system(&format!(
                "acting as {} in account {}",
                identity.arn, identity.account
            ));
            json!({"account": identity.account, "arn": identity.arn, "user_id": identity.user_id})
        }
        Provider::Gcp => {
            let session = context.gcp_session().await?;
            context.log.system(&format!(
                "acting as {} in project {}",
                session.principal, session.project_id
            ));
            json!({"project_id": session.project_id, "principal": session.principal})
        }
        Provider::Azure => {
            let session = context.azure_session().await?;
            let subscription = session.get("", "2022-12-01").await?;
            let name = subscription
                .get("displayName")
                .cloned()
                .unwrap_or(Value::Null);
            context.log.system(&format!(
                "signed in as {} to subscription {}",
                session.client_id, session.subscription_id
            ));
            json!({"subscription_id": session.subscription_id, "subscription_name": name,
                   "tenant_id": session.tenant_id, "client_id": session.client_id})
        }
        other @ Provider::Other(_) => return Err(unsupported(other)),
    };
    phase.finish();
    context
        .reporter
        .progress(Map::from_iter([("identity".to_string(), identity.clone())]));
    let mut metadata = fetch_resources(context).await?;
    metadata.insert("identity".into(), identity);
    Ok(metadata)
}

/// FETCH_RESOURCES: discover only.
pub async fn fetch_resources(context: &JobContext) -> Result<Map<String, Value>, JobError> {
    match context.provider() {
        Provider::Aws => discover_aws(context).await,
        Provider::Gcp => discover_gcp(context).await,
        Provider::Azure => discover_azure(context).await,
        other @ Provider::Other(_) => Err(unsupported(other)),
    }
}

/// GCP: regions, VPC networks, subnets by network, DNS managed zones; a
/// list that fails is reported under `errors`.
async fn discover_gcp(context: &JobContext) -> Result<Map<String, Value>, JobError> {
    use crate::cloud::gcp::Api;
    let phase = context.log.phase("discovering GCP resources");
    let session = context.gcp_session().await?;
    let mut findings = Findings::new(context);
    let regions = findings.listed(
        "regions",
        session.list(Api::Compute, "/regions", "items").await,
    );
    let networks = findings.listed(
        "networks",
        session
            .list(Api::Compute, "/global/networks", "items")
            .await,
    );
    let scoped = findings.listed(
        "subnets",
        session
            .list(Api::Compute, "/aggregated/subnetworks", "items")
            .await,
    );
    let zones = findings.listed(
        "managed_zones",
        session
            .list(Api::Dns, "/managedZones", "managedZones")
            .await,
    );
    let last = |link: &str| link.rsplit('/').next().unwrap_or_default().to_string();
    let mut subnets = Map::new();
    for subnet in scoped.iter().flat_map(|scope| items(scope, "subnetworks")) {
        let region = last(&text(subnet, "region"));
        push(
            &mut subnets,
            &region,
            json!({"name": text(subnet, "name"), "region": region, "ipCidrRange": text(subnet, "ipCidrRange"),
                   "network": text(subnet, "network")}),
        );
    }
    phase.finish();
    findings.set(
        "regions",
        regions.iter().map(|r| json!(text(r, "name"))).collect(),
    );
    findings.set(
        "networks",
        networks
            .iter()
            .map(|n| {
                json!({"name": text(n, "name"), "selfLink": text(n, "selfLink"),
                       "autoCreateSubnetworks": n.get("autoCreateSubnetworks").and_then(Value::as_bool).unwrap_or(false)})
            })
            .collect(),
    );
    findings.set("subnets", Value::Object(subnets));
    findings.set(
        "managed_zones",
        zones
            .iter()
            .map(|z| {
                json!({"name": text(z, "name"), "dnsName": text(z, "dnsName"),
                            "visibility": text(z, "visibility")})
            })
            .collect(),
    );
    Ok(findings.into_metadata())
}

/// Azure: locations, VNets with their subnets, DNS zones; a list that fails
/// is reported under `errors`.
async fn discover_azure(context: &JobContext) -> Result<Map<String, Value>, JobError> {
    let phase = context.log.phase("discovering Azure resources");
    let session = context.azure_session().await?;
    let mut findings = Findings::new(context);
    let array = |list: Value| list.as_array().cloned().unwrap_or_default();
    let locations = findings.listed(
        "locations",
        session.get("/locations", "2022-12-01").await.map(array),
    );
    let vnets = findings.listed(
        "vnets",
        session
            .get("/providers/Microsoft.Network/virtualNetworks", "2023-09-01")
            .await
            .map(array),
    );
    let zones = findings.listed(
        "dns_zones",
        session
            .get("/providers/Microsoft.Network/dnszones", "2018-05-01")
            .await
            .map(array),
    );
    let mut subnets = Map::new();
    let vnet_records: Vec<Value> = vnets
        .iter()
        .map(|vnet| {
            let name = text(vnet, "name");
            let subnet_records: Vec<Value> = items(&vnet["properties"], "subnets")
                .iter()
                .map(|subnet| json!({"name": text(subnet, "name"), "id": text(subnet, "id"),
                                     "addressPrefix": azure_address_prefix(subnet), "vnetName": name}))
                .collect();
            subnets.insert(name.clone(), Value::Array(subnet_records));
            let prefixes = vnet
                .pointer("/properties/addressSpace/addressPrefixes")
                .filter(|p| p.is_array())
                .cloned()
                .unwrap_or(json!([]));
            json!({"name": name, "id": text(vnet, "id"), "location": text(vnet, "location"),
                   "addressPrefixes": prefixes})
        })
        .collect();
    let zone_records: Vec<Value> = zones
        .iter()
        .map(|zone| {
            let kind = zone
                .pointer("/properties/zoneType")
                .and_then(Value::as_str)
                .unwrap_or("Public");
            json!({"name": text(zone, "name"), "id": text(zone, "id"), "zoneType": kind})
        })
        .collect();
    let location_names: Vec<Value> = locations.iter().map(|l| json!(text(l, "name"))).collect();
    phase.finish();
    findings.set("locations", Value::Array(location_names));
    findings.set("vnets", Value::Array(vnet_records));
    findings.set("subnets", Value::Object(subnets));
    findings.set("dns_zones", Value::Array(zone_records));
    Ok(findings.into_metadata())
}

/// What a discovery found (the `cached_resources` of the metadata), and
/// under `errors` each list or region it could not read.
struct Findings<'a> {
    context: &'a JobContext,
    cached: Map<String, Value>,
    errors: Map<String, Value>,
}

impl<'a> Findings<'a> {
    fn new(context: &'a JobContext) -> Self {
        Findings {
            context,
            cached: Map::new(),
            errors: Map::new(),
        }
    }

    /// What was listed, or nothing with the failure logged and recorded.
    fn listed<E: std::fmt::Display>(
        &mut self,
        name: &str,
        result: Result<Vec<Value>, E>,
    ) -> Vec<Value> {
        result.unwrap_or_else(|error| {
            self.failed(name, &error);
            Vec::new()
        })
    }

    /// Logs and records that `name` could not be discovered.
    fn failed(&mut self, name: &str, error: &dyn std::fmt::Display) {
        self.context
            .log
            .system(&format!("{name}: discovery failed: {error}"));
        self.errors
            .insert(name.to_string(), Value::String(error.to_string()));
    }

    fn set(&mut self, key: &str, value: Value) {
        self.cached.insert(key.to_string(), value);
    }

    /// The job's metadata: `{"cached_resources": {..., "errors": {...}}}`.
    fn into_metadata(mut self) -> Map<String, Value> {
        if !self.errors.is_empty() {
            self.cached
                .insert("errors".into(), Value::Object(self.errors));
        }
        Map::from_iter([("cached_resources".to_string(), Value::Object(self.cached))])
    }
}

/// The failure of a job whose provider this Tendril does not know.
pub fn unsupported(provider: &Provider) -> JobError {
    JobError::Invalid(format!("provider {provider} is not supported yet"))
}

/// One region's networks.
struct RegionResources {
    vpcs: Vec<Value>,
    subnets: Map<String, Value>,
    security_groups: Vec<Value>,
}

async fn discover_aws(context: &JobContext) -> Result<Map<String, Value>, JobError> {
    let phase = context.log.phase("discovering AWS resources");
    let regions = match context.settings.aws_regions.as_slice() {
        [] => enabled_regions(context).await?,
        configured => configured.to_vec(),
    };
    let mut findings = Findings::new(context);
    let (mut vpcs, mut subnets, mut security_groups) = (Map::new(), Map::new(), Map::new());
    let mut per_region = stream::iter(regions.iter().cloned())
        .map(|region| async move {
            let found = discover_region(context, &region).await;
            (region, found)
        })
        .buffer_unordered(context.settings.discovery_concurrency);
    while let Some((region, found)) = per_region.next().await {
        match found {
            Ok(found) => {
                context.log.system(&format!(
                    "{region}: {} VPCs, {} subnets, {} security groups",
                    found.vpcs.len(),
                    found
                        .subnets
                        .values()
                        .filter_map(Value::as_array)
                        .map(Vec::len)
                        .sum::<usize>(),
                    found.security_groups.len()
                ));
                vpcs.insert(region.clone(), Value::Array(found.vpcs));
                subnets.insert(region.clone(), Value::Object(found.subnets));
                security_groups.insert(region, Value::Array(found.security_groups));
            }
            Err(JobError::Stopped) => return Err(JobError::Stopped),
            Err(error) => findings.failed(&region, &error),
        }
    }
    drop(per_region);
    let hosted_zones = global_list(
        context,
        &mut findings,
        "route53",
        &["route53", "list-hosted-zones"],
        "HostedZones",
        hosted_zone,
    )
    .await?;
    let iam_users = global_list(
        context,
        &mut findings,
        "iam",
        &["iam", "list-users"],
        "Users",
        iam_user,
    )
    .await?;
    phase.finish();
    findings.set("regions", json!(regions));
    findings.set("vpcs", Value::Object(vpcs));
    findings.set("subnets", Value::Object(subnets));
    findings.set("hosted_zones", Value::Array(hosted_zones));
    findings.set("iam_users", Value::Array(iam_users));
    findings.set("security_groups", Value::Object(security_groups));
    Ok(findings.into_metadata())
}

/// The regions the account has enabled.
async fn enabled_regions(context: &JobContext) -> Result<Vec<String>, JobError> {
    let answer = context
        .aws_json(DEFAULT_REGION, &["ec2", "describe-regions"])
        .await?;
    let mut regions: Vec<String> = items(&answer, "Regions")
        .iter()
        .filter_map(|r| {
            r.get("RegionName")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .collect();
    regions.sort();
    Ok(regions)
}

async fn discover_region(context: &JobContext, region: &str) -> Result<RegionResources, JobError> {
    let vpcs = context.aws_json(region, &["ec2", "describe-vpcs"]).await?;
    let subnets = context
        .aws_json(region, &["ec2", "describe-subnets"])
        .await?;
    let groups = context
        .aws_json(region, &["ec2", "describe-security-groups"])
        .await?;
    let mut subnets_by_vpc = Map::new();
    for subnet in items(&subnets, "Subnets") {
        push(
            &mut subnets_by_vpc,
            &text(subnet, "VpcId"),
            json!({
                "ID": text(subnet, "SubnetId"),
                "CIDR": text(subnet, "CidrBlock"),
                "VpcID": text(subnet, "VpcId"),
                "AvailabilityZone": text(subnet, "AvailabilityZone"),
                "MapPublicIpOnLaunch": subnet.get("MapPublicIpOnLaunch").and_then(Value::as_bool).unwrap_or(false),
            }),
        );
    }
    Ok(RegionResources {
        vpcs: items(&vpcs, "Vpcs")
            .iter()
            .map(|vpc| {
                json!({
                    "ID": text(vpc, "VpcId"),
                    "CIDR": text(vpc, "CidrBlock"),
                    "Name": name_tag(vpc),
                    "IsDefault": vpc.get("IsDefault").and_then(Value::as_bool).unwrap_or(false),
                })
            })
            .collect(),
        subnets: subnets_by_vpc,
        security_groups: items(&groups, "SecurityGroups")
            .iter()
            .map(|group| {
                json!({
                    "ID": text(group, "GroupId"),
                    "Name": text(group, "GroupName"),
                    "VpcID": text(group, "VpcId"),
                    "Description": text(group, "Description"),
                })
            })
            .collect(),
    })
}

/// A list from a global service; a failure is recorded under `errors`.
async fn global_list(
    context: &JobContext,
    findings: &mut Findings<'_>,
    service: &str,
    args: &[&str],
    key: &str,
    shape: fn(&Value) -> Value,
) -> Result<Vec<Value>, JobError> {
    match context.aws_json(DEFAULT_REGION, args).await {
        Ok(answer) => Ok(items(&answer, key).iter().map(shape).collect()),
        Err(JobError::Stopped) => Err(JobError::Stopped),
        Err(error) => {
            findings.failed(service, &error);
            Ok(Vec::new())
        }
    }
}

fn hosted_zone(zone: &Value) -> Value {
    json!({
        "ID": text(zone, "Id").trim_start_matches("/hostedzone/"),
        "Name": text(zone, "Name").trim_end_matches('.'),
        "RecordCount": zone.get("ResourceRecordSetCount").and_then(Value::as_u64).unwrap_or(0),
        "IsPrivate": zone.pointer("/Config/PrivateZone").and_then(Value::as_bool).unwrap_or(false),
    })
}

fn iam_user(user: &Value) -> Value {
    json!({
        "username": text(user, "UserName"),
        "arn": text(user, "Arn"),
        "path": text(user, "Path"),
    })
}

/// A subnet's address range: `addressPrefix`, or the first of
/// `addressPrefixes` for a subnet that has several.
fn azure_address_prefix(subnet: &Value) -> Value {
    let properties = &subnet["properties"];
    properties
        .get("addressPrefix")
        .and_then(Value::as_str)
        .or_else(|| {
            properties
                .pointer("/addressPrefixes/0")
                .and_then(Value::as_str)
        })
        .map(|prefix| json!(prefix))
        .unwrap_or(Value::Null)
}

/// Appends `record` to the list under `key`.
fn push(map: &mut Map<String, Value>, key: &str, record: Value) {
    if let Value::Array(list) = map
        .entry(key.to_string())
        .or_insert_with(|| Value::Array(Vec::new()))
    {
        list.push(record);
    }
}

fn items<'a>(answer: &'a Value, key: &str) -> &'a [Value] {
    answer
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn text(object: &Value, key: &str) -> String {
    object
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The `Name` tag, or "" when the resource has none (the pickers show it as is).
fn name_tag(object: &Value) -> String {
    items(object, "Tags")
        .iter()
        .find(|tag| tag.get("Key").and_then(Value::as_str) == Some("Name"))
        .and_then(|tag| tag.get("Value").and_then(Value::as_str))
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_answers_become_the_records_the_pickers_read() {
        let zone = json!({"Id": "/hostedzone/Z123", "Name": "example.com.", "Config": {"PrivateZone": false},
                          "ResourceRecordSetCount": 2});
        assert_eq!(
            hosted_zone(&zone),
            json!({"ID": "Z123", "Name": "example.com", "RecordCount": 2, "IsPrivate": false})
        );
        let vpc = json!({"VpcId": "vpc-1", "Tags": [{"Key": "Env", "Value": "x"}, {"Key": "Name", "Value": "main"}]});
        assert_eq!(name_tag(&vpc), "main");
        assert_eq!(
            name_tag(&json!({})),
            "",
            "untagged is an empty name, never null"
        );
        let user = json!({"UserName": "ci", "UserId": "AIDA1", "Arn": "arn:aws:iam::1:user/ci", "Path": "/"});
        assert_eq!(
            iam_user(&user),
            json!({"username": "ci", "arn": "arn:aws:iam::1:user/ci", "path": "/"})
        );
    }

    #[test]
    fn an_azure_subnet_with_several_prefixes_gives_its_first() {
        let subnet = json!({"properties": {"addressPrefixes": ["10.0.1.0/24", "10.0.2.0/24"]}});
        assert_eq!(azure_address_prefix(&subnet), json!("10.0.1.0/24"));
    }
}
