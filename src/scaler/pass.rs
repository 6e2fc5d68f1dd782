//! One scaling pass: count the jobs the pool can take, describe the pool,
//! decide, act, and report one line per service. If the jobs cannot be
//! counted nothing is changed: a scaler that does not know must not scale.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use futures::future::try_join_all;
use serde::Serialize;

use super::plan::{decide, Action, Demand};
use super::pool::{Pool, PoolService};
use super::postgrest::{JobTable, PostgrestError};
use super::settings::ScalerSettings;
use crate::units::format_duration;

/// The jobs could not be counted; no service was changed.
#[derive(Debug, thiserror::Error)]
#[error("cannot count jobs, so no service was changed: {0}")]
pub struct PassError(#[from] PostgrestError);

/// What a pass saw and did (the Lambda's response, `--once`'s output).
#[derive(Debug, Serialize)]
pub struct PassReport {
    /// QUEUED jobs with no assigned worker.
    pub unassigned: u64,
    /// QUEUED jobs assigned to a pool worker.
    pub assigned: u64,
    /// CLAIMED or PROCESSING jobs of pool workers.
    pub busy: u64,
    pub services: Vec<ServiceReport>,
    /// Regions, services or steps that failed; the rest of the pass went on.
    pub errors: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ServiceReport {
    pub region: String,
    pub cluster: String,
    pub service: String,
    pub worker_id: Option<String>,
    /// Tasks running when the pass began.
    pub running: i32,
    pub desired_before: i32,
    pub desired_after: i32,
    pub decision: String,
}

/// The scaler: its settings, the job table and the pool's ECS clients.
pub struct Scaler {
    settings: ScalerSettings,
    table: JobTable,
    pool: Pool,
}

impl Scaler {
    pub async fn new(settings: ScalerSettings) -> Result<Scaler, PostgrestError> {
        let table = JobTable::new(&settings.supabase_url, &settings.service_role_key)?;
        let regions: BTreeSet<String> = settings
            .regions
            .iter()
            .cloned()
            .chain(settings.listed.iter().map(|s| s.region.clone()))
            .collect();
        let pool = Pool::new(regions).await;
        Ok(Scaler {
            settings,
            table,
            pool,
        })
    }

    pub fn settings(&self) -> &ScalerSettings {
        &self.settings
    }

    pub async fn pass(&self) -> Result<PassReport, PassError> {
        let mut errors = Vec::new();
        if self.settings.recover_stale_jobs {
            if let Err(error) = self.table.recover_stale_jobs().await {
                tracing::warn!("{error}");
                errors.push(error.to_string());
            }
        }
        let (services, problems) = self
            .pool
            .discover(&self.settings.regions, &self.settings.listed)
            .await;
        for problem in &problems {
            tracing::warn!("pool: {problem}");
        }
        errors.extend(problems);
        let demand = match self.demand(&services).await {
            Ok(demand) => demand,
            Err(error) => {
                let error = PassError(error);
                tracing::error!("{error}");
                return Err(error);
            }
        };
        let now = SystemTime::now();
        let actions = decide(&services, &demand, self.settings.idle_time, now);
        let mut reports = Vec::new();
        for (service, action) in services.iter().zip(actions) {
            let report = self.act(service, action, now).await;
            tracing::info!(
                "{} (worker {}): desired {} -> {}, {}",
                service.label(),
                service.worker_id.as_deref().unwrap_or("?"),
                report.desired_before,
                report.desired_after,
                report.decision
            );
            if let Some(error) = report.decision.strip_prefix("error: ") {
                errors.push(format!("{}: {error}", service.label()));
            }
            reports.push(report);
        }
        if services.is_empty() {
            tracing::warn!(
                "no pool service found (tag services {}=true, or list them in WORKERS)",
                super::pool::POOL_TAG
            );
        }
        Ok(PassReport {
            unassigned: demand.unassigned,
            assigned: demand.assigned.values().sum(),
            busy: demand.busy.values().sum(),
            services: reports,
            errors,
        })
    }

    /// Counts what the pool can take: unassigned QUEUED jobs, and per pool
    /// worker its assigned QUEUED jobs, its running ones, and whether it
    /// finished one since its idle time began.
    async fn demand(&self, services: &[PoolService]) -> Result<Demand, PostgrestError> {
        let per_worker = try_join_all(services.iter().filter_map(|service| {
            let worker = service.worker_id.as_deref()?;
            Some(async move {
                let (assigned, busy) = self.worker_jobs(worker).await?;
                let worked = match service.idle_since {
                    Some(since) => self.finished_since(worker, since).await? > 0,
                    None => false,
                };
                Ok::<_, PostgrestError>((worker, assigned, busy, worked))
            })
        }));
        let (unassigned, per_worker) = futures::try_join!(self.unassigned(), per_worker)?;
        let mut demand = Demand {
            unassigned,
            ..Demand::default()
        };
        for (worker, assigned, busy, worked) in per_worker {
            insert_nonzero(&mut demand.assigned, worker, assigned);
            insert_nonzero(&mut demand.busy, worker, busy);
            if worked {
                demand.worked_since_idle.insert(worker.to_string());
            }
        }
        Ok(demand)
    }

    async fn unassigned(&self) -> Result<u64, PostgrestError> {
        self.table
            .count(&[("status", "eq.QUEUED"), ("assigned_worker_id", "is.null")])
            .await
    }

    /// A worker's assigned QUEUED jobs and its CLAIMED or PROCESSING ones.
    async fn worker_jobs(&self, worker: &str) -> Result<(u64, u64), PostgrestError> {
        let is_worker = format!("eq.{worker}");
        let assigned = [("status", "eq.QUEUED"), ("assigned_worker_id", &is_worker)];
        let busy = [
            ("status", "in.(CLAIMED,PROCESSING)"),
            ("worker_id", &is_worker),
        ];
        futures::try_join!(self.table.count(&assigned), self.table.count(&busy))
    }

    /// How many jobs the worker finished after `since`.
    async fn finished_since(&self, worker: &str, since: SystemTime) -> Result<u64, PostgrestError> {
        let is_worker = format!("eq.{worker}");
        let after = format!("gt.{}", super::pool::format_time(since));
        self.table
            .count(&[("worker_id", &is_worker), ("completed_at", &after)])
            .await
    }

    /// Whether nothing came for the worker since the counts: asked again
    /// right before scaling its service down, so that a job claimed in the
    /// meantime keeps it up.
    async fn still_idle(&self, worker: &str) -> Result<bool, PostgrestError> {
        let (unassigned, (assigned, busy)) =
            futures::try_join!(self.unassigned(), self.worker_jobs(worker))?;
        Ok(unassigned + assigned + busy == 0)
    }

    /// Carries out one decision and says what became of it.
    async fn act(&self, service: &PoolService, action: Action, now: SystemTime) -> ServiceReport {
        let idle_time = format_duration(self.settings.idle_time);
        let (desired_after, done) = match action {
            Action::ScaleUp { reason } => match self.pool.set_desired(service, 1).await {
                Ok(()) => (
                    1,
                    self.forget_idle(service, format!("scaled up: {reason}"))
                        .await,
                ),
                Err(e) => (service.desired, Err(e)),
            },
            Action::ScaleDown { idle_for } => {
                let worker = service.worker_id.as_deref().unwrap_or_default();
                match self.still_idle(worker).await {
                    Ok(true) => match self.pool.set_desired(service, 0).await {
                        Ok(()) => {
                            let done = format!("scaled down: idle for {}", whole(idle_for));
                            (0, self.forget_idle(service, done).await)
                        }
                        Err(e) => (service.desired, Err(e)),
                    },
                    Ok(false) => {
                        let done = "kept: work came while the pass ran".to_string();
                        (service.desired, self.forget_idle(service, done).await)
                    }
                    Err(e) => (service.desired, Err(e.to_string())),
                }
            }
            Action::StartIdle => (
                service.desired,
                self.pool.mark_idle(service, now).await.map(|()| {
                    format!("idle: its idle time starts now (scale-down after {idle_time})")
                }),
            ),
            Action::StayIdle { idle_for } => (
                service.desired,
                Ok(format!("idle for {} of {idle_time}", whole(idle_for))),
            ),
            Action::Keep { reason } => (
                service.desired,
                self.forget_idle(service, format!("kept: {reason}")).await,
            ),
            Action::Skip { reason } => (service.desired, Ok(format!("skipped: {reason}"))),
        };
        ServiceReport {
            region: service.region.clone(),
            cluster: service.cluster.clone(),
            service: service.name.clone(),
            worker_id: service.worker_id.clone(),
            running: service.running,
            desired_before: service.desired,
            desired_after,
            decision: done.unwrap_or_else(|error| format!("error: {error}")),
        }
    }

    /// Removes the idle tag, if there is one, then says `done`.
    async fn forget_idle(&self, service: &PoolService, done: String) -> Result<String, String> {
        if service.idle_since.is_some() {
            self.pool.clear_idle(service).await?;
        }
        Ok(done)
    }
}

fn insert_nonzero(map: &mut BTreeMap<String, u64>, key: &str, count: u64) {
    if count > 0 {
        map.insert(key.to_string(), count);
    }
}

/// A duration in whole seconds, for reports.
fn whole(duration: Duration) -> String {
    format_duration(Duration::from_secs(duration.as_secs()))
}
