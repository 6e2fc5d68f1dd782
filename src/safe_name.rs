//! Names that become parts of paths and state keys: a job id (workspace and
//! outbox directories), a vineyard id, project name, environment stage and
//! region (a vine's state key), a worker id (a worker's state key). Each
//! comes from outside the process, so each is checked before it is used:
//! letters, digits, `.`, `_` and `-` only, no leading dot, no `..`, at most
//! 128 bytes. `../../x` can then neither leave a directory nor address
//! another vine's state.

/// The longest name accepted.
pub const MAX_LEN: usize = 128;

/// Whether `value` is a safe name.
pub fn is_safe(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_LEN
        && !value.starts_with('.')
        && !value.contains("..")
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `value`, or a message naming `field` and what is wrong.
pub fn check<'a>(field: &str, value: &'a str) -> Result<&'a str, String> {
    if is_safe(value) {
        return Ok(value);
    }
    let shown: String = value.chars().take(40).collect();
    let ellipsis = if value.chars().count() > 40 {
        "..."
    } else {
        ""
    };
    Err(format!(
        "{field} '{shown}{ellipsis}' cannot be used in a path or state key: it must be 1 to {MAX_LEN} letters, \
         digits, '.', '_' or '-', not start with '.' and not contain '..'"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_tricks_are_refused_and_real_names_pass() {
        for good in [
            "3f2a9c4e-1b2d-4e5f-8a9b-0c1d2e3f4a5b",
            "shop",
            "eu-west-1",
            "v1.2_prod",
        ] {
            assert!(is_safe(good), "{good}");
        }
        for bad in [
            "",
            "../../../x",
            "..",
            "a/b",
            ".hidden",
            "a..b",
            "with space",
            "tab\t",
            "ü",
            &"x".repeat(129),
        ] {
            assert!(!is_safe(bad), "{bad:?}");
        }
        let message = check("project_name", "../../../x").unwrap_err();
        assert!(
            message.starts_with("project_name '../../../x' cannot be used"),
            "{message}"
        );
    }
}
