//! The worker-infrastructure jobs, which manage cloud-hosted Tendrils with
//! the platform's own AWS credentials (not a user's identity).
//!
//! UPDATE_WORKER moves a worker's ECS service to a new Tendril image: it
//! registers a new revision of the service's task definition that copies
//! every field the ECS API lets one set, with only the Tendril container's
//! image changed, and forces a new deployment (the old task drains).

use aws_sdk_ecs::types::{ContainerDefinition, TaskDefinition};
use serde_json::{json, Map, Value};

use super::vine_inputs::setting;
use super::{JobContext, JobError};
use crate::cloud::aws::platform_config;
use crate::cloud::CloudError;

/// The name of the Tendril container in a worker's task definition.
const CONTAINER: &str = "tendril";

fn ecs_error(what: &str, error: impl std::error::Error) -> JobError {
    let message = format!("{what}: {}", aws_sdk_ecs::error::DisplayErrorContext(error));
    JobError::Cloud(CloudError {
        provider: "aws",
        message,
    })
}

/// A worker's ECS names: the worker templates name cluster and service
/// after the first 8 characters of the worker id (the original's form).
pub fn worker_short_id(worker_id: &str) -> String {
    worker_id.chars().take(8).collect()
}

/// What a `*_WORKER` snapshot says about the worker.
struct WorkerSpec {
    worker_id: String,
    region: String,
    image_tag: String,
    image_repository: Option<String>,
}

impl WorkerSpec {
    fn from(context: &JobContext) -> Result<WorkerSpec, JobError> {
        let snapshot = &context.job.config_snapshot;
        let required = |name: &str| {
            setting(snapshot, &[name]).ok_or_else(|| {
                JobError::Invalid(format!("the worker job's snapshot has no {name}"))
            })
        };
        Ok(WorkerSpec {
            worker_id: required("worker_id")?,
            region: required("region")?,
            image_tag: required("image_tag")?,
            image_repository: setting(snapshot, &["image_repository"]),
        })
    }

    /// `deploy_config` as Trellis keeps it in the worker's metadata (never
    /// the token).
    fn deploy_config(&self, context: &JobContext) -> Value {
        let snapshot = &context.job.config_snapshot;
        let mut config = Map::new();
        for key in [
            "region",
            "cloud_provider",
            "trellis_url",
            "cpu",
            "memory",
            "image_repository",
        ] {
            config.insert(
                key.into(),
                snapshot.get(key).cloned().unwrap_or(Value::Null),
            );
        }
        config.insert("image_tag".into(), json!(self.image_tag));
        Value::Object(config)
    }
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
    let spec = WorkerSpec::from(context)?;
    let short = worker_short_id(&spec.worker_id);
    let (cluster, service) = (format!("tendril-{short}"), format!("tendril-{short}"));
    let config = aws_sdk_ecs::config::Builder::from(platform_config().await)
        .region(aws_sdk_ecs::config::Region::new(spec.region.clone()))
        .build();
    let ecs = aws_sdk_ecs::Client::from_conf(config);

    let phase = context
        .log
        .phase(&format!("reading service {service} in {}", spec.region));
    let described = ecs
        .describe_services()
        .cluster(&cluster)
        .services(&service)
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
                spec.region
            ))
        })?;
    let definition = ecs
        .describe_task_definition()
        .task_definition(&current)
        .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
        .send()
        .await
        .map_err(|e| ecs_error("DescribeTaskDefinition failed", e))?;
    let tags = definition.tags().to_vec();
    let old = definition.task_definition().ok_or_else(|| {
        JobError::Invalid(format!("ECS returned no task definition for {current}"))
    })?;
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
    let registered = register_copy(&ecs, old, containers, tags).await?;
    let new_arn = registered
        .task_definition_arn()
        .unwrap_or_default()
        .to_string();
    phase.finish();

    let phase = context.log.phase(&format!("deploying {new_arn}"));
    let updated = ecs
        .update_service()
        .cluster(&cluster)
        .service(&service)
        .task_definition(&new_arn)
        .force_new_deployment(true)
        .send()
        .await
        .map_err(|e| ecs_error("UpdateService failed", e))?;
    let deployment = updated
        .service()
        .and_then(|s| {
            s.deployments()
                .iter()
                .find(|d| d.status() == Some("PRIMARY"))
                .or(s.deployments().first())
        })
        .and_then(|d| d.id())
        .unwrap_or_default()
        .to_string();
    phase.finish();

    let deploy_config = spec.deploy_config(context);
    context
        .reporter
        .replace_worker_metadata(
            &spec.worker_id,
            Map::from_iter([("deploy_config".to_string(), deploy_config)]),
        )
        .await?;
    let mut metadata = Map::new();
    metadata.insert("old_task_definition".into(), json!(current));
    metadata.insert("new_task_definition".into(), json!(new_arn));
    metadata.insert("deployment_id".into(), json!(deployment));
    metadata.insert("image".into(), json!(image));
    Ok(metadata)
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

    #[test]
    fn worker_names_use_the_first_eight_characters() {
        assert_eq!(worker_short_id("0123456789abcdef"), "01234567");
    }
}
