//! Values from outside the process (a claim, a snapshot, Terraform's
//! outputs of a template a snapshot fed) checked for the use they are put
//! to, before they are used. One checker per kind of value; each names the
//! field in its message, and shows the value escaped and cut, so that a
//! value can neither forge a line nor flood one.
//!
//! - [`check`]: a name that becomes a part of a path or a state key, or a
//!   command argument (a job id, a vineyard id, a project name, an
//!   environment stage, a cluster or resource group name): letters, digits,
//!   `.`, `_` and `-` only, not starting with `.` or `-`, no `..`, at most
//!   128 bytes. `../../x` can then neither leave a directory nor address
//!   another vine's state, and `--kubeconfig=x` is never read as a flag.
//! - [`check_region`]: a cloud region or location (`eu-west-1`,
//!   `europe-west1`, `westeurope`).
//! - [`check_dns_name`]: an RFC 1123 DNS name (`shop.example.com`).
//! - [`check_repository_url`]: a git repository's `https://` or `ssh://`
//!   URL, or the `user@host:path` form of ssh, whose host is a DNS name or
//!   an IP address, without credentials.
//! - [`check_identifier`]: a cloud identifier, an ARN or an endpoint
//!   (`Z0123456789`, `arn:aws:acm:...`, `https://x.eks.amazonaws.com`).
//! - [`check_image_repository`] and [`check_image_tag`]: a container image's
//!   repository (`ghcr.io/acme/tendril`, `localhost:5000/tendril`) and tag
//!   (`1.4.0-aws`), in the grammar of the OCI distribution spec.
//!
//! None of them lets through whitespace, a control character, a quote or
//! anything else that YAML or a shell reads as more than text, so a checked
//! value rendered into a manifest stays one scalar.

/// The longest name accepted.
pub const MAX_LEN: usize = 128;

/// The longest identifier (an ARN, a resource id) accepted.
const MAX_IDENTIFIER_LEN: usize = 2048;

/// Whether `value` is a safe name.
pub fn is_safe(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_LEN
        && !value.starts_with(['.', '-'])
        && !value.contains("..")
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `value` as a message shows it: its URL credentials hidden (see
/// [`without_userinfo`]), escaped (a newline is `\n`), quoted, and cut
/// after 40 characters.
fn shown(value: &str) -> String {
    quoted(&without_userinfo(value))
}

/// `value` quoted for a message: escaped, its first 40 characters only.
fn quoted(value: &str) -> String {
    let escaped: String = value
        .chars()
        .take(40)
        .flat_map(char::escape_debug)
        .collect();
    let ellipsis = if value.chars().count() > 40 {
        "..."
    } else {
        ""
    };
    format!("'{escaped}{ellipsis}'")
}

/// `value`, or a message naming `field` and what is wrong.
pub fn check<'a>(field: &str, value: &'a str) -> Result<&'a str, String> {
    if is_safe(value) {
        return Ok(value);
    }
    Err(format!(
        "{field} {} cannot be used in a path, a state key or a command: it must be 1 to {MAX_LEN} letters, \
         digits, '.', '_' or '-', not start with '.' or '-' and not contain '..'",
        shown(value)
    ))
}

/// A cloud region or location: letters, digits and `-`, starting with a
/// letter or a digit, at most 64 bytes.
pub fn check_region<'a>(field: &str, value: &'a str) -> Result<&'a str, String> {
    let fine = (1..=64).contains(&value.len())
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if fine {
        return Ok(value);
    }
    Err(format!(
        "{field} {} is not a region: it must be letters, digits and '-' (such as eu-west-1), starting with a \
         letter or a digit",
        shown(value)
    ))
}

/// Whether `value` is an RFC 1123 DNS name: dot-separated labels of
/// letters, digits and `-`, each 1 to 63 bytes and neither starting nor
/// ending with `-`, 253 bytes at most, without a trailing dot.
fn is_dns_name(value: &str) -> bool {
    let label = |label: &str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    value.len() <= 253 && value.split('.').all(label)
}

/// An RFC 1123 DNS name (see [`is_dns_name`]).
pub fn check_dns_name<'a>(field: &str, value: &'a str) -> Result<&'a str, String> {
    if is_dns_name(value) {
        return Ok(value);
    }
    Err(format!(
        "{field} {} is not a DNS name: it must be labels of letters, digits and '-' joined by '.' (such as \
         shop.example.com), each label 1 to 63 characters not starting or ending with '-'",
        shown(value)
    ))
}

/// The characters a checked URL or identifier may hold besides letters and
/// digits: none that YAML, a shell or a URL parser reads as more than text
/// there (no whitespace, quotes, `#`, `,`, brackets or braces).
fn plain_text(value: &str, extra: &[u8]) -> bool {
    value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~:/@".contains(&b) || extra.contains(&b))
}

/// `value` with the user (and password) of a URL, or of ssh's
/// `user@host:path`, replaced by `***`: a message never shows a credential
/// given in a URL, not even its start.
fn without_userinfo(value: &str) -> std::borrow::Cow<'_, str> {
    let (start, rest) = match value.split_once("://") {
        Some((scheme, rest)) => (scheme.len() + 3, rest),
        None => (0, value),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let userinfo_end = match start {
        0 => rest
            .find('@')
            .filter(|at| !rest[..*at].contains([':', '/']) && rest[*at..].contains(':')),
        _ => authority.rfind('@'),
    };
    match userinfo_end {
        Some(at) => format!("{}***{}", &value[..start], &rest[at..]).into(),
        None => value.into(),
    }
}

/// `value` with all before its last `@` but a `scheme://` replaced by
/// `***`: what a repository URL that failed its check may show, however
/// its credentials were typed (`user:token@host/path`, `https:/token@...`).
fn without_anything_before_an_at(value: &str) -> std::borrow::Cow<'_, str> {
    let Some(at) = value.rfind('@') else {
        return value.into();
    };
    let scheme_end = value
        .find("://")
        .filter(|end| *end < at)
        .map_or(0, |end| end + 3);
    format!("{}***{}", &value[..scheme_end], &value[at..]).into()
}

/// The starts of access tokens that git hosts accept as a URL's user
/// (GitHub's personal, OAuth, user, server and refresh tokens, GitLab's
/// personal and OAuth ones, Bitbucket's app passwords).
const TOKEN_PREFIXES: [&str; 9] = [
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "gloas-",
    "ATBB",
];

/// The fewest characters of a URL's user that is taken for a token when it
/// is made of a token's characters only: a name is shorter (`git`,
/// `bobby`), a token longer (GitHub's 40 hex digits, Azure DevOps's 52
/// characters).
const TOKEN_MIN_LEN: usize = 30;

/// Whether a URL's user (percent-decoded, as git reads it) is an access
/// token rather than a name: it starts as tokens do, or is a token's length
/// of letters, digits, `_` and `-` only and is not the organisation the
/// path starts with (Azure DevOps's clone URLs repeat it as the user:
/// `https://acme@dev.azure.com/acme/...`).
fn is_token(user: &str, path: &str) -> bool {
    let user = percent_encoding::percent_decode_str(user).decode_utf8_lossy();
    let organisation = path.trim_start_matches('/').split('/').next();
    TOKEN_PREFIXES.iter().any(|prefix| user.starts_with(prefix))
        || (user.len() >= TOKEN_MIN_LEN
            && user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            && organisation != Some(user.as_ref()))
}

/// Whether a parsed URL's host is a DNS name or an IP address (not, say,
/// `-oProxyCommand=...`, which ssh would read as an option).
fn has_plain_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => is_dns_name(name),
        Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => true,
        None => false,
    }
}

/// A git repository's URL: `https://host/path`, `ssh://[user@]host[:port]/path`
/// or `user@host:path`, with a host that is a DNS name or an IP address, of
/// plain URL characters only, and without credentials: a password, or a
/// token as the user, would reach the job's log, the rendered manifests and
/// ArgoCD's repository secret (Tendril gets the git token from Trellis). A
/// URL with credentials fails naming the field, never showing them.
pub fn check_repository_url<'a>(field: &str, value: &'a str) -> Result<&'a str, String> {
    let credentials = || {
        Err(format!(
            "{field} holds credentials (a password, or a token as the user): give the repository's URL without \
             them; Tendril gets the git token from Trellis"
        ))
    };
    let has_host = match value.split_once("://") {
        Some(("https" | "ssh", rest)) => match url::Url::parse(value) {
            Ok(url) if url.password().is_some() || is_token(url.username(), url.path()) => {
                return credentials()
            }
            Ok(url) => has_plain_host(&url) && !rest.is_empty(),
            Err(_) => false,
        },
        Some(_) => false,
        // scp-like ssh: `git@github.com:acme/apps.git`.
        None => match value.split_once(':') {
            Some((user_host, path)) => match user_host.split_once('@') {
                Some((user, _)) if is_token(user, path) => return credentials(),
                Some((user, host)) => is_safe(user) && is_dns_name(host) && !path.is_empty(),
                None => false,
            },
            None => false,
        },
    };
    if has_host && value.len() <= MAX_IDENTIFIER_LEN && plain_text(value, b"%+=") {
        return Ok(value);
    }
    Err(format!(
        "{field} {} is not a git repository URL: it must be an https:// or ssh:// URL (or user@host:path) whose \
         host is a DNS name or an IP address, without whitespace, quotes or control characters",
        quoted(&without_anything_before_an_at(value))
    ))
}

/// A cloud identifier, an ARN, a resource id or an endpoint: letters,
/// digits and `-._~:/@+=`, starting with a letter, a digit or `/`, at most
/// 2048 bytes.
pub fn check_identifier<'a>(field: &str, value: &'a str) -> Result<&'a str, String> {
    let fine = (1..=MAX_IDENTIFIER_LEN).contains(&value.len())
        && value.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '/')
        && plain_text(value, b"+=");
    if fine {
        return Ok(value);
    }
    Err(format!(
        "{field} {} is not an identifier: it must be letters, digits and '-._~:/@+=' (such as an id, an ARN or \
         an https URL), starting with a letter, a digit or '/'",
        shown(value)
    ))
}

/// A container image's repository: an optional registry host (with a
/// port) and `/`-separated path components of lower-case letters and
/// digits joined by `.`, `_`, `__` or `-`, at most 255 bytes.
pub fn check_image_repository<'a>(field: &str, value: &'a str) -> Result<&'a str, String> {
    let component = |part: &str| {
        !part.is_empty()
            && part.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && part.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && !part.contains("___")
            && !part.contains("..")
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    };
    let (registry, path) = match value.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            (Some(first), rest)
        }
        _ => (None, value),
    };
    let registry_fine = registry.is_none_or(|registry| {
        let (host, port) = registry.split_once(':').unwrap_or((registry, "1"));
        is_dns_name(host) && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
    });
    if value.len() <= 255 && registry_fine && path.split('/').all(component) {
        return Ok(value);
    }
    Err(format!(
        "{field} {} is not an image repository: it must be path components of lower-case letters and digits \
         joined by '.', '_' or '-', separated by '/', after an optional registry host (such as \
         ghcr.io/acme/tendril)",
        shown(value)
    ))
}

/// A container image's tag: letters, digits, `_`, `.` and `-`, starting
/// with a letter, a digit or `_`, at most 128 bytes.
pub fn check_image_tag<'a>(field: &str, value: &'a str) -> Result<&'a str, String> {
    let fine = (1..=128).contains(&value.len())
        && value.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if fine {
        return Ok(value);
    }
    Err(format!(
        "{field} {} is not an image tag: it must be 1 to 128 letters, digits, '_', '.' or '-', not starting \
         with '.' or '-' (such as 1.4.0)",
        shown(value)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_are_checked_by_their_grammar() {
        for good in [
            "ghcr.io/acme/tendril",
            "localhost:5000/tendril",
            "tendril",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/pool/tendril",
            "ghcr.io/acme/grape__worker",
        ] {
            assert_eq!(check_image_repository("image_repository", good), Ok(good));
        }
        for bad in [
            "",
            "GHCR.io/Acme",
            "ghcr.io/acme/tendril:1",
            "a//b",
            "-x",
            INJECTED,
            "ghcr.io/a b",
        ] {
            let error = check_image_repository("image_repository", bad).unwrap_err();
            assert!(error.starts_with("image_repository "), "{error}");
        }
        for good in ["1.4.0", "1.4.0-rc.1-aws", "latest", "_x"] {
            assert_eq!(check_image_tag("image_tag", good), Ok(good));
        }
        for bad in [
            "",
            "-x",
            ".x",
            "1.4.0 x",
            "a:b",
            "a/b",
            INJECTED,
            &"x".repeat(129),
        ] {
            let error = check_image_tag("image_tag", bad).unwrap_err();
            assert!(error.starts_with("image_tag "), "{error}");
        }
    }

    /// A manifest key smuggled in through a value.
    const INJECTED: &str = "shop\nnamespace: kube-system";

    #[test]
    fn path_tricks_and_flags_are_refused_and_real_names_pass() {
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
            "-rf",
            "--kubeconfig=/etc/x",
            "a..b",
            "with space",
            "tab\t",
            INJECTED,
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
        let message = check("project_name", INJECTED).unwrap_err();
        assert!(
            message.starts_with(r"project_name 'shop\nnamespace: kube-system' cannot be used"),
            "the value is shown escaped, on one line: {message}"
        );
    }

    #[test]
    fn regions_are_letters_digits_and_dashes() {
        for good in ["eu-west-1", "europe-west1", "westeurope", "us-gov-west-1"] {
            assert_eq!(check_region("region", good), Ok(good));
        }
        for bad in [
            "",
            "-eu-west-1",
            "--region=x",
            "eu west 1",
            "eu-west-1\n",
            "eu/west",
        ] {
            let message = check_region("region", bad).unwrap_err();
            assert!(message.starts_with("region '"), "{message}");
        }
    }

    #[test]
    fn dns_names_are_rfc_1123() {
        for good in [
            "shop.example.com",
            "a.b",
            "xn--bcher-kva.example",
            "localhost",
            "1.2.3.4",
        ] {
            assert_eq!(check_dns_name("dns.domain_name", good), Ok(good));
        }
        for bad in [
            "",
            "shop.example.com.",
            "-shop.example",
            "shop-.example",
            "sh op.example",
            "shop..example",
            "shop_1.example",
            INJECTED,
            "shop.example\r",
            &format!("{}.example", "a".repeat(64)),
        ] {
            let message = check_dns_name("dns.domain_name", bad).unwrap_err();
            assert!(message.contains("is not a DNS name"), "{message}");
        }
    }

    #[test]
    fn repository_urls_are_https_or_ssh_without_anything_else() {
        for good in [
            "https://github.com/acme/apps",
            "https://gitlab.example.com:8443/group/sub/apps.git",
            "ssh://git@github.com/acme/apps.git",
            "git@github.com:acme/apps.git",
            "https://dev.azure.com/acme/project/_git/apps",
        ] {
            assert_eq!(
                check_repository_url("repositories.apps_destination_repo", good),
                Ok(good)
            );
        }
        for bad in [
            "",
            "http://github.com/acme/apps",
            "file:///etc/passwd",
            "-uhttps://x",
            "https://",
            "https://github.com/acme/apps\nnamespace: kube-system",
            "https://github.com/acme/apps namespace",
            "https://github.com/acme/'apps'",
            "https://github.com/acme/apps#x",
            "git@:apps",
            "github.com:acme/apps",
            "ssh://-oProxyCommand=touch%20x/apps",
            "https://-x.example/a",
            "git@-x.example:acme/apps",
        ] {
            let message =
                check_repository_url("repositories.apps_destination_repo", bad).unwrap_err();
            assert!(
                message.contains("is not a git repository URL"),
                "{bad:?}: {message}"
            );
        }
    }

    #[test]
    fn a_repository_url_with_credentials_fails_without_showing_them() {
        for with_credentials in [
            "https://x-access-token:ghp_abcdefSECRET@github.com/acme/apps",
            "https://oauth2:glpat-abcSECRET@gitlab.com/acme/apps.git",
            "https://ghp_abcdefSECRET@github.com/acme/apps",
            "ssh://git:SECRETpw@github.com/acme/apps.git",
            "ghp_abcdefSECRET@github.com:acme/apps.git",
            // Percent-encoded, or a token without a prefix (GitHub's
            // classic 40 hex digits, an Azure DevOps token).
            "https://ghp%5FabcdefSECRET@github.com/acme/apps",
            "https://0123456789abcdefSECRET0123456789abcdef@github.com/acme/apps",
        ] {
            let message =
                check_repository_url("repositories.apps_destination_repo", with_credentials)
                    .unwrap_err();
            assert!(
                message.starts_with("repositories.apps_destination_repo holds credentials"),
                "{message}"
            );
            assert!(!message.contains("SECRET"), "{message}");
        }
        // A user's name is no credential (Bitbucket's clone URLs carry one).
        let named = "https://bobby@bitbucket.org/acme/apps.git";
        assert_eq!(check_repository_url("r", named), Ok(named));
        // A URL that fails for another reason shows none of its userinfo.
        let message = check_repository_url(
            "repositories.apps_destination_repo",
            "https://x-access-token:tok@github.com:no-port/acme/apps",
        )
        .unwrap_err();
        assert!(!message.contains("tok@"), "{message}");
        assert!(
            message.contains("'https://***@github.com:no-port/acme/apps'"),
            "{message}"
        );
        // Nor when the credentials were typed without a scheme or with a
        // mistyped one.
        for mistyped in [
            "x-access-token:ghp_abcdefSECRET@github.com/acme/apps",
            "https:/x-access-token:ghp_abcdefSECRET@github.com/acme/apps",
            "https//oauth2:SECRET@gitlab.com/acme/apps",
        ] {
            let message = check_repository_url("r", mistyped).unwrap_err();
            assert!(!message.contains("SECRET"), "{message}");
            assert!(message.contains("'***@g"), "{message}");
        }
        // An Azure DevOps URL names its organisation as the user, however
        // long; an email typed as a user is no token either.
        for named in [
            "https://acme@dev.azure.com/acme/shop/_git/apps",
            "https://contoso-platform-engineering-emea@dev.azure.com/contoso-platform-engineering-emea/shop/_git/apps",
            "https://jane.doe%40acme-corporation.example@bitbucket.acme.example/scm/shop/apps.git",
        ] {
            assert_eq!(check_repository_url("r", named), Ok(named));
        }
    }

    #[test]
    fn userinfo_is_hidden_and_emails_and_arns_are_left_alone() {
        assert_eq!(
            without_userinfo("https://u:p@h.example/a@b"),
            "https://***@h.example/a@b"
        );
        assert_eq!(without_userinfo("tok@github.com:a/b"), "***@github.com:a/b");
        for untouched in [
            "sa@project.iam.gserviceaccount.com",
            "arn:aws:iam::1:role/a+b=c@d",
            "https://h.example/a@b",
        ] {
            assert_eq!(without_userinfo(untouched), untouched);
        }
    }

    #[test]
    fn identifiers_hold_no_whitespace_quotes_or_flags() {
        for good in [
            "Z0123456789ABCDEFGHIJ",
            "arn:aws:acm:eu-west-1:123456789012:certificate/0d3b-4c2a",
            "/subscriptions/1/resourceGroups/rg/providers/Microsoft.Network/dnszones/shop.example",
            "https://ABC.gr7.eu-west-1.eks.amazonaws.com",
            "34.78.1.2",
            "arn:aws:iam::1:role/a+b=c@d",
        ] {
            assert_eq!(check_identifier("dns.zone_id", good), Ok(good));
        }
        for bad in [
            "",
            "-Z01",
            "Z01\nnamespace: x",
            "Z01 # c",
            "Z01\"",
            "{a: b}",
            "[x]",
            "a,b",
        ] {
            let message = check_identifier("dns.zone_id", bad).unwrap_err();
            assert!(
                message.contains("is not an identifier"),
                "{bad:?}: {message}"
            );
        }
    }
}
