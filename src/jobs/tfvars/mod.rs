//! The Terraform variables of a vine job, as the platform's vine templates
//! take them: the provider's mapping of the snapshot (the original worker's,
//! in `aws`, `gcp` and `azure`), then the rules every provider shares:
//!
//! - a mapped variable whose nested source (`network.cidr_block`, ...) is
//!   absent takes the snapshot's flat key of the variable's own name before
//!   its default (older snapshots were flat);
//! - a top-level snapshot key fills the declared variable of its name when
//!   the mapping does not set it (example and custom templates);
//! - only the variables the template declares are written, never null, and
//!   never the secrets of [`SECRET_SETTINGS`] at any depth (a saved plan
//!   records every variable value, and plans leave the worker).
//!
//! "Absent" is what the original decoded as a zero value: a missing key,
//! null, or an empty string.

mod aws;
mod azure;
mod declared;
mod gcp;
#[cfg(test)]
mod properties;

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{json, Map, Value};

use super::snapshot::SECRET_SETTINGS;
use super::stack_inputs::require_template;
use super::{snapshot, JobContext, JobError};
use crate::trellis::Provider;
pub use declared::declared_defaults;
use declared::declared_variables;

/// The `terraform.tfvars.json` of a vine job whose template is `template`.
pub async fn vine_tfvars(
    context: &JobContext,
    template: &Path,
) -> Result<Map<String, Value>, JobError> {
    require_template(template)?;
    let declared = declared_variables(template)?;
    let provider = context.provider();
    let snapshot = &context.job.config_snapshot;
    let account = context.cloud_account_id();
    let mut vars = mapping(provider, Fields(snapshot), &account);
    if *provider == Provider::Aws && aws::SUBNET_VARIABLES.iter().any(|n| declared.contains(*n)) {
        if let Some(vpc) = vars.get("vpc_id").and_then(Value::as_str) {
            let region = snapshot::region(snapshot).map_err(JobError::Invalid)?;
            let region = region.map(|region| region.value).unwrap_or_default();
            let subnets = aws::existing_vpc_subnets(context, &region, vpc).await?;
            vars.extend(subnets);
        }
    }
    let written = written(vars, snapshot, &declared);
    context.log.system(&format!(
        "terraform.tfvars.json: {} of the {} variables the {provider} template declares",
        written.len(),
        declared.len()
    ));
    Ok(written)
}

/// What the provider's mapping sets (nothing for a provider it does not know).
fn mapping(provider: &Provider, snapshot: Fields<'_>, account: &str) -> Map<String, Value> {
    let mut vars = Vars::new(snapshot);
    match provider {
        Provider::Aws => aws::map(&mut vars, account),
        Provider::Gcp => gcp::map(&mut vars, account),
        Provider::Azure => azure::map(&mut vars, account),
        Provider::Other(_) => {}
    }
    vars.set
}

/// The mapped variables with the top-level snapshot keys filling the rest,
/// cut down to what the template declares, without nulls and secrets.
fn written(
    mut vars: Map<String, Value>,
    snapshot: &Map<String, Value>,
    declared: &BTreeSet<String>,
) -> Map<String, Value> {
    for (key, value) in snapshot {
        if !vars.contains_key(key) && !value.is_null() {
            vars.insert(key.clone(), value.clone());
        }
    }
    vars.into_iter()
        .filter(|(name, value)| {
            declared.contains(name) && !value.is_null() && !SECRET_SETTINGS.contains(&name.as_str())
        })
        .map(|(name, value)| (name, without_secrets(value)))
        .collect()
}

fn without_secrets(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| !SECRET_SETTINGS.contains(&k.as_str()))
                .map(|(k, v)| (k, without_secrets(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_secrets).collect()),
        other => other,
    }
}

/// A JSON object (the snapshot, or one of its rows) read the way the
/// original worker decoded it: null and "" are absent.
#[derive(Clone, Copy)]
struct Fields<'a>(&'a Map<String, Value>);

impl<'a> Fields<'a> {
    /// The value at `pointer` (`/network/cidr_block`, `/databases/0/port`).
    fn at(self, pointer: &str) -> Option<&'a Value> {
        let path = pointer.strip_prefix('/')?;
        let (key, rest) = path.split_once('/').unwrap_or((path, ""));
        let value = self.0.get(key)?;
        let value = if rest.is_empty() {
            value
        } else {
            value.pointer(&format!("/{rest}"))?
        };
        match value {
            Value::Null => None,
            Value::String(text) if text.is_empty() => None,
            _ => Some(value),
        }
    }

    /// The value of a top-level key.
    fn get(self, key: &str) -> Option<&'a Value> {
        self.at(&format!("/{key}"))
    }

    fn text(self, key: &str) -> Option<&'a str> {
        self.get(key).and_then(Value::as_str)
    }

    /// A value that is on only when it is a JSON `true`.
    fn on(self, key: &str) -> bool {
        self.get(key) == Some(&Value::Bool(true))
    }

    /// The value of `key`, or `default`.
    fn or(self, key: &str, default: Value) -> Value {
        self.get(key).cloned().unwrap_or(default)
    }

    /// The objects of the list `key` (none when it is not a list).
    fn rows(self, key: &str) -> impl Iterator<Item = Fields<'a>> {
        self.get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .map(Fields)
    }

    /// The first row of the list `key` (the only database and cache read).
    fn first(self, key: &str) -> Option<Fields<'a>> {
        self.rows(key).next()
    }

    fn has_rows(self, key: &str) -> bool {
        self.get(key)
            .and_then(Value::as_array)
            .is_some_and(|items| !items.is_empty())
    }
}

/// A number as Terraform and the clouds' duration strings want it: `30`, not `30.0`.
/// Anything else is its JSON text, without the secret settings (it goes
/// into a variable's value).
fn number_text(value: &Value) -> String {
    match value {
        Value::Number(number) => match (number.as_i64(), number.as_f64()) {
            (Some(whole), _) => whole.to_string(),
            (None, Some(real)) if real.fract() == 0.0 => format!("{real:.0}"),
            _ => number.to_string(),
        },
        Value::String(text) => text.clone(),
        other => without_secrets(other.clone()).to_string(),
    }
}

fn positive(value: Option<&Value>) -> bool {
    value.and_then(Value::as_f64).is_some_and(|n| n > 0.0)
}

/// Whether a database engine is MySQL (else it is PostgreSQL).
fn is_mysql(engine: &str) -> bool {
    matches!(engine, "mysql" | "aurora-mysql")
}

/// The variables a mapping has set so far, and the snapshot it reads.
struct Vars<'a> {
    snapshot: Fields<'a>,
    set: Map<String, Value>,
}

/// A provider's names for the network settings.
struct NetworkNames {
    provision: &'static str,
    cidr: &'static str,
    single_nat: &'static str,
    existing: &'static str,
}

/// A provider's names for the node group settings.
struct NodeNames {
    instance_types: &'static str,
    min: &'static str,
    max: &'static str,
    desired: &'static str,
}

impl<'a> Vars<'a> {
    fn new(snapshot: Fields<'a>) -> Self {
        Vars {
            snapshot,
            set: Map::new(),
        }
    }

    /// Sets `name` (null is never set).
    fn set(&mut self, name: &str, value: Value) {
        if !value.is_null() {
            self.set.insert(name.to_string(), value);
        }
    }

    /// The value at `pointer`, or, when that is a nested key and absent,
    /// the flat snapshot key `name`.
    fn source(&self, name: &str, pointer: &str) -> Option<&'a Value> {
        let nested = pointer.matches('/').count() > 1;
        self.snapshot
            .at(pointer)
            .or_else(|| nested.then(|| self.snapshot.get(name)).flatten())
    }

    /// `name` from `pointer` (or its flat key), else `default`.
    fn from(&mut self, name: &str, pointer: &str, default: Value) {
        let value = self.source(name, pointer).cloned().unwrap_or(default);
        self.set(name, value);
    }

    /// A switch from `pointer` (or its flat key): only a JSON `true` is on.
    fn switch(&mut self, name: &str, pointer: &str) {
        let on = self.source(name, pointer) == Some(&Value::Bool(true));
        self.set(name, json!(on));
    }

    /// `name` from `pointer` when it is there; else the template's default.
    fn when_present(&mut self, name: &str, pointer: &str) {
        if let Some(value) = self.snapshot.at(pointer) {
            self.set(name, value.clone());
        }
    }

    /// The project, stage and region variables every provider takes.
    fn project(&mut self, region: &str) {
        self.set("project_name", self.snapshot.or("project_name", json!("")));
        self.set(
            "environment",
            self.snapshot.or("environment_stage", json!("")),
        );
        // A region that is no string was refused before, with the state key.
        let name = snapshot::region(self.snapshot.0).ok().flatten();
        self.set(
            region,
            json!(name.map(|name| name.value).unwrap_or_default()),
        );
    }

    /// Network: provision one unless an existing one is named and
    /// `provision_network` is false; then the existing one's id.
    fn network(&mut self, names: NetworkNames) {
        let existing = self.snapshot.at("/network/network_id").cloned();
        let provision =
            self.source(names.provision, "/network/provision_network") == Some(&Value::Bool(true));
        self.set(names.provision, json!(existing.is_none() || provision));
        self.from(names.cidr, "/network/cidr_block", json!("10.0.0.0/16"));
        self.from(
            names.single_nat,
            "/network/single_nat_gateway",
            json!(false),
        );
        if let (Some(id), false) = (existing, provision) {
            self.set(names.existing, id);
        }
    }

    /// Node group: instance types when the list is non-empty, sizes when > 0.
    fn nodes(&mut self, names: NodeNames) {
        let types = self.snapshot.at("/cluster/instance_types");
        if types
            .and_then(Value::as_array)
            .is_some_and(|list| !list.is_empty())
        {
            self.set(names.instance_types, types.cloned().unwrap_or_default());
        }
        for (name, key) in [
            (names.min, "node_min_size"),
            (names.max, "node_max_size"),
            (names.desired, "node_desired_size"),
        ] {
            let size = self.snapshot.at(&format!("/cluster/{key}"));
            if positive(size) {
                self.set(name, size.cloned().unwrap_or_default());
            }
        }
    }

    /// Whether the vine has queues or topics.
    fn has_messaging(&self) -> bool {
        self.snapshot.has_rows("queues") || self.snapshot.has_rows("topics")
    }

    /// `custom_secrets` as GCP and Azure take it: every field of every row.
    fn custom_secrets_as_rows(&mut self) {
        let secrets: Vec<Value> = self
            .snapshot
            .rows("secrets")
            .map(|secret| {
                json!({
                    "name": secret.or("name", json!("")),
                    "generate": secret.on("generate"),
                    "length": secret.or("length", json!(0)),
                    "special_chars": secret.on("special_chars"),
                })
            })
            .collect();
        self.set("custom_secrets", json!(secrets));
    }
}

/// Fills, in every entry of a map of objects, the keys some other entry
/// has with the service's own default: a `map(any)` variable needs all
/// its entries of one type.
fn uniform(entries: &mut Map<String, Value>, defaults: &[(&str, Value)]) {
    for (key, default) in defaults {
        let somewhere = entries.values().any(|entry| entry.get(*key).is_some());
        if !somewhere {
            continue;
        }
        for entry in entries.values_mut().filter_map(Value::as_object_mut) {
            entry
                .entry(key.to_string())
                .or_insert_with(|| default.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    /// The provider's mapping of a snapshot.
    pub(super) fn mapped(provider: &str, snapshot: &Value, account: &str) -> Map<String, Value> {
        mapping(
            &Provider::named(provider),
            Fields(&map(snapshot.clone())),
            account,
        )
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn only_declared_variables_are_written_and_top_level_keys_fill_the_rest() {
        let snapshot = map(json!({
            "project_name": "shop",
            "environment_stage": "dev",
            "region": "eu-west-1",
            "environment": "from-the-snapshot",
            "databases": [{"name": "orders"}],
            "apply_command": "true",
            "terraform_version": "1.10.3",
            "status": "ACTIVE",
            "left_out": null
        }));
        let vars = mapping(&Provider::Aws, Fields(&snapshot), "1234");
        let declared = names(&[
            "project_name",
            "environment",
            "environment_stage",
            "databases",
            "apply_command",
            "rds_config",
            "left_out",
            "not_in_the_snapshot",
        ]);
        let written = written(vars, &snapshot, &declared);
        assert_eq!(
            Value::Object(written),
            json!({
                "project_name": "shop",
                "environment": "dev",
                "environment_stage": "dev",
                "databases": [{"name": "orders"}],
                "apply_command": "true",
                "rds_config": {"engine": "aurora-postgresql", "engine_version": "16.6", "db_port": 5432,
                               "db_name": "orders", "cluster_family": "aurora-postgresql16"},
            }),
            "the mapping wins over a top-level key of the same name; undeclared, null and \
             unknown names are not written"
        );
    }

    #[test]
    fn secrets_are_never_written_at_any_depth_whatever_the_template_declares() {
        let snapshot = map(json!({
            "project_name": "shop",
            "git_access_token": "ghp_secret",
            "worker_token": "tok-secret",
            "repositories": {"apps_destination_repo": "https://git.example/apps.git",
                             "git_access_token": "ghp_secret"},
            "databases": [{"name": "orders", "worker_token": "tok-secret"}]
        }));
        let declared = names(&[
            "git_access_token",
            "worker_token",
            "repositories",
            "databases",
        ]);
        let written = written(
            mapping(&Provider::Aws, Fields(&snapshot), ""),
            &snapshot,
            &declared,
        );
        let text = Value::Object(written.clone()).to_string();
        assert!(
            !text.contains("secret") && !text.contains("_token"),
            "{text}"
        );
        assert_eq!(
            written["repositories"],
            json!({"apps_destination_repo": "https://git.example/apps.git"})
        );
        assert_eq!(written["databases"], json!([{"name": "orders"}]));
    }

    #[test]
    fn null_is_never_written() {
        let snapshot = map(json!({"project_name": null, "region": null, "cluster_name": null}));
        let declared = names(&["project_name", "region", "cluster_name", "aws_account_id"]);
        let written = written(
            mapping(&Provider::Aws, Fields(&snapshot), ""),
            &snapshot,
            &declared,
        );
        assert_eq!(
            Value::Object(written),
            json!({"project_name": "", "region": "", "aws_account_id": ""})
        );
    }

    #[test]
    fn a_provider_without_a_mapping_gets_only_its_top_level_keys() {
        let snapshot = map(json!({"project_name": "shop", "region": "x1"}));
        let vars = mapping(&Provider::named("oci"), Fields(&snapshot), "");
        assert!(vars.is_empty());
        let written = written(vars, &snapshot, &names(&["project_name", "environment"]));
        assert_eq!(Value::Object(written), json!({"project_name": "shop"}));
    }

    #[test]
    fn numbers_print_without_a_fraction_when_whole() {
        assert_eq!(number_text(&json!(30)), "30");
        assert_eq!(number_text(&json!(30.0)), "30");
        assert_eq!(number_text(&json!(1.5)), "1.5");
        assert_eq!(number_text(&json!("45")), "45");
    }

    #[test]
    fn a_value_made_text_holds_no_secret_setting() {
        // Found by the tfvars corpus (tests/corpus/tfvars): an object where
        // a queue's timeout belongs went, as text, into Azure's lock
        // duration, a secret setting inside it and all.
        let timeout = json!({"worker_token": "tok-secret", "seconds": 60});
        assert_eq!(number_text(&timeout), r#"{"seconds":60}"#);
        let snapshot = map(json!({"queues": [{"name": "q", "visibility_timeout": timeout}]}));
        let vars = mapping(&Provider::Azure, Fields(&snapshot), "");
        assert_eq!(
            vars["service_bus_queues"]["q"]["lock_duration"],
            r#"PT{"seconds":60}S"#
        );
    }

    #[test]
    fn uniform_fills_only_keys_some_entry_has() {
        let mut entries = map(json!({
            "a": {"fifo": true, "delay": 5},
            "b": {"fifo": false}
        }));
        uniform(
            &mut entries,
            &[("delay", json!(0)), ("retention", json!(99))],
        );
        assert_eq!(
            Value::Object(entries),
            json!({"a": {"fifo": true, "delay": 5}, "b": {"fifo": false, "delay": 0}})
        );
    }
}
