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
//! The [`SECRET_SETTINGS`] are never read as settings: they go only to the
//! step that needs them.

use serde_json::{Map, Value};

/// A non-empty string at the JSON pointer `nested` (e.g. `/dns/domain_name`),
/// else under the first of the flat keys that holds one.
pub fn text(snapshot: &Map<String, Value>, nested: &str, flat: &[&str]) -> Option<String> {
    let object = Value::Object(snapshot.clone());
    let from_nested = (!nested.is_empty())
        .then(|| object.pointer(nested))
        .flatten()
        .and_then(Value::as_str);
    from_nested
        .into_iter()
        .chain(
            flat.iter()
                .filter_map(|key| snapshot.get(*key).and_then(Value::as_str)),
        )
        .map(str::trim)
        .find(|value| !value.is_empty())
        .map(String::from)
}

/// A JSON `true` at `nested` or under a flat key (only a real bool counts).
pub fn flag(snapshot: &Map<String, Value>, nested: &str, flat: &[&str]) -> bool {
    let object = Value::Object(snapshot.clone());
    object
        .pointer(nested)
        .into_iter()
        .chain(flat.iter().filter_map(|key| snapshot.get(*key)))
        .find_map(Value::as_bool)
        .unwrap_or(false)
}

/// The vine's region: `region`, or `aws_region` before the multi-cloud
/// migration.
pub fn region(snapshot: &Map<String, Value>) -> Option<String> {
    text(snapshot, "", &["region", "aws_region"])
}

/// The vine's DNS domain (`dns.domain_name`; flat `dns_main_domain` or
/// `domain_name` in older snapshots).
pub fn domain_name(snapshot: &Map<String, Value>) -> Option<String> {
    text(
        snapshot,
        "/dns/domain_name",
        &["dns_main_domain", "domain_name"],
    )
}

/// The GitOps repository the vine's applications live in
/// (`repositories.apps_destination_repo`, or an older flat key).
pub fn apps_repository(snapshot: &Map<String, Value>) -> Option<String> {
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

/// The snapshot's value of the setting `name`: its flat key, else a nested
/// key whose lifted name it is (`dns.main_domain` is `dns_main_domain`).
/// Secrets are never settings.
fn lookup<'a>(snapshot: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if SECRET_SETTINGS.contains(&name) {
        return None;
    }
    if let Some(flat) = snapshot.get(name) {
        return Some(flat);
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
            .map(|(_, value)| value)
    })
}

/// A string setting of the snapshot, flat or lifted from a nested object.
pub fn setting(snapshot: &Map<String, Value>, names: &[&str]) -> Option<String> {
    names.iter().find_map(|name| {
        lookup(snapshot, name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from)
    })
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
        assert_eq!(domain_name(web).as_deref(), Some("shop.example"));
        assert_eq!(
            apps_repository(web).as_deref(),
            Some("https://github.com/acme/apps")
        );
        assert!(flag(web, "/dns/enabled", &["enable_dns"]));
        let flat = json!({"dns_main_domain": "old.example", "aws_region": "us-east-1",
                          "gitops_repository_url": "https://git.example/x.git", "enable_dns": "yes"});
        let flat = flat.as_object().unwrap();
        assert_eq!(domain_name(flat).as_deref(), Some("old.example"));
        assert_eq!(region(flat).as_deref(), Some("us-east-1"));
        assert_eq!(
            apps_repository(flat).as_deref(),
            Some("https://git.example/x.git")
        );
        assert!(
            !flag(flat, "/dns/enabled", &["enable_dns"]),
            "only a JSON bool counts"
        );
        let empty = json!({"dns": {"domain_name": "  "}, "domain_name": ""});
        assert_eq!(domain_name(empty.as_object().unwrap()), None);
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
        let get = |names: &[&str]| setting(&snapshot, names);
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
        assert_eq!(get(&["enable_dns"]), None, "not a string");
        assert_eq!(get(&["git_access_token"]), None, "secrets are not settings");
    }
}
