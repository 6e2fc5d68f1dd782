//! ArgoCD on the vine's cluster: the argo-cd chart through `helm upgrade
//! --install` (release `argo-cd`, the original worker's, so a vine it
//! deployed is upgraded in place), its rollouts, and its first admin
//! password.
//!
//! With DNS enabled, a domain and an ACM certificate from Terraform, the
//! server gets the AWS load balancer ingress the original set up, in the
//! keys the 7.x chart reads: `server.ingress.hostname` (the original's
//! `server.ingress.hosts[0]` is ignored since chart 6) and `global.domain`.

use std::path::Path;

use serde_json::{json, Map, Value};

use super::super::{snapshot, JobError};
use super::facts::output_text;
use super::{Cluster, ARGOCD_NAMESPACE};
use crate::secrets;
use crate::units::format_duration;

/// The chart's release name.
const RELEASE: &str = "argo-cd";
/// The secret ArgoCD writes its first admin password into.
const ADMIN_SECRET: &str = "argocd-initial-admin-secret";

/// The chart values of the server's ALB ingress, when the vine has one.
pub fn ingress_values(vine: &Map<String, Value>, outputs: &Map<String, Value>) -> Option<Value> {
    if !snapshot::flag(vine, "/dns/enabled", &["enable_dns"]) {
        return None;
    }
    // Checked with the facts before the cluster phases: a bad one never
    // gets here.
    let domain = snapshot::domain_name(vine).ok()??.value;
    let certificate = output_text(outputs, &["acm_certificate_arn"])?;
    let host = format!("argocd.{domain}");
    Some(json!({
        "global": {"domain": host},
        "configs": {"params": {"server.insecure": true}},
        "server": {"ingress": {
            "enabled": true,
            "ingressClassName": "alb",
            "hostname": host,
            "annotations": {
                "alb.ingress.kubernetes.io/scheme": "internet-facing",
                "alb.ingress.kubernetes.io/target-type": "ip",
                "alb.ingress.kubernetes.io/listen-ports": "[{\"HTTPS\":443}]",
                "alb.ingress.kubernetes.io/certificate-arn": certificate,
            },
        }},
    }))
}

/// Installs or upgrades ArgoCD and waits for its workloads.
pub async fn install(cluster: &Cluster<'_>, outputs: &Map<String, Value>) -> Result<(), JobError> {
    let context = cluster.context;
    let settings = &context.settings.argocd;
    let timeout = format_duration(settings.timeout);
    let mut args = vec!["upgrade", "--install", RELEASE, settings.chart.as_str()];
    // A chart given as a path (the image's pinned copy) needs no repository.
    if !Path::new(&settings.chart).exists() {
        args.extend(["--repo", settings.repository.as_str()]);
    }
    args.extend([
        "--version",
        settings.version.as_str(),
        "--namespace",
        ARGOCD_NAMESPACE,
        "--create-namespace",
    ]);
    let values_file = match ingress_values(&context.job.config_snapshot, outputs) {
        Some(values) => {
            context.log.system(
                "the ArgoCD server gets an ALB ingress (DNS, a domain and an ACM certificate)",
            );
            let file = context
                .workspace
                .write_private("argocd-values.json", values.to_string().as_bytes())
                .map_err(|e| JobError::io("cannot write the ArgoCD values", e))?;
            Some(file.display().to_string())
        }
        None => None,
    };
    if let Some(file) = &values_file {
        args.extend(["--values", file.as_str()]);
    }
    args.extend(["--wait", "--timeout", timeout.as_str()]);
    cluster.run("helm", &args).await?;
    let workloads = cluster
        .capture(
            "kubectl",
            &[
                "--namespace",
                ARGOCD_NAMESPACE,
                "get",
                "deployments,statefulsets",
                "--output",
                "name",
            ],
        )
        .await?;
    let wait = format!("--timeout={timeout}");
    for workload in workloads.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let args = [
            "--namespace",
            ARGOCD_NAMESPACE,
            "rollout",
            "status",
            workload,
            &wait,
        ];
        cluster.run("kubectl", &args).await?;
    }
    Ok(())
}

/// The admin password from ArgoCD's initial secret, registered for
/// masking. On a re-deploy the secret may be gone (operators delete it):
/// `None`, so that Trellis keeps the password it stored.
pub async fn admin_password(cluster: &Cluster<'_>) -> Result<Option<String>, JobError> {
    let args = [
        "--namespace",
        ARGOCD_NAMESPACE,
        "get",
        "secret",
        ADMIN_SECRET,
        "--ignore-not-found",
        "--output",
        "jsonpath={.data.password}",
    ];
    let encoded = cluster.capture("kubectl", &args).await?;
    let encoded = encoded.trim();
    if encoded.is_empty() {
        cluster.context.log.system(&format!(
            "{ADMIN_SECRET} is gone (deleted after the first deploy): the admin password Trellis holds is kept"
        ));
        return Ok(None);
    }
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| JobError::Invalid(format!("{ADMIN_SECRET} holds no base64 password: {e}")))?;
    let password = String::from_utf8_lossy(&bytes).trim().to_string();
    cluster.context.keep_masked([secrets::register(&password)]);
    Ok(Some(password).filter(|p| !p.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ingress_needs_dns_a_domain_and_a_certificate() {
        let vine = json!({"dns": {"enabled": true, "domain_name": "shop.example"}});
        let vine = vine.as_object().unwrap();
        let with_cert = json!({"acm_certificate_arn": "arn:aws:acm:eu-west-1:1:certificate/c"});
        let values = ingress_values(vine, with_cert.as_object().unwrap()).unwrap();
        assert_eq!(
            values["server"]["ingress"]["hostname"],
            "argocd.shop.example"
        );
        assert_eq!(values["global"]["domain"], "argocd.shop.example");
        assert_eq!(
            values["server"]["ingress"]["annotations"]["alb.ingress.kubernetes.io/certificate-arn"],
            "arn:aws:acm:eu-west-1:1:certificate/c"
        );
        assert_eq!(values["configs"]["params"]["server.insecure"], true);
        assert!(
            ingress_values(vine, &Map::new()).is_none(),
            "no certificate"
        );
        let disabled = json!({"dns": {"enabled": false, "domain_name": "shop.example"}});
        assert!(ingress_values(
            disabled.as_object().unwrap(),
            with_cert.as_object().unwrap()
        )
        .is_none());
    }
}
