//! The AWS mapping: the variables of the platform's `vine/aws` template
//! from a vine snapshot (the original worker's, table by table), and the
//! subnets of an existing VPC, looked up with the job's credentials.

use serde_json::{json, Map, Value};

use super::{number_text, uniform, Fields, NetworkNames, NodeNames, Vars};
use crate::jobs::{JobContext, JobError};
use crate::safe_name::{check_identifier, check_region};

/// The variables the subnet lookup of an existing VPC sets.
pub(super) const SUBNET_VARIABLES: [&str; 2] = ["vpc_private_subnet_ids", "vpc_public_subnet_ids"];

/// What an SQS queue gets when another queue sets it and it does not (the
/// service's own defaults).
fn sqs_defaults() -> [(&'static str, Value); 3] {
    [
        ("visibility_timeout_seconds", json!(30)),
        ("message_retention_seconds", json!(345_600)),
        ("delay_seconds", json!(0)),
    ]
}

pub(super) fn map(vars: &mut Vars, account: &str) {
    vars.project("region");
    vars.set("aws_account_id", json!(account));
    vars.network(NetworkNames {
        provision: "provision_vpc",
        cidr: "vpc_cidr",
        single_nat: "vpc_single_nat_gateway",
        existing: "vpc_id",
    });
    vars.from(
        "eks_cluster_version",
        "/cluster/cluster_version",
        json!("1.32"),
    );
    vars.switch(
        "enable_karpenter",
        "/cluster/provider_config/enable_karpenter",
    );
    cluster_admins(vars);
    vars.nodes(NodeNames {
        instance_types: "eks_instance_types",
        min: "eks_ng_min_size",
        max: "eks_ng_max_size",
        desired: "eks_ng_desired_size",
    });
    vars.from("dns_hosted_zone", "/dns/zone_id", json!(""));
    vars.from("dns_main_domain", "/dns/domain_name", json!(""));
    vars.switch(
        "acm_certificate_enable",
        "/dns/provider_config/acm_certificate",
    );
    vars.switch(
        "cloudfront_waf_enabled",
        "/dns/provider_config/cloudfront_waf",
    );
    vars.switch(
        "application_waf_enabled",
        "/dns/provider_config/application_waf",
    );
    for name in [
        "waf_webacl_cloudwatch_enabled",
        "waf_sampled_requests_enabled",
        "waf_logging_enabled",
    ] {
        vars.set(name, json!(false));
    }
    vars.set("waf_log_retention_days", json!(90));
    messaging(vars);
    redis(vars);
    secrets(vars);
    dynamodb(vars);
    buckets(vars);
    rds(vars);
}

/// `eks_cluster_admins` in the template's shape, `{username, path}`: the
/// UI's `groups` have no place in it.
fn cluster_admins(vars: &mut Vars) {
    let admins = vars
        .source("eks_cluster_admins", "/cluster/cluster_admins")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|admin| match admin.as_object() {
            Some(fields) => {
                let admin = Fields(fields);
                json!({
                    "username": admin.or("username", json!("")),
                    "path": admin.or("path", json!("/users/")),
                })
            }
            None => admin.clone(),
        })
        .collect::<Vec<_>>();
    vars.set("eks_cluster_admins", json!(admins));
}

fn messaging(vars: &mut Vars) {
    let snapshot = vars.snapshot;
    vars.set("provision_sqs", json!(vars.has_messaging()));
    let mut queues = Map::new();
    for queue in snapshot.rows("queues") {
        let mut entry = Map::new();
        entry.insert("fifo_queue".into(), json!(queue.on("fifo")));
        entry.insert("dlq_enable".into(), json!(false));
        for (name, key) in [
            ("visibility_timeout_seconds", "visibility_timeout"),
            ("message_retention_seconds", "message_retention"),
            ("delay_seconds", "delay_seconds"),
        ] {
            if let Some(value) = queue.get(key) {
                entry.insert(name.into(), value.clone());
            }
        }
        let name = queue.text("name").unwrap_or_default();
        queues.insert(name.into(), Value::Object(entry));
    }
    uniform(&mut queues, &sqs_defaults());
    vars.set("sqs_queues", Value::Object(queues));
    let topics: Map<String, Value> = snapshot
        .rows("topics")
        .map(|topic| {
            let subscriptions: Vec<Value> = topic
                .rows("subscriptions")
                .map(|s| json!({"protocol": s.or("protocol", json!("")), "endpoint": s.or("endpoint", json!(""))}))
                .collect();
            let name = topic.text("name").unwrap_or_default().to_string();
            (name, json!({ "subscriptions": subscriptions }))
        })
        .collect();
    vars.set("sns_topics", Value::Object(topics));
}

fn redis(vars: &mut Vars) {
    let cached = vars.snapshot.has_rows("caches");
    vars.set("create_elasticache_redis", json!(cached));
    vars.from("redis_cluster_size", "/caches/0/num_cache_nodes", json!(1));
    let instance = if cached {
        "cache.t3.medium"
    } else {
        "cache.t3.micro"
    };
    vars.from(
        "redis_instance_type",
        "/caches/0/node_type",
        json!(instance),
    );
    vars.set("redis_cluster_mode_enabled", json!(false));
    vars.set("redis_engine_version", json!("7.1"));
    vars.set("redis_family", json!("redis7"));
    vars.set("redis_allowed_cidr_blocks", json!([]));
    vars.set("redis_allowed_security_group_ids", json!([]));
    vars.set("redis_cloudwatch_logs_enabled", json!(false));
    vars.when_present("redis_multi_az_enabled", "/caches/0/multi_az");
}

/// `custom_secrets`: a generated secret's length and character set, or a
/// manual one.
fn secrets(vars: &mut Vars) {
    let secrets: Vec<Value> = vars
        .snapshot
        .rows("secrets")
        .map(|secret| {
            let mut entry = Map::new();
            entry.insert("secret_name".into(), secret.or("name", json!("")));
            if secret.on("generate") {
                if let Some(length) = secret.get("length") {
                    entry.insert("length".into(), length.clone());
                }
                entry.insert("special".into(), json!(secret.on("special_chars")));
            } else {
                entry.insert("manual".into(), json!(true));
            }
            Value::Object(entry)
        })
        .collect();
    vars.set("custom_secrets", json!(secrets));
}

fn dynamodb(vars: &mut Vars) {
    let tables: Vec<Fields> = vars.snapshot.rows("nosql_tables").collect();
    let of_type = |kind: &str| -> Vec<Value> {
        tables
            .iter()
            .filter(|table| table.text("table_type") == Some(kind))
            .map(|table| {
                json!({
                    "table_name_suffix": table.or("name", json!("")),
                    "hash_key": table.or("hash_key", json!("")),
                    "hash_key_type": table.or("hash_key_type", json!("S")),
                    "range_key": table.or("range_key", json!("")),
                    "range_key_type": table.or("range_key_type", json!("S")),
                    "billing_mode": table.or("billing_mode", json!("PAY_PER_REQUEST")),
                    "enable_point_in_time_recovery": table.on("point_in_time_recovery"),
                })
            })
            .collect()
    };
    let (standard, global) = (of_type("standard"), of_type("global"));
    vars.set("ddb_create", json!(vars.snapshot.has_rows("nosql_tables")));
    vars.set("ddb_global_create", json!(!global.is_empty()));
    vars.set("ddb_table_configuration", json!(standard));
    vars.set("ddb_global_table_configuration", json!(global));
}

fn buckets(vars: &mut Vars) {
    let buckets: Vec<Value> = vars
        .snapshot
        .rows("storage_buckets")
        .map(|bucket| {
            let private = !bucket.on("public_access");
            let origins = bucket.get("cors_origins").and_then(Value::as_array);
            let cors = match origins {
                Some(origins) if !origins.is_empty() => json!([{
                    "allowed_headers": ["*"],
                    "allowed_methods": ["GET", "PUT", "POST"],
                    "allowed_origins": origins,
                    "expose_headers": [],
                    "max_age_seconds": 3600,
                }]),
                _ => json!([]),
            };
            json!({
                "bucket_name_suffix": bucket.or("name", json!("")),
                "acl_type": "private",
                "create_s3_user": false,
                "versioning_enabled": bucket.on("versioning"),
                "sse_algorithm": bucket.or("encryption", json!("AES256")),
                "store_access_key_in_ssm": false,
                "block_public_acls": private,
                "block_public_policy": private,
                "ignore_public_acls": private,
                "restrict_public_buckets": private,
                "cors_configuration": cors,
            })
        })
        .collect();
    vars.set(
        "s3_create",
        json!(vars.snapshot.has_rows("storage_buckets")),
    );
    vars.set("bucket_configuration", json!(buckets));
}

fn rds(vars: &mut Vars) {
    vars.set("create_rds", json!(vars.snapshot.has_rows("databases")));
    let Some(database) = vars.snapshot.first("databases") else {
        return;
    };
    let engine = database.text("engine").unwrap_or("aurora-postgresql");
    let version = database.or("engine_version", json!("16.6"));
    let mut config = json!({
        "engine": engine,
        "engine_version": version,
        "db_port": database.or("port", json!(5432)),
        "db_name": database.or("name", json!("")),
    });
    if let Some(family) = aurora_family(engine, &number_text(&version)) {
        config["cluster_family"] = json!(family);
    }
    vars.set("rds_config", config);
    if database.get("min_capacity").is_some() || database.get("max_capacity").is_some() {
        vars.set(
            "rds_scaling_config",
            json!({
                "min_capacity": database.or("min_capacity", json!(0.5)),
                "max_capacity": database.or("max_capacity", json!(4.0)),
            }),
        );
    }
    vars.when_present(
        "rds_backup_retention_period",
        "/databases/0/backup_retention_days",
    );
    vars.when_present("rds_iam_auth_enabled", "/databases/0/iam_auth");
}

/// The parameter group family of an Aurora engine and version (the
/// template's default is PostgreSQL 16's, whatever the engine).
fn aurora_family(engine: &str, version: &str) -> Option<String> {
    let major = version.split('.').next().unwrap_or_default();
    match engine {
        "aurora-postgresql" => Some(format!("aurora-postgresql{major}")),
        "aurora-mysql" if version.starts_with("5.7") || major == "2" => {
            Some("aurora-mysql5.7".into())
        }
        "aurora-mysql" => Some("aurora-mysql8.0".into()),
        _ => None,
    }
}

/// The subnets of the existing VPC `vpc` in `region`, public (those that
/// map a public IP on launch) and private, each list filled with the other
/// when empty. A failed lookup is a warning, and sets neither.
pub(super) async fn existing_vpc_subnets(
    context: &JobContext,
    region: &str,
    vpc: &str,
) -> Result<Map<String, Value>, JobError> {
    // Both become arguments of the aws CLI (the id inside its filter).
    check_region("region", region).map_err(JobError::Invalid)?;
    check_identifier("network.network_id", vpc).map_err(JobError::Invalid)?;
    let filter = format!("Name=vpc-id,Values={vpc}");
    let args = ["ec2", "describe-subnets", "--filters", filter.as_str()];
    match context.aws_json(region, &args).await {
        Ok(answer) => {
            let (private, public) = split_subnets(&answer);
            let [private_name, public_name] = SUBNET_VARIABLES;
            Ok(Map::from_iter([
                (private_name.to_string(), json!(private)),
                (public_name.to_string(), json!(public)),
            ]))
        }
        Err(JobError::Stopped) => Err(JobError::Stopped),
        Err(error) => {
            context.log.system(&format!(
                "warning: cannot look up the subnets of {vpc} in {region} ({error}): \
                 vpc_private_subnet_ids and vpc_public_subnet_ids are left to the template"
            ));
            Ok(Map::new())
        }
    }
}

/// The private and public subnet ids of a `describe-subnets` answer.
fn split_subnets(answer: &Value) -> (Vec<String>, Vec<String>) {
    let (mut private, mut public) = (Vec::new(), Vec::new());
    let subnets = answer.get("Subnets").and_then(Value::as_array);
    for subnet in subnets.into_iter().flatten() {
        let Some(id) = subnet.get("SubnetId").and_then(Value::as_str) else {
            continue;
        };
        if subnet.get("MapPublicIpOnLaunch") == Some(&Value::Bool(true)) {
            public.push(id.to_string());
        } else {
            private.push(id.to_string());
        }
    }
    if private.is_empty() {
        private = public.clone();
    } else if public.is_empty() {
        public = private.clone();
    }
    (private, public)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{map, mapped};
    use super::*;

    /// A vine as the web app snapshots it, every component set.
    fn web_snapshot() -> Value {
        json!({
            "id": "vine-1", "user_id": "u-1", "vineyard_id": "vy-1", "cloud_identity_id": "ci-1",
            "project_name": "shop", "environment_stage": "production", "region": "eu-west-1",
            "terraform_version": "1.10.3", "status": "ACTIVE", "estimated_monthly_cost": 12.5,
            "created_at": "2026-05-01T00:00:00Z", "updated_at": "2026-05-02T00:00:00Z",
            "provider": "aws",
            "network": {"provision_network": true, "cidr_block": "10.20.0.0/16", "single_nat_gateway": true},
            "cluster": {"cluster_version": "1.31", "instance_types": ["m6a.large", "m6a.xlarge"],
                        "node_min_size": 1, "node_max_size": 4, "node_desired_size": 2,
                        "cluster_admins": [{"username": "alice", "groups": ["system:masters"]}],
                        "provider_config": {"enable_karpenter": true}},
            "dns": {"enabled": true, "zone_id": "Z123", "domain_name": "shop.example",
                    "provider_config": {"acm_certificate": true, "cloudfront_waf": false, "application_waf": true}},
            "repositories": {"apps_destination_repo": "https://git.example/shop/apps.git"},
            "databases": [{"name": "orders", "engine": "aurora-postgresql", "engine_version": "15.4", "port": 5433,
                           "min_capacity": 1, "backup_retention_days": 7, "iam_auth": true},
                          {"name": "ignored"}],
            "caches": [{"num_cache_nodes": 2, "node_type": "cache.r7g.large", "multi_az": false}],
            "queues": [{"name": "jobs", "fifo": true, "visibility_timeout": 60, "message_retention": null},
                       {"name": "mail", "delay_seconds": 5}],
            "topics": [{"name": "events", "subscriptions": [{"protocol": "sqs", "endpoint": "arn:aws:sqs:eu-west-1:1:jobs"}]}],
            "nosql_tables": [{"name": "carts", "table_type": "standard", "hash_key": "id", "point_in_time_recovery": true},
                             {"name": "sessions", "table_type": "global", "hash_key": "sid", "hash_key_type": "N",
                              "range_key": "at", "range_key_type": "N", "billing_mode": "PROVISIONED"},
                             {"name": "odd", "table_type": "other"}],
            "secrets": [{"name": "api-key", "generate": true, "length": 40, "special_chars": true},
                        {"name": "stripe", "generate": false}],
            "git_access_token": ""
        })
    }

    #[test]
    fn a_web_snapshot_sets_every_variable_of_the_table() {
        let vars = mapped("aws", &web_snapshot(), "123456789012");
        let mut expected = map(json!({
            "project_name": "shop",
            "region": "eu-west-1",
            "environment": "production",
            "aws_account_id": "123456789012",
            "provision_vpc": true,
            "vpc_cidr": "10.20.0.0/16",
            "vpc_single_nat_gateway": true,
            "eks_cluster_version": "1.31",
            "enable_karpenter": true,
            "eks_cluster_admins": [{"username": "alice", "path": "/users/"}],
            "eks_instance_types": ["m6a.large", "m6a.xlarge"],
            "eks_ng_min_size": 1,
            "eks_ng_max_size": 4,
            "eks_ng_desired_size": 2,
            "dns_hosted_zone": "Z123",
            "dns_main_domain": "shop.example",
            "acm_certificate_enable": true,
            "cloudfront_waf_enabled": false,
            "application_waf_enabled": true,
            "waf_webacl_cloudwatch_enabled": false,
            "waf_sampled_requests_enabled": false,
            "waf_logging_enabled": false,
            "waf_log_retention_days": 90,
        }));
        expected.extend(map(json!({
            "provision_sqs": true,
            "sqs_queues": {
                "jobs": {"fifo_queue": true, "dlq_enable": false, "visibility_timeout_seconds": 60,
                         "delay_seconds": 0},
                "mail": {"fifo_queue": false, "dlq_enable": false, "delay_seconds": 5,
                         "visibility_timeout_seconds": 30},
            },
            "sns_topics": {"events": {"subscriptions": [{"protocol": "sqs", "endpoint": "arn:aws:sqs:eu-west-1:1:jobs"}]}},
            "create_elasticache_redis": true,
            "redis_cluster_size": 2,
            "redis_instance_type": "cache.r7g.large",
            "redis_cluster_mode_enabled": false,
            "redis_engine_version": "7.1",
            "redis_family": "redis7",
            "redis_allowed_cidr_blocks": [],
            "redis_allowed_security_group_ids": [],
            "redis_cloudwatch_logs_enabled": false,
            "redis_multi_az_enabled": false,
            "custom_secrets": [{"secret_name": "api-key", "length": 40, "special": true},
                               {"secret_name": "stripe", "manual": true}],
            "ddb_create": true,
            "ddb_global_create": true,
            "ddb_table_configuration": [{"table_name_suffix": "carts", "hash_key": "id", "hash_key_type": "S",
                                         "range_key": "", "range_key_type": "S", "billing_mode": "PAY_PER_REQUEST",
                                         "enable_point_in_time_recovery": true}],
            "ddb_global_table_configuration": [{"table_name_suffix": "sessions", "hash_key": "sid", "hash_key_type": "N",
                                                "range_key": "at", "range_key_type": "N", "billing_mode": "PROVISIONED",
                                                "enable_point_in_time_recovery": false}],
            "s3_create": false,
            "bucket_configuration": [],
            "create_rds": true,
            "rds_config": {"engine": "aurora-postgresql", "engine_version": "15.4", "db_port": 5433,
                           "db_name": "orders", "cluster_family": "aurora-postgresql15"},
            "rds_scaling_config": {"min_capacity": 1, "max_capacity": 4.0},
            "rds_backup_retention_period": 7,
            "rds_iam_auth_enabled": true,
        })));
        assert_eq!(vars, expected);
    }

    #[test]
    fn an_empty_snapshot_gets_the_defaults_and_no_conditional_variable() {
        let vars = mapped("aws", &json!({}), "");
        for (name, default) in [
            ("project_name", json!("")),
            ("region", json!("")),
            ("environment", json!("")),
            ("aws_account_id", json!("")),
            ("provision_vpc", json!(true)),
            ("vpc_cidr", json!("10.0.0.0/16")),
            ("vpc_single_nat_gateway", json!(false)),
            ("eks_cluster_version", json!("1.32")),
            ("enable_karpenter", json!(false)),
            ("eks_cluster_admins", json!([])),
            ("dns_hosted_zone", json!("")),
            ("dns_main_domain", json!("")),
            ("acm_certificate_enable", json!(false)),
            ("provision_sqs", json!(false)),
            ("sqs_queues", json!({})),
            ("sns_topics", json!({})),
            ("create_elasticache_redis", json!(false)),
            ("redis_cluster_size", json!(1)),
            ("redis_instance_type", json!("cache.t3.micro")),
            ("custom_secrets", json!([])),
            ("ddb_create", json!(false)),
            ("ddb_global_create", json!(false)),
            ("ddb_table_configuration", json!([])),
            ("ddb_global_table_configuration", json!([])),
            ("s3_create", json!(false)),
            ("bucket_configuration", json!([])),
            ("create_rds", json!(false)),
        ] {
            assert_eq!(vars.get(name), Some(&default), "{name}");
        }
        for absent in [
            "redis_multi_az_enabled",
            "rds_config",
            "rds_scaling_config",
            "rds_backup_retention_period",
            "rds_iam_auth_enabled",
            "eks_instance_types",
            "eks_ng_min_size",
            "eks_ng_max_size",
            "eks_ng_desired_size",
            "vpc_id",
            "vpc_private_subnet_ids",
            "vpc_public_subnet_ids",
        ] {
            assert!(!vars.contains_key(absent), "{absent} is not set");
        }
    }

    #[test]
    fn a_database_and_a_cache_without_settings_get_the_originals_defaults() {
        let snapshot = json!({"databases": [{"name": "orders"}], "caches": [{}],
                              "cluster": {"instance_types": [], "node_min_size": 0}});
        let vars = mapped("aws", &snapshot, "");
        assert_eq!(
            vars["rds_config"],
            json!({"engine": "aurora-postgresql", "engine_version": "16.6", "db_port": 5432,
                   "db_name": "orders", "cluster_family": "aurora-postgresql16"})
        );
        assert!(!vars.contains_key("rds_scaling_config"));
        assert_eq!(vars["redis_instance_type"], "cache.t3.medium");
        assert_eq!(vars["redis_cluster_size"], 1);
        assert!(!vars.contains_key("eks_instance_types") && !vars.contains_key("eks_ng_min_size"));
        let mysql = mapped(
            "aws",
            &json!({"databases": [{"engine": "aurora-mysql", "engine_version": "8.0.mysql_aurora.3.05.2",
                                    "max_capacity": 8}]}),
            "",
        );
        assert_eq!(mysql["rds_config"]["cluster_family"], "aurora-mysql8.0");
        assert_eq!(
            mysql["rds_scaling_config"],
            json!({"min_capacity": 0.5, "max_capacity": 8})
        );
    }

    #[test]
    fn an_existing_vpc_is_passed_when_provision_network_is_false() {
        let existing = json!({"network": {"provision_network": false, "network_id": "vpc-0abc"}});
        let vars = mapped("aws", &existing, "");
        assert_eq!(vars["provision_vpc"], false);
        assert_eq!(vars["vpc_id"], "vpc-0abc");
        let no_id = json!({"network": {"provision_network": false, "network_id": ""}});
        let vars = mapped("aws", &no_id, "");
        assert_eq!(vars["provision_vpc"], true, "forced without a network id");
        assert!(!vars.contains_key("vpc_id"));
        let provisioned = json!({"network": {"provision_network": true, "network_id": "vpc-0abc"}});
        assert!(!mapped("aws", &provisioned, "").contains_key("vpc_id"));
    }

    #[test]
    fn flat_keys_stand_in_for_absent_nested_ones() {
        let flat = json!({"vpc_cidr": "10.9.0.0/16", "vpc_single_nat_gateway": true,
                          "eks_cluster_version": "1.30", "enable_karpenter": true,
                          "dns_main_domain": "old.example", "dns_hosted_zone": "ZOLD",
                          "redis_instance_type": "cache.m7g.large",
                          "network": {"single_nat_gateway": false}});
        let vars = mapped("aws", &flat, "");
        assert_eq!(vars["vpc_cidr"], "10.9.0.0/16");
        assert_eq!(
            vars["vpc_single_nat_gateway"], false,
            "the nested key wins when present"
        );
        assert_eq!(vars["eks_cluster_version"], "1.30");
        assert_eq!(vars["enable_karpenter"], true);
        assert_eq!(vars["dns_main_domain"], "old.example");
        assert_eq!(vars["dns_hosted_zone"], "ZOLD");
        assert_eq!(vars["redis_instance_type"], "cache.m7g.large");
    }

    #[test]
    fn only_a_json_true_turns_karpenter_on() {
        let snapshot = json!({"cluster": {"provider_config": {"enable_karpenter": "true"}}});
        assert_eq!(mapped("aws", &snapshot, "")["enable_karpenter"], false);
    }

    #[test]
    fn buckets_are_built_element_by_element() {
        let snapshot = json!({"storage_buckets": [
            {"name": "assets", "versioning": true, "public_access": true, "cors_origins": ["https://shop.example"]},
            {"name": "logs", "encryption": "aws:kms"}
        ]});
        let vars = mapped("aws", &snapshot, "");
        assert_eq!(vars["s3_create"], true);
        assert_eq!(
            vars["bucket_configuration"],
            json!([
                {"bucket_name_suffix": "assets", "acl_type": "private", "create_s3_user": false,
                 "versioning_enabled": true, "sse_algorithm": "AES256", "store_access_key_in_ssm": false,
                 "block_public_acls": false, "block_public_policy": false, "ignore_public_acls": false,
                 "restrict_public_buckets": false,
                 "cors_configuration": [{"allowed_headers": ["*"], "allowed_methods": ["GET", "PUT", "POST"],
                                         "allowed_origins": ["https://shop.example"], "expose_headers": [],
                                         "max_age_seconds": 3600}]},
                {"bucket_name_suffix": "logs", "acl_type": "private", "create_s3_user": false,
                 "versioning_enabled": false, "sse_algorithm": "aws:kms", "store_access_key_in_ssm": false,
                 "block_public_acls": true, "block_public_policy": true, "ignore_public_acls": true,
                 "restrict_public_buckets": true, "cors_configuration": []}
            ])
        );
    }

    #[test]
    fn queues_with_the_same_settings_are_left_as_the_original_wrote_them() {
        let snapshot = json!({"queues": [{"name": "a"}, {"name": "b", "fifo": false}]});
        assert_eq!(
            mapped("aws", &snapshot, "")["sqs_queues"],
            json!({"a": {"fifo_queue": false, "dlq_enable": false},
                   "b": {"fifo_queue": false, "dlq_enable": false}})
        );
    }

    #[test]
    fn subnets_split_on_public_ip_on_launch_and_fill_each_other() {
        let answer = json!({"Subnets": [
            {"SubnetId": "subnet-a", "MapPublicIpOnLaunch": false},
            {"SubnetId": "subnet-b", "MapPublicIpOnLaunch": true},
            {"SubnetId": "subnet-c"}
        ]});
        assert_eq!(
            split_subnets(&answer),
            (
                vec!["subnet-a".to_string(), "subnet-c".to_string()],
                vec!["subnet-b".to_string()]
            )
        );
        let public_only =
            json!({"Subnets": [{"SubnetId": "subnet-b", "MapPublicIpOnLaunch": true}]});
        assert_eq!(
            split_subnets(&public_only),
            (vec!["subnet-b".to_string()], vec!["subnet-b".to_string()])
        );
        assert_eq!(split_subnets(&json!({"Subnets": []})), (vec![], vec![]));
    }
}
