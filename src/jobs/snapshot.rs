//! Reading a job's `config_snapshot`. Trellis sends the vines row at the
//! top level and the vine's settings in nested objects (`dns.domain_name`,
//! `repositories.apps_destination_repo`, ...); older jobs and hand-written
//! files carry flat keys instead. Every lookup names the nested path first
//! and the flat names that stood for it, and takes the first that is set.

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
