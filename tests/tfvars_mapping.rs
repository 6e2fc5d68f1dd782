//! The variables a vine's Terraform receives, per provider: a PLAN of a
//! snapshot shaped as the web app sends it, with `tendril exec` and local
//! state, on real Terraform and the fixture vines of
//! `tests/fixtures/templates/vine/<provider>` (which declare the platform's
//! variable names and show what they received). AWS looks the subnets of an
//! existing VPC up in real moto; Azure signs in at the fake of Microsoft
//! Entra (tests/support/fake_azure.rs; no real Azure is reachable here).

use crate::support::fake_azure::FakeAzure;
use crate::support::moto::Moto;
use crate::support::tendril::exec_claim;
use crate::support::TempDir;
use serde_json::{json, Value};

const GIT_TOKEN: &str = "ghp_tfvarstesttoken5678";
const ACCOUNT: &str = "303030303030";

/// A vine's snapshot as the web app sends it, with every component.
fn web_snapshot(provider: &str, region: &str) -> Value {
    json!({
        "id": "vine-1", "user_id": "u-1", "vineyard_id": "vy-1", "cloud_identity_id": "ci-1",
        "project_name": "shop", "environment_stage": "staging", "region": region,
        "terraform_version": "1.10.3", "status": "PLANNING", "estimated_monthly_cost": null,
        "created_at": "2026-05-01T00:00:00Z", "updated_at": "2026-05-02T00:00:00Z",
        "provider": provider,
        "network": {"provision_network": true, "cidr_block": "10.60.0.0/16", "single_nat_gateway": true},
        "cluster": {"cluster_version": "1.30", "instance_types": ["large"], "node_min_size": 1,
                    "node_max_size": 4, "node_desired_size": 2,
                    "cluster_admins": [{"username": "alice", "groups": ["system:masters"]}],
                    "provider_config": {"enable_karpenter": true, "enable_autopilot": false}},
        "dns": {"enabled": true, "zone_id": "Z42", "domain_name": "shop.example",
                "provider_config": {"acm_certificate": true, "cloud_armor": true, "azure_waf": true}},
        "repositories": {"apps_destination_repo": "https://git.example/shop/apps.git"},
        "databases": [{"name": "orders", "engine": "postgres", "engine_version": "16.6", "port": 5432,
                       "backup_retention_days": 7}],
        "caches": [{"num_cache_nodes": 2, "node_type": "cache.r7g.large", "multi_az": true}],
        "queues": [{"name": "jobs", "fifo": true, "visibility_timeout": 60},
                   {"name": "mail", "message_retention": 3600}],
        "topics": [{"name": "events", "subscriptions": [{"protocol": "sqs", "endpoint": "audit"}]}],
        "nosql_tables": [{"name": "carts", "table_type": "standard", "hash_key": "id"}],
        "secrets": [{"name": "api-key", "generate": true, "length": 32, "special_chars": true}],
        "git_access_token": GIT_TOKEN
    })
}

/// A PLAN that succeeded: its `resource_changes` and its log.
struct Planned {
    plan: Value,
    log: String,
}

impl Planned {
    /// The planned input of a `terraform_data` resource.
    fn input(&self, address: &str) -> &Value {
        let changes = self.plan["resource_changes"].as_array().unwrap();
        let change = changes
            .iter()
            .find(|c| c["address"] == address)
            .unwrap_or_else(|| panic!("no {address} in {changes:?}"));
        &change["change"]["after"]["input"]
    }

    /// Every variable's value, as the fixture received it.
    fn received(&self) -> &Value {
        self.input("terraform_data.received")
    }
}

/// PLANs `snapshot` with `identity` via `tendril exec`; panics unless it succeeds.
fn plan(
    scratch: &TempDir,
    name: &str,
    snapshot: Value,
    identity: Value,
    env: &[(&str, String)],
) -> Planned {
    let claim = json!({
        "job": {"id": format!("plan-{name}"), "job_type": "PLAN", "vineyard_id": "vy-1", "vine_id": "vine-1",
                "config_snapshot": snapshot},
        "cloud_identity": identity
    });
    let templates = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/templates");
    let mut env = env.to_vec();
    env.push(("TENDRIL_TEMPLATES_DIR", templates.to_string()));
    env.push((
        "TENDRIL_STATE_DIR",
        scratch.path().join("state").display().to_string(),
    ));
    let (code, result, output) = exec_claim(scratch.path(), name, &claim, &env);
    assert_eq!(code, 0, "{result}\n{output}");
    let out = scratch.path().join(format!("out-{name}"));
    let log = std::fs::read_to_string(out.join("job.log")).unwrap();
    let artifact = std::fs::read(out.join("terraform.plan.out")).unwrap();
    assert!(
        !String::from_utf8_lossy(&artifact).contains(GIT_TOKEN) && !log.contains(GIT_TOKEN),
        "the git token is in neither the plan nor the log"
    );
    assert!(
        !log.contains("undeclared variable"),
        "only declared variables are written:\n{log}"
    );
    Planned {
        plan: result["execution_metadata"]["plan_result"].clone(),
        log,
    }
}

/// One object of the keys of both (a `json!` of them all is too deep).
fn merged(mut first: Value, second: Value) -> Value {
    if let (Some(first), Value::Object(second)) = (first.as_object_mut(), second) {
        first.extend(second);
    }
    first
}

/// `aws ec2 ...` in moto, in the role's account and the vine's region.
fn ec2(moto: &Moto, args: &[&str]) -> Value {
    let mut all = vec!["ec2"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--region", "eu-west-1"]);
    moto.aws_as(ACCOUNT, &all)
}

fn aws_identity() -> Value {
    json!({"provider": "aws", "role_arn": format!("arn:aws:iam::{ACCOUNT}:role/vintner-tendril"),
           "external_id": "ext-1", "account_id": ACCOUNT})
}

#[test]
fn an_aws_plan_gets_the_mapping_and_the_subnets_of_an_existing_vpc() {
    let moto = Moto::start();
    let scratch = TempDir::new("tendril-tfvars-aws");
    let vpc = ec2(&moto, &["create-vpc", "--cidr-block", "10.70.0.0/16"])["Vpc"]["VpcId"]
        .as_str()
        .unwrap()
        .to_string();
    let subnet = |cidr: &str| {
        let created = ec2(
            &moto,
            &["create-subnet", "--vpc-id", &vpc, "--cidr-block", cidr],
        );
        created["Subnet"]["SubnetId"].as_str().unwrap().to_string()
    };
    let (private, public) = (subnet("10.70.1.0/24"), subnet("10.70.2.0/24"));
    ec2(
        &moto,
        &[
            "modify-subnet-attribute",
            "--subnet-id",
            &public,
            "--map-public-ip-on-launch",
        ],
    );
    let mut snapshot = web_snapshot("aws", "eu-west-1");
    snapshot["network"] =
        json!({"provision_network": false, "network_id": vpc, "cidr_block": "10.70.0.0/16"});
    let platform = moto.platform_env();
    let env: Vec<(&str, String)> = platform
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let planned = plan(&scratch, "aws", snapshot, aws_identity(), &env);
    assert!(planned.log.contains(&format!(
        "$ aws ec2 describe-subnets --filters Name=vpc-id,Values={vpc}"
    )));
    let expected = merged(
        json!({
        "project_name": "shop", "region": "eu-west-1", "environment": "staging", "aws_account_id": ACCOUNT,
        "provision_vpc": false, "vpc_id": vpc, "vpc_cidr": "10.70.0.0/16", "vpc_single_nat_gateway": false,
        "vpc_private_subnet_ids": [private], "vpc_public_subnet_ids": [public],
        "eks_cluster_version": "1.30", "enable_karpenter": true,
        "eks_cluster_admins": [{"username": "alice", "path": "/users/"}],
        "eks_instance_types": ["large"], "eks_ng_min_size": 1, "eks_ng_max_size": 4, "eks_ng_desired_size": 2,
        "dns_hosted_zone": "Z42", "dns_main_domain": "shop.example", "acm_certificate_enable": true,
        "cloudfront_waf_enabled": false, "application_waf_enabled": false,
        "waf_webacl_cloudwatch_enabled": false, "waf_sampled_requests_enabled": false,
        "waf_logging_enabled": false, "waf_log_retention_days": 90}),
        json!({
            "provision_sqs": "true",
            "sqs_queues": {
                "jobs": {"fifo_queue": true, "dlq_enable": false, "visibility_timeout_seconds": 60,
                         "message_retention_seconds": 345600},
                "mail": {"fifo_queue": false, "dlq_enable": false, "visibility_timeout_seconds": 30,
                         "message_retention_seconds": 3600}
            },
            "sns_topics": {"events": {"subscriptions": [{"protocol": "sqs", "endpoint": "audit"}]}},
            "create_elasticache_redis": true, "redis_cluster_size": 2, "redis_instance_type": "cache.r7g.large",
            "redis_cluster_mode_enabled": false, "redis_engine_version": "7.1", "redis_family": "redis7",
            "redis_allowed_cidr_blocks": [], "redis_allowed_security_group_ids": [],
            "redis_cloudwatch_logs_enabled": false, "redis_multi_az_enabled": true,
            "custom_secrets": [{"secret_name": "api-key", "length": 32, "special": true}],
            "ddb_create": true, "ddb_global_create": false,
            "ddb_table_configuration": [{"table_name_suffix": "carts", "hash_key": "id", "hash_key_type": "S",
                                         "range_key": "", "range_key_type": "S", "billing_mode": "PAY_PER_REQUEST",
                                         "enable_point_in_time_recovery": false}],
            "ddb_global_table_configuration": [],
            "s3_create": false, "bucket_configuration": [],
            "create_rds": true,
            "rds_config": {"engine": "postgres", "engine_version": "16.6", "db_port": 5432, "db_name": "orders",
                           "engine_mode": "provisioned", "cluster_family": "aurora-postgresql16", "cluster_size": 2},
            "rds_scaling_config": {"min_capacity": 0.5, "max_capacity": 2},
            "rds_backup_retention_period": 7, "rds_iam_auth_enabled": false
        }),
    );
    assert_eq!(planned.received(), &expected);
    assert_eq!(
        planned.input("terraform_data.database")["name"],
        "shop-staging-db"
    );
}

#[test]
fn a_failed_subnet_lookup_is_a_warning_and_leaves_the_subnets_to_the_template() {
    let scratch = TempDir::new("tendril-tfvars-aws-down");
    let mut snapshot = web_snapshot("aws", "eu-west-1");
    snapshot["network"] = json!({"provision_network": false, "network_id": "vpc-0unreachable"});
    // No identity: a self-hosted job uses Tendril's own credentials, here
    // against an EC2 endpoint nothing listens on.
    let closed = format!("http://127.0.0.1:{}", crate::support::free_port());
    let env = [
        ("AWS_ENDPOINT_URL", closed),
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("AWS_MAX_ATTEMPTS", "1".to_string()),
        ("TENDRIL_PASS_ENV", "AWS_MAX_ATTEMPTS".to_string()),
    ];
    let planned = plan(&scratch, "aws-down", snapshot, Value::Null, &env);
    assert!(
        planned
            .log
            .contains("warning: cannot look up the subnets of vpc-0unreachable in eu-west-1"),
        "{}",
        planned.log
    );
    let received = planned.received();
    assert_eq!(received["vpc_id"], "vpc-0unreachable");
    assert_eq!(received["provision_vpc"], false);
    assert_eq!(received["vpc_private_subnet_ids"], json!([""]));
    assert_eq!(received["vpc_public_subnet_ids"], json!([""]));
    assert_eq!(received["aws_account_id"], "", "no identity, no account");
}

#[test]
fn a_gcp_plan_gets_the_gcp_mapping_and_the_identitys_project() {
    let scratch = TempDir::new("tendril-tfvars-gcp");
    // No wif_config: nothing signs in to GCP, and Terraform's built-in
    // resources need no credentials.
    let identity = json!({"provider": "gcp", "project_id": "shop-prod-123"});
    let planned = plan(
        &scratch,
        "gcp",
        web_snapshot("gcp", "europe-west1"),
        identity,
        &[],
    );
    let expected = json!({
        "project_name": "shop", "region": "europe-west1", "environment": "staging", "project_id": "shop-prod-123",
        "provision_network": true, "network_cidr": "10.60.0.0/16", "single_cloud_nat": true, "network_id": "",
        "provision_gke": true, "gke_cluster_version": "1.30", "gke_enable_autopilot": false,
        "gke_instance_types": ["large"], "gke_node_min_size": 1, "gke_node_max_size": 4, "gke_node_desired_size": 2,
        "cloud_dns_enabled": true, "cloud_dns_domain": "shop.example", "cloud_dns_zone_name": "Z42",
        "cloud_dns_managed_certificate": false, "cloud_armor_enabled": true,
        "create_pubsub": true,
        "pubsub_topics": {
            "events": {"message_retention_duration": "86400s",
                       "subscriptions": [{"name": "audit", "ack_deadline_seconds": 10}]},
            "jobs": {"message_retention_duration": "86400s",
                     "subscriptions": [{"name": "jobs-sub", "ack_deadline_seconds": 60}]},
            "mail": {"message_retention_duration": "3600s",
                     "subscriptions": [{"name": "mail-sub", "ack_deadline_seconds": 10}]}
        },
        "create_memorystore": true, "memorystore_tier": "STANDARD_HA",
        "provision_artifact_registry": false, "create_cloud_storage": false, "cloud_storage_buckets": [],
        "custom_secrets": [{"name": "api-key", "generate": true, "length": 32, "special_chars": true}],
        "create_cloud_sql": true, "cloud_sql_authorized_networks": [], "cloud_sql_engine": "POSTGRES",
        "cloud_sql_engine_version": "16", "cloud_sql_port": 5432, "cloud_sql_backup_retention_days": 7,
        "cloud_sql_iam_auth": false
    });
    assert_eq!(planned.received(), &expected);
    assert_eq!(
        planned.input("terraform_data.cloud_sql")["database_version"],
        "POSTGRES_16",
        "the template's join of engine and version is a Cloud SQL version"
    );
    assert!(
        planned
            .log
            .contains("of the 35 variables the gcp template declares"),
        "{}",
        planned.log
    );
}

#[test]
fn an_azure_plan_gets_the_azure_mapping_and_the_identitys_subscription() {
    const TENANT: &str = "11111111-2222-3333-4444-555555555555";
    const CLIENT: &str = "66666666-7777-8888-9999-000000000000";
    const SUBSCRIPTION: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
    const FEDERATED: &str = "eyJhbGciOiJSUzI1NiJ9.federated-token-for-tfvars.signature";
    // An Azure identity signs the job's tools in (ARM_* for Terraform).
    let azure = FakeAzure::start(TENANT, CLIENT, FEDERATED, SUBSCRIPTION);
    let scratch = TempDir::new("tendril-tfvars-azure");
    let token_file = scratch.path().join("federated-token");
    std::fs::write(&token_file, FEDERATED).unwrap();
    let identity = json!({"provider": "azure", "tenant_id": TENANT, "client_id": CLIENT,
                          "subscription_id": SUBSCRIPTION});
    let env = [
        (
            "AZURE_FEDERATED_TOKEN_FILE",
            token_file.display().to_string(),
        ),
        ("TENDRIL_AZURE_AUTHORITY_HOST", azure.url()),
        ("TENDRIL_AZURE_RESOURCE_MANAGER", azure.url()),
    ];
    let mut snapshot = web_snapshot("azure", "westeurope");
    snapshot["network"] =
        json!({"provision_network": false, "network_id": "/subscriptions/s/vnets/hub"});
    let planned = plan(&scratch, "azure", snapshot, identity, &env);
    let expected = json!({
        "project_name": "shop", "environment": "staging", "subscription_id": SUBSCRIPTION,
        "location": "westeurope",
        "provision_vnet": false, "vnet_cidr": "10.0.0.0/16", "single_nat_gateway": false,
        "vnet_id": "/subscriptions/s/vnets/hub",
        "provision_aks": true, "aks_cluster_version": "1.30", "aks_instance_types": ["large"],
        "aks_node_min_size": 1, "aks_node_max_size": 4, "aks_node_desired_size": 2,
        "azure_dns_enabled": true, "azure_dns_domain": "shop.example", "azure_dns_zone_name": "Z42",
        "azure_waf_enabled": true, "azure_managed_certificate": false,
        "create_service_bus": true,
        "service_bus_queues": {
            "jobs": {"max_delivery_count": 10, "lock_duration": "PT60S", "requires_session": true,
                     "default_message_ttl": "P10675199DT2H48M5.4775807S"},
            "mail": {"max_delivery_count": 10, "lock_duration": "PT1M", "requires_session": false,
                     "default_message_ttl": "PT3600S"}
        },
        "service_bus_topics": {"events": {"subscriptions": [{"name": "audit", "max_delivery_count": 10}]}},
        "create_azure_cache": true, "azure_cache_sku": "Standard", "azure_cache_multi_az": true,
        "create_cosmos_db": true,
        "cosmos_db_collections": [{"name": "carts", "partition_key": "id", "billing_mode": "PAY_PER_REQUEST"}],
        "provision_acr": false, "create_storage_account": false, "storage_containers": [],
        "custom_secrets": [{"name": "api-key", "generate": true, "length": 32, "special_chars": true}],
        "create_azure_db": true, "azure_db_engine": "postgres", "azure_db_engine_version": "16.6",
        "azure_db_port": 5432, "azure_db_backup_retention_days": 7, "azure_db_iam_auth": false
    });
    assert_eq!(planned.received(), &expected);
}
