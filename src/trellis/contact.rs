//! What the client has seen of Trellis: requests by endpoint and HTTP
//! status, and when Trellis last answered. One process-wide record, written
//! by every request the client sends; the health check reads the contact
//! clock and the metrics export the counters ([`Contact::register`]).

use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: String,
    code: String,
}

/// The requests sent to Trellis and the last time it answered.
pub struct Contact {
    requests: Family<RequestLabels, Counter>,
    last_contact_timestamp: Gauge<f64, AtomicU64>,
    last_contact: Mutex<Option<Instant>>,
}

impl Contact {
    /// Adds the request counter and the last-contact time to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "tendril_trellis_requests",
            "Requests to Trellis, by endpoint and HTTP status (error: no answer)",
            self.requests.clone(),
        );
        registry.register(
            "tendril_trellis_last_contact_timestamp_seconds",
            "When Trellis itself last answered a request, with a success or an error of its own (Unix time)",
            self.last_contact_timestamp.clone(),
        );
    }

    /// How long ago Trellis itself last answered.
    pub fn since_last_contact(&self) -> Option<Duration> {
        lock(&self.last_contact).map(|at| at.elapsed())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The process's record of contact with Trellis.
pub fn contact() -> &'static Contact {
    static CONTACT: OnceLock<Contact> = OnceLock::new();
    CONTACT.get_or_init(|| Contact {
        requests: Family::default(),
        last_contact_timestamp: Gauge::default(),
        last_contact: Mutex::new(None),
    })
}

/// A request to `endpoint` got an answer with `status` (`None`: none);
/// `from_trellis` when Trellis itself answered (a success, or an error in
/// its own words), not something in front of it.
pub(super) fn record(endpoint: &str, status: Option<u16>, from_trellis: bool) {
    let contact = contact();
    let code = status.map_or_else(|| "error".to_string(), |s| s.to_string());
    contact
        .requests
        .get_or_create(&RequestLabels {
            endpoint: endpoint.to_string(),
            code,
        })
        .inc();
    if from_trellis {
        *lock(&contact.last_contact) = Some(Instant::now());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        contact.last_contact_timestamp.set(now.as_secs_f64());
    }
}
