//! The infrastructure facts of a deployed vine: what the platform's ArgoCD
//! application templates are rendered with (`{{ .ClusterName }}`, `{{- if
//! .EnableKarpenter }}`, ...), under the field names the original worker's
//! `InfraFacts` had. Facts come from Terraform's outputs (the original's AWS
//! names first, then the GKE/AKS and provider-neutral ones) and from the
//! snapshot. Every field is always present, so a template never meets a
//! missing key.
//!
//! The templates are rendered as text into manifests applied with
//! cluster-admin rights, and the snapshot is a web form's content: every
//! fact that is not empty is checked for its kind first (a DNS name, a
//! repository URL, a safe name, a region, an identifier; see
//! [`crate::safe_name`]), so that no value can add a line or a key to a
//! manifest. A value that fails fails the job naming its field: a value of
//! the snapshot at the start of a PLAN, DEPLOY or BOOTSTRAP, before
//! Terraform runs ([`snapshot_facts`]), an output's after the apply.

use serde_json::{json, Map, Value};

use super::super::snapshot::{self, Text};
use super::super::{JobContext, JobError};
use crate::safe_name::{
    check, check_dns_name, check_identifier, check_region, check_repository_url,
};

/// A checker of one kind of value (see [`crate::safe_name`]).
type Checker = for<'a> fn(&str, &'a str) -> Result<&'a str, String>;

/// Outputs that name the cluster, in the order they are tried.
pub const CLUSTER_NAME: [&str; 4] = [
    "eks_cluster_name",
    "gke_cluster_name",
    "aks_cluster_name",
    "cluster_name",
];
/// Outputs that hold the cluster's API endpoint.
pub const CLUSTER_ENDPOINT: [&str; 4] = [
    "eks_cluster_endpoint",
    "gke_cluster_endpoint",
    "aks_cluster_endpoint",
    "cluster_endpoint",
];
/// Outputs that hold the cluster's ARN.
pub const CLUSTER_ARN: [&str; 2] = ["eks_cluster_arn", "cluster_arn"];

/// The first of `names` whose output is a non-empty string, with its name.
fn named_output<'a>(outputs: &Map<String, Value>, names: &[&'a str]) -> Option<(&'a str, String)> {
    names.iter().find_map(|name| {
        let value = outputs.get(*name).and_then(Value::as_str)?.trim();
        (!value.is_empty()).then(|| (*name, value.to_string()))
    })
}

/// The first of `names` whose output is a non-empty string.
pub fn output_text(outputs: &Map<String, Value>, names: &[&str]) -> Option<String> {
    named_output(outputs, names).map(|(_, value)| value)
}

/// The cluster's name, when the outputs name one, checked: it becomes a
/// command argument and a template fact.
pub fn cluster_name(outputs: &Map<String, Value>) -> Result<Option<String>, JobError> {
    named_output(outputs, &CLUSTER_NAME)
        .map(|(name, value)| {
            check(&format!("the Terraform output {name}"), &value).map_err(JobError::Invalid)?;
            Ok(value)
        })
        .transpose()
}

/// `value` as a fact, checked by `checker` unless it is empty.
fn fact(field: &str, value: String, checker: Checker) -> Result<Value, JobError> {
    if !value.is_empty() {
        checker(field, &value).map_err(JobError::Invalid)?;
    }
    Ok(Value::String(value))
}

/// The facts that come from the snapshot and the identity, each checked:
/// a PLAN, DEPLOY or BOOTSTRAP checks them before it runs anything, so that
/// a bad value fails the job before Terraform applies a thing (and a PLAN
/// says so before its DEPLOY is queued).
pub fn snapshot_facts(context: &JobContext) -> Result<Map<String, Value>, JobError> {
    let vine = &context.job.config_snapshot;
    // A value is named by the key it was found under.
    let setting = |found: Result<Option<Text>, String>, checker: Checker| match found
        .map_err(JobError::Invalid)?
    {
        Some(text) => fact(&text.field, text.value, checker),
        None => Ok(Value::String(String::new())),
    };
    let text = |key: &str| snapshot::text(vine, "", &[key]);
    let facts = json!({
        "ProjectName": setting(text("project_name"), check)?,
        "Environment": setting(text("environment_stage"), check)?,
        "Region": setting(snapshot::region(vine), check_region)?,
        "Provider": fact("provider", context.provider().to_string(), check)?,
        "AWSAccountID": fact("the cloud identity's account", context.cloud_account_id(), check_identifier)?,
        "DomainName": setting(snapshot::domain_name(vine), check_dns_name)?,
        "DNSZoneID": setting(
            snapshot::text(vine, "/dns/zone_id", &["dns_hosted_zone", "zone_id"]),
            check_identifier,
        )?,
        "EnableKarpenter": snapshot::flag(vine, "/cluster/provider_config/enable_karpenter", &["enable_karpenter"]),
        "AppsDestinationRepo": setting(snapshot::apps_repository(vine), check_repository_url)?,
    });
    Ok(facts.as_object().cloned().unwrap_or_default())
}

/// The facts, as the object the templates see as `.`, each checked: the
/// snapshot's ([`snapshot_facts`]) and Terraform's outputs'.
pub fn infra_facts(context: &JobContext, outputs: &Map<String, Value>) -> Result<Value, JobError> {
    let output = |names: &[&str], checker: Checker| match named_output(outputs, names) {
        Some((name, value)) => fact(&format!("the Terraform output {name}"), value, checker),
        None => Ok(Value::String(String::new())),
    };
    let mut facts = snapshot_facts(context)?;
    let from_outputs = json!({
        "ClusterName": output(&CLUSTER_NAME, check)?,
        "ClusterEndpoint": output(&CLUSTER_ENDPOINT, check_identifier)?,
        "ClusterArn": output(&CLUSTER_ARN, check_identifier)?,
        "VPCID": output(&["vpc_id", "network_id", "vnet_id"], check_identifier)?,
        "ACMCertificateArn": output(&["acm_certificate_arn"], check_identifier)?,
        "IRSAExternalDNSArn": output(&["eks_irsa_external_dns_arn"], check_identifier)?,
        "IRSAALBControllerArn": output(&["eks_irsa_alb_controller_arn"], check_identifier)?,
        "NodeIAMRoleName": output(&["node_iam_role_name"], check_identifier)?,
        "NodeSecurityGroup": output(&["node_security_group"], check_identifier)?,
        "KarpenterQueueName": output(&["karpenter_queue_name"], check_identifier)?,
    });
    facts.extend(from_outputs.as_object().cloned().unwrap_or_default());
    Ok(Value::Object(facts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_named_non_empty_output_wins() {
        let outputs = json!({"eks_cluster_name": "", "gke_cluster_name": "shop-gke", "cluster_name": "neutral",
                             "aks_cluster_endpoint": ["not", "text"]});
        let outputs = outputs.as_object().unwrap();
        assert_eq!(
            output_text(outputs, &CLUSTER_NAME).as_deref(),
            Some("shop-gke")
        );
        assert_eq!(output_text(outputs, &CLUSTER_ENDPOINT), None);
    }
}
