//! A hosted worker's ECS service, read and moved with the platform's own
//! AWS credentials: which task definition it runs, and with it the image,
//! cpu and memory the worker really has (what `deploy_config` records, so
//! that Trellis's Update button keeps them), and a new deployment.

use aws_sdk_ecs::types::{ContainerDefinition, Tag, TaskDefinition};

use super::image::ImageRef;
use crate::cloud::aws::platform_config;
use crate::cloud::CloudError;
use crate::jobs::JobError;

/// The name of the Tendril container in a worker's task definition.
const CONTAINER: &str = "tendril";

/// An ECS API error as the job's error.
pub fn ecs_error(what: &str, error: impl std::error::Error) -> JobError {
    let message = format!("{what}: {}", aws_sdk_ecs::error::DisplayErrorContext(error));
    JobError::Cloud(CloudError {
        provider: "aws",
        message,
    })
}

/// Where the Tendril container is among a task definition's containers:
/// the only one, else the one named `tendril`.
pub fn tendril_container(containers: &[ContainerDefinition]) -> Result<usize, JobError> {
    match containers {
        [_] => Ok(0),
        _ => containers
            .iter()
            .position(|c| c.name() == Some(CONTAINER))
            .ok_or_else(|| {
                JobError::Invalid(format!(
                    "the task definition has no container named {CONTAINER}"
                ))
            }),
    }
}

/// A hosted worker's ECS service, with a client in the worker's region.
pub struct WorkerService {
    pub ecs: aws_sdk_ecs::Client,
    region: String,
    cluster: String,
    service: String,
}

/// The task definition a service runs.
pub struct Running {
    pub arn: String,
    pub definition: TaskDefinition,
    pub tags: Vec<Tag>,
}

impl Running {
    /// The Tendril container's image.
    pub fn image(&self) -> Result<ImageRef, JobError> {
        let containers = self.definition.container_definitions();
        let container = &containers[tendril_container(containers)?];
        Ok(ImageRef::parse(container.image().unwrap_or_default()))
    }

    /// The task's cpu units and memory (MiB), as numbers where ECS's text
    /// is one (Trellis's Update button and the worker template take numbers).
    pub fn cpu_and_memory(&self) -> (serde_json::Value, serde_json::Value) {
        let number = |text: Option<&str>| match text {
            Some(text) => text
                .parse::<u64>()
                .map_or_else(|_| serde_json::json!(text), |n| serde_json::json!(n)),
            None => serde_json::Value::Null,
        };
        (
            number(self.definition.cpu()),
            number(self.definition.memory()),
        )
    }
}

impl WorkerService {
    /// The service `service` of cluster `cluster` in `region`.
    pub async fn new(region: &str, cluster: &str, service: &str) -> Self {
        let config = aws_sdk_ecs::config::Builder::from(platform_config().await)
            .region(aws_sdk_ecs::config::Region::new(region.to_string()))
            .build();
        WorkerService {
            ecs: aws_sdk_ecs::Client::from_conf(config),
            region: region.to_string(),
            cluster: cluster.to_string(),
            service: service.to_string(),
        }
    }

    pub fn name(&self) -> &str {
        &self.service
    }

    /// The task definition the service runs: its ARN, itself and its tags.
    pub async fn running(&self) -> Result<Running, JobError> {
        let (cluster, service) = (&self.cluster, &self.service);
        let described = self
            .ecs
            .describe_services()
            .cluster(cluster)
            .services(service)
            .send()
            .await
            .map_err(|e| ecs_error("DescribeServices failed", e))?;
        let arn = described
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
        let described = self
            .ecs
            .describe_task_definition()
            .task_definition(&arn)
            .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
            .send()
            .await
            .map_err(|e| ecs_error("DescribeTaskDefinition failed", e))?;
        let tags = described.tags().to_vec();
        let definition = described.task_definition().cloned().ok_or_else(|| {
            JobError::Invalid(format!("ECS returned no task definition for {arn}"))
        })?;
        Ok(Running {
            arn,
            definition,
            tags,
        })
    }

    /// Moves the service to `task_definition` with a new deployment (the old
    /// task drains); returns the deployment's id.
    pub async fn deploy(&self, task_definition: &str) -> Result<String, JobError> {
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
