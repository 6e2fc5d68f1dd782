//! The Kubernetes phases of a DEPLOY, once Terraform has made a cluster: a
//! kubeconfig in the workspace, ArgoCD through Helm (with its ingress when
//! the vine has a domain and a certificate), its admin password, and the
//! platform's ArgoCD applications rendered with the vine's infrastructure
//! facts, after the GitOps repository's credentials. The facts are checked
//! first, before anything reaches the cluster (see `facts`).
//!
//! Every kubectl, Helm and cloud CLI call gets `KUBECONFIG` pointing at the
//! workspace's own file (0600); nothing touches a kubeconfig outside the
//! job. The admin password and the git token are registered for masking
//! before they can reach a log, and the token goes to the cluster only in a
//! 0600 file.

mod applications;
mod argocd;
pub mod facts;
mod kubeconfig;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use super::{snapshot, JobContext, JobError};
use crate::tools::ToolCommand;

/// The namespace ArgoCD is installed into.
const ARGOCD_NAMESPACE: &str = "argocd";

/// What the cluster phases report; `None` where a value is unknown (Trellis
/// stores any value it is given, so an unknown one is left out).
pub struct ClusterSetup {
    pub argocd_url: Option<String>,
    pub argocd_admin_password: Option<String>,
}

/// The job's tools against the cluster: every command gets the workspace's
/// kubeconfig.
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

    async fn run(&self, program: &str, args: &[&str]) -> Result<(), JobError> {
        self.context
            .run(&self.command(program, args).await?)
            .await?;
        Ok(())
    }

    async fn capture(&self, program: &str, args: &[&str]) -> Result<String, JobError> {
        Ok(self
            .context
            .run(&self.command(program, args).await?.capturing_stdout())
            .await?
            .stdout)
    }

    /// `kubectl apply` of a file or directory.
    async fn apply(&self, path: &std::path::Path) -> Result<(), JobError> {
        let path = path.display().to_string();
        self.run("kubectl", &["apply", "--filename", &path]).await
    }
}

/// Runs the Kubernetes phases for the cluster `cluster_name`; `record`
/// takes each phase's duration.
pub async fn set_up(
    context: &JobContext,
    outputs: &Map<String, Value>,
    cluster_name: &str,
    record: &mut (dyn FnMut(&str, Duration) + Send),
) -> Result<ClusterSetup, JobError> {
    // Checked before anything reaches the cluster: the domain also names
    // ArgoCD's ingress, and the facts fill the applications' manifests.
    let facts = facts::infra_facts(context, outputs)?;
    let kubeconfig = context
        .workspace
        .write_private("kubeconfig", b"")
        .map_err(|e| JobError::io("cannot create the kubeconfig", e))?;
    let cluster = Cluster {
        context,
        kubeconfig,
    };

    let phase = context.phase("kubeconfig", "kubeconfig");
    kubeconfig::write(&cluster, outputs, cluster_name).await?;
    record("kubeconfig", phase.finish());

    let phase = context.phase("argocd", "installing ArgoCD");
    argocd::install(&cluster, outputs).await?;
    let password = argocd::admin_password(&cluster).await?;
    record("argocd", phase.finish());

    let phase = context.phase("applications", "ArgoCD applications");
    applications::apply(&cluster, &facts).await?;
    record("applications", phase.finish());

    Ok(ClusterSetup {
        argocd_url: snapshot::domain_name(&context.job.config_snapshot)
            .map_err(JobError::Invalid)?
            .map(|domain| format!("https://argocd.{}", domain.value)),
        argocd_admin_password: password,
    })
}
