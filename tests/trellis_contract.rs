//! Contract tests: Tendril's output read the way the deployed Trellis reads
//! it (crate::support::trellis_reads holds each screen's reading): the vine form's
//! network, subnet, DNS and user pickers on real moto discovery, and the
//! version the Tendrils page compares with the newest release.

use std::time::Duration;

use crate::support::fake_trellis::FakeTrellis;
use crate::support::moto::Moto;
use crate::support::tendril::{exec_claim, worker_env, Tendril, TendrilProcess};
use crate::support::trellis_reads::{
    aws_dns_picker, aws_network_picker, aws_subnets, iam_user_picker, is_outdated, AwsSubnet,
    Choice,
};
use crate::support::TempDir;
use serde_json::json;

const ACCOUNT: &str = "313131313131";

/// What the account holds: a tagged VPC with a public subnet, a public and
/// a private hosted zone, and an IAM user. Returns the VPC and subnet ids.
fn plant_resources(moto: &Moto) -> (String, String) {
    let vpc = moto.aws_as(
        ACCOUNT,
        &[
            "ec2",
            "create-vpc",
            "--cidr-block",
            "10.42.0.0/16",
            "--tag-specifications",
            "ResourceType=vpc,Tags=[{Key=Name,Value=shop-vpc}]",
        ],
    );
    let vpc_id = vpc["Vpc"]["VpcId"].as_str().unwrap().to_string();
    let subnet = moto.aws_as(
        ACCOUNT,
        &[
            "ec2",
            "create-subnet",
            "--vpc-id",
            &vpc_id,
            "--cidr-block",
            "10.42.1.0/24",
            "--availability-zone",
            "us-east-1a",
        ],
    );
    let subnet_id = subnet["Subnet"]["SubnetId"].as_str().unwrap().to_string();
    moto.aws_as(
        ACCOUNT,
        &[
            "ec2",
            "modify-subnet-attribute",
            "--subnet-id",
            &subnet_id,
            "--map-public-ip-on-launch",
        ],
    );
    moto.aws_as(
        ACCOUNT,
        &[
            "route53",
            "create-hosted-zone",
            "--name",
            "shop.example",
            "--caller-reference",
            "public-zone",
        ],
    );
    let private_vpc = format!("VPCRegion=us-east-1,VPCId={vpc_id}");
    moto.aws_as(
        ACCOUNT,
        &[
            "route53",
            "create-hosted-zone",
            "--name",
            "internal.shop.example",
            "--caller-reference",
            "private-zone",
            "--vpc",
            &private_vpc,
            "--hosted-zone-config",
            "PrivateZone=true",
        ],
    );
    moto.aws_as(
        ACCOUNT,
        &[
            "iam",
            "create-user",
            "--user-name",
            "ci",
            "--path",
            "/deploy/",
        ],
    );
    (vpc_id, subnet_id)
}

#[test]
fn the_network_dns_and_user_pickers_read_aws_discovery() {
    let moto = Moto::start();
    let (vpc_id, subnet_id) = plant_resources(&moto);
    let scratch = TempDir::new("tendril-contract-test");
    let role = format!("arn:aws:iam::{ACCOUNT}:role/vintner-tendril");
    let claim = json!({
        "job": {"id": "contract-connection-test", "job_type": "CONNECTION_TEST", "config_snapshot": {}},
        "cloud_identity": {"provider": "aws", "role_arn": role, "external_id": "ext-1", "account_id": ACCOUNT}
    });
    let platform = moto.platform_env();
    let mut env: Vec<(&str, String)> = platform
        .iter()
        .map(|(name, value)| (name.as_str(), value.clone()))
        .collect();
    env.push(("TENDRIL_AWS_REGIONS", "us-east-1".into()));
    let (code, result, output) = exec_claim(scratch.path(), "connection-test", &claim, &env);
    assert_eq!(code, 0, "{output}");
    let cached = &result["execution_metadata"]["cached_resources"];

    let networks = aws_network_picker(cached, "us-east-1");
    assert!(
        networks.contains(&Choice {
            id: vpc_id.clone(),
            label: "shop-vpc 10.42.0.0/16".into()
        }),
        "{networks:?}\n{cached}"
    );
    let untagged = networks
        .iter()
        .find(|choice| choice.label.ends_with("(default)"))
        .expect("moto's default VPC, untagged");
    assert!(
        untagged.label.starts_with(&untagged.id),
        "an untagged VPC shows its id: {untagged:?}"
    );
    assert_eq!(
        aws_subnets(cached, "us-east-1", &vpc_id),
        [AwsSubnet {
            id: subnet_id,
            cidr: "10.42.1.0/24".into(),
            zone: "us-east-1a".into(),
            public: true
        }]
    );
    let zones = aws_dns_picker(cached);
    assert_eq!(zones.len(), 1, "only the public zone is offered: {zones:?}");
    assert_eq!(zones[0].label, "shop.example");
    assert!(!zones[0].id.contains('/'), "{zones:?}");
    let private = cached["hosted_zones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|zone| zone["IsPrivate"] == true)
        .expect("the private zone is listed");
    assert_eq!(private["Name"], "internal.shop.example");
    assert!(private["RecordCount"].is_u64(), "{private}");
    assert_eq!(
        iam_user_picker(cached),
        [Choice {
            id: format!("arn:aws:iam::{ACCOUNT}:user/deploy/ci"),
            label: "ci".into()
        }]
    );
    assert_eq!(cached["iam_users"][0]["path"], "/deploy/");
}

#[test]
fn the_version_is_the_build_and_every_heartbeat_and_request_carry_it() {
    let output = Tendril::command().arg("--version").output().unwrap();
    let printed = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let version = printed
        .strip_prefix("tendril ")
        .unwrap_or_else(|| panic!("{printed}"))
        .to_string();
    assert_ne!(
        version, "0.1.0",
        "the release it was built as, not a constant"
    );

    let trellis = FakeTrellis::start();
    let scratch = TempDir::new("tendril-contract-test");
    let worker = worker_env(&trellis, &scratch.path().join("work"));
    let mut command = worker.command();
    command.arg("start");
    let mut tendril = TendrilProcess::spawn(command);
    trellis.wait_until(Duration::from_secs(60), "two heartbeats", |t| {
        t.heartbeats(&worker.id).len() >= 2
    });
    tendril.signal(libc::SIGTERM);
    assert_eq!(
        tendril
            .wait_timeout(Duration::from_secs(60))
            .and_then(|s| s.code()),
        Some(0)
    );
    for beat in trellis.heartbeats(&worker.id) {
        assert_eq!(beat["version"], version.as_str(), "{beat}");
    }
    for request in trellis.requests() {
        assert_eq!(
            request.header("user-agent"),
            Some(format!("tendril/{version}").as_str())
        );
    }
    let row = trellis.worker_row(&worker.id).unwrap();
    assert!(!is_outdated(&row, &version), "{row}");
    assert!(is_outdated(&row, "99.0.0"));
}
