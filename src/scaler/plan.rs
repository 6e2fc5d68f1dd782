//! The scaling decision, pure: from the pool as ECS described it and the
//! jobs waiting and running, what to do to each service. Kept apart from
//! the I/O so every rule can be tested on its own.
//!
//! - Work waiting (unassigned, or assigned to a pool worker) scales up at
//!   once: a service whose worker a job is assigned to, and as many more
//!   services as unassigned jobs are left once the running idle workers
//!   have taken theirs.
//! - While anything waits, no service is scaled down and idle times reset.
//! - A service goes to 0 only when nothing waits, its worker is not busy,
//!   and it has been idle (per its tag) for the idle time. A worker that
//!   finished a job since its tag (work that came and went between two
//!   passes), or a tag in the future, starts the idle time again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use super::pool::PoolService;

/// The jobs the pool can take, and the pool workers' running jobs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Demand {
    /// QUEUED with no assigned worker.
    pub unassigned: u64,
    /// QUEUED and assigned to a pool worker, by worker id.
    pub assigned: BTreeMap<String, u64>,
    /// CLAIMED or PROCESSING, by pool worker id.
    pub busy: BTreeMap<String, u64>,
    /// Pool workers that finished a job since their idle time began.
    pub worked_since_idle: BTreeSet<String>,
}

impl Demand {
    pub fn waiting(&self) -> u64 {
        self.unassigned + self.assigned.values().sum::<u64>()
    }

    fn assigned_to(&self, worker: &str) -> u64 {
        self.assigned.get(worker).copied().unwrap_or(0)
    }

    fn busy(&self, worker: &str) -> u64 {
        self.busy.get(worker).copied().unwrap_or(0)
    }
}

/// What to do to one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Desired count to 1 (and forget any idle time).
    ScaleUp { reason: String },
    /// Desired count to 0 (and forget the idle time).
    ScaleDown { idle_for: Duration },
    /// Leave the count; the worker has just gone idle: record when.
    StartIdle,
    /// Leave the count; still idle, not yet for long enough.
    StayIdle { idle_for: Duration },
    /// Leave the count; forget a recorded idle time if there is one.
    Keep { reason: String },
    /// Leave the service alone entirely.
    Skip { reason: String },
}

/// The decision for each service, in the order given.
pub fn decide(
    services: &[PoolService],
    demand: &Demand,
    idle_time: Duration,
    now: SystemTime,
) -> Vec<Action> {
    let mut actions: Vec<Option<Action>> = vec![None; services.len()];

    for (index, service) in services.iter().enumerate() {
        let Some(id) = service.worker_id.as_deref() else {
            actions[index] = Some(Action::Skip {
                reason: format!(
                    "no worker id (tag the service with {})",
                    super::pool::WORKER_ID_TAG
                ),
            });
            continue;
        };
        actions[index] = if demand.busy(id) > 0 {
            Some(Action::Keep {
                reason: "its worker is busy".into(),
            })
        } else if demand.assigned_to(id) > 0 {
            let jobs = demand.assigned_to(id);
            Some(if service.desired > 0 {
                Action::Keep {
                    reason: format!("{} assigned to its worker", jobs_text(jobs)),
                }
            } else {
                Action::ScaleUp {
                    reason: format!("{} assigned to its worker", jobs_text(jobs)),
                }
            })
        } else {
            None
        };
    }

    // Unassigned jobs: running idle workers take them first, then services
    // at 0 are started, one a job.
    let mut unassigned = demand.unassigned;
    for (index, service) in services.iter().enumerate() {
        if actions[index].is_none() && service.desired > 0 && unassigned > 0 {
            unassigned -= 1;
            actions[index] = Some(Action::Keep {
                reason: "its worker will take a waiting job".into(),
            });
        }
    }
    for (index, service) in services.iter().enumerate() {
        if actions[index].is_none() && service.desired == 0 && unassigned > 0 {
            unassigned -= 1;
            actions[index] = Some(Action::ScaleUp {
                reason: format!("{} waiting", jobs_text(demand.unassigned)),
            });
        }
    }

    let work_waits = demand.waiting() > 0;
    services
        .iter()
        .zip(actions)
        .map(|(service, decided)| {
            decided.unwrap_or_else(|| {
                if service.desired == 0 {
                    Action::Keep {
                        reason: "scaled to zero".into(),
                    }
                } else if work_waits {
                    Action::Keep {
                        reason: "work is waiting in the pool".into(),
                    }
                } else {
                    let worked = |id: &String| demand.worked_since_idle.contains(id);
                    if service.worker_id.as_ref().is_some_and(worked) {
                        return Action::StartIdle;
                    }
                    match service.idle_since.map(|since| now.duration_since(since)) {
                        None | Some(Err(_)) => Action::StartIdle,
                        Some(Ok(idle_for)) if idle_for >= idle_time => {
                            Action::ScaleDown { idle_for }
                        }
                        Some(Ok(idle_for)) => Action::StayIdle { idle_for },
                    }
                }
            })
        })
        .collect()
}

fn jobs_text(count: u64) -> String {
    match count {
        1 => "1 job".into(),
        n => format!("{n} jobs"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(300);

    fn service(worker: &str, desired: i32, idle_since: Option<SystemTime>) -> PoolService {
        PoolService {
            region: "eu-west-1".into(),
            cluster: "pool".into(),
            name: format!("tendril-{worker}"),
            arn: format!("arn:aws:ecs:eu-west-1:1:service/pool/tendril-{worker}"),
            worker_id: Some(worker.into()),
            desired,
            running: desired,
            idle_since,
        }
    }

    fn demand(unassigned: u64, assigned: &[(&str, u64)], busy: &[(&str, u64)]) -> Demand {
        let map = |pairs: &[(&str, u64)]| pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        Demand {
            unassigned,
            assigned: map(assigned),
            busy: map(busy),
            worked_since_idle: BTreeSet::new(),
        }
    }

    fn is_up(action: &Action) -> bool {
        matches!(action, Action::ScaleUp { .. })
    }

    #[test]
    fn as_many_services_start_as_jobs_wait_beyond_the_idle_running_ones() {
        let now = SystemTime::now();
        let pool = [
            service("a", 1, None),
            service("b", 0, None),
            service("c", 0, None),
            service("d", 0, None),
        ];
        let actions = decide(&pool, &demand(3, &[], &[]), IDLE, now);
        let ups: Vec<bool> = actions.iter().map(is_up).collect();
        assert_eq!(ups, [false, true, true, false], "{actions:?}");
        assert!(matches!(&actions[0], Action::Keep { .. }));
    }

    #[test]
    fn a_busy_worker_is_never_scaled_down_and_takes_no_new_job() {
        let long_ago = SystemTime::now() - Duration::from_secs(3600);
        let pool = [service("a", 1, Some(long_ago)), service("b", 0, None)];
        let actions = decide(&pool, &demand(1, &[], &[("a", 1)]), IDLE, SystemTime::now());
        assert_eq!(
            actions[0],
            Action::Keep {
                reason: "its worker is busy".into()
            }
        );
        assert!(is_up(&actions[1]));
    }

    #[test]
    fn an_assigned_job_starts_its_own_worker_only() {
        let pool = [service("a", 0, None), service("b", 0, None)];
        let actions = decide(&pool, &demand(0, &[("b", 2)], &[]), IDLE, SystemTime::now());
        assert!(!is_up(&actions[0]) && is_up(&actions[1]), "{actions:?}");
    }

    #[test]
    fn idle_time_is_counted_from_the_tag_and_reset_by_waiting_work() {
        let now = SystemTime::now();
        let pool = [
            service("new", 1, None),
            service("recent", 1, Some(now - Duration::from_secs(60))),
            service("old", 1, Some(now - IDLE)),
        ];
        let quiet = decide(&pool, &Demand::default(), IDLE, now);
        assert_eq!(quiet[0], Action::StartIdle);
        assert_eq!(
            quiet[1],
            Action::StayIdle {
                idle_for: Duration::from_secs(60)
            }
        );
        assert_eq!(quiet[2], Action::ScaleDown { idle_for: IDLE });
        // One job waits: all three are running, the first takes it, and
        // nobody goes down.
        let busy = decide(&pool, &demand(1, &[], &[]), IDLE, now);
        assert!(
            busy.iter().all(|a| matches!(a, Action::Keep { .. })),
            "{busy:?}"
        );
    }

    #[test]
    fn a_job_done_since_the_tag_or_a_tag_in_the_future_restarts_the_idle_time() {
        let now = SystemTime::now();
        let pool = [
            service("worked", 1, Some(now - IDLE * 2)),
            service("future", 1, Some(now + Duration::from_secs(3600))),
            service("quiet", 1, Some(now - IDLE * 2)),
        ];
        let mut quiet = Demand::default();
        quiet.worked_since_idle.insert("worked".into());
        let actions = decide(&pool, &quiet, IDLE, now);
        assert_eq!(actions[0], Action::StartIdle);
        assert_eq!(actions[1], Action::StartIdle);
        assert_eq!(actions[2], Action::ScaleDown { idle_for: IDLE * 2 });
    }

    #[test]
    fn a_service_without_a_worker_id_is_left_alone() {
        let mut anonymous = service("x", 1, Some(SystemTime::now() - IDLE * 2));
        anonymous.worker_id = None;
        let actions = decide(&[anonymous], &Demand::default(), IDLE, SystemTime::now());
        assert!(matches!(actions[0], Action::Skip { .. }));
    }
}
