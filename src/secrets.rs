//! The process-wide register of secret values and the masking of text.
//!
//! Every secret Tendril learns (its worker token, the storage keys, each
//! job's assumed cloud keys, sensitive Terraform outputs) is registered here
//! before it can reach a child process or a log. Every line that leaves the
//! process, as a log chunk for Trellis or as Tendril's own output, goes
//! through [`mask`] first. A job's secrets are registered with a guard and
//! forgotten when the job ends; the worker's own are kept for good.
//!
//! A secret is registered with the forms it travels in besides its own:
//! base64 (a Kubernetes secret's `data`, an HTTP Basic header), URL-encoded
//! (a query string) and JSON-escaped (a tool printing JSON). A line that
//! arrives in pieces (longer than a chunk) is masked across the cuts by a
//! [`LineMasker`].

use std::borrow::Cow;
use std::fmt;
use std::sync::{OnceLock, RwLock};

/// Makes this process non-dumpable: no core dump of its memory, and no
/// other process of the same user may trace it or read its memory or
/// environment under `/proc` (where the worker token and the storage keys
/// are). A tool it starts is dumpable again (`execve` resets the flag), and
/// root still sees everything. Elsewhere than Linux, nothing.
pub fn forbid_dumps() {
    // SAFETY: PR_SET_DUMPABLE takes integers only and changes nothing but
    // this process's dumpable flag.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

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

/// The forms a secret value travels in: itself, base64 (standard with and
/// without padding, URL-safe), URL-encoded and JSON-escaped.
fn encoded_forms(value: &str) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    use base64::Engine;
    let bytes = value.as_bytes();
    let json = serde_json::to_string(value).unwrap_or_default();
    let url: String = url::form_urlencoded::byte_serialize(bytes).collect();
    vec![
        value.to_string(),
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
        url.replace('+', "%20"),
        url,
        // Without the quotes around it (one each side: the value may end in one).
        json.get(1..json.len().saturating_sub(1))
            .unwrap_or_default()
            .to_string(),
    ]
}

/// Registers a secret until the returned guard is dropped. A multi-line
/// value is registered whole and line by line, since logs are masked a line
/// at a time; each of these in every form it travels in.
pub fn register(value: &str) -> SecretGuard {
    let mut values: Vec<String> = Vec::new();
    let whole = value.trim();
    for part in std::iter::once(whole).chain(whole.lines().map(str::trim)) {
        if part.len() < MIN_SECRET_LEN {
            continue;
        }
        for candidate in encoded_forms(part) {
            if candidate.len() >= MIN_SECRET_LEN && !values.contains(&candidate) {
                values.push(candidate);
            }
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

/// Masks a line that arrives in pieces (a tool's line longer than a
/// chunk), so that a secret cut in two by a piece's end is still masked
/// whole: the end of what came so far, where a secret may be starting, is
/// held back unmasked until the next piece comes.
#[derive(Default)]
pub struct LineMasker {
    held: String,
}

impl LineMasker {
    /// Takes the next piece of the line (`last`: the line ends with it) and
    /// returns what can be written now, masked.
    pub fn feed(&mut self, piece: &str, last: bool) -> String {
        let mut text = std::mem::take(&mut self.held);
        text.push_str(piece);
        if !last {
            self.held = text.split_off(safe_cut(&text));
        }
        mask(&text).into_owned()
    }
}

/// Where a line seen so far can be cut, to mask and write what is before
/// and hold back the rest: the longest registered value's length (less a
/// byte) from the end, and before every value that goes on past the cut.
/// Masking the part before a cut alone must not see a shorter value inside
/// a longer one that it cuts (and leave the longer one's rest to be seen).
fn safe_cut(text: &str) -> usize {
    let secrets = registry().read().unwrap_or_else(|e| e.into_inner());
    let longest = secrets.first().map_or(0, |(value, _)| value.len());
    let mut cut = char_boundary_before(text, text.len().saturating_sub(longest.saturating_sub(1)));
    while let Some(start) = secrets
        .iter()
        .filter_map(|(value, _)| start_across(text, value, cut))
        .min()
    {
        cut = start;
    }
    cut
}

/// The start of an occurrence of `value` in `text` that begins before `cut`
/// and ends after it.
fn start_across(text: &str, value: &str, cut: usize) -> Option<usize> {
    let mut from = char_boundary_before(text, cut.saturating_sub(value.len()));
    while let Some(found) = text[from..].find(value) {
        let start = from + found;
        if start >= cut {
            return None;
        }
        if start + value.len() > cut {
            return Some(start);
        }
        // Occurrences may overlap: look again from the next character.
        from = start + text[start..].chars().next().map_or(1, char::len_utf8);
    }
    None
}

/// The nearest character boundary of `text` at or before `at`.
fn char_boundary_before(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
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

    #[cfg(target_os = "linux")]
    #[test]
    fn the_process_is_no_longer_dumpable() {
        forbid_dumps();
        // SAFETY: PR_GET_DUMPABLE takes no pointers.
        assert_eq!(unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) }, 0);
    }

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
    fn a_secret_is_masked_in_its_encoded_forms_too() {
        let _key = register("tok/en+with spaces&\"quotes\"");
        use base64::Engine;
        let encoded =
            base64::engine::general_purpose::STANDARD.encode("tok/en+with spaces&\"quotes\"");
        assert_eq!(mask(&format!("data: {encoded}")), "data: ***");
        assert_eq!(
            mask("q=tok%2Fen%2Bwith+spaces%26%22quotes%22&x=1"),
            "q=***&x=1"
        );
        assert_eq!(
            mask(r#"{"t":"tok/en+with spaces&\"quotes\""}"#),
            r#"{"t":"***"}"#
        );
    }

    #[test]
    fn a_secret_cut_between_two_pieces_of_a_long_line_is_masked() {
        let _key = register("split-across-pieces-secret");
        let mut masker = LineMasker::default();
        let first = masker.feed("aaaa split-across-", false);
        let second = masker.feed("pieces-secret bbbb", true);
        let whole = format!("{first}{second}");
        assert_eq!(whole, "aaaa *** bbbb");
        assert!(!first.contains("split-across"), "{first}");
    }

    #[test]
    fn a_longer_secret_cut_between_pieces_is_masked_whole_around_a_shorter_one() {
        // Found by tests/properties.rs: the first piece ends inside the
        // longer secret, after the whole shorter one; masking that piece
        // masked the shorter one and let the longer one's rest be seen.
        let _short = register("pieces-short");
        let _long = register("pieces-short-and-long");
        let mut masker = LineMasker::default();
        let first = masker.feed("x pieces-short-and-lo", false);
        let second = masker.feed("ng y pieces-short", true);
        assert_eq!(format!("{first}{second}"), "x *** y ***");
        // Base64's padding is the same case: the unpadded form is shorter.
        use base64::Engine;
        let _key = register("padded-in-base64");
        let padded = base64::engine::general_purpose::STANDARD.encode("padded-in-base64");
        let (head, tail) = padded.split_at(padded.len() - 1);
        let mut masker = LineMasker::default();
        let first = masker.feed(&format!("data {head}"), false);
        let second = masker.feed(&format!("{tail} end"), true);
        assert_eq!(format!("{first}{second}"), "data *** end");
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
