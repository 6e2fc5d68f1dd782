//! One scaling pass: count the jobs the pool can take, describe the pool,
//! decide, act, and report one line per service. A full pass also recovers
//! stale jobs first (when set to) and keeps each service's start-up tag;
//! a scale-up-only pass (a ping) only starts services, and reports only
//! those. If the jobs cannot be counted nothing is changed: a scaler that
//! does not know must not scale.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use futures::future::try_join_all;
use serde::Serialize;

use super::decision::{
    clock_tag, decide, startup, whole, Action, ClockTag, Demand, Limits, PassKind, Startup,
};
use super::pool::{Pool, PoolService, IDLE_SINCE_TAG, STARTING_SINCE_TAG};
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
    /// Services that have wanted a task and run none for longer than the
    /// start-up budget (`region cluster/service: not starting: ...`). They
    /// take no waiting job; an operator should look at their tasks.
    pub not_starting: Vec<String>,
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
    /// What was done, after `not starting: ...; ` when the service is.
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

    pub async fn pass(&self, kind: PassKind) -> Result<PassReport, PassError> {
        let mut errors = Vec::new();
        if kind == PassKind::Full && self.settings.recover_stale_jobs {
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
        let limits = Limits {
            idle_time: self.settings.idle_time,
            startup_budget: self.settings.startup_budget,
        };
        let actions = decide(&services, &demand, limits, now);
        let mut reports = Vec::new();
        let mut not_starting = Vec::new();
        for (service, action) in services.iter().zip(actions) {
            let state = startup(service, limits.startup_budget, now);
            if let Some(text) = state.not_starting(service) {
                not_starting.push(format!("{}: {text}", service.label()));
            }
            if !kind.carries_out(&action) {
                continue;
            }
            let (report, failed) = self.act(service, action, state, now).await;
            let line = format!(
                "{} (worker {}): desired {} -> {}, {}",
                service.label(),
                service.worker_id.as_deref().unwrap_or("?"),
                report.desired_before,
                report.desired_after,
                report.decision
            );
            if state.not_starting(service).is_some() {
                tracing::warn!("{line}");
            } else {
                tracing::info!("{line}");
            }
            if let Some(error) = failed {
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
        if kind == PassKind::ScaleUpOnly {
            let started = reports
                .iter()
                .filter(|r| r.desired_after > r.desired_before)
                .count();
            tracing::info!(
                "scaler: the scale-up-only pass started {started} of {} services",
                services.len()
            );
        }
        Ok(PassReport {
            unassigned: demand.unassigned,
            assigned: demand.assigned.values().sum(),
            busy: demand.busy.values().sum(),
            services: reports,
            not_starting,
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

    /// Carries out one decision and says what became of it, and what
    /// failed if something did.
    async fn act(
        &self,
        service: &PoolService,
        action: Action,
        state: Startup,
        now: SystemTime,
    ) -> (ServiceReport, Option<String>) {
        let idle_time = format_duration(self.settings.idle_time);
        let leaves_alone = matches!(action, Action::Skip { .. });
        let (desired_after, done) = match action {
            Action::ScaleUp { reason } => match self.pool.set_desired(service, 1).await {
                Ok(()) => (1, self.scaled_up(service, now, reason).await),
                Err(e) => (service.desired, Err(e)),
            },
            Action::ScaleDown { idle_for } => {
                let worker = service.worker_id.as_deref().unwrap_or_default();
                match self.still_idle(worker).await {
                    Ok(true) => match self.pool.set_desired(service, 0).await {
                        Ok(()) => {
                            let done = format!("scaled down: idle for {}", whole(idle_for));
                            let tags = service.time_tags();
                            (
                                0,
                                self.pool.remove_tags(service, &tags).await.map(|()| done),
                            )
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
                self.pool
                    .set_time_tag(service, IDLE_SINCE_TAG, now)
                    .await
                    .map(|()| {
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
        // A service whose count stays keeps its start-up tag in step.
        let done = match done {
            Ok(done) if desired_after == service.desired && !leaves_alone => {
                self.tend_clock(service, state, now).await.map(|()| done)
            }
            other => other,
        };
        let failed = done.as_ref().err().cloned();
        let decision = done.unwrap_or_else(|error| format!("error: {error}"));
        let report = ServiceReport {
            region: service.region.clone(),
            cluster: service.cluster.clone(),
            service: service.name.clone(),
            worker_id: service.worker_id.clone(),
            running: service.running,
            desired_before: service.desired,
            desired_after,
            decision: match state.not_starting(service) {
                Some(not_starting) => format!("{not_starting}; {decision}"),
                None => decision,
            },
        };
        (report, failed)
    }

    /// After a scale-up: the idle time is forgotten and the start-up clock
    /// starts now.
    async fn scaled_up(
        &self,
        service: &PoolService,
        now: SystemTime,
        reason: String,
    ) -> Result<String, String> {
        let done = self
            .forget_idle(service, format!("scaled up: {reason}"))
            .await?;
        self.pool
            .set_time_tag(service, STARTING_SINCE_TAG, now)
            .await?;
        Ok(done)
    }

    /// Sets or removes the start-up tag as the service's state needs.
    async fn tend_clock(
        &self,
        service: &PoolService,
        state: Startup,
        now: SystemTime,
    ) -> Result<(), String> {
        match clock_tag(service, state, now) {
            Some(ClockTag::SetNow) => {
                self.pool
                    .set_time_tag(service, STARTING_SINCE_TAG, now)
                    .await
            }
            Some(ClockTag::Remove) => self.pool.remove_tags(service, &[STARTING_SINCE_TAG]).await,
            None => Ok(()),
        }
    }

    /// Removes the idle tag, if there is one, then says `done`.
    async fn forget_idle(&self, service: &PoolService, done: String) -> Result<String, String> {
        if service.idle_since.is_some() {
            self.pool.remove_tags(service, &[IDLE_SINCE_TAG]).await?;
        }
        Ok(done)
    }
}

fn insert_nonzero(map: &mut BTreeMap<String, u64>, key: &str, count: u64) {
    if count > 0 {
        map.insert(key.to_string(), count);
    }
}
