//! The scaling decision, pure: from the pool as ECS described it and the
//! jobs waiting and running, what to do to each service. Kept apart from
//! the I/O so every rule can be tested on its own.
//!
//! - Work waiting (unassigned, or assigned to a pool worker) scales up at
//!   once: a service whose worker a job is assigned to, and as many more
//!   services as unassigned jobs are left once the running idle workers
//!   have taken theirs.
//! - A service that has wanted a task and run none for longer than the
//!   start-up budget (a crash loop, an image that cannot be pulled) is
//!   "not starting": it takes no waiting job, so another service is started
//!   for it. Nothing scales it down but the idle rules below.
//! - While anything waits, no service is scaled down and idle times reset.
//! - A service goes to 0 only when nothing waits, its worker is not busy,
//!   and it has been idle (per its tag) for the idle time. A worker that
//!   finished a job since its tag (work that came and went between two
//!   passes), or a tag in the future, starts the idle time again.
//! - A scale-up-only pass (Trellis's ping) carries out the scale-ups and
//!   nothing else.

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

/// The times the decision goes by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a worker is idle before its service goes to 0.
    pub idle_time: Duration,
    /// How long a service may want a task and run none.
    pub startup_budget: Duration,
}

/// What to do to one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Desired count to 1 (forget any idle time; the start-up clock starts).
    ScaleUp { reason: String },
    /// Desired count to 0 (forget the idle time and the start-up clock).
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

/// Whether a service is getting the task it wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Startup {
    /// It wants no task, or a task runs: its start-up clock is stopped.
    Settled,
    /// It has wanted a task and run none for `waited`, within the start-up
    /// budget: its worker counts as one that will take a job.
    Starting { waited: Duration },
    /// It has wanted a task and run none for `waited`, longer than the
    /// start-up budget: its worker is no capacity.
    NotStarting { waited: Duration },
}

/// A service's start-up state. Its clock starts at its
/// `tendril:starting-since` tag (now, when it has no tag or one in the
/// future) or at its primary deployment, whichever is later, so that a new
/// deployment (a new image, say) gets a budget of its own.
pub fn startup(service: &PoolService, budget: Duration, now: SystemTime) -> Startup {
    if service.desired == 0 || service.running > 0 {
        return Startup::Settled;
    }
    let tagged = tagged_start(service, now).unwrap_or(now);
    let since = service.deployed_at.map_or(tagged, |at| at.max(tagged));
    let waited = now.duration_since(since).unwrap_or_default();
    if waited > budget {
        Startup::NotStarting { waited }
    } else {
        Startup::Starting { waited }
    }
}

impl Startup {
    /// For reports: `not starting: desired 1, no task running for 7m`.
    pub fn not_starting(&self, service: &PoolService) -> Option<String> {
        match self {
            Startup::NotStarting { waited } => Some(format!(
                "not starting: desired {}, no task running for {}",
                service.desired,
                whole(*waited)
            )),
            _ => None,
        }
    }
}

/// A change to a service's `tendril:starting-since` tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockTag {
    /// Set it to now: the clock runs and has no valid tag yet.
    SetNow,
    /// Remove it: the clock has stopped.
    Remove,
}

/// What the start-up tag of a service whose count stays as it is needs,
/// if anything. (Scaling up sets it and scaling down removes it.)
pub fn clock_tag(service: &PoolService, startup: Startup, now: SystemTime) -> Option<ClockTag> {
    let runs = startup != Startup::Settled;
    match (runs, tagged_start(service, now).is_some()) {
        (true, false) => Some(ClockTag::SetNow),
        (false, _) if service.starting_since.is_some() => Some(ClockTag::Remove),
        _ => None,
    }
}

/// The start-up tag, unless it is in the future.
fn tagged_start(service: &PoolService, now: SystemTime) -> Option<SystemTime> {
    service.starting_since.filter(|since| *since <= now)
}

/// A full pass, or the scale-up-only pass a ping gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassKind {
    Full,
    /// Starts services for waiting work and touches nothing else: it never
    /// scales down and never sets or removes a tag but by scaling up, so it
    /// cannot shorten anyone's idle time.
    ScaleUpOnly,
}

impl PassKind {
    /// Whether a pass of this kind carries out `action`.
    pub fn carries_out(self, action: &Action) -> bool {
        match self {
            PassKind::Full => true,
            PassKind::ScaleUpOnly => matches!(action, Action::ScaleUp { .. }),
        }
    }
}

/// The decision for each service, in the order given.
pub fn decide(
    services: &[PoolService],
    demand: &Demand,
    limits: Limits,
    now: SystemTime,
) -> Vec<Action> {
    let mut actions: Vec<Option<Action>> = vec![None; services.len()];
    // Up, and getting its task (or has it): its worker will take a job.
    let capacity: Vec<bool> = services
        .iter()
        .map(|service| {
            let state = startup(service, limits.startup_budget, now);
            service.desired > 0 && !matches!(state, Startup::NotStarting { .. })
        })
        .collect();

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

    // Unassigned jobs: idle workers that are up (and not "not starting")
    // take them first, then services at 0 are started, one a job.
    let mut unassigned = demand.unassigned;
    for (index, &takes_jobs) in capacity.iter().enumerate() {
        if actions[index].is_none() && takes_jobs && unassigned > 0 {
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
                        Some(Ok(idle_for)) if idle_for >= limits.idle_time => {
                            Action::ScaleDown { idle_for }
                        }
                        Some(Ok(idle_for)) => Action::StayIdle { idle_for },
                    }
                }
            })
        })
        .collect()
}

/// A duration in whole seconds, for reports.
pub fn whole(duration: Duration) -> String {
    crate::units::format_duration(Duration::from_secs(duration.as_secs()))
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
    const BUDGET: Duration = Duration::from_secs(300);
    const LIMITS: Limits = Limits {
        idle_time: IDLE,
        startup_budget: BUDGET,
    };

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
            starting_since: None,
            deployed_at: None,
        }
    }

    /// A service at desired 1 whose task has not run since `since`.
    fn waiting_for_a_task(worker: &str, since: Option<SystemTime>) -> PoolService {
        PoolService {
            running: 0,
            starting_since: since,
            ..service(worker, 1, None)
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
        let actions = decide(&pool, &demand(3, &[], &[]), LIMITS, now);
        let ups: Vec<bool> = actions.iter().map(is_up).collect();
        assert_eq!(ups, [false, true, true, false], "{actions:?}");
        assert!(matches!(&actions[0], Action::Keep { .. }));
    }

    #[test]
    fn a_busy_worker_is_never_scaled_down_and_takes_no_new_job() {
        let long_ago = SystemTime::now() - Duration::from_secs(3600);
        let pool = [service("a", 1, Some(long_ago)), service("b", 0, None)];
        let actions = decide(
            &pool,
            &demand(1, &[], &[("a", 1)]),
            LIMITS,
            SystemTime::now(),
        );
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
        let actions = decide(
            &pool,
            &demand(0, &[("b", 2)], &[]),
            LIMITS,
            SystemTime::now(),
        );
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
        let quiet = decide(&pool, &Demand::default(), LIMITS, now);
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
        let busy = decide(&pool, &demand(1, &[], &[]), LIMITS, now);
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
        let actions = decide(&pool, &quiet, LIMITS, now);
        assert_eq!(actions[0], Action::StartIdle);
        assert_eq!(actions[1], Action::StartIdle);
        assert_eq!(actions[2], Action::ScaleDown { idle_for: IDLE * 2 });
    }

    #[test]
    fn a_service_without_a_worker_id_is_left_alone() {
        let mut anonymous = service("x", 1, Some(SystemTime::now() - IDLE * 2));
        anonymous.worker_id = None;
        let actions = decide(&[anonymous], &Demand::default(), LIMITS, SystemTime::now());
        assert!(matches!(actions[0], Action::Skip { .. }));
    }

    #[test]
    fn a_service_is_not_starting_once_it_wanted_a_task_for_longer_than_the_budget() {
        let now = SystemTime::now();
        let minutes = |m: u64| Duration::from_secs(m * 60);
        let stuck = waiting_for_a_task("stuck", Some(now - minutes(7)));
        assert_eq!(
            startup(&stuck, BUDGET, now),
            Startup::NotStarting { waited: minutes(7) }
        );
        assert_eq!(
            startup(&stuck, BUDGET, now).not_starting(&stuck).as_deref(),
            Some("not starting: desired 1, no task running for 7m")
        );
        let young = waiting_for_a_task("young", Some(now - minutes(1)));
        assert_eq!(
            startup(&young, BUDGET, now),
            Startup::Starting { waited: minutes(1) }
        );
        assert_eq!(startup(&young, BUDGET, now).not_starting(&young), None);
        // A new deployment restarts the clock.
        let redeployed = PoolService {
            deployed_at: Some(now - minutes(2)),
            ..stuck.clone()
        };
        assert_eq!(
            startup(&redeployed, BUDGET, now),
            Startup::Starting { waited: minutes(2) }
        );
        // Without a tag (or with one in the future) the clock starts now.
        for since in [None, Some(now + minutes(60))] {
            let untagged = PoolService {
                deployed_at: Some(now - minutes(60)),
                ..waiting_for_a_task("new", since)
            };
            let state = startup(&untagged, BUDGET, now);
            assert_eq!(
                state,
                Startup::Starting {
                    waited: Duration::ZERO
                }
            );
            assert_eq!(clock_tag(&untagged, state, now), Some(ClockTag::SetNow));
        }
        // A running task or desired 0 stops the clock: the tag goes.
        let running = PoolService {
            running: 1,
            ..stuck.clone()
        };
        let stopped = PoolService {
            desired: 0,
            ..stuck.clone()
        };
        for settled in [running, stopped] {
            let state = startup(&settled, BUDGET, now);
            assert_eq!(state, Startup::Settled);
            assert_eq!(clock_tag(&settled, state, now), Some(ClockTag::Remove));
        }
        let state = startup(&stuck, BUDGET, now);
        assert_eq!(clock_tag(&stuck, state, now), None, "the tag is kept");
        assert_eq!(
            clock_tag(&service("up", 1, None), Startup::Settled, now),
            None
        );
    }

    #[test]
    fn a_service_not_starting_takes_no_waiting_job_so_another_one_starts() {
        let now = SystemTime::now();
        let long_ago = now - BUDGET * 2;
        let pool = [
            waiting_for_a_task("stuck", Some(long_ago)),
            service("spare", 0, None),
        ];
        let actions = decide(&pool, &demand(1, &[], &[]), LIMITS, now);
        assert_eq!(
            actions[0],
            Action::Keep {
                reason: "work is waiting in the pool".into()
            }
        );
        assert!(is_up(&actions[1]), "{actions:?}");
        // Within its budget a service still takes the job.
        let pool = [
            waiting_for_a_task("young", Some(now - BUDGET / 2)),
            service("spare", 0, None),
        ];
        let actions = decide(&pool, &demand(1, &[], &[]), LIMITS, now);
        assert_eq!(
            actions[0],
            Action::Keep {
                reason: "its worker will take a waiting job".into()
            }
        );
        assert!(!is_up(&actions[1]), "{actions:?}");
    }

    #[test]
    fn a_service_not_starting_goes_down_by_the_idle_rules_only() {
        let now = SystemTime::now();
        let long_ago = now - BUDGET * 2;
        let idle_stuck = PoolService {
            idle_since: Some(long_ago),
            ..waiting_for_a_task("stuck", Some(long_ago))
        };
        // Work waits: never down, whatever its idle tag says.
        let actions = decide(
            std::slice::from_ref(&idle_stuck),
            &demand(1, &[], &[]),
            LIMITS,
            now,
        );
        assert!(matches!(actions[0], Action::Keep { .. }), "{actions:?}");
        // Nothing waits: the idle rules, as for any service.
        let actions = decide(&[idle_stuck], &Demand::default(), LIMITS, now);
        assert_eq!(
            actions[0],
            Action::ScaleDown {
                idle_for: BUDGET * 2
            }
        );
        let fresh_stuck = waiting_for_a_task("stuck", Some(long_ago));
        let actions = decide(&[fresh_stuck], &Demand::default(), LIMITS, now);
        assert_eq!(actions[0], Action::StartIdle);
    }

    #[test]
    fn a_scale_up_only_pass_carries_out_nothing_but_scale_ups() {
        let now = SystemTime::now();
        let pool = [
            service("long-idle", 1, Some(now - IDLE * 3)),
            service("fresh", 1, None),
            service("stopped", 0, None),
        ];
        let quiet = decide(&pool, &demand(0, &[("stopped", 1)], &[]), LIMITS, now);
        let carried: Vec<&Action> = quiet
            .iter()
            .filter(|a| PassKind::ScaleUpOnly.carries_out(a))
            .collect();
        assert_eq!(carried.len(), 1, "{quiet:?}");
        assert!(is_up(carried[0]));
        let nothing_waits = decide(&pool, &Demand::default(), LIMITS, now);
        assert!(nothing_waits
            .iter()
            .any(|a| matches!(a, Action::ScaleDown { .. })));
        assert!(nothing_waits.contains(&Action::StartIdle));
        assert!(!nothing_waits
            .iter()
            .any(|a| PassKind::ScaleUpOnly.carries_out(a)));
        assert!(nothing_waits.iter().all(|a| PassKind::Full.carries_out(a)));
    }
}
