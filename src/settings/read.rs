//! Reading one setting from its text (a flag's or a variable's value) into
//! a value, naming the variable in the [`ConfigError`] when it cannot be
//! read: durations, sizes, comma-separated lists, absolute directories,
//! secrets from the environment. Shared by the worker's command line and
//! the scaler's.

use std::path::PathBuf;
use std::time::Duration;

use super::ConfigError;
use crate::secrets::Secret;
use crate::units::{parse_duration, parse_size};

/// A duration such as `30s` or `5m`; zero allowed.
pub fn duration(variable: &str, text: &str) -> Result<Duration, ConfigError> {
    parse_duration(text).map_err(|problem| ConfigError::new(variable, problem))
}

/// A duration longer than zero.
pub fn positive_duration(variable: &str, text: &str) -> Result<Duration, ConfigError> {
    let parsed = duration(variable, text)?;
    if parsed.is_zero() {
        return Err(ConfigError::new(variable, "must be longer than zero"));
    }
    Ok(parsed)
}

/// A size in bytes such as `512MiB`.
pub fn size(variable: &str, text: &str) -> Result<u64, ConfigError> {
    parse_size(text).map_err(|problem| ConfigError::new(variable, problem))
}

/// A comma-separated list, blanks dropped.
pub fn list(value: &Option<String>) -> Vec<String> {
    value
        .iter()
        .flat_map(|text| text.split(','))
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(String::from)
        .collect()
}

/// A comma-separated list of absolute directories.
pub fn absolute_dirs(variable: &str, value: &Option<String>) -> Result<Vec<PathBuf>, ConfigError> {
    list(value)
        .into_iter()
        .map(PathBuf::from)
        .map(|dir| match dir.is_absolute() {
            true => Ok(dir),
            false => Err(ConfigError::new(
                variable,
                format!("'{}' is not an absolute path", dir.display()),
            )),
        })
        .collect()
}

/// Reads a secret from `NAME`, or from the file named by `NAME_FILE`.
/// Either way the value is registered for masking before it is returned.
pub fn secret_from_env(name: &str) -> Result<Option<Secret>, ConfigError> {
    let value = match std::env::var(name) {
        Ok(value) => Some(value),
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(ConfigError::new(name, "is not valid UTF-8"))
        }
        Err(std::env::VarError::NotPresent) => {
            let file_variable = format!("{name}_FILE");
            match std::env::var_os(&file_variable) {
                None => None,
                Some(path) => Some(std::fs::read_to_string(&path).map_err(|error| {
                    ConfigError::new(
                        &file_variable,
                        format!("cannot read {}: {error}", PathBuf::from(&path).display()),
                    )
                })?),
            }
        }
    };
    Ok(value
        .map(|text| text.trim_end_matches(['\n', '\r']).to_string())
        .filter(|text| !text.is_empty())
        .map(Secret::new_registered))
}
