//! Timestamps and ids as Trellis's rows carry them.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

pub(super) fn now() -> Value {
    json!(timestamp(SystemTime::now()))
}

/// RFC 3339 UTC with microseconds, as Trellis's JSON carries timestamps.
pub(super) fn timestamp(t: SystemTime) -> String {
    let whole = crate::support::rfc3339(t);
    let micros = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_micros();
    format!("{}.{micros:06}Z", whole.trim_end_matches('Z'))
}

/// A random version-4 UUID string.
pub fn uuid() -> String {
    let h = crate::support::random_hex(32);
    let variant = ["8", "9", "a", "b"][usize::from(h.as_bytes()[16] % 4)];
    format!(
        "{}-{}-4{}-{}{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        variant,
        &h[17..20],
        &h[20..32]
    )
}
