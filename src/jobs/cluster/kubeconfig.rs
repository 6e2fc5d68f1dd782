//! The cluster's kubeconfig, written into the job's workspace by the
//! provider's own CLI, with the original worker's arguments: `aws eks
//! update-kubeconfig`, `gcloud container clusters get-credentials` (with the
//! identity's project), `az aks get-credentials` (in the resource group the
//! template output, else the template's own `rg-<project>-<environment>`).
//! Every argument from the snapshot, the identity or an output is checked
//! first (the cluster name by the caller): none can be read as a flag.

use std::path::Path;

use serde_json::{Map, Value};

use super::super::discovery::unsupported;
use super::super::{snapshot, JobError};
use super::facts::output_text;
use super::Cluster;
use crate::safe_name::{check, check_region};
use crate::trellis::Provider;

pub async fn write(
    cluster: &Cluster<'_>,
    outputs: &Map<String, Value>,
    name: &str,
) -> Result<(), JobError> {
    let context = cluster.context;
    let vine = &context.job.config_snapshot;
    let file = cluster.kubeconfig.display().to_string();
    let (field, region) = match snapshot::region(vine).map_err(JobError::Invalid)? {
        Some(region) => (region.field, region.value),
        None => ("region".to_string(), String::new()),
    };
    check_region(&field, &region).map_err(JobError::Invalid)?;
    match context.provider() {
        Provider::Aws => {
            let args = [
                "eks",
                "update-kubeconfig",
                "--name",
                name,
                "--region",
                &region,
                "--kubeconfig",
                &file,
            ];
            cluster.run("aws", &args).await?;
        }
        Provider::Gcp => {
            // gcloud writes the file KUBECONFIG names.
            let project = context.cloud_account_id();
            if !project.is_empty() {
                check("the cloud identity's project_id", &project).map_err(JobError::Invalid)?;
            }
            let mut args = vec![
                "container",
                "clusters",
                "get-credentials",
                name,
                "--region",
                &region,
            ];
            if !project.is_empty() {
                args.extend(["--project", &project]);
            }
            cluster.run("gcloud", &args).await?;
        }
        Provider::Azure => {
            let text = |key: &str| -> Result<String, JobError> {
                let found = snapshot::text(vine, "", &[key]).map_err(JobError::Invalid)?;
                Ok(found.map(|text| text.value).unwrap_or_default())
            };
            let group = match output_text(outputs, &["resource_group_name"]) {
                Some(group) => group,
                None => format!(
                    "rg-{}-{}",
                    text("project_name")?,
                    text("environment_stage")?
                ),
            };
            check(
                "the resource group (Terraform output resource_group_name)",
                &group,
            )
            .map_err(JobError::Invalid)?;
            let args = [
                "aks",
                "get-credentials",
                "--resource-group",
                &group,
                "--name",
                name,
                "--overwrite-existing",
                "--file",
                &file,
            ];
            cluster.run("az", &args).await?;
        }
        other @ Provider::Other(_) => return Err(unsupported(other)),
    }
    set_private(&cluster.kubeconfig)
}

/// The CLIs write the file with their own mode: make it the owner's alone.
fn set_private(path: &Path) -> Result<(), JobError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| JobError::io("cannot make the kubeconfig private", e))
}
