//! The environment a job's tools run with, built from scratch per job.
//!
//! Tendril never changes its own environment; each tool gets a small base
//! (PATH, HOME in the workspace, locale, Terraform's automation switches),
//! the network settings the operator gave Tendril (proxies, CA bundles, AWS
//! endpoints), the names listed in `TENDRIL_PASS_ENV`, and then the job's
//! own credentials. Tendril's own cloud credentials are passed on only to a
//! self-hosted job without a cloud identity: that customer machine's
//! ambient credentials are what such a job is meant to use. (A GCP job whose
//! federation is sourced from AWS gets the Google token Tendril exchanged,
//! not the AWS identity it was exchanged with.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::settings::{JobSettings, WorkerMode};
use crate::workspace::Workspace;

/// Network settings every tool needs as much as Tendril does.
const NETWORK_VARIABLES: [&str; 8] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "AWS_CA_BUNDLE",
];

/// The host's own cloud credentials and where the CLIs keep them.
const AMBIENT_CREDENTIAL_PREFIXES: [&str; 5] = ["AWS_", "AZURE_", "ARM_", "GOOGLE_", "CLOUDSDK_"];

/// The Terraform CLI configuration every job uses: no checkpoint calls,
/// and, with a provider mirror, the providers it holds from the mirror alone
/// (a registry outage cannot fail them); any other from the registry.
pub fn terraform_cli_config(provider_mirror: Option<&Path>) -> String {
    let mut config = String::from("disable_checkpoint = true\n");
    let mirrored = provider_mirror.map(mirrored_providers).unwrap_or_default();
    if let (Some(mirror), false) = (provider_mirror, mirrored.is_empty()) {
        let quote = |text: &str| serde_json::to_string(text).unwrap_or_default();
        let list = mirrored
            .iter()
            .map(|p| quote(p))
            .collect::<Vec<_>>()
            .join(", ");
        config.push_str(&format!(
            "provider_installation {{\n  filesystem_mirror {{\n    path    = {}\n    include = [{list}]\n  }}\n  \
             direct {{\n    exclude = [{list}]\n  }}\n}}\n",
            quote(&mirror.display().to_string())
        ));
    }
    config
}

/// The providers a mirror holds (`<host>/<namespace>/<type>` directories).
fn mirrored_providers(mirror: &Path) -> Vec<String> {
    let children = |dir: &Path| -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.is_dir())
            .collect();
        found.sort();
        found
    };
    let mut providers = Vec::new();
    for host in children(mirror) {
        for namespace in children(&host) {
            for provider in children(&namespace) {
                if let Ok(relative) = provider.strip_prefix(mirror) {
                    providers.push(relative.display().to_string());
                }
            }
        }
    }
    providers
}

/// Tendril's own environment, read once; never modified.
#[derive(Debug, Clone)]
pub struct HostEnv {
    vars: BTreeMap<String, String>,
}

impl HostEnv {
    pub fn capture() -> Self {
        HostEnv {
            vars: std::env::vars().collect(),
        }
    }

    pub fn from_pairs<const N: usize>(pairs: [(&str, &str); N]) -> Self {
        HostEnv {
            vars: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }
}

/// The base environment of every tool of a job: everything but the job's
/// own credentials.
pub fn base_environment(
    host: &HostEnv,
    settings: &JobSettings,
    workspace: &Workspace,
    ambient_credentials: bool,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut copy = |name: &str| {
        if let Some(value) = host.get(name) {
            env.insert(name.to_string(), value.to_string());
        }
    };
    for name in NETWORK_VARIABLES
        .iter()
        .copied()
        .chain(["TF_PLUGIN_CACHE_DIR"])
    {
        copy(name);
    }
    for name in &settings.pass_env {
        copy(name);
    }
    for (name, value) in &host.vars {
        let endpoint = name == "AWS_ENDPOINT_URL" || name.starts_with("AWS_ENDPOINT_URL_");
        let ambient = ambient_credentials
            && AMBIENT_CREDENTIAL_PREFIXES
                .iter()
                .any(|p| name.starts_with(p));
        if endpoint || ambient {
            env.insert(name.clone(), value.clone());
        }
    }
    if ambient_credentials {
        // HOME moves into the workspace: point the CLIs at the host's files.
        if let Some(home) = host.get("HOME") {
            for (name, path) in [
                ("AWS_CONFIG_FILE", ".aws/config"),
                ("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"),
                ("CLOUDSDK_CONFIG", ".config/gcloud"),
                ("AZURE_CONFIG_DIR", ".azure"),
            ] {
                env.entry(name.to_string())
                    .or_insert_with(|| format!("{home}/{path}"));
            }
        }
    }
    env.insert(
        "PATH".into(),
        host.get("PATH")
            .unwrap_or("/usr/local/bin:/usr/bin:/bin")
            .into(),
    );
    env.insert("HOME".into(), workspace.home().display().to_string());
    env.insert("LANG".into(), host.get("LANG").unwrap_or("C.UTF-8").into());
    env.insert("TF_IN_AUTOMATION".into(), "1".into());
    env.insert("CHECKPOINT_DISABLE".into(), "1".into());
    env.insert(
        "TF_CLI_CONFIG_FILE".into(),
        workspace.path().join("terraform.rc").display().to_string(),
    );
    env
}

/// This host's name (as Terraform writes it in a lock's `Who`, after the
/// user), for the announcement and the lease on a state.
pub fn hostname() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length, and gethostname
    // writes at most that many bytes.
    let result = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if result != 0 {
        return "unknown".into();
    }
    let end = buffer.iter().position(|b| *b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}

/// The project a GCP job's tools act in (gcloud's and Terraform's google
/// provider's variables); the token comes with each tool's credentials.
pub fn gcp_project(project_id: &str) -> BTreeMap<String, String> {
    ["CLOUDSDK_CORE_PROJECT", "GOOGLE_PROJECT"]
        .into_iter()
        .map(|name| (name.to_string(), project_id.to_string()))
        .collect()
}

/// Whether a job runs with the host's ambient credentials: only on a
/// self-hosted worker, and only when Trellis sent no identity.
pub fn uses_ambient_credentials(mode: WorkerMode, has_identity: bool) -> bool {
    mode == WorkerMode::SelfHosted && !has_identity
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::JobArgs;
    use clap::Parser;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        job: JobArgs,
    }

    fn settings() -> JobSettings {
        Args::parse_from(["test", "--pass-env", "EXTRA"])
            .job
            .resolve()
            .unwrap()
    }

    fn host() -> HostEnv {
        HostEnv::from_pairs([
            ("PATH", "/bin"),
            ("HOME", "/home/tendril"),
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9000"),
            ("AWS_ACCESS_KEY_ID", "AKIAOWNKEY"),
            ("AWS_SECRET_ACCESS_KEY", "own-secret"),
            ("EXTRA", "yes"),
            ("UNRELATED", "no"),
        ])
    }

    #[test]
    fn tendrils_own_keys_stay_out_of_a_job_with_an_identity() {
        let root = std::env::temp_dir().join(format!("tendril-env-test-{}", std::process::id()));
        let workspace = Workspace::create(&root, "j").unwrap();
        let env = base_environment(&host(), &settings(), &workspace, false);
        assert_eq!(
            env.get("HTTPS_PROXY").map(String::as_str),
            Some("http://proxy:3128")
        );
        assert_eq!(
            env.get("AWS_ENDPOINT_URL_S3").map(String::as_str),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(env.get("EXTRA").map(String::as_str), Some("yes"));
        assert!(!env.contains_key("AWS_ACCESS_KEY_ID"));
        assert!(!env.contains_key("UNRELATED"));
        assert_eq!(env["HOME"], workspace.home().display().to_string());
        assert_eq!(env["TF_IN_AUTOMATION"], "1");

        let ambient = base_environment(&host(), &settings(), &workspace, true);
        assert_eq!(
            ambient.get("AWS_ACCESS_KEY_ID").map(String::as_str),
            Some("AKIAOWNKEY")
        );
        assert_eq!(
            ambient["AWS_SHARED_CREDENTIALS_FILE"],
            "/home/tendril/.aws/credentials"
        );
        drop(workspace);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn mirrored_providers_come_from_the_mirror_alone() {
        assert_eq!(terraform_cli_config(None), "disable_checkpoint = true\n");
        let mirror =
            std::env::temp_dir().join(format!("tendril-mirror-test-{}", std::process::id()));
        assert_eq!(
            terraform_cli_config(Some(&mirror)),
            "disable_checkpoint = true\n",
            "an empty mirror is no mirror"
        );
        std::fs::create_dir_all(mirror.join("registry.terraform.io/hashicorp/aws/5.80.0")).unwrap();
        let config = terraform_cli_config(Some(&mirror));
        assert!(
            config.contains(r#"include = ["registry.terraform.io/hashicorp/aws"]"#),
            "{config}"
        );
        assert!(
            config.contains(r#"exclude = ["registry.terraform.io/hashicorp/aws"]"#),
            "{config}"
        );
        std::fs::remove_dir_all(mirror).unwrap();
    }

    #[test]
    fn only_self_hosted_jobs_without_identity_use_ambient_credentials() {
        assert!(uses_ambient_credentials(WorkerMode::SelfHosted, false));
        assert!(!uses_ambient_credentials(WorkerMode::SelfHosted, true));
        assert!(!uses_ambient_credentials(WorkerMode::CloudHosted, false));
    }
}
