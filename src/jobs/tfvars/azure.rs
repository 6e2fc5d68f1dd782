//! The Azure mapping: the variables of the platform's `vine/azure` template
//! from a vine snapshot (the original worker's, table by table).

use serde_json::{json, Map, Value};

use super::{is_mysql, number_text, uniform, NetworkNames, NodeNames, Vars};

/// What a Service Bus queue gets when another queue sets it and it does
/// not (the service's own defaults).
fn queue_defaults() -> [(&'static str, Value); 4] {
    [
        ("requires_session", json!(false)),
        ("default_message_ttl", json!("P10675199DT2H48M5.4775807S")),
        ("delay_seconds", json!(0)),
        ("forward_dead_lettered_messages_to", json!("")),
    ]
}

pub(super) fn map(vars: &mut Vars, account: &str) {
    vars.project("location");
    vars.set("subscription_id", json!(account));
    vars.network(NetworkNames {
        provision: "provision_vnet",
        cidr: "vnet_cidr",
        single_nat: "single_nat_gateway",
        existing: "vnet_id",
    });
    vars.set("provision_aks", json!(true));
    vars.from(
        "aks_cluster_version",
        "/cluster/cluster_version",
        json!("1.31"),
    );
    vars.nodes(NodeNames {
        instance_types: "aks_instance_types",
        min: "aks_node_min_size",
        max: "aks_node_max_size",
        desired: "aks_node_desired_size",
    });
    vars.switch("azure_dns_enabled", "/dns/enabled");
    vars.from("azure_dns_domain", "/dns/domain_name", json!(""));
    vars.from("azure_dns_zone_name", "/dns/zone_id", json!(""));
    vars.switch("azure_waf_enabled", "/dns/provider_config/azure_waf");
    vars.switch(
        "azure_managed_certificate",
        "/dns/provider_config/managed_certificate",
    );
    service_bus(vars);
    cache(vars);
    cosmos_db(vars);
    let registries = vars.snapshot.has_rows("container_registries");
    vars.set("provision_acr", json!(registries));
    storage(vars);
    vars.custom_secrets_as_rows();
    database(vars);
}

fn service_bus(vars: &mut Vars) {
    let snapshot = vars.snapshot;
    vars.set("create_service_bus", json!(vars.has_messaging()));
    let mut queues = Map::new();
    for queue in snapshot.rows("queues") {
        let lock = queue
            .get("visibility_timeout")
            .map_or("PT1M".to_string(), |v| format!("PT{}S", number_text(v)));
        let mut entry = json!({"max_delivery_count": 10, "lock_duration": lock});
        if let Some(fifo) = queue.get("fifo") {
            entry["requires_session"] = fifo.clone();
        }
        if let Some(retention) = queue.get("message_retention") {
            entry["default_message_ttl"] = json!(format!("PT{}S", number_text(retention)));
        }
        if let Some(delay) = queue.get("delay_seconds") {
            entry["delay_seconds"] = delay.clone();
            entry["forward_dead_lettered_messages_to"] = json!("");
        }
        queues.insert(queue.text("name").unwrap_or_default().into(), entry);
    }
    uniform(&mut queues, &queue_defaults());
    vars.set("service_bus_queues", Value::Object(queues));
    let topics: Map<String, Value> = snapshot
        .rows("topics")
        .map(|topic| {
            let subscriptions: Vec<Value> = topic
                .rows("subscriptions")
                .map(|s| json!({"name": s.or("endpoint", json!("")), "max_delivery_count": 10}))
                .collect();
            let name = topic.text("name").unwrap_or_default().to_string();
            (name, json!({ "subscriptions": subscriptions }))
        })
        .collect();
    vars.set("service_bus_topics", Value::Object(topics));
}

fn cache(vars: &mut Vars) {
    vars.set(
        "create_azure_cache",
        json!(vars.snapshot.has_rows("caches")),
    );
    let nodes = vars.snapshot.at("/caches/0/num_cache_nodes");
    if nodes.and_then(Value::as_f64).is_some_and(|n| n > 1.0) {
        vars.set("azure_cache_sku", json!("Standard"));
    }
    vars.when_present("azure_cache_multi_az", "/caches/0/multi_az");
}

fn cosmos_db(vars: &mut Vars) {
    let collections: Vec<Value> = vars
        .snapshot
        .rows("nosql_tables")
        .map(|table| {
            let mut entry = json!({
                "name": table.or("name", json!("")),
                "partition_key": table.or("hash_key", json!("/id")),
                "billing_mode": table.or("billing_mode", json!("PAY_PER_REQUEST")),
            });
            if table.on("point_in_time_recovery") {
                entry["analytical_storage_enabled"] = json!(true);
            }
            entry
        })
        .collect();
    vars.set(
        "create_cosmos_db",
        json!(vars.snapshot.has_rows("nosql_tables")),
    );
    vars.set("cosmos_db_collections", json!(collections));
}

fn storage(vars: &mut Vars) {
    let containers: Vec<Value> = vars
        .snapshot
        .rows("storage_buckets")
        .map(|bucket| {
            let access = if bucket.on("public_access") {
                "blob"
            } else {
                "private"
            };
            json!({"name": bucket.or("name", json!("")), "container_access_type": access})
        })
        .collect();
    vars.set(
        "create_storage_account",
        json!(vars.snapshot.has_rows("storage_buckets")),
    );
    vars.set("storage_containers", json!(containers));
}

fn database(vars: &mut Vars) {
    vars.set(
        "create_azure_db",
        json!(vars.snapshot.has_rows("databases")),
    );
    if let Some(engine) = vars
        .snapshot
        .first("databases")
        .and_then(|d| d.text("engine"))
    {
        let name = if is_mysql(engine) {
            "mysql"
        } else {
            "postgres"
        };
        vars.set("azure_db_engine", json!(name));
    }
    for (name, key) in [
        ("azure_db_engine_version", "engine_version"),
        ("azure_db_port", "port"),
        ("azure_db_backup_retention_days", "backup_retention_days"),
        ("azure_db_iam_auth", "iam_auth"),
    ] {
        vars.when_present(name, &format!("/databases/0/{key}"));
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::mapped;
    use super::*;

    fn web_snapshot() -> Value {
        json!({
            "id": "vine-3", "vineyard_id": "vy-1", "project_name": "shop", "environment_stage": "development",
            "region": "westeurope", "provider": "azure",
            "network": {"provision_network": false, "cidr_block": "10.40.0.0/16",
                        "network_id": "/subscriptions/s/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/hub"},
            "cluster": {"cluster_version": "1.30", "instance_types": ["Standard_D4s_v5"], "node_min_size": 2,
                        "node_max_size": 6, "node_desired_size": 3},
            "dns": {"enabled": true, "zone_id": "shop-zone", "domain_name": "shop.example",
                    "provider_config": {"azure_waf": true, "managed_certificate": true}},
            "databases": [{"name": "orders", "engine": "mysql", "engine_version": "8.0.21", "port": 3306,
                           "backup_retention_days": 14, "iam_auth": true}],
            "caches": [{"num_cache_nodes": 1, "multi_az": true}],
            "queues": [{"name": "jobs", "fifo": true, "visibility_timeout": 45, "message_retention": 86400,
                        "delay_seconds": 0},
                       {"name": "mail"}],
            "topics": [{"name": "events", "subscriptions": [{"endpoint": "billing"}]}],
            "nosql_tables": [{"name": "carts", "hash_key": "/cartId", "point_in_time_recovery": true},
                             {"name": "sessions"}],
            "secrets": [{"name": "api-key", "generate": true, "length": 24, "special_chars": true}],
            "git_access_token": ""
        })
    }

    #[test]
    fn a_web_snapshot_sets_every_variable_of_the_table() {
        let vars = mapped("azure", &web_snapshot(), "aaaa-bbbb");
        let expected = json!({
            "project_name": "shop",
            "environment": "development",
            "location": "westeurope",
            "subscription_id": "aaaa-bbbb",
            "provision_vnet": false,
            "vnet_cidr": "10.40.0.0/16",
            "single_nat_gateway": false,
            "vnet_id": "/subscriptions/s/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/hub",
            "provision_aks": true,
            "aks_cluster_version": "1.30",
            "aks_instance_types": ["Standard_D4s_v5"],
            "aks_node_min_size": 2,
            "aks_node_max_size": 6,
            "aks_node_desired_size": 3,
            "azure_dns_enabled": true,
            "azure_dns_domain": "shop.example",
            "azure_dns_zone_name": "shop-zone",
            "azure_waf_enabled": true,
            "azure_managed_certificate": true,
            "create_service_bus": true,
            "service_bus_queues": {
                "jobs": {"max_delivery_count": 10, "lock_duration": "PT45S", "requires_session": true,
                         "default_message_ttl": "PT86400S", "delay_seconds": 0,
                         "forward_dead_lettered_messages_to": ""},
                "mail": {"max_delivery_count": 10, "lock_duration": "PT1M", "requires_session": false,
                         "default_message_ttl": "P10675199DT2H48M5.4775807S", "delay_seconds": 0,
                         "forward_dead_lettered_messages_to": ""},
            },
            "service_bus_topics": {"events": {"subscriptions": [{"name": "billing", "max_delivery_count": 10}]}},
            "create_azure_cache": true,
            "azure_cache_multi_az": true,
            "create_cosmos_db": true,
            "cosmos_db_collections": [
                {"name": "carts", "partition_key": "/cartId", "billing_mode": "PAY_PER_REQUEST",
                 "analytical_storage_enabled": true},
                {"name": "sessions", "partition_key": "/id", "billing_mode": "PAY_PER_REQUEST"}],
            "provision_acr": false,
            "create_storage_account": false,
            "storage_containers": [],
            "custom_secrets": [{"name": "api-key", "generate": true, "length": 24, "special_chars": true}],
            "create_azure_db": true,
            "azure_db_engine": "mysql",
            "azure_db_engine_version": "8.0.21",
            "azure_db_port": 3306,
            "azure_db_backup_retention_days": 14,
            "azure_db_iam_auth": true,
        });
        assert_eq!(Value::Object(vars), expected);
    }

    #[test]
    fn an_empty_snapshot_gets_the_defaults_and_no_conditional_variable() {
        let vars = mapped("azure", &json!({"region": "westeurope"}), "");
        for (name, default) in [
            ("location", json!("westeurope")),
            ("subscription_id", json!("")),
            ("provision_vnet", json!(true)),
            ("vnet_cidr", json!("10.0.0.0/16")),
            ("single_nat_gateway", json!(false)),
            ("aks_cluster_version", json!("1.31")),
            ("create_service_bus", json!(false)),
            ("service_bus_queues", json!({})),
            ("service_bus_topics", json!({})),
            ("create_azure_cache", json!(false)),
            ("create_cosmos_db", json!(false)),
            ("cosmos_db_collections", json!([])),
            ("create_azure_db", json!(false)),
        ] {
            assert_eq!(vars.get(name), Some(&default), "{name}");
        }
        for absent in [
            "vnet_id",
            "aks_instance_types",
            "azure_cache_sku",
            "azure_cache_multi_az",
            "azure_db_engine",
            "azure_db_port",
            "region",
        ] {
            assert!(!vars.contains_key(absent), "{absent} is not set");
        }
    }

    #[test]
    fn flat_keys_stand_in_for_absent_nested_ones() {
        let snapshot = json!({"vnet_cidr": "10.7.0.0/16", "azure_dns_domain": "old.example",
                              "network": {"provision_network": true}});
        let vars = mapped("azure", &snapshot, "");
        assert_eq!(vars["vnet_cidr"], "10.7.0.0/16");
        assert_eq!(vars["azure_dns_domain"], "old.example");
        assert_eq!(vars["provision_vnet"], true);
    }

    #[test]
    fn queues_with_the_same_settings_are_left_as_the_original_wrote_them() {
        let snapshot = json!({"queues": [{"name": "a", "visibility_timeout": 30.0}, {"name": "b"}],
                              "caches": [{"num_cache_nodes": 3}],
                              "storage_buckets": [{"name": "assets", "public_access": true}]});
        let vars = mapped("azure", &snapshot, "");
        assert_eq!(
            vars["service_bus_queues"],
            json!({"a": {"max_delivery_count": 10, "lock_duration": "PT30S"},
                   "b": {"max_delivery_count": 10, "lock_duration": "PT1M"}})
        );
        assert_eq!(vars["azure_cache_sku"], "Standard");
        assert_eq!(
            vars["storage_containers"],
            json!([{"name": "assets", "container_access_type": "blob"}])
        );
    }
}
