//! UPDATE_WORKER moves a hosted worker's ECS service to a new Tendril
//! release: it registers a new revision of the service's task definition
//! that copies every field the ECS API lets one set, with only the tag of
//! the Tendril container's image changed, and forces a new deployment (the
//! old task drains).
//!
//! Only the tag changes: the repository, cpu and memory stay what the
//! service runs. Trellis's Update button fills what a worker's
//! `deploy_config` lacks with its own defaults (the original Go worker's
//! repository, 512 cpu, 1024 MiB), so the snapshot's `image_repository`,
//! `cpu` and `memory` are not what the worker runs for every worker
//! deployed before `deploy_config` recorded them. The image variant stays
//! too: a worker on `1.4.0-aws` moves to `1.5.0-aws`. The one exception is a
//! worker that runs the original Go worker's image: Tendril's releases are
//! not published there (its `<release>` tag does not exist), so it moves to
//! Tendril's own repository, which reads the same settings.

use aws_sdk_ecs::types::{ContainerDefinition, TaskDefinition};
use serde_json::{json, Map, Value};

use super::image::{variant_of, with_variant, ImageRef, GO_WORKER_REPOSITORY, TENDRIL_REPOSITORY};
use super::service::{ecs_error, tendril_container, Deployed, WorkerService};
use super::{record_deploy_config, worker_short_id, WorkerSpec};
use crate::jobs::{JobContext, JobError};
use crate::secrets;

/// The container definitions with the Tendril container's image replaced.
fn with_image(
    containers: &[ContainerDefinition],
    image: &str,
) -> Result<Vec<ContainerDefinition>, JobError> {
    let tendril = tendril_container(containers)?;
    let mut updated = containers.to_vec();
    updated[tendril].image = Some(image.to_string());
    Ok(updated)
}

/// The image the worker moves to: what it runs, with the new tag (in the
/// variant it runs); Tendril's repository for a Go worker.
fn next_image(running: &ImageRef, new_tag: &str) -> ImageRef {
    let repository = match running.repository.as_str() {
        GO_WORKER_REPOSITORY => TENDRIL_REPOSITORY,
        repository => repository,
    };
    ImageRef {
        repository: repository.to_string(),
        tag: with_variant(new_tag, variant_of(&running.tag)),
    }
}

/// UPDATE_WORKER.
pub async fn update_worker(context: &JobContext) -> Result<Map<String, Value>, JobError> {
    let spec = WorkerSpec::from_snapshot(context, true)?;
    for (field, value) in [("worker_id", &spec.worker_id), ("region", &spec.region)] {
        crate::safe_name::check(field, value).map_err(JobError::Invalid)?;
    }
    let name = format!("tendril-{}", worker_short_id(&spec.worker_id));
    let service = WorkerService::new(&spec.region, &name, &name).await;

    let phase = context.log.phase(&format!(
        "reading service {} in {}",
        service.name(),
        spec.region
    ));
    let running = service.running().await?;
    let current = running.deployed()?;
    phase.finish();
    let image = next_image(&current.image, &spec.image_tag);
    if image.repository != current.image.repository {
        context.log.system(&format!(
            "the worker runs the original Go worker's image ({}), where Tendril's releases are not published: \
             it moves to {}",
            current.image, image.repository
        ));
    }
    if let Some(asked) = spec
        .image_repository
        .as_deref()
        .filter(|asked| *asked != current.image.repository)
    {
        context.log.system(&format!(
            "the job names the image repository {asked}; the worker runs {}, which it keeps: \
             UPDATE_WORKER changes only the tag",
            current.image.repository
        ));
    }

    let phase = context
        .log
        .phase(&format!("registering a revision with image {image}"));
    let containers = with_image(
        running.definition.container_definitions(),
        &image.to_string(),
    )?;
    let registered = register_copy(&service.ecs, &running, containers).await?;
    let new_arn = registered
        .task_definition_arn()
        .unwrap_or_default()
        .to_string();
    phase.finish();

    let phase = context.log.phase(&format!("deploying {new_arn}"));
    let deployment = service.deploy(&new_arn).await?;
    phase.finish();

    // The token Trellis needs for the next Update and Destroy comes from
    // this job's snapshot.
    let token = super::worker_token(&context.job.config_snapshot)?;
    context.keep_masked(token.as_deref().map(secrets::register));
    let updated = Deployed { image, ..current };
    record_deploy_config(context, &spec, token.as_deref(), &updated).await?;
    let mut metadata = Map::new();
    metadata.insert("old_task_definition".into(), json!(running.arn));
    metadata.insert("new_task_definition".into(), json!(new_arn));
    metadata.insert("deployment_id".into(), json!(deployment));
    metadata.insert("image".into(), json!(updated.image.to_string()));
    Ok(metadata)
}

/// Registers a revision with every settable field of the running task
/// definition and its tags, with the given containers.
async fn register_copy(
    ecs: &aws_sdk_ecs::Client,
    running: &super::service::Running,
    containers: Vec<ContainerDefinition>,
) -> Result<TaskDefinition, JobError> {
    let (old, tags) = (&running.definition, running.tags.clone());
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
    fn the_next_image_keeps_the_repository_and_the_variant() {
        let next = |running: &str, tag| next_image(&ImageRef::parse(running), tag).to_string();
        assert_eq!(
            next("ghcr.io/acme/tendril:1.0.0", "1.1.0"),
            "ghcr.io/acme/tendril:1.1.0"
        );
        assert_eq!(
            next("ghcr.io/acme/tendril:1.0.0-aws", "1.1.0"),
            "ghcr.io/acme/tendril:1.1.0-aws"
        );
        assert_eq!(
            next("localhost:5000/tendril", "2"),
            "localhost:5000/tendril:2"
        );
        assert_eq!(
            next("ghcr.io/acme/tendril@sha256:ab", "3"),
            "ghcr.io/acme/tendril:3"
        );
        assert_eq!(
            next("ghcr.io/bobikenobi12/grape-worker:0.9.2", "1.1.0"),
            "ghcr.io/bobikenobi12/tendril:1.1.0",
            "a Go worker moves to Tendril's repository"
        );
    }
}
