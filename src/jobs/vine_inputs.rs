//! What a vine's Terraform run is given: the template copied into the
//! workspace, `terraform.tfvars.json` from the snapshot, and where the state
//! lives (the S3-compatible bucket, or a local directory by default).
//!
//! The snapshot comes in two shapes: flat keys (what Trellis sends) and
//! nested `network`, `cluster` and `dns` objects (what the original worker
//! expected). Every top-level key becomes a variable of the same name, and
//! the nested keys are lifted to their flat names too (see [`lifted_name`]);
//! a flat key wins over a lifted one. The secrets named in
//! [`SECRET_SETTINGS`] never reach tfvars (a saved plan records every
//! variable value, and plans leave the worker).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::JobError;
use crate::config::StateStorage;
use crate::private_files::{create_private_dir, write_private_file};
use crate::workspace::Workspace;

/// Settings that are secrets: they go only to the step that needs them.
pub const SECRET_SETTINGS: [&str; 2] = ["git_access_token", "worker_token"];

/// The bucket that holds every vine's and worker's state.
pub const STATE_BUCKET: &str = "vine-terraform-state";

/// The profile, in the workspace's state credentials file, that holds the
/// storage keys.
const STATE_PROFILE: &str = "tendril-state";

/// The state credentials file, in Terraform's working directory.
const STATE_CREDENTIALS: &str = "state-credentials";

/// The flat name of a key of a nested settings object.
pub fn lifted_name(object: &str, key: &str) -> String {
    match (object, key) {
        ("dns", "enabled") => "enable_dns".into(),
        ("cluster" | "dns", _) if key.starts_with(&format!("{object}_")) => key.into(),
        ("cluster" | "dns", _) => format!("{object}_{key}"),
        _ => key.into(),
    }
}

/// The nested objects whose keys are lifted.
const NESTED_OBJECTS: [&str; 3] = ["network", "cluster", "dns"];

fn without_secrets(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !SECRET_SETTINGS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), without_secrets(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The Terraform variables of a snapshot.
pub fn tfvars(snapshot: &Map<String, Value>) -> Map<String, Value> {
    let snapshot = match without_secrets(&Value::Object(snapshot.clone())) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let mut vars = Map::new();
    for object in NESTED_OBJECTS {
        if let Some(Value::Object(inner)) = snapshot.get(object) {
            for (key, value) in inner {
                vars.insert(lifted_name(object, key), value.clone());
            }
        }
    }
    vars.extend(snapshot);
    vars
}

/// A string setting of the snapshot, flat or lifted from a nested object.
pub fn setting(snapshot: &Map<String, Value>, names: &[&str]) -> Option<String> {
    let vars = tfvars(snapshot);
    names.iter().find_map(|name| {
        vars.get(*name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from)
    })
}

/// The state key of a vine: `{vineyard_id}/{project}-{stage}-{region}/terraform.tfstate`.
pub fn vine_state_key(
    vineyard_id: Option<&str>,
    snapshot: &Map<String, Value>,
) -> Result<String, JobError> {
    let missing = |what: &str| {
        JobError::Invalid(format!(
            "cannot locate the Terraform state: the job has no {what}"
        ))
    };
    let vineyard = vineyard_id
        .filter(|v| !v.is_empty())
        .ok_or_else(|| missing("vineyard_id"))?;
    let project = setting(snapshot, &["project_name"]).ok_or_else(|| missing("project_name"))?;
    let stage =
        setting(snapshot, &["environment_stage"]).ok_or_else(|| missing("environment_stage"))?;
    let region = setting(snapshot, &["region", "aws_region"]).ok_or_else(|| missing("region"))?;
    Ok(format!(
        "{vineyard}/{project}-{stage}-{region}/terraform.tfstate"
    ))
}

/// Where a job's state lives.
pub enum StateBackend<'a> {
    /// The S3-compatible bucket of `SUPABASE_S3_*`.
    Bucket(&'a StateStorage),
    /// A local directory (the embedded default): one state file per key.
    Local(&'a Path),
}

/// Copies a template directory into the workspace (without any
/// `.terraform` directory or state a developer left in it).
pub fn copy_template(template: &Path, destination: &Path) -> Result<(), JobError> {
    if !template.is_dir() {
        return Err(JobError::Invalid(format!(
            "no Terraform template at {} (TENDRIL_TEMPLATES_DIR)",
            template.display()
        )));
    }
    copy_dir(template, destination).map_err(|e| {
        JobError::io(
            &format!("cannot copy the template {}", template.display()),
            e,
        )
    })
}

fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    create_private_dir(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let name_text = name.to_string_lossy();
        if name_text == ".terraform" || name_text.contains(".tfstate") {
            continue;
        }
        // Links are followed: a template may share files with another.
        let kind = fs::metadata(entry.path())?;
        if kind.is_dir() {
            copy_dir(&entry.path(), &to.join(&name))?;
        } else if kind.is_file() {
            fs::copy(entry.path(), to.join(&name))?;
        }
    }
    Ok(())
}

/// An HCL string literal.
fn hcl_string(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace("${", "$${")
        .replace("%{", "%%{");
    format!("\"{escaped}\"")
}

/// Writes the state settings for `terraform init` into the workspace and
/// returns the `-backend-config` file to pass (none for the local default,
/// which is an override file in the configuration directory instead).
///
/// The storage keys go into a 0600 credentials file under a profile of their
/// own; `backend.hcl` names only the profile and the file, because Terraform
/// copies backend settings into `.terraform/` and into every saved plan.
pub fn write_backend(
    backend: &StateBackend,
    key: &str,
    workspace: &Workspace,
    config_dir: &Path,
) -> Result<Option<PathBuf>, JobError> {
    let io = |what: &str| {
        let what = what.to_string();
        move |e| JobError::io(&what, e)
    };
    match backend {
        StateBackend::Bucket(storage) => {
            let credentials = format!(
                "[{STATE_PROFILE}]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                storage.key_id.expose(),
                storage.secret_key.expose()
            );
            // Relative to Terraform's working directory: a saved plan keeps
            // the backend settings, and the DEPLOY that applies it runs in
            // another workspace.
            write_private_file(&config_dir.join(STATE_CREDENTIALS), credentials.as_bytes())
                .map_err(io("cannot write the state credentials"))?;
            let settings = [
                ("bucket", hcl_string(STATE_BUCKET)),
                ("key", hcl_string(key)),
                ("region", hcl_string(&storage.region)),
                ("profile", hcl_string(STATE_PROFILE)),
                (
                    "shared_credentials_files",
                    format!("[{}]", hcl_string(STATE_CREDENTIALS)),
                ),
                (
                    "endpoints",
                    format!("{{ s3 = {} }}", hcl_string(&storage.endpoint)),
                ),
                ("use_path_style", "true".into()),
                ("use_lockfile", "true".into()),
                ("skip_credentials_validation", "true".into()),
                ("skip_requesting_account_id", "true".into()),
                ("skip_metadata_api_check", "true".into()),
                ("skip_region_validation", "true".into()),
            ];
            let text: String = settings
                .iter()
                .map(|(name, value)| format!("{name} = {value}\n"))
                .collect();
            let file = workspace
                .write_private("backend.hcl", text.as_bytes())
                .map_err(io("cannot write backend.hcl"))?;
            Ok(Some(file))
        }
        StateBackend::Local(state_dir) => {
            let state_file = state_dir.join(key);
            if let Some(parent) = state_file.parent() {
                create_private_dir(parent).map_err(io(
                    "cannot create the local state directory (TENDRIL_STATE_DIR)",
                ))?;
            }
            let text = format!(
                "# Written by Tendril: state in a local directory (no SUPABASE_S3_ENDPOINT is set).\n\
                 terraform {{\n  backend \"local\" {{\n    path = {}\n  }}\n}}\n",
                hcl_string(&state_file.display().to_string())
            );
            fs::write(config_dir.join("tendril_local_backend_override.tf"), text)
                .map_err(io("cannot write the local backend override"))?;
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn both_shapes_become_flat_variables_and_flat_keys_win() {
        let snapshot = map(json!({
            "project_name": "shop",
            "network": {"create_vpc": true, "vpc_cidr": "10.0.0.0/16"},
            "cluster": {"version": "1.31", "cluster_node_count": 3},
            "dns": {"enabled": true, "main_domain": "shop.example", "dns_hosted_zone": "Z1"},
            "vpc_cidr": "10.9.0.0/16",
            "git_access_token": "ghp_secret",
            "databases": [{"name": "main"}]
        }));
        let vars = tfvars(&snapshot);
        assert_eq!(vars["create_vpc"], json!(true));
        assert_eq!(vars["vpc_cidr"], json!("10.9.0.0/16"), "the flat key wins");
        assert_eq!(vars["cluster_version"], json!("1.31"));
        assert_eq!(vars["cluster_node_count"], json!(3));
        assert_eq!(vars["enable_dns"], json!(true));
        assert_eq!(vars["dns_main_domain"], json!("shop.example"));
        assert_eq!(vars["dns_hosted_zone"], json!("Z1"));
        assert_eq!(
            vars["network"]["vpc_cidr"],
            json!("10.0.0.0/16"),
            "the object itself is passed on too"
        );
        assert_eq!(vars["databases"], json!([{"name": "main"}]));
        assert!(!vars.contains_key("git_access_token"));
    }

    #[test]
    fn the_state_key_names_what_is_missing() {
        let snapshot = map(
            json!({"project_name": "shop", "environment_stage": "prod", "aws_region": "eu-west-1"}),
        );
        assert_eq!(
            vine_state_key(Some("vy-1"), &snapshot).unwrap(),
            "vy-1/shop-prod-eu-west-1/terraform.tfstate"
        );
        let error = vine_state_key(None, &snapshot).unwrap_err();
        assert!(error.to_string().contains("no vineyard_id"), "{error}");
        let error =
            vine_state_key(Some("vy-1"), &map(json!({"project_name": "shop"}))).unwrap_err();
        assert!(
            error.to_string().contains("no environment_stage"),
            "{error}"
        );
    }

    #[test]
    fn hcl_strings_are_escaped() {
        assert_eq!(hcl_string(r#"a"b\c${d}"#), r#""a\"b\\c$${d}""#);
    }
}
