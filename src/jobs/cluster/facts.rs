//! The infrastructure facts of a deployed vine: what the platform's ArgoCD
//! application templates are rendered with (`{{ .ClusterName }}`, `{{- if
//! .EnableKarpenter }}`, ...), under the field names the original worker's
//! `InfraFacts` had. Facts come from Terraform's outputs (the original's AWS
//! names first, then the GKE/AKS and provider-neutral ones) and from the
//! snapshot. Every field is always present, so a template never meets a
//! missing key.

use serde_json::{json, Map, Value};

use super::super::{snapshot, JobContext};

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

/// The first of `names` whose output is a non-empty string.
pub fn output_text(outputs: &Map<String, Value>, names: &[&str]) -> Option<String> {
    names
        .iter()
        .filter_map(|name| outputs.get(*name).and_then(Value::as_str))
        .map(str::trim)
        .find(|value| !value.is_empty())
        .map(String::from)
}

/// The facts, as the object the templates see as `.`.
pub fn infra_facts(context: &JobContext, outputs: &Map<String, Value>) -> Value {
    let vine = &context.job.config_snapshot;
    let output = |names: &[&str]| output_text(outputs, names).unwrap_or_default();
    let setting =
        |nested: &str, flat: &[&str]| snapshot::text(vine, nested, flat).unwrap_or_default();
    json!({
        "ProjectName": setting("", &["project_name"]),
        "Environment": setting("", &["environment_stage"]),
        "Region": snapshot::region(vine).unwrap_or_default(),
        "Provider": context.provider().as_str(),
        "AWSAccountID": context.cloud_account_id(),
        "DomainName": snapshot::domain_name(vine).unwrap_or_default(),
        "DNSZoneID": setting("/dns/zone_id", &["dns_hosted_zone", "zone_id"]),
        "EnableKarpenter": snapshot::flag(vine, "/cluster/provider_config/enable_karpenter", &["enable_karpenter"]),
        "AppsDestinationRepo": snapshot::apps_repository(vine).unwrap_or_default(),
        "ClusterName": output(&CLUSTER_NAME),
        "ClusterEndpoint": output(&CLUSTER_ENDPOINT),
        "ClusterArn": output(&CLUSTER_ARN),
        "VPCID": output(&["vpc_id", "network_id", "vnet_id"]),
        "ACMCertificateArn": output(&["acm_certificate_arn"]),
        "IRSAExternalDNSArn": output(&["eks_irsa_external_dns_arn"]),
        "IRSAALBControllerArn": output(&["eks_irsa_alb_controller_arn"]),
        "NodeIAMRoleName": output(&["node_iam_role_name"]),
        "NodeSecurityGroup": output(&["node_security_group"]),
        "KarpenterQueueName": output(&["karpenter_queue_name"]),
    })
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
