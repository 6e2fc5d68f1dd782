//! The worker's metrics, in the Prometheus (OpenMetrics) text format, and
//! the few facts the health check reads: when Trellis last answered, the
//! job running now, whether the worker drains.
//!
//! One process-wide set, like the secrets register: the job log, the
//! backlog and the agent record into it from wherever they are, and the
//! health listener reads it. The Trellis client keeps its own record of
//! contact (`trellis::contact`), exported here beside the rest. Recording is a few atomic
//! operations; nothing here blocks.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::trellis::contact::contact;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    job_type: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobTypeLabel {
    job_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

/// How a job ended, as `tendril_jobs_total` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    Success,
    Failed,
    /// A user cancelled it in Trellis.
    Cancelled,
    /// It was taken away (requeued to another worker, or deleted).
    Abandoned,
}

impl JobOutcome {
    fn label(self) -> &'static str {
        match self {
            JobOutcome::Success => "success",
            JobOutcome::Failed => "failed",
            JobOutcome::Cancelled => "cancelled",
            JobOutcome::Abandoned => "abandoned",
        }
    }
}

/// Every metric Tendril exports, and the health facts.
pub struct Metrics {
    registry: Registry,
    jobs: Family<JobLabels, Counter>,
    durations: Family<JobTypeLabel, Histogram>,
    busy: Gauge,
    draining: Gauge,
    log_bytes: Counter,
    log_lines: Counter,
    outbox_entries: Gauge,
    current_job: Mutex<Option<String>>,
}

/// Job durations: from a second to about four hours.
fn duration_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(1.0, 2.0, 15)
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let jobs = Family::<JobLabels, Counter>::default();
        registry.register(
            "tendril_jobs",
            "Jobs run, by type and outcome",
            jobs.clone(),
        );
        let durations = Family::<JobTypeLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(duration_buckets())
        });
        registry.register(
            "tendril_job_duration_seconds",
            "How long jobs ran, by type",
            durations.clone(),
        );
        let busy = Gauge::default();
        registry.register("tendril_busy", "1 while a job runs", busy.clone());
        let draining = Gauge::default();
        registry.register(
            "tendril_draining",
            "1 once the worker drains",
            draining.clone(),
        );
        contact().register(&mut registry);
        let log_bytes = Counter::default();
        registry.register(
            "tendril_log_bytes",
            "Bytes of job log lines, after masking",
            log_bytes.clone(),
        );
        let log_lines = Counter::default();
        registry.register("tendril_log_lines", "Job log lines", log_lines.clone());
        let outbox_entries = Gauge::default();
        registry.register(
            "tendril_outbox_entries",
            "Jobs whose log or status is not yet all delivered",
            outbox_entries.clone(),
        );
        let build_info = Family::<VersionLabel, Gauge>::default();
        registry.register(
            "tendril_build_info",
            "The Tendril release running",
            build_info.clone(),
        );
        build_info
            .get_or_create(&VersionLabel {
                version: crate::VERSION.to_string(),
            })
            .set(1);
        Metrics {
            registry,
            jobs,
            durations,
            busy,
            draining,
            log_bytes,
            log_lines,
            outbox_entries,
            current_job: Mutex::new(None),
        }
    }

    /// The metrics in the text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// How long ago Trellis last answered successfully.
    pub fn since_last_contact(&self) -> Option<Duration> {
        contact().since_last_contact()
    }

    /// A job log line of `bytes` (after masking).
    pub fn log_line(&self, bytes: usize) {
        self.log_lines.inc();
        self.log_bytes.inc_by(bytes as u64);
    }

    /// A job started (`Some`) or ended (`None`).
    pub fn set_current_job(&self, job_id: Option<&str>) {
        self.busy.set(i64::from(job_id.is_some()));
        *lock(&self.current_job) = job_id.map(String::from);
    }

    pub fn current_job(&self) -> Option<String> {
        lock(&self.current_job).clone()
    }

    pub fn set_draining(&self) {
        self.draining.set(1);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.get() == 1
    }

    /// A job ended: how, and after how long. The job type is a label: one
    /// Tendril knows, or `unknown` (no label takes arbitrary values).
    pub fn job_finished(&self, job_type: &str, outcome: JobOutcome, took: Duration) {
        let job_type = job_type.to_string();
        self.jobs
            .get_or_create(&JobLabels {
                job_type: job_type.clone(),
                outcome: outcome.label().to_string(),
            })
            .inc();
        self.durations
            .get_or_create(&JobTypeLabel { job_type })
            .observe(took.as_secs_f64());
    }

    pub fn set_outbox_entries(&self, count: usize) {
        self.outbox_entries
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}
