//! UPDATE_WORKER moves a hosted worker's ECS service to a new Tendril
//! image: it registers a new revision of the service's task definition that
//! copies every field the ECS API lets one set, with only the Tendril
//! container's image changed, and forces a new deployment (the old task
//! drains).

use aws_sdk_ecs::types::{ContainerDefinition, TaskDefinition};
use serde_json::{json, Map, Value};

use super::{worker_short_id, WorkerSpec};
use crate::cloud::aws::platform_config;
use crate::cloud::CloudError;
use crate::jobs::{snapshot, JobContext, JobError};
use crate::secrets;

/// The name of the Tendril container in a worker's task definition.
const CONTAINER: &str = "tendril";

fn ecs_error(what: &str, error: impl std::error::Error) -> JobError {
    let message = format!("{what}: {}", aws_sdk_ecs::error::DisplayErrorContext(error));
    JobError::Cloud(CloudError {
        provider: "aws",
        message,
    })
}

/// The image `current` becomes: the same repository (or the snapshot's)
/// with the new tag.
fn new_image(current: &str, repository: Option<&str>, tag: &str) -> String {
    let repository = repository.map(String::from).unwrap_or_else(|| {
        let name_start = current.rfind('/').map_or(0, |slash| slash + 1);
        match current[name_start..].find([':', '@']) {
            Some(at) => current[..name_start + at].to_string(),
            None => current.to_string(),
        }
    });
    format!("{repository}:{tag}")
}

/// The container definitions with the Tendril container's image replaced.
fn with_new_image(
    containers: &[ContainerDefinition],
    repository: Option<&str>,
    tag: &str,
) -> Result<(Vec<ContainerDefinition>, String), JobError> {
    let tendril = match containers {
        [only] => only.name().unwrap_or_default().to_string(),
        _ => CONTAINER.to_string(),
    };
    let mut image = None;
    let updated = containers
        .iter()
        .map(|container| {
            if container.name() == Some(tendril.as_str()) {
                let replaced = new_image(container.image().unwrap_or_default(), repository, tag);
                image = Some(replaced.clone());
                let mut container = container.clone();
                container.image = Some(replaced);
                container
            } else {
                container.clone()
            }
        })
        .collect();
    let image = image.ok_or_else(|| {
        JobError::Invalid(format!(
            "the task definition has no container named {CONTAINER}"
        ))
    })?;
    Ok((updated, image))
}

/// UPDATE_WORKER.
pub async fn update_worker(context: &JobContext) -> Result<Map<String, Value>, JobError> {
    let spec = WorkerSpec::from_snapshot(context, true)?;
    for (field, value) in [("worker_id", &spec.worker_id), ("region", &spec.region)] {
        crate::safe_name::check(field, value).map_err(JobError::Invalid)?;
    }
    let service = WorkerService::of(&spec).await;

    let phase = context.log.phase(&format!(
        "reading service {} in {}",
        service.service, spec.region
    ));
    let (current, old, tags) = service.task_definition().await?;
    phase.finish();

    let phase = context.log.phase(&format!(
        "registering a revision with image tag {}",
        spec.image_tag
    ));
    let (containers, image) = with_new_image(
        old.container_definitions(),
        spec.image_repository.as_deref(),
        &spec.image_tag,
    )?;
    let registered = register_copy(&service.ecs, &old, containers, tags).await?;
    let new_arn = registered
        .task_definition_arn()
        .unwrap_or_default()
        .to_string();
    phase.finish();

    let phase = context.log.phase(&format!("deploying {new_arn}"));
    let deployment = service.deploy(&new_arn).await?;
    phase.finish();

    record_deploy_config(context, &spec).await?;
    let mut metadata = Map::new();
    metadata.insert("old_task_definition".into(), json!(current));
    metadata.insert("new_task_definition".into(), json!(new_arn));
    metadata.insert("deployment_id".into(), json!(deployment));
    metadata.insert("image".into(), json!(image));
    Ok(metadata)
}

/// A hosted worker's ECS service (cluster and service are both named
/// `tendril-<short id>`), with a client in the worker's region.
struct WorkerService {
    ecs: aws_sdk_ecs::Client,
    region: String,
    cluster: String,
    service: String,
}

impl WorkerService {
    async fn of(spec: &WorkerSpec) -> Self {
        let name = format!("tendril-{}", worker_short_id(&spec.worker_id));
        let config = aws_sdk_ecs::config::Builder::from(platform_config().await)
            .region(aws_sdk_ecs::config::Region::new(spec.region.clone()))
            .build();
        WorkerService {
            ecs: aws_sdk_ecs::Client::from_conf(config),
            region: spec.region.clone(),
            cluster: name.clone(),
            service: name,
        }
    }

    /// The service's current task definition: its ARN, itself and its tags.
    async fn task_definition(
        &self,
    ) -> Result<(String, TaskDefinition, Vec<aws_sdk_ecs::types::Tag>), JobError> {
        let (cluster, service) = (&self.cluster, &self.service);
        let described = self
            .ecs
            .describe_services()
            .cluster(cluster)
            .services(service)
            .send()
            .await
            .map_err(|e| ecs_error("DescribeServices failed", e))?;
        let current = described
            .services()
            .iter()
            .find(|s| s.status() != Some("INACTIVE"))
            .and_then(|s| s.task_definition())
            .map(String::from)
            .ok_or_else(|| {
                JobError::Invalid(format!(
                    "no ECS service {service} in cluster {cluster} ({}): was this worker deployed by DEPLOY_WORKER?",
                    self.region
                ))
            })?;
        let definition = self
            .ecs
            .describe_task_definition()
            .task_definition(&current)
            .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
            .send()
            .await
            .map_err(|e| ecs_error("DescribeTaskDefinition failed", e))?;
        let tags = definition.tags().to_vec();
        let old = definition.task_definition().cloned().ok_or_else(|| {
            JobError::Invalid(format!("ECS returned no task definition for {current}"))
        })?;
        Ok((current, old, tags))
    }

    /// Moves the service to `task_definition` with a new deployment (the old
    /// task drains); returns the deployment's id.
    async fn deploy(&self, task_definition: &str) -> Result<String, JobError> {
        let updated = self
            .ecs
            .update_service()
            .cluster(&self.cluster)
            .service(&self.service)
            .task_definition(task_definition)
            .force_new_deployment(true)
            .send()
            .await
            .map_err(|e| ecs_error("UpdateService failed", e))?;
        Ok(updated
            .service()
            .and_then(|s| {
                s.deployments()
                    .iter()
                    .find(|d| d.status() == Some("PRIMARY"))
                    .or(s.deployments().first())
            })
            .and_then(|d| d.id())
            .unwrap_or_default()
            .to_string())
    }
}

/// Records the updated worker's `deploy_config`. The metadata is replaced
/// whole: the token Trellis needs for the next Update and Destroy comes
/// from this job's snapshot.
async fn record_deploy_config(context: &JobContext, spec: &WorkerSpec) -> Result<(), JobError> {
    let token = snapshot::text(&context.job.config_snapshot, "", &["worker_token"]);
    context.keep_masked(token.as_deref().map(secrets::register));
    if token.is_none() {
        context.log.system(
            "warning: the snapshot has no worker_token: the worker's deploy_config is recorded without it, and \
             Trellis will ask for a re-deploy before the next update",
        );
    }
    let deploy_config = spec.deploy_config(context, token.as_deref());
    context
        .reporter
        .replace_worker_metadata(
            &spec.worker_id,
            Map::from_iter([("deploy_config".to_string(), deploy_config)]),
        )
        .await?;
    Ok(())
}

/// Registers a revision with every settable field of `old`, the given
/// containers and tags.
async fn register_copy(
    ecs: &aws_sdk_ecs::Client,
    old: &TaskDefinition,
    containers: Vec<ContainerDefinition>,
    tags: Vec<aws_sdk_ecs::types::Tag>,
) -> Result<TaskDefinition, JobError> {
    let registered = ecs
        .register_task_definition()
        .family(old.family().unwrap_or_default())
        .set_task_role_arn(old.task_role_arn().map(String::from))
        .set_execution_role_arn(old.execution_role_arn().map(String::from))
        .set_network_mode(old.network_mode().cloned())
        .set_container_definitions(Some(containers))
        .set_volumes(Some(old.volumes().to_vec()))
        .set_placement_constraints(Some(old.placement_constraints().to_vec()))
        .set_requires_compatibilities(Some(old.requires_compatibilities().to_vec()))
        .set_cpu(old.cpu().map(String::from))
        .set_memory(old.memory().map(String::from))
        .set_pid_mode(old.pid_mode().cloned())
        .set_ipc_mode(old.ipc_mode().cloned())
        .set_proxy_configuration(old.proxy_configuration().cloned())
        .set_ephemeral_storage(old.ephemeral_storage().cloned())
        .set_runtime_platform(old.runtime_platform().cloned())
        .set_enable_fault_injection(old.enable_fault_injection())
        .set_tags((!tags.is_empty()).then_some(tags))
        .send()
        .await
        .map_err(|e| ecs_error("RegisterTaskDefinition failed", e))?;
    registered
        .task_definition()
        .cloned()
        .ok_or_else(|| JobError::Invalid("ECS registered no task definition".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_new_image_keeps_the_repository_and_changes_the_tag() {
        assert_eq!(
            new_image("ghcr.io/acme/tendril:1.0.0", None, "1.1.0"),
            "ghcr.io/acme/tendril:1.1.0"
        );
        assert_eq!(
            new_image("localhost:5000/tendril", None, "2"),
            "localhost:5000/tendril:2"
        );
        assert_eq!(
            new_image("ghcr.io/acme/tendril@sha256:ab", None, "3"),
            "ghcr.io/acme/tendril:3"
        );
        assert_eq!(
            new_image("old/tendril:1", Some("ghcr.io/new/tendril"), "4"),
            "ghcr.io/new/tendril:4"
        );
    }
}
