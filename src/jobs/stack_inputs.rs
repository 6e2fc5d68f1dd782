//! What a [`Stack`](super::stack::Stack) is given besides its variables
//! (those are `super::tfvars`): the template copied into the workspace, and
//! where the state lives (the S3-compatible bucket, or a local directory by
//! default) under which key.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::snapshot::setting;
use super::JobError;
use crate::private_files::{create_private_dir, write_private_file};
use crate::settings::StateStorage;
use crate::workspace::Workspace;

pub use crate::cloud::state_bucket::STATE_BUCKET;

/// The profile, in the workspace's state credentials file, that holds the
/// storage keys.
const STATE_PROFILE: &str = "tendril-state";

/// The state credentials file, in Terraform's working directory.
const STATE_CREDENTIALS: &str = "state-credentials";

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
    let read = |names: &[&str]| setting(snapshot, names).map_err(JobError::Invalid);
    let project = read(&["project_name"])?.ok_or_else(|| missing("project_name"))?;
    let stage = read(&["environment_stage"])?.ok_or_else(|| missing("environment_stage"))?;
    let region = read(&["region", "aws_region"])?.ok_or_else(|| missing("region"))?;
    // Each part of the key comes from the job: none may reach outside it.
    for (field, value) in [
        ("vineyard_id", vineyard),
        ("project_name", project.as_str()),
        ("environment_stage", stage.as_str()),
        ("region", region.as_str()),
    ] {
        crate::safe_name::check(field, value).map_err(JobError::Invalid)?;
    }
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

/// Fails unless `template` is a directory.
pub fn require_template(template: &Path) -> Result<(), JobError> {
    if template.is_dir() {
        return Ok(());
    }
    Err(JobError::Invalid(format!(
        "no Terraform template at {} (TENDRIL_TEMPLATES_DIR)",
        template.display()
    )))
}

/// Copies a template directory into the workspace (without any
/// `.terraform` directory or state a developer left in it).
pub fn copy_template(template: &Path, destination: &Path) -> Result<(), JobError> {
    require_template(template)?;
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
    fn a_state_key_part_that_would_leave_its_place_fails_naming_the_field() {
        let escaping = map(
            json!({"project_name": "../../../x", "environment_stage": "prod", "region": "eu-west-1"}),
        );
        let error = vine_state_key(Some("vy-1"), &escaping).unwrap_err();
        assert!(
            error.to_string().starts_with("project_name '../../../x'"),
            "{error}"
        );
        let snapshot = map(
            json!({"project_name": "shop", "environment_stage": "prod", "region": "eu-west-1"}),
        );
        let error = vine_state_key(Some("../other"), &snapshot).unwrap_err();
        assert!(
            error.to_string().starts_with("vineyard_id '../other'"),
            "{error}"
        );
    }

    #[test]
    fn hcl_strings_are_escaped() {
        assert_eq!(hcl_string(r#"a"b\c${d}"#), r#""a\"b\\c$${d}""#);
    }
}
