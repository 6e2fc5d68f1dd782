//! Keeping sensitive Terraform values out of metadata (`GET /jobs/{id}` has
//! no ownership check) and out of logs.

use serde_json::{Map, Value};

use crate::secrets::{self, SecretGuard};

/// What a sensitive value reads as in metadata.
pub const SENSITIVE: &str = "(sensitive)";

/// `value` with every part that `sensitive` marks (Terraform's
/// `after_sensitive`/`before_sensitive` shape: `true`, or an object or array
/// of the same shape) replaced by [`SENSITIVE`].
pub fn redact(value: &Value, sensitive: &Value) -> Value {
    match (value, sensitive) {
        (_, Value::Bool(true)) => Value::String(SENSITIVE.into()),
        (Value::Object(values), Value::Object(marks)) => Value::Object(
            values
                .iter()
                .map(|(key, value)| {
                    (
                        key.clone(),
                        redact(value, marks.get(key).unwrap_or(&Value::Null)),
                    )
                })
                .collect(),
        ),
        (Value::Array(values), Value::Array(marks)) => Value::Array(
            values
                .iter()
                .enumerate()
                .map(|(index, value)| redact(value, marks.get(index).unwrap_or(&Value::Null)))
                .collect(),
        ),
        _ => value.clone(),
    }
}

/// The `resource_changes` of `terraform show -json`, sensitive values
/// redacted.
pub fn plan_result(plan: &Value) -> Value {
    let changes: Vec<Value> = plan
        .get("resource_changes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|change| {
            let mut change = change.clone();
            if let Some(inner) = change.get_mut("change").and_then(Value::as_object_mut) {
                for (field, marks) in [("before", "before_sensitive"), ("after", "after_sensitive")]
                {
                    let mark = inner.get(marks).cloned().unwrap_or(Value::Null);
                    if let Some(value) = inner.get(field) {
                        let redacted = redact(value, &mark);
                        inner.insert(field.to_string(), redacted);
                    }
                }
            }
            change
        })
        .collect();
    serde_json::json!({ "resource_changes": changes })
}

/// Every leaf of a value as text, for masking.
fn leaves(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(text) => out.push(text.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(items) => items.iter().for_each(|v| leaves(v, out)),
        Value::Object(map) => map.values().for_each(|v| leaves(v, out)),
        _ => {}
    }
}

/// The outputs of `terraform output -json`, unwrapped to plain values, with
/// sensitive ones redacted; the sensitive values are registered for masking
/// (the guards keep them registered for the rest of the job).
pub fn outputs(
    raw: &Map<String, Value>,
) -> (Map<String, Value>, Map<String, Value>, Vec<SecretGuard>) {
    let (mut plain, mut redacted, mut guards) = (Map::new(), Map::new(), Vec::new());
    for (name, output) in raw {
        let value = match output {
            Value::Object(wrapped) if wrapped.contains_key("value") => wrapped["value"].clone(),
            other => other.clone(),
        };
        let sensitive = output
            .get("sensitive")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if sensitive {
            let mut texts = Vec::new();
            leaves(&value, &mut texts);
            guards.extend(texts.iter().map(|text| secrets::register(text)));
            redacted.insert(name.clone(), Value::String(SENSITIVE.into()));
        } else {
            redacted.insert(name.clone(), value.clone());
        }
        plain.insert(name.clone(), value);
    }
    (plain, redacted, guards)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn marked_values_are_redacted_at_any_depth() {
        let value = json!({"name": "db", "password": "hunter22", "tags": ["a", "secret-tag"]});
        let marks = json!({"password": true, "tags": [false, true]});
        assert_eq!(
            redact(&value, &marks),
            json!({"name": "db", "password": "(sensitive)", "tags": ["a", "(sensitive)"]})
        );
    }

    #[test]
    fn plan_results_keep_only_redacted_resource_changes() {
        let plan = json!({
            "variables": {"db_password": {"value": "hunter22"}},
            "resource_changes": [{"address": "x", "change": {
                "actions": ["create"], "before": null, "after": {"input": "hunter22"},
                "after_sensitive": {"input": true}}}]
        });
        let result = plan_result(&plan);
        assert_eq!(
            result["resource_changes"][0]["change"]["after"]["input"],
            "(sensitive)"
        );
        assert!(!result.to_string().contains("hunter22"));
    }

    #[test]
    fn outputs_are_unwrapped_and_sensitive_ones_masked() {
        let raw = json!({
            "cluster_name": {"value": "shop", "sensitive": false},
            "db_password": {"value": "pa55-word-out", "sensitive": true},
            "plain": "bare"
        });
        let (plain, redacted, _guards) = outputs(raw.as_object().unwrap());
        assert_eq!(plain["db_password"], "pa55-word-out");
        assert_eq!(redacted["db_password"], "(sensitive)");
        assert_eq!(redacted["cluster_name"], "shop");
        assert_eq!(redacted["plain"], "bare");
        assert_eq!(crate::secrets::mask("pw pa55-word-out"), "pw ***");
    }
}
