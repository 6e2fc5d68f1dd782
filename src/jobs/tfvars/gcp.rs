//! The GCP mapping: the variables of the platform's `vine/gcp` template
//! from a vine snapshot (the original worker's, table by table). Some keys
//! the original set are not declared by that template; the declared-only
//! rule drops them there, and a template that declares them gets them.

use serde_json::{json, Map, Value};

use super::{is_mysql, number_text, NetworkNames, NodeNames, Vars};

pub(super) fn map(vars: &mut Vars, account: &str) {
    vars.project("region");
    vars.set("project_id", json!(account));
    vars.network(NetworkNames {
        provision: "provision_network",
        cidr: "network_cidr",
        single_nat: "single_cloud_nat",
        existing: "network_id",
    });
    vars.set("provision_gke", json!(true));
    vars.from(
        "gke_cluster_version",
        "/cluster/cluster_version",
        json!("1.31"),
    );
    vars.switch(
        "gke_enable_autopilot",
        "/cluster/provider_config/enable_autopilot",
    );
    vars.nodes(NodeNames {
        instance_types: "gke_instance_types",
        min: "gke_node_min_size",
        max: "gke_node_max_size",
        desired: "gke_node_desired_size",
    });
    vars.switch("cloud_dns_enabled", "/dns/enabled");
    vars.from("cloud_dns_domain", "/dns/domain_name", json!(""));
    vars.from("cloud_dns_zone_name", "/dns/zone_id", json!(""));
    vars.switch(
        "cloud_dns_managed_certificate",
        "/dns/provider_config/managed_certificate",
    );
    vars.switch("cloud_armor_enabled", "/dns/provider_config/cloud_armor");
    pubsub(vars);
    memorystore(vars);
    firestore(vars);
    vars.set("provision_artifact_registry", json!(false));
    cloud_storage(vars);
    vars.custom_secrets_as_rows();
    cloud_sql(vars);
}

/// `pubsub_topics`: topics, then queues (a queue replaces a topic of the
/// same name), each with its subscriptions.
fn pubsub(vars: &mut Vars) {
    let snapshot = vars.snapshot;
    vars.set("create_pubsub", json!(vars.has_messaging()));
    let mut topics = Map::new();
    for topic in snapshot.rows("topics") {
        let subscriptions: Vec<Value> = topic
            .rows("subscriptions")
            .map(|s| json!({"name": s.or("endpoint", json!("")), "ack_deadline_seconds": 10}))
            .collect();
        topics.insert(
            topic.text("name").unwrap_or_default().into(),
            json!({"message_retention_duration": "86400s", "subscriptions": subscriptions}),
        );
    }
    for queue in snapshot.rows("queues") {
        let name = queue.text("name").unwrap_or_default();
        let retention = queue
            .get("message_retention")
            .map_or("86400s".to_string(), |r| format!("{}s", number_text(r)));
        topics.insert(
            name.into(),
            json!({
                "message_retention_duration": retention,
                "subscriptions": [{
                    "name": format!("{name}-sub"),
                    "ack_deadline_seconds": queue.or("visibility_timeout", json!(10)),
                }],
            }),
        );
    }
    vars.set("pubsub_topics", Value::Object(topics));
}

fn memorystore(vars: &mut Vars) {
    vars.set(
        "create_memorystore",
        json!(vars.snapshot.has_rows("caches")),
    );
    let nodes = vars.snapshot.at("/caches/0/num_cache_nodes");
    if nodes.and_then(Value::as_f64).is_some_and(|n| n > 1.0) {
        vars.set("memorystore_tier", json!("STANDARD_HA"));
    }
    vars.when_present("memorystore_engine", "/caches/0/engine");
    vars.when_present("memorystore_instance_type", "/caches/0/node_type");
    vars.when_present("memorystore_multi_az", "/caches/0/multi_az");
}

fn firestore(vars: &mut Vars) {
    let databases: Vec<Value> = vars
        .snapshot
        .rows("nosql_tables")
        .map(|table| {
            let mut entry = json!({
                "name": table.or("name", json!("")),
                "billing_mode": table.or("billing_mode", json!("PAY_PER_REQUEST")),
            });
            if table.on("point_in_time_recovery") {
                entry["point_in_time_recovery"] = json!(true);
            }
            entry
        })
        .collect();
    vars.set(
        "create_firestore",
        json!(vars.snapshot.has_rows("nosql_tables")),
    );
    vars.set("firestore_databases", json!(databases));
}

fn cloud_storage(vars: &mut Vars) {
    let buckets: Vec<Value> = vars
        .snapshot
        .rows("storage_buckets")
        .map(|bucket| {
            json!({
                "name_suffix": bucket.or("name", json!("")),
                "versioning": bucket.on("versioning"),
                "uniform_access": !bucket.on("public_access"),
                "cors_origins": bucket.or("cors_origins", json!([])),
                "cors_methods": ["GET", "PUT", "POST"],
            })
        })
        .collect();
    vars.set(
        "create_cloud_storage",
        json!(vars.snapshot.has_rows("storage_buckets")),
    );
    vars.set("cloud_storage_buckets", json!(buckets));
}

fn cloud_sql(vars: &mut Vars) {
    vars.set(
        "create_cloud_sql",
        json!(vars.snapshot.has_rows("databases")),
    );
    vars.set("cloud_sql_authorized_networks", json!([]));
    let Some(database) = vars.snapshot.first("databases") else {
        return;
    };
    let engine = database.text("engine");
    let mysql = engine.is_some_and(is_mysql);
    if engine.is_some() {
        let name = if mysql { "MYSQL" } else { "POSTGRES" };
        vars.set("cloud_sql_engine", json!(name));
    }
    let version = cloud_sql_version(mysql, database.get("engine_version"));
    vars.set("cloud_sql_engine_version", json!(version));
    vars.when_present("cloud_sql_port", "/databases/0/port");
    vars.when_present(
        "cloud_sql_backup_retention_days",
        "/databases/0/backup_retention_days",
    );
    vars.when_present("cloud_sql_iam_auth", "/databases/0/iam_auth");
}

/// The version part of a Cloud SQL `database_version`, which the template
/// joins to the engine (`POSTGRES_16`, `MYSQL_8_0`): the major version of
/// PostgreSQL, major and minor of MySQL, from a version written either way
/// ("16.6", "POSTGRES_16", "8.0.35"); PostgreSQL 16 or MySQL 8.0 without one.
fn cloud_sql_version(mysql: bool, version: Option<&Value>) -> String {
    let text = version.map(number_text).unwrap_or_default();
    let upper = text.to_ascii_uppercase();
    let bare = ["POSTGRES_", "MYSQL_"]
        .iter()
        .find_map(|prefix| upper.strip_prefix(prefix))
        .unwrap_or(&upper);
    let parts: Vec<&str> = bare.split(['.', '_']).filter(|p| !p.is_empty()).collect();
    match (mysql, parts.as_slice()) {
        (false, []) => "16".into(),
        (false, [major, ..]) => (*major).into(),
        (true, []) => "8_0".into(),
        (true, [major]) => format!("{major}_0"),
        (true, [major, minor, ..]) => format!("{major}_{minor}"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::mapped;
    use super::*;

    fn web_snapshot() -> Value {
        json!({
            "id": "vine-2", "vineyard_id": "vy-1", "project_name": "shop", "environment_stage": "staging",
            "region": "europe-west1", "provider": "gcp", "status": "ACTIVE",
            "network": {"provision_network": false, "cidr_block": "10.30.0.0/16", "network_id": "shop-vpc",
                        "single_nat_gateway": true},
            "cluster": {"cluster_version": "1.30", "instance_types": ["e2-standard-4"], "node_min_size": 1,
                        "node_max_size": 3, "node_desired_size": 0,
                        "provider_config": {"enable_autopilot": true}},
            "dns": {"enabled": true, "zone_id": "shop-zone", "domain_name": "shop.example",
                    "provider_config": {"managed_certificate": true, "cloud_armor": true}},
            "databases": [{"name": "orders", "engine": "postgres", "engine_version": "16.6", "port": 5432,
                           "backup_retention_days": 7, "iam_auth": false}],
            "caches": [{"num_cache_nodes": 2, "engine": "redis", "node_type": "M1", "multi_az": true}],
            "queues": [{"name": "jobs", "message_retention": 3600, "visibility_timeout": 30},
                       {"name": "events"}],
            "topics": [{"name": "events", "subscriptions": [{"protocol": "push", "endpoint": "events-push"}]},
                       {"name": "audit", "subscriptions": [{"endpoint": "audit-pull"}]}],
            "nosql_tables": [{"name": "carts", "point_in_time_recovery": true},
                             {"name": "sessions", "billing_mode": "PROVISIONED", "point_in_time_recovery": false}],
            "secrets": [{"name": "api-key", "generate": true, "length": 32, "special_chars": false},
                        {"name": "manual"}],
            "git_access_token": ""
        })
    }

    #[test]
    fn a_web_snapshot_sets_every_variable_of_the_table() {
        let vars = mapped("gcp", &web_snapshot(), "shop-prod");
        let expected = json!({
            "project_name": "shop",
            "region": "europe-west1",
            "environment": "staging",
            "project_id": "shop-prod",
            "provision_network": false,
            "network_cidr": "10.30.0.0/16",
            "single_cloud_nat": true,
            "network_id": "shop-vpc",
            "provision_gke": true,
            "gke_cluster_version": "1.30",
            "gke_enable_autopilot": true,
            "gke_instance_types": ["e2-standard-4"],
            "gke_node_min_size": 1,
            "gke_node_max_size": 3,
            "cloud_dns_enabled": true,
            "cloud_dns_domain": "shop.example",
            "cloud_dns_zone_name": "shop-zone",
            "cloud_dns_managed_certificate": true,
            "cloud_armor_enabled": true,
            "create_pubsub": true,
            "pubsub_topics": {
                "events": {"message_retention_duration": "86400s",
                           "subscriptions": [{"name": "events-sub", "ack_deadline_seconds": 10}]},
                "audit": {"message_retention_duration": "86400s",
                          "subscriptions": [{"name": "audit-pull", "ack_deadline_seconds": 10}]},
                "jobs": {"message_retention_duration": "3600s",
                         "subscriptions": [{"name": "jobs-sub", "ack_deadline_seconds": 30}]},
            },
            "create_memorystore": true,
            "memorystore_tier": "STANDARD_HA",
            "memorystore_engine": "redis",
            "memorystore_instance_type": "M1",
            "memorystore_multi_az": true,
            "create_firestore": true,
            "firestore_databases": [{"name": "carts", "billing_mode": "PAY_PER_REQUEST", "point_in_time_recovery": true},
                                    {"name": "sessions", "billing_mode": "PROVISIONED"}],
            "provision_artifact_registry": false,
            "create_cloud_storage": false,
            "cloud_storage_buckets": [],
            "custom_secrets": [{"name": "api-key", "generate": true, "length": 32, "special_chars": false},
                               {"name": "manual", "generate": false, "length": 0, "special_chars": false}],
            "create_cloud_sql": true,
            "cloud_sql_authorized_networks": [],
            "cloud_sql_engine": "POSTGRES",
            "cloud_sql_engine_version": "16",
            "cloud_sql_port": 5432,
            "cloud_sql_backup_retention_days": 7,
            "cloud_sql_iam_auth": false,
        });
        assert_eq!(Value::Object(vars), expected);
    }

    #[test]
    fn an_empty_snapshot_gets_the_defaults_and_no_conditional_variable() {
        let vars = mapped("gcp", &json!({}), "");
        for (name, default) in [
            ("project_id", json!("")),
            ("provision_network", json!(true)),
            ("network_cidr", json!("10.0.0.0/16")),
            ("single_cloud_nat", json!(false)),
            ("gke_cluster_version", json!("1.31")),
            ("gke_enable_autopilot", json!(false)),
            ("cloud_dns_enabled", json!(false)),
            ("cloud_dns_domain", json!("")),
            ("cloud_dns_zone_name", json!("")),
            ("create_pubsub", json!(false)),
            ("pubsub_topics", json!({})),
            ("create_memorystore", json!(false)),
            ("create_firestore", json!(false)),
            ("firestore_databases", json!([])),
            ("custom_secrets", json!([])),
            ("create_cloud_sql", json!(false)),
        ] {
            assert_eq!(vars.get(name), Some(&default), "{name}");
        }
        for absent in [
            "network_id",
            "gke_instance_types",
            "gke_node_min_size",
            "memorystore_tier",
            "memorystore_engine",
            "cloud_sql_engine",
            "cloud_sql_engine_version",
            "cloud_sql_port",
        ] {
            assert!(!vars.contains_key(absent), "{absent} is not set");
        }
    }

    #[test]
    fn flat_keys_stand_in_for_absent_nested_ones() {
        let vars = mapped(
            "gcp",
            &json!({"network_cidr": "10.8.0.0/16", "gke_cluster_version": "1.29"}),
            "",
        );
        assert_eq!(vars["network_cidr"], "10.8.0.0/16");
        assert_eq!(vars["gke_cluster_version"], "1.29");
    }

    #[test]
    fn buckets_are_built_element_by_element() {
        let snapshot = json!({"storage_buckets": [
            {"name": "assets", "versioning": true, "public_access": true, "cors_origins": ["https://shop.example"]},
            {"name": "logs"}
        ]});
        let vars = mapped("gcp", &snapshot, "");
        assert_eq!(vars["create_cloud_storage"], true);
        assert_eq!(
            vars["cloud_storage_buckets"],
            json!([
                {"name_suffix": "assets", "versioning": true, "uniform_access": false,
                 "cors_origins": ["https://shop.example"], "cors_methods": ["GET", "PUT", "POST"]},
                {"name_suffix": "logs", "versioning": false, "uniform_access": true,
                 "cors_origins": [], "cors_methods": ["GET", "PUT", "POST"]}
            ])
        );
    }

    #[test]
    fn the_cloud_sql_version_is_the_part_the_template_joins_to_the_engine() {
        assert_eq!(cloud_sql_version(false, Some(&json!("16.6"))), "16");
        assert_eq!(cloud_sql_version(false, Some(&json!("POSTGRES_15"))), "15");
        assert_eq!(cloud_sql_version(false, Some(&json!(14))), "14");
        assert_eq!(cloud_sql_version(false, None), "16");
        assert_eq!(cloud_sql_version(true, Some(&json!("8.0.35"))), "8_0");
        assert_eq!(cloud_sql_version(true, Some(&json!("MYSQL_5_7"))), "5_7");
        assert_eq!(cloud_sql_version(true, Some(&json!("8"))), "8_0");
        assert_eq!(cloud_sql_version(true, None), "8_0");
        let mysql = mapped(
            "gcp",
            &json!({"databases": [{"engine": "aurora-mysql"}]}),
            "",
        );
        assert_eq!(mysql["cloud_sql_engine"], "MYSQL");
        assert_eq!(mysql["cloud_sql_engine_version"], "8_0");
    }
}
