//! The pool: the ECS services whose tasks are Tendril workers, found by
//! their `tendril:pool=true` tag in every configured region and by the
//! `WORKERS` setting, and the things the scaler does to one: set its
//! desired count, and set or remove its two time tags: `tendril:idle-since`
//! (when its worker went idle) and `tendril:starting-since` (since when it
//! has wanted a task without running one). They are timestamps, so that any
//! number of scaler processes and cold starts read the same times.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_ecs::error::DisplayErrorContext;
use aws_sdk_ecs::primitives::{DateTime, DateTimeFormat};
use aws_sdk_ecs::types::{Service, ServiceField, Tag};
use aws_sdk_ecs::Client;

use super::settings::ListedService;

/// The tag that puts a service in the pool.
pub const POOL_TAG: &str = "tendril:pool";
/// The tag naming the registered worker a service runs.
pub const WORKER_ID_TAG: &str = "tendril:worker-id";
/// The tag holding when the service's worker went idle (RFC 3339).
pub const IDLE_SINCE_TAG: &str = "tendril:idle-since";
/// The tag holding since when the service has wanted a task and run none
/// (RFC 3339): set when it is scaled up or first seen so, removed once a
/// task runs or it is scaled down.
pub const STARTING_SINCE_TAG: &str = "tendril:starting-since";

/// DescribeServices takes at most this many services a call.
const DESCRIBE_BATCH: usize = 10;

/// One service of the pool, as ECS described it at the start of a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolService {
    pub region: String,
    pub cluster: String,
    pub name: String,
    pub arn: String,
    /// From `WORKERS`, else from the `tendril:worker-id` tag.
    pub worker_id: Option<String>,
    pub desired: i32,
    pub running: i32,
    /// The `tendril:idle-since` tag; `None` when absent or unreadable.
    pub idle_since: Option<SystemTime>,
    /// The `tendril:starting-since` tag; `None` when absent or unreadable.
    pub starting_since: Option<SystemTime>,
    /// When the primary deployment was created (the service, or its last
    /// new deployment); a count change makes none.
    pub deployed_at: Option<SystemTime>,
}

impl PoolService {
    /// The time tags it has (with a readable value).
    pub fn time_tags(&self) -> Vec<&'static str> {
        [
            (IDLE_SINCE_TAG, self.idle_since),
            (STARTING_SINCE_TAG, self.starting_since),
        ]
        .into_iter()
        .filter_map(|(key, time)| time.map(|_| key))
        .collect()
    }

    /// `region cluster/service`, for log lines and reports.
    pub fn label(&self) -> String {
        let cluster = self.cluster.rsplit('/').next().unwrap_or(&self.cluster);
        format!("{} {cluster}/{}", self.region, self.name)
    }
}

/// ECS clients, one per region, all acting as the scaler's own identity.
pub struct Pool {
    clients: BTreeMap<String, Client>,
}

impl Pool {
    pub async fn new(regions: impl IntoIterator<Item = String>) -> Pool {
        let config = crate::cloud::aws::platform_config().await;
        let clients = regions
            .into_iter()
            .map(|region| {
                let conf = aws_sdk_ecs::config::Builder::from(config)
                    .region(aws_sdk_ecs::config::Region::new(region.clone()))
                    .build();
                (region, Client::from_conf(conf))
            })
            .collect();
        Pool { clients }
    }

    /// Every pool service: tagged ones in the searched regions, and the
    /// listed ones. A region or listed service that cannot be read is left
    /// out and named in the returned problems.
    pub async fn discover(
        &self,
        searched: &[String],
        listed: &[ListedService],
    ) -> (Vec<PoolService>, Vec<String>) {
        let mut found: BTreeMap<String, PoolService> = BTreeMap::new();
        let mut problems = Vec::new();
        for region in searched {
            match self.tagged_services(region).await {
                Ok(services) => found.extend(services.into_iter().map(|s| (s.arn.clone(), s))),
                Err(problem) => problems.push(format!("{region}: {problem}")),
            }
        }
        for entry in listed {
            match self.listed_service(entry).await {
                Ok(mut service) => {
                    if entry.worker_id.is_some() {
                        service.worker_id = entry.worker_id.clone();
                    }
                    found.insert(service.arn.clone(), service);
                }
                Err(problem) => problems.push(format!(
                    "{} {}/{}: {problem}",
                    entry.region, entry.cluster, entry.service
                )),
            }
        }
        (found.into_values().collect(), problems)
    }

    async fn tagged_services(&self, region: &str) -> Result<Vec<PoolService>, String> {
        let ecs = self.client(region);
        let clusters: Vec<String> = ecs
            .list_clusters()
            .into_paginator()
            .items()
            .send()
            .collect::<Result<_, _>>()
            .await
            .map_err(|e| format!("cannot list clusters: {}", DisplayErrorContext(e)))?;
        let mut pool = Vec::new();
        for cluster in clusters {
            let arns: Vec<String> = ecs
                .list_services()
                .cluster(&cluster)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<_, _>>()
                .await
                .map_err(|e| {
                    format!(
                        "cannot list the services of {cluster}: {}",
                        DisplayErrorContext(e)
                    )
                })?;
            for batch in arns.chunks(DESCRIBE_BATCH) {
                let services = self.describe(region, &cluster, batch).await?;
                pool.extend(services.into_iter().filter(|s| {
                    // Exactly "true", as the scaler's IAM policy matches it.
                    tag(s, POOL_TAG) == Some("true") && s.status() == Some("ACTIVE")
                }));
            }
        }
        Ok(pool
            .iter()
            .map(|service| pool_service(region, service))
            .collect())
    }

    async fn listed_service(&self, entry: &ListedService) -> Result<PoolService, String> {
        let described = self
            .describe(
                &entry.region,
                &entry.cluster,
                std::slice::from_ref(&entry.service),
            )
            .await?;
        match described.first() {
            Some(service) if service.status() == Some("ACTIVE") => {
                Ok(pool_service(&entry.region, service))
            }
            _ => Err("no such active service".into()),
        }
    }

    async fn describe(
        &self,
        region: &str,
        cluster: &str,
        services: &[String],
    ) -> Result<Vec<Service>, String> {
        let answer = self
            .client(region)
            .describe_services()
            .cluster(cluster)
            .set_services(Some(services.to_vec()))
            .include(ServiceField::Tags)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "cannot describe services of {cluster}: {}",
                    DisplayErrorContext(e)
                )
            })?;
        Ok(answer.services().to_vec())
    }

    /// Sets the service's desired count.
    pub async fn set_desired(&self, service: &PoolService, count: i32) -> Result<(), String> {
        self.client(&service.region)
            .update_service()
            .cluster(&service.cluster)
            .service(&service.arn)
            .desired_count(count)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("UpdateService failed: {}", DisplayErrorContext(e)))
    }

    /// Sets one of the time tags (`IDLE_SINCE_TAG`, `STARTING_SINCE_TAG`).
    pub async fn set_time_tag(
        &self,
        service: &PoolService,
        key: &str,
        time: SystemTime,
    ) -> Result<(), String> {
        let tag = Tag::builder().key(key).value(format_time(time)).build();
        self.client(&service.region)
            .tag_resource()
            .resource_arn(&service.arn)
            .tags(tag)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("TagResource failed: {}", DisplayErrorContext(e)))
    }

    /// Removes these tags; nothing to remove is no call.
    pub async fn remove_tags(&self, service: &PoolService, keys: &[&str]) -> Result<(), String> {
        if keys.is_empty() {
            return Ok(());
        }
        self.client(&service.region)
            .untag_resource()
            .resource_arn(&service.arn)
            .set_tag_keys(Some(keys.iter().map(|k| k.to_string()).collect()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("UntagResource failed: {}", DisplayErrorContext(e)))
    }

    fn client(&self, region: &str) -> &Client {
        // Every region used (searched or listed) got a client in `new`.
        &self.clients[region]
    }
}

fn pool_service(region: &str, service: &Service) -> PoolService {
    PoolService {
        region: region.to_string(),
        cluster: service.cluster_arn().unwrap_or_default().to_string(),
        name: service.service_name().unwrap_or_default().to_string(),
        arn: service.service_arn().unwrap_or_default().to_string(),
        worker_id: tag(service, WORKER_ID_TAG)
            .filter(|id| !id.is_empty())
            .map(String::from),
        desired: service.desired_count(),
        running: service.running_count(),
        idle_since: tag(service, IDLE_SINCE_TAG).and_then(parse_time),
        starting_since: tag(service, STARTING_SINCE_TAG).and_then(parse_time),
        deployed_at: service
            .deployments()
            .iter()
            .find(|d| d.status() == Some("PRIMARY"))
            .and_then(|d| d.created_at())
            .and_then(|time| SystemTime::try_from(*time).ok()),
    }
}

fn tag<'a>(service: &'a Service, key: &str) -> Option<&'a str> {
    service
        .tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(Tag::value)
}

/// `2026-11-23T12:00:00Z`: whole seconds, UTC.
pub fn format_time(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    DateTime::from_secs(seconds as i64)
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_default()
}

pub fn parse_time(text: &str) -> Option<SystemTime> {
    DateTime::from_str(text.trim(), DateTimeFormat::DateTime)
        .ok()
        .and_then(|time| SystemTime::try_from(time).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn idle_times_round_trip_as_rfc3339_seconds() {
        let time = UNIX_EPOCH + Duration::from_secs(1_795_435_200);
        let text = format_time(time + Duration::from_millis(700));
        assert_eq!(text, "2026-11-23T12:00:00Z");
        assert_eq!(parse_time(&text), Some(time));
        assert_eq!(parse_time("yesterday"), None);
    }
}
