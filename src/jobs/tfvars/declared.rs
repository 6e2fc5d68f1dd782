//! The variables a Terraform template declares: the `variable` blocks of its
//! top-level `*.tf` files (read with an HCL parser) and of its `*.tf.json`
//! files. Modules in subdirectories declare their own inputs, which the
//! template's root does not take, so they are not read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use crate::jobs::JobError;

/// The names of the variables the template in `dir` declares.
pub(super) fn declared_variables(dir: &Path) -> Result<BTreeSet<String>, JobError> {
    Ok(declarations(dir)?.into_keys().collect())
}

/// The variables the template in `dir` declares with a default that reads
/// as JSON (a literal string, number, bool or list of them; an object or an
/// expression is left out), with it.
pub fn declared_defaults(dir: &Path) -> Result<BTreeMap<String, Value>, JobError> {
    Ok(declarations(dir)?
        .into_iter()
        .filter_map(|(name, default)| Some((name, default?)))
        .collect())
}

/// Each variable the template in `dir` declares, with its default if any.
fn declarations(dir: &Path) -> Result<BTreeMap<String, Option<Value>>, JobError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| JobError::io(&format!("cannot read the template {}", dir.display()), e))?;
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    let mut variables = BTreeMap::new();
    for file in files {
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        let read = || {
            std::fs::read_to_string(&file)
                .map_err(|e| JobError::io(&format!("cannot read {}", file.display()), e))
        };
        let unreadable = |error: String| {
            JobError::Invalid(format!(
                "cannot read the variables of the template file {}: {error}",
                file.display()
            ))
        };
        if name.ends_with(".tf.json") {
            let config: Value =
                serde_json::from_str(&read()?).map_err(|e| unreadable(e.to_string()))?;
            variables.extend(json_variables(&config));
        } else if name.ends_with(".tf") {
            let body = hcl::parse(&read()?).map_err(|e| unreadable(e.to_string()))?;
            let blocks = body
                .blocks()
                .filter(|block| block.identifier() == "variable");
            variables.extend(blocks.filter_map(|block| {
                let name = block.labels().first()?.as_str().to_string();
                let default = block
                    .body()
                    .attributes()
                    .find(|attribute| attribute.key() == "default")
                    .and_then(|attribute| serde_json::to_value(attribute.expr()).ok());
                Some((name, default))
            }));
        }
    }
    Ok(variables)
}

/// The variables of a configuration in Terraform's JSON syntax, where
/// `variable` is an object of variables or a list of such objects, with
/// their defaults.
fn json_variables(config: &Value) -> Vec<(String, Option<Value>)> {
    let objects = match config.get("variable") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(object) => vec![object],
        None => Vec::new(),
    };
    objects
        .into_iter()
        .filter_map(Value::as_object)
        .flat_map(|object| {
            object
                .iter()
                .map(|(name, body)| (name.clone(), body.get("default").cloned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(files: &[(&str, &str)]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "tendril-declared-test-{}-{}",
            std::process::id(),
            files.len()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("modules/vpc")).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn variables_come_from_the_top_level_tf_and_tf_json_files_only() {
        let dir = template(&[
            (
                "variables.tf",
                "variable \"region\" {\n  type = string\n}\n\nvariable \"sqs_queues\" {\n  type    = map(any)\n  default = {}\n  validation {\n    condition     = length(var.sqs_queues) < 10\n    error_message = \"too many: ${length(var.sqs_queues)}\"\n  }\n}\n",
            ),
            (
                "main.tf",
                "# variable \"commented\" {}\nlocals { text = \"variable \\\"quoted\\\" {}\" }\nresource \"terraform_data\" \"x\" { input = var.region }\nvariable environment {}\n",
            ),
            ("extra.tf.json", r#"{"variable": {"from_json": {"type": "string"}}}"#),
            ("README.md", "variable \"not_terraform\" {}"),
            ("modules/vpc/variables.tf", "variable \"module_input\" {}"),
        ]);
        let names = declared_variables(&dir).unwrap();
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["environment", "from_json", "region", "sqs_queues"]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_that_does_not_parse_is_named() {
        let dir = template(&[("broken.tf", "variable \"x\" {")]);
        let error = declared_variables(&dir).unwrap_err().to_string();
        assert!(error.contains("broken.tf"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn json_variables_may_be_a_list_of_objects() {
        let config = serde_json::json!({"variable": [{"a": {}}, {"b": {"default": 1}}]});
        assert_eq!(
            json_variables(&config),
            [
                ("a".to_string(), None),
                ("b".to_string(), Some(serde_json::json!(1)))
            ]
        );
    }

    #[test]
    fn literal_defaults_are_read_as_json() {
        let dir = template(&[
            (
                "variables.tf",
                "variable \"repository\" {\n  default = \"ghcr.io/acme/tendril\"\n}\nvariable \"cpu\" {\n  type    = number\n  default = 1024\n}\nvariable \"tags\" {\n  default = { a = \"b\" }\n}\nvariable \"required\" {}\n",
            ),
            ("more.tf.json", r#"{"variable": {"memory": {"default": 2048}}}"#),
        ]);
        let defaults = declared_defaults(&dir).unwrap();
        assert_eq!(
            serde_json::to_value(&defaults).unwrap(),
            serde_json::json!({"repository": "ghcr.io/acme/tendril", "cpu": 1024, "memory": 2048}),
            "an object default is left out"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
