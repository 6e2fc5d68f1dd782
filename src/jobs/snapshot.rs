//! Reading a job's `config_snapshot`. Trellis sends the vines row at the
//! top level and the vine's settings in nested objects (`dns.domain_name`,
//! `repositories.apps_destination_repo`, ...); older jobs and hand-written
//! files carry flat keys instead. Two lookups serve every job:
//!
//! - [`text`] and [`flag`] name the nested path first and the flat names that
//!   stood for it, and take the first that is set;
//! - [`setting`] reads a setting by its flat name, else by the lifted name of
//!   a nested key (`dns.main_domain` is `dns_main_domain`): the names the
//!   Terraform templates and the state key use.
//!
//! A text value that is set but is no string (`dns.domain_name: 7`) is an
//! error naming the key it was found under and what it is, never taken for
//! an absent one. The [`SECRET_SETTINGS`] are never read as settings: they
//! go only to the step that needs them.

use serde_json::{Map, Value};

/// A text value of the snapshot, and the key it was found under
/// (`dns.domain_name`, or a flat key such as `dns_main_domain`), for a
/// message about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    pub field: String,
    pub value: String,
}

/// The value at the JSON pointer `nested` (`/dns/domain_name`), read in
/// place.
fn at<'a>(snapshot: &'a Map<String, Value>, nested: &str) -> Option<&'a Value> {
    let mut keys = nested.strip_prefix('/')?.split('/');
    let first = snapshot.get(keys.next()?)?;
    keys.try_fold(first, |value, key| value.get(key))
}

/// A value set under `field` as text: `None` when it is null or blank, an
/// error naming the field when it is no string.
fn as_text(field: &str, value: &Value) -> Result<Option<Text>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) if text.trim().is_empty() => Ok(None),
        Value::String(text) => Ok(Some(Text {
            field: field.to_string(),
            value: text.trim().to_string(),
        })),
        other => Err(format!(
            "`{field}` is {}; it must be a string",
            crate::trellis::model::kind_of(other)
        )),
    }
}

/// The text at the JSON pointer `nested` (e.g. `/dns/domain_name`), else
/// under the first of the flat keys that holds one; a value there that is
/// no string is an error naming where it was found.
pub fn text(
    snapshot: &Map<String, Value>,
    nested: &str,
    flat: &[&str],
) -> Result<Option<Text>, String> {
    let from_nested = (!nested.is_empty())
        .then(|| at(snapshot, nested))
        .flatten()
        .map(|value| (nested.trim_start_matches('/').replace('/', "."), value));
    let from_flat = flat
        .iter()
        .filter_map(|key| Some((key.to_string(), snapshot.get(*key)?)));
    for (field, value) in from_nested.into_iter().chain(from_flat) {
        if let Some(text) = as_text(&field, value)? {
            return Ok(Some(text));
        }
    }
    Ok(None)
}

/// A JSON `true` at `nested` or under a flat key (only a real bool counts).
pub fn flag(snapshot: &Map<String, Value>, nested: &str, flat: &[&str]) -> bool {
    at(snapshot, nested)
        .into_iter()
        .chain(flat.iter().filter_map(|key| snapshot.get(*key)))
        .find_map(Value::as_bool)
        .unwrap_or(false)
}

/// The vine's region: `region`, or `aws_region` before the multi-cloud
/// migration.
pub fn region(snapshot: &Map<String, Value>) -> Result<Option<Text>, String> {
    text(snapshot, "", &["region", "aws_region"])
}

/// The vine's DNS domain (`dns.domain_name`; flat `dns_main_domain` or
/// `domain_name` in older snapshots).
pub fn domain_name(snapshot: &Map<String, Value>) -> Result<Option<Text>, String> {
    text(
        snapshot,
        "/dns/domain_name",
        &["dns_main_domain", "domain_name"],
    )
}

/// The GitOps repository the vine's applications live in
/// (`repositories.apps_destination_repo`, or an older flat key).
pub fn apps_repository(snapshot: &Map<String, Value>) -> Result<Option<Text>, String> {
    text(
        snapshot,
        "/repositories/apps_destination_repo",
        &[
            "apps_destination_repo",
            "gitops_repository_url",
            "git_repository_url",
            "repository_url",
        ],
    )
}

/// Settings that are secrets: they go only to the step that needs them.
pub const SECRET_SETTINGS: [&str; 2] = ["git_access_token", "worker_token"];

/// The flat name of a key of a nested settings object.
fn lifted_name(object: &str, key: &str) -> String {
    match (object, key) {
        ("dns", "enabled") => "enable_dns".into(),
        ("cluster" | "dns", _) if key.starts_with(&format!("{object}_")) => key.into(),
        ("cluster" | "dns", _) => format!("{object}_{key}"),
        _ => key.into(),
    }
}

/// The nested objects whose keys a setting may be found under, by their
/// lifted names; a later object wins over an earlier one.
const NESTED_OBJECTS: [&str; 3] = ["network", "cluster", "dns"];

/// The snapshot's value of the setting `name` and the key it is under: its
/// flat key, else a nested key whose lifted name it is (`dns.main_domain`
/// is `dns_main_domain`). Secrets are never settings.
fn lookup<'a>(snapshot: &'a Map<String, Value>, name: &str) -> Option<(String, &'a Value)> {
    if SECRET_SETTINGS.contains(&name) {
        return None;
    }
    if let Some(flat) = snapshot.get(name) {
        return Some((name.to_string(), flat));
    }
    NESTED_OBJECTS.iter().rev().find_map(|object| {
        let Some(Value::Object(inner)) = snapshot.get(*object) else {
            return None;
        };
        inner
            .iter()
            .rev()
            .find(|(key, _)| {
                !SECRET_SETTINGS.contains(&key.as_str()) && lifted_name(object, key) == name
            })
            .map(|(key, value)| (format!("{object}.{key}"), value))
    })
}

/// A text setting of the snapshot, flat or lifted from a nested object: the
/// first of `names` set; one set to something that is no string is an
/// error naming the key it is under.
pub fn setting(snapshot: &Map<String, Value>, names: &[&str]) -> Result<Option<String>, String> {
    for name in names {
        if let Some((field, value)) = lookup(snapshot, name) {
            if let Some(text) = as_text(&field, value)? {
                return Ok(Some(text.value));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn nested_settings_come_first_then_flat_ones() {
        let web = json!({"dns": {"domain_name": "shop.example", "enabled": true},
                         "repositories": {"apps_destination_repo": "https://github.com/acme/apps"},
                         "region": "eu-west-1"});
        let web = web.as_object().unwrap();
        let value = |text: Result<Option<Text>, String>| text.unwrap().map(|text| text.value);
        assert_eq!(value(domain_name(web)).as_deref(), Some("shop.example"));
        assert_eq!(
            value(apps_repository(web)).as_deref(),
            Some("https://github.com/acme/apps")
        );
        assert!(flag(web, "/dns/enabled", &["enable_dns"]));
        let flat = json!({"dns_main_domain": "old.example", "aws_region": "us-east-1",
                          "gitops_repository_url": "https://git.example/x.git", "enable_dns": "yes"});
        let flat = flat.as_object().unwrap();
        assert_eq!(
            domain_name(flat).unwrap(),
            Some(Text {
                field: "dns_main_domain".into(),
                value: "old.example".into()
            })
        );
        assert_eq!(value(region(flat)).as_deref(), Some("us-east-1"));
        assert_eq!(
            value(apps_repository(flat)).as_deref(),
            Some("https://git.example/x.git")
        );
        assert!(
            !flag(flat, "/dns/enabled", &["enable_dns"]),
            "only a JSON bool counts"
        );
        let empty = json!({"dns": {"domain_name": "  "}, "domain_name": ""});
        assert_eq!(domain_name(empty.as_object().unwrap()), Ok(None));
    }

    #[test]
    fn a_value_of_the_wrong_kind_is_an_error_naming_where_it_was_found() {
        let nested = map(json!({"dns": {"domain_name": 7}, "region": "eu-west-1"}));
        assert_eq!(
            domain_name(&nested),
            Err("`dns.domain_name` is a number; it must be a string".into())
        );
        let flat = map(json!({"domain_name": ["shop.example"], "region": 42}));
        assert_eq!(
            domain_name(&flat),
            Err("`domain_name` is an array; it must be a string".into())
        );
        assert_eq!(
            region(&flat),
            Err("`region` is a number; it must be a string".into())
        );
        assert_eq!(
            setting(&flat, &["region", "aws_region"]),
            Err("`region` is a number; it must be a string".into())
        );
        let lifted = map(json!({"dns": {"main_domain": true}}));
        assert_eq!(
            setting(&lifted, &["dns_main_domain"]),
            Err("`dns.main_domain` is a boolean; it must be a string".into())
        );
        // Null is unset, as Trellis sends an empty column.
        let unset = map(json!({"dns": {"domain_name": null}, "domain_name": "old.example"}));
        assert_eq!(
            domain_name(&unset)
                .unwrap()
                .map(|text| text.field)
                .as_deref(),
            Some("domain_name")
        );
    }

    #[test]
    fn settings_are_flat_or_lifted_and_flat_keys_win() {
        let snapshot = map(json!({
            "project_name": "shop",
            "region": "",
            "aws_region": "eu-west-1",
            "network": {"vpc_cidr": "10.0.0.0/16"},
            "cluster": {"version": "1.31", "cluster_name": "shop-eks"},
            "dns": {"enabled": true, "main_domain": "shop.example", "dns_hosted_zone": "Z1"},
            "dns_hosted_zone": "Z9",
            "git_access_token": "ghp_secret",
            "repositories": {"git_access_token": "ghp_secret"}
        }));
        let get = |names: &[&str]| setting(&snapshot, names).unwrap();
        assert_eq!(get(&["project_name"]).as_deref(), Some("shop"));
        assert_eq!(get(&["region", "aws_region"]).as_deref(), Some("eu-west-1"));
        assert_eq!(get(&["vpc_cidr"]).as_deref(), Some("10.0.0.0/16"));
        assert_eq!(get(&["cluster_version"]).as_deref(), Some("1.31"));
        assert_eq!(get(&["cluster_name"]).as_deref(), Some("shop-eks"));
        assert_eq!(get(&["dns_main_domain"]).as_deref(), Some("shop.example"));
        assert_eq!(
            get(&["dns_hosted_zone"]).as_deref(),
            Some("Z9"),
            "the flat key wins"
        );
        assert_eq!(
            setting(&snapshot, &["enable_dns"]),
            Err("`dns.enabled` is a boolean; it must be a string".into())
        );
        assert_eq!(get(&["git_access_token"]), None, "secrets are not settings");
    }
}
