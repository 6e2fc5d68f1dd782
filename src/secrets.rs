//! The process-wide register of secret values and the masking of text.
//!
//! Every secret Tendril learns (its worker token, the storage keys, each
//! job's assumed cloud keys, sensitive Terraform outputs) is registered here
//! before it can reach a child process or a log. Every line that leaves the
//! process, as a log chunk for Trellis or as Tendril's own output, goes
//! through [`mask`] first. A job's secrets are registered with a guard and
//! forgotten when the job ends; the worker's own are kept for good.

use std::borrow::Cow;
use std::fmt;
use std::sync::{OnceLock, RwLock};

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Values shorter than this are not masked: masking every `a` or `12` in a
/// log would destroy it and protect nothing.
const MIN_SECRET_LEN: usize = 4;

/// Registered values with a count of the guards that hold them, longest
/// first so that a secret containing another is masked whole.
fn registry() -> &'static RwLock<Vec<(String, usize)>> {
    static REGISTRY: OnceLock<RwLock<Vec<(String, usize)>>> = OnceLock::new();
    REGISTRY.get_or_init(|| RwLock::new(Vec::new()))
}

/// Keeps a secret registered while it lives.
#[must_use = "the secret is forgotten when the guard is dropped"]
pub struct SecretGuard {
    values: Vec<String>,
}

impl Drop for SecretGuard {
    fn drop(&mut self) {
        let mut secrets = registry().write().unwrap_or_else(|e| e.into_inner());
        for value in &self.values {
            if let Some(index) = secrets.iter().position(|(known, _)| known == value) {
                secrets[index].1 -= 1;
                if secrets[index].1 == 0 {
                    secrets.remove(index);
                }
            }
        }
    }
}

/// Registers a secret until the returned guard is dropped. A multi-line
/// value is registered whole and line by line, since logs are masked a line
/// at a time.
pub fn register(value: &str) -> SecretGuard {
    let mut values: Vec<String> = Vec::new();
    let whole = value.trim();
    for candidate in std::iter::once(whole).chain(whole.lines().map(str::trim)) {
        if candidate.len() >= MIN_SECRET_LEN && !values.iter().any(|v| v == candidate) {
            values.push(candidate.to_string());
        }
    }
    let mut secrets = registry().write().unwrap_or_else(|e| e.into_inner());
    for value in &values {
        match secrets.iter_mut().find(|(known, _)| known == value) {
            Some(entry) => entry.1 += 1,
            None => {
                let at = secrets.partition_point(|(known, _)| known.len() >= value.len());
                secrets.insert(at, (value.clone(), 1));
            }
        }
    }
    SecretGuard { values }
}

/// Registers a secret for the life of the process (the worker's own).
pub fn register_forever(value: &str) {
    std::mem::forget(register(value));
}

/// Replaces every registered secret in `text` with [`MASK`].
pub fn mask(text: &str) -> Cow<'_, str> {
    let secrets = registry().read().unwrap_or_else(|e| e.into_inner());
    let mut out = Cow::Borrowed(text);
    for (secret, _) in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), MASK));
        }
    }
    out
}

/// A secret a job learns while it runs (a git token): masked from the
/// moment it is wrapped until it is dropped; `Debug` never prints it.
pub struct MaskedSecret {
    value: String,
    _guard: SecretGuard,
}

impl MaskedSecret {
    pub fn new(value: String) -> Self {
        let guard = register(&value);
        MaskedSecret {
            value,
            _guard: guard,
        }
    }

    pub fn expose(&self) -> &str {
        &self.value
    }
}

impl fmt::Debug for MaskedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// A secret setting: its value is only reachable through [`Secret::expose`],
/// and `Debug`/`Display` never print it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value and registers it for masking for the life of the process.
    pub fn new_registered(value: String) -> Self {
        register_forever(&value);
        Secret(value)
    }

    /// The value itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_values_are_masked_until_the_guard_drops() {
        let guard = register("s3cr3t-value-one");
        assert_eq!(mask("key=s3cr3t-value-one;"), "key=***;");
        drop(guard);
        assert_eq!(mask("key=s3cr3t-value-one;"), "key=s3cr3t-value-one;");
    }

    #[test]
    fn longer_secrets_win_over_their_substrings() {
        let _short = register("abcd-short");
        let _long = register("abcd-short-and-long");
        assert_eq!(mask("x abcd-short-and-long y abcd-short"), "x *** y ***");
    }

    #[test]
    fn multi_line_secrets_are_masked_line_by_line() {
        let _key = register("-----BEGIN KEY-----\nAAAAbbbbCCCC\n-----END KEY-----");
        assert_eq!(mask("line AAAAbbbbCCCC here"), "line *** here");
    }

    #[test]
    fn very_short_values_are_not_masked() {
        let _tiny = register("ab");
        assert_eq!(mask("abc"), "abc");
    }

    #[test]
    fn a_value_held_twice_stays_masked_until_both_guards_drop() {
        let first = register("twice-held-secret");
        let second = register("twice-held-secret");
        drop(first);
        assert_eq!(mask("twice-held-secret"), "***");
        drop(second);
        assert_eq!(mask("twice-held-secret"), "twice-held-secret");
    }

    #[test]
    fn secret_debug_never_prints_the_value() {
        let secret = Secret("do-not-print-me".into());
        assert_eq!(format!("{secret:?}"), "***");
    }
}
