//! Fuzzing on stable Rust, of the tfvars mapping: property tests that feed
//! it snapshots of any shape (objects where lists are expected, strings
//! where numbers are, nulls, secrets at any depth) for each provider, and
//! replay the snapshots of `tests/corpus/tfvars/` (the rest of the fuzzing
//! is in `tests/properties.rs`). What is checked is the module's rules:
//! only declared variables are written, never null, never a secret setting
//! at any depth, each as the mapping or the snapshot's top-level key has it.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::{mapping, without_secrets, written, Fields};
use crate::jobs::snapshot::SECRET_SETTINGS;
use crate::trellis::Provider;

/// The snapshot's top-level keys the mappings read, with the flat keys of
/// older snapshots, so that generated snapshots hit them.
const TOP_KEYS: &[&str] = &[
    "project_name",
    "environment_stage",
    "environment",
    "region",
    "aws_region",
    "provider",
    "network",
    "cluster",
    "dns",
    "repositories",
    "databases",
    "caches",
    "queues",
    "topics",
    "nosql_tables",
    "secrets",
    "storage_buckets",
    "container_registries",
    "vpc_cidr",
    "vpc_single_nat_gateway",
    "eks_cluster_version",
    "enable_karpenter",
    "eks_cluster_admins",
    "dns_main_domain",
    "dns_hosted_zone",
    "redis_instance_type",
    "network_cidr",
    "git_access_token",
    "worker_token",
];

/// The keys the mappings read inside the snapshot's objects and rows.
const NESTED_KEYS: &[&str] = &[
    "network_id",
    "provision_network",
    "cidr_block",
    "single_nat_gateway",
    "cluster_version",
    "instance_types",
    "node_min_size",
    "node_max_size",
    "node_desired_size",
    "cluster_admins",
    "username",
    "path",
    "provider_config",
    "enable_karpenter",
    "enable_autopilot",
    "enabled",
    "zone_id",
    "domain_name",
    "acm_certificate",
    "cloudfront_waf",
    "application_waf",
    "managed_certificate",
    "cloud_armor",
    "azure_waf",
    "apps_destination_repo",
    "name",
    "engine",
    "engine_version",
    "port",
    "min_capacity",
    "max_capacity",
    "backup_retention_days",
    "iam_auth",
    "num_cache_nodes",
    "node_type",
    "multi_az",
    "fifo",
    "visibility_timeout",
    "message_retention",
    "delay_seconds",
    "subscriptions",
    "protocol",
    "endpoint",
    "table_type",
    "hash_key",
    "billing_mode",
    "point_in_time_recovery",
    "generate",
    "length",
    "special_chars",
    "versioning",
    "public_access",
    "cors_origins",
    "encryption",
    "git_access_token",
    "worker_token",
];

/// What a secret setting holds in generated snapshots: it must never be
/// written, wherever it is.
const SECRET_VALUE: &str = "tok-never-in-tfvars";

const PROVIDERS: &[&str] = &["aws", "gcp", "azure", "oci", ""];

/// A key: one the mappings read, a secret setting, or any at all.
fn key(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(keys).prop_map(String::from),
        1 => prop::sample::select(&SECRET_SETTINGS[..]).prop_map(String::from),
        1 => prop::collection::vec(any::<char>(), 0..8).prop_map(String::from_iter),
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        prop_oneof![-3..8i64, any::<i64>()].prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON has no NaN or infinity", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        prop_oneof![
            Just(String::new()),
            prop::sample::select(
                &[
                    "standard",
                    "global",
                    "mysql",
                    "aurora-mysql",
                    "5.7",
                    "16.6",
                    "POSTGRES_15"
                ][..]
            )
            .prop_map(String::from),
            prop::collection::vec(any::<char>(), 0..12).prop_map(String::from_iter),
        ]
        .prop_map(Value::from),
    ]
}

/// Any JSON value, its object keys mostly the ones the mappings read.
fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            object(inner),
        ]
    })
}

fn object(values: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
    prop::collection::vec((key(NESTED_KEYS), values), 0..6)
        .prop_map(|pairs| Value::Object(pairs.into_iter().collect()))
}

/// A top-level value: any, an object of the keys the mappings read, or a
/// list of rows of them (what the list keys hold).
fn top_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        2 => value(),
        1 => object(value()),
        2 => prop::collection::vec(object(value()), 0..4).prop_map(Value::Array),
    ]
}

/// A snapshot of any shape, every string a secret setting holds (at any
/// depth) made [`SECRET_VALUE`].
fn snapshot() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((key(TOP_KEYS), top_value()), 0..14).prop_map(|pairs| {
        let mut snapshot = Value::Object(pairs.into_iter().collect());
        plant_secret(&mut snapshot);
        match snapshot {
            Value::Object(map) => map,
            _ => unreachable!("built as an object"),
        }
    })
}

fn plant_secret(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if SECRET_SETTINGS.contains(&key.as_str()) && value.is_string() {
                    *value = Value::from(SECRET_VALUE);
                }
                plant_secret(value);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(plant_secret),
        _ => {}
    }
}

/// The same value with every null made `""` (the other way to be absent).
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Null => Value::from(""),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| (key.clone(), without_nulls(value)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// What a template declares: some of the names the mapping sets, the
/// snapshot's keys, the secret settings and a name nothing sets, chosen by
/// `choice` (all of them when it is empty).
fn declared(
    vars: &Map<String, Value>,
    snapshot: &Map<String, Value>,
    choice: &[bool],
) -> BTreeSet<String> {
    let names: BTreeSet<&str> = vars
        .keys()
        .chain(snapshot.keys())
        .map(String::as_str)
        .chain(SECRET_SETTINGS)
        .chain(["set_by_nothing"])
        .collect();
    names
        .into_iter()
        .enumerate()
        .filter(|(i, _)| choice.is_empty() || choice[i % choice.len()])
        .map(|(_, name)| name.to_string())
        .collect()
}

fn has_null(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.iter().any(has_null),
        Value::Object(map) => map.values().any(has_null),
        _ => false,
    }
}

fn has_secret_setting(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.iter().any(has_secret_setting),
        Value::Object(map) => map.iter().any(|(key, value)| {
            SECRET_SETTINGS.contains(&key.as_str()) || has_secret_setting(value)
        }),
        _ => false,
    }
}

/// Maps `snapshot` for `provider` and checks the rules of what is written;
/// returns what is.
fn check(
    provider: &str,
    snapshot: &Map<String, Value>,
    account: &str,
    choice: &[bool],
) -> Result<Map<String, Value>, TestCaseError> {
    let vars = mapping(&Provider::named(provider), Fields(snapshot), account);
    let declared = declared(&vars, snapshot, choice);
    let out = written(vars.clone(), snapshot, &declared);
    for (name, value) in &out {
        prop_assert!(declared.contains(name), "{name} is not declared");
        prop_assert!(!value.is_null(), "{name} is null");
    }
    let text = Value::Object(out.clone()).to_string();
    prop_assert!(
        !has_secret_setting(&Value::Object(out.clone())),
        "a secret setting in {text}"
    );
    prop_assert!(!text.contains(SECRET_VALUE), "a secret's value in {text}");
    for name in &declared {
        let secret = SECRET_SETTINGS.contains(&name.as_str());
        let source = vars
            .get(name)
            .or_else(|| snapshot.get(name))
            .filter(|value| !value.is_null() && !secret);
        let expected = source.map(|value| without_secrets(value.clone()));
        prop_assert_eq!(
            out.get(name),
            expected.as_ref(),
            "{}: the mapping's, else the snapshot's",
            name
        );
    }
    Ok(out)
}

/// A property's bounded run (`PROPTEST_CASES` for a longer hunt).
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok());
    ProptestConfig::with_cases(cases.unwrap_or(256))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_snapshot_writes_only_declared_variables_never_null_nor_secret(
        provider in prop::sample::select(PROVIDERS),
        snapshot in snapshot(),
        account in prop::collection::vec(any::<char>(), 0..16).prop_map(String::from_iter),
        choice in prop_oneof![Just(Vec::new()), prop::collection::vec(any::<bool>(), 1..16)],
    ) {
        check(provider, &snapshot, &account, &choice)?;
    }

    #[test]
    fn a_snapshot_without_null_gives_no_null_at_any_depth(
        provider in prop::sample::select(PROVIDERS),
        snapshot in snapshot(),
    ) {
        let snapshot = match without_nulls(&Value::Object(snapshot)) {
            Value::Object(map) => map,
            _ => unreachable!("an object stays one"),
        };
        let out = check(provider, &snapshot, "123456789012", &[])?;
        let text = Value::Object(out.clone()).to_string();
        prop_assert!(!has_null(&Value::Object(out)), "a null of the mapping's own in {text}");
    }
}

/// The snapshots of `tests/corpus/tfvars/`, by file name, read once.
fn corpus() -> &'static [(String, Map<String, Value>)] {
    static CORPUS: OnceLock<Vec<(String, Map<String, Value>)>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/tfvars");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read the corpus {}: {e}", dir.display()))
            .map(|entry| entry.expect("corpus entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "the corpus {} is empty", dir.display());
        files
            .into_iter()
            .map(|file| {
                let name = file.file_name().unwrap().to_string_lossy().into_owned();
                let text = std::fs::read(&file).expect("read a corpus file");
                let snapshot = serde_json::from_slice(&text)
                    .unwrap_or_else(|e| panic!("{name}: not a JSON object: {e}"));
                (name, snapshot)
            })
            .collect()
    })
}

/// Every place in `value`, as JSON pointers (the root is "").
fn places(value: &Value, at: String, all: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let key = key.replace('~', "~0").replace('/', "~1");
                places(value, format!("{at}/{key}"), all);
            }
        }
        Value::Array(items) => {
            for (i, value) in items.iter().enumerate() {
                places(value, format!("{at}/{i}"), all);
            }
        }
        _ => {}
    }
    all.push(at);
}

/// A change to a snapshot: the value at some place replaced by any value,
/// or by a secret setting.
fn mutation() -> impl Strategy<Value = (prop::sample::Index, Value)> {
    let secret = prop::sample::select(&SECRET_SETTINGS[..]).prop_map(|key| {
        Value::Object(Map::from_iter([(
            key.to_string(),
            Value::from(SECRET_VALUE),
        )]))
    });
    (
        any::<prop::sample::Index>(),
        prop_oneof![3 => value(), 1 => secret],
    )
}

/// `snapshot` with each mutation made, in turn.
fn mutated(
    snapshot: &Map<String, Value>,
    mutations: Vec<(prop::sample::Index, Value)>,
) -> Map<String, Value> {
    let mut snapshot = Value::Object(snapshot.clone());
    for (at, mut replacement) in mutations {
        let mut all = Vec::new();
        places(&snapshot, String::new(), &mut all);
        let place = at.get(&all);
        if place.is_empty() {
            // The root stays an object: the replacement goes in as a key.
            if let (Value::Object(root), Value::Object(more)) = (&mut snapshot, replacement) {
                root.extend(more);
            }
            continue;
        }
        plant_secret(&mut replacement);
        *snapshot.pointer_mut(place).expect("a place found above") = replacement;
    }
    match snapshot {
        Value::Object(map) => map,
        _ => unreachable!("the root stays an object"),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn corpus_snapshots_changed_anywhere_keep_the_rules(
        provider in prop::sample::select(PROVIDERS),
        seed in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let snapshot = mutated(&seed.get(corpus()).1, mutations);
        check(provider, &snapshot, "123456789012", &[])?;
    }
}

#[test]
fn the_tfvars_corpus_keeps_the_rules_for_every_provider() {
    for (name, snapshot) in corpus() {
        for provider in PROVIDERS {
            check(provider, snapshot, "123456789012", &[])
                .unwrap_or_else(|e| panic!("{name} for {provider:?}: {e}"));
        }
    }
}
