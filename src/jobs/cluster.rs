//! The Kubernetes phases of a DEPLOY, once Terraform has made the cluster:
//! a kubeconfig in the workspace, ArgoCD through Helm, its admin password,
//! and the App of Apps rendered with the vine's infrastructure facts.
//!
//! Every kubectl and Helm call gets `KUBECONFIG` pointing at the workspace's
//! own file (0600); nothing touches a kubeconfig outside the job. The admin
//! password and the repository token are registered for masking before they
//! can reach a log, and the token goes to the cluster only in a 0600 file.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::vine_inputs::setting;
use super::{JobContext, JobError};
use crate::secrets;
use crate::tools::ToolCommand;
use crate::units::format_duration;

/// The namespace ArgoCD is installed into.
const ARGOCD_NAMESPACE: &str = "argocd";
/// The secret ArgoCD writes its first admin password into.
const ADMIN_SECRET: &str = "argocd-initial-admin-secret";
/// What `argocd_admin_password` reads when the secret was deleted already.
pub const PASSWORD_UNCHANGED: &str = "(unchanged)";

/// What the cluster phases report.
pub struct ClusterSetup {
    pub argocd_url: Value,
    pub argocd_admin_password: Value,
}

/// A fact from the outputs under its original name or its neutral one.
pub fn output_fact(outputs: &Map<String, Value>, names: &[&str]) -> Value {
    names
        .iter()
        .find_map(|name| outputs.get(*name).filter(|v| !v.is_null()).cloned())
        .unwrap_or(Value::Null)
}

/// The infrastructure facts the App of Apps gets as Helm values.
fn facts(context: &JobContext, outputs: &Map<String, Value>) -> Value {
    let snapshot = &context.job.config_snapshot;
    let text = |names: &[&str]| {
        setting(snapshot, names)
            .map(Value::String)
            .unwrap_or(Value::Null)
    };
    let account = context
        .identity
        .as_ref()
        .map(|i| i.account_id.clone())
        .filter(|a| !a.is_empty())
        .map(Value::String)
        .unwrap_or_else(|| text(&["account_id", "aws_account_id"]));
    json!({
        "cluster": {
            "name": output_fact(outputs, &["eks_cluster_name", "cluster_name"]),
            "endpoint": output_fact(outputs, &["eks_cluster_endpoint", "cluster_endpoint"]),
            "arn": output_fact(outputs, &["eks_cluster_arn", "cluster_arn"]),
        },
        "project_name": text(&["project_name"]),
        "environment_stage": text(&["environment_stage"]),
        "region": text(&["region", "aws_region"]),
        "provider": context.provider(),
        "account_id": account,
        "dns": {"domain": text(&["dns_main_domain"]), "zone_id": text(&["dns_hosted_zone"])},
        "enable_karpenter": snapshot.get("enable_karpenter").cloned().unwrap_or(Value::Bool(false)),
        "vpc_id": output_fact(outputs, &["vpc_id"]),
        "acm_certificate_arn": output_fact(outputs, &["acm_certificate_arn"]),
        "external_dns_role_arn": output_fact(outputs, &["eks_irsa_external_dns_arn"]),
        "alb_controller_role_arn": output_fact(outputs, &["eks_irsa_alb_controller_arn"]),
        "node_iam_role_name": output_fact(outputs, &["node_iam_role_name"]),
        "node_security_group": output_fact(outputs, &["node_security_group"]),
        "karpenter_queue_name": output_fact(outputs, &["karpenter_queue_name"]),
        "database_endpoint": output_fact(outputs, &["rds_cluster_endpoint"]),
        "cache_endpoint": output_fact(outputs, &["redis_primary_endpoint_address"]),
    })
}

/// The GitOps repository the App of Apps points at, if the vine names one.
fn repository_url(context: &JobContext) -> Option<String> {
    setting(
        &context.job.config_snapshot,
        &[
            "gitops_repository_url",
            "git_repository_url",
            "repository_url",
        ],
    )
}

struct Cluster<'a> {
    context: &'a JobContext,
    kubeconfig: PathBuf,
}

impl Cluster<'_> {
    async fn command(&self, program: &str, args: &[&str]) -> Result<ToolCommand, JobError> {
        let mut command = self.context.command(program, args).await?;
        command
            .env
            .insert("KUBECONFIG".into(), self.kubeconfig.display().to_string());
        Ok(command)
    }

    async fn run(&self, program: &str, args: &[&str]) -> Result<String, JobError> {
        Ok(self
            .context
            .run(&self.command(program, args).await?)
            .await?
            .stdout)
    }

    async fn capture(&self, program: &str, args: &[&str]) -> Result<String, JobError> {
        Ok(self
            .context
            .run(&self.command(program, args).await?.capturing_stdout())
            .await?
            .stdout)
    }
}

/// Runs the Kubernetes phases for the cluster `cluster_name`.
pub async fn set_up(
    context: &JobContext,
    outputs: &Map<String, Value>,
    cluster_name: &str,
    record: &mut (dyn FnMut(&str, std::time::Duration) + Send),
) -> Result<ClusterSetup, JobError> {
    let log = &context.log;
    let kubeconfig = context
        .workspace
        .write_private("kubeconfig", b"")
        .map_err(|e| JobError::io("cannot create the kubeconfig", e))?;
    let cluster = Cluster {
        context,
        kubeconfig,
    };

    let phase = log.phase("kubeconfig");
    write_kubeconfig(&cluster, outputs, cluster_name).await?;
    record("kubeconfig", phase.finish());

    let phase = log.phase("installing ArgoCD");
    install_argocd(&cluster).await?;
    let password = admin_password(&cluster).await?;
    record("argocd", phase.finish());

    match repository_url(context) {
        Some(url) => {
            let phase = log.phase("App of Apps");
            app_of_apps(&cluster, outputs, &url).await?;
            record("app_of_apps", phase.finish());
        }
        None => log.system("no GitOps repository in the vine's settings: App of Apps skipped"),
    }
    let argocd_url = setting(&context.job.config_snapshot, &["dns_main_domain"])
        .map(|domain| Value::String(format!("https://argocd.{domain}")))
        .unwrap_or(Value::Null);
    Ok(ClusterSetup {
        argocd_url,
        argocd_admin_password: password,
    })
}

async fn write_kubeconfig(
    cluster: &Cluster<'_>,
    outputs: &Map<String, Value>,
    name: &str,
) -> Result<(), JobError> {
    let context = cluster.context;
    let file = cluster.kubeconfig.display().to_string();
    let region =
        setting(&context.job.config_snapshot, &["region", "aws_region"]).unwrap_or_default();
    match context.provider().as_str() {
        "aws" => {
            cluster
                .run(
                    "aws",
                    &[
                        "eks",
                        "update-kubeconfig",
                        "--name",
                        name,
                        "--region",
                        &region,
                        "--kubeconfig",
                        &file,
                    ],
                )
                .await?;
        }
        "gcp" => {
            cluster
                .run(
                    "gcloud",
                    &[
                        "container",
                        "clusters",
                        "get-credentials",
                        name,
                        "--region",
                        &region,
                    ],
                )
                .await?;
        }
        "azure" => {
            let group = output_fact(outputs, &["resource_group_name", "resource_group"])
                .as_str()
                .map(String::from)
                .or_else(|| {
                    setting(
                        &context.job.config_snapshot,
                        &["resource_group", "resource_group_name"],
                    )
                })
                .ok_or_else(|| {
                    JobError::Invalid(
                        "no resource group for the AKS cluster in outputs or settings".into(),
                    )
                })?;
            cluster
                .run(
                    "az",
                    &[
                        "aks",
                        "get-credentials",
                        "--name",
                        name,
                        "--resource-group",
                        &group,
                        "--file",
                        &file,
                    ],
                )
                .await?;
        }
        other => {
            return Err(JobError::Invalid(format!(
                "provider {other} is not supported yet"
            )))
        }
    }
    set_private(&cluster.kubeconfig)
}

fn set_private(path: &Path) -> Result<(), JobError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| JobError::io("cannot make the kubeconfig private", e))
}

async fn install_argocd(cluster: &Cluster<'_>) -> Result<(), JobError> {
    let settings = &cluster.context.settings.argocd;
    let timeout = format_duration(settings.timeout);
    let mut args = vec!["upgrade", "--install", "argocd", settings.chart.as_str()];
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
    for workload in workloads.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let wait = format!("--timeout={timeout}");
        cluster
            .run(
                "kubectl",
                &[
                    "--namespace",
                    ARGOCD_NAMESPACE,
                    "rollout",
                    "status",
                    workload,
                    &wait,
                ],
            )
            .await?;
    }
    Ok(())
}

/// The admin password from ArgoCD's initial secret; on a re-deploy the
/// secret may be gone (operators delete it), which is not a failure.
async fn admin_password(cluster: &Cluster<'_>) -> Result<Value, JobError> {
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
            "{ADMIN_SECRET} is gone (deleted after the first deploy): password unchanged"
        ));
        return Ok(Value::String(PASSWORD_UNCHANGED.into()));
    }
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| JobError::Invalid(format!("{ADMIN_SECRET} holds no base64 password: {e}")))?;
    let password = String::from_utf8_lossy(&bytes).into_owned();
    secrets::register_forever(&password);
    Ok(Value::String(password))
}

async fn app_of_apps(
    cluster: &Cluster<'_>,
    outputs: &Map<String, Value>,
    repository: &str,
) -> Result<(), JobError> {
    let context = cluster.context;
    let chart = context
        .settings
        .templates_dir
        .join("argocd")
        .join("app-of-apps");
    let snapshot = &context.job.config_snapshot;
    let values = json!({
        "project_name": setting(snapshot, &["project_name"]).unwrap_or_default(),
        "environment_stage": setting(snapshot, &["environment_stage"]).unwrap_or_default(),
        "namespace": ARGOCD_NAMESPACE,
        "repository": {
            "url": repository,
            "revision": setting(snapshot, &["gitops_revision", "git_revision"]).unwrap_or_else(|| "HEAD".into()),
            "path": setting(snapshot, &["gitops_path", "git_path"]).unwrap_or_else(|| "apps".into()),
        },
        "infrastructure": facts(context, outputs),
    });
    let io = |what: &'static str| move |e| JobError::io(what, e);
    let values_file = context
        .workspace
        .write_private("app-of-apps.values.json", values.to_string().as_bytes())
        .map_err(io("cannot write the App of Apps values"))?;
    let chart_path = chart.display().to_string();
    let values_path = values_file.display().to_string();
    let rendered = cluster
        .capture(
            "helm",
            &[
                "template",
                "app-of-apps",
                &chart_path,
                "--namespace",
                ARGOCD_NAMESPACE,
                "--values",
                &values_path,
            ],
        )
        .await?;
    let manifests = context
        .workspace
        .write_private("app-of-apps.yaml", rendered.as_bytes())
        .map_err(io("cannot write the App of Apps manifests"))?;
    if let Some(token) = context
        .job
        .config_snapshot
        .get("git_access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        let _masked = secrets::register(token);
        let credentials = repository_secret(
            &setting(snapshot, &["project_name"]).unwrap_or_default(),
            repository,
            token,
        );
        let file = context
            .workspace
            .write_private(
                "repository-credentials.json",
                credentials.to_string().as_bytes(),
            )
            .map_err(io("cannot write the repository credentials"))?;
        cluster
            .run(
                "kubectl",
                &["apply", "--filename", &file.display().to_string()],
            )
            .await?;
    }
    cluster
        .run(
            "kubectl",
            &["apply", "--filename", &manifests.display().to_string()],
        )
        .await?;
    Ok(())
}

/// ArgoCD's repository credentials secret for the GitOps repository.
fn repository_secret(project: &str, url: &str, token: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": format!("{project}-repository"),
            "namespace": ARGOCD_NAMESPACE,
            "labels": {"argocd.argoproj.io/secret-type": "repository"},
        },
        "stringData": {"type": "git", "url": url, "username": "x-access-token", "password": token},
    })
}
