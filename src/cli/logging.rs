//! `--log-format` and `--log-level`: how Tendril's own log is written, for
//! every subcommand.

use clap::Args;

use crate::settings::{ConfigError, LogFormat, LogSettings};

/// Used when the flag is unset or blank.
const DEFAULT_LOG_FORMAT: &str = "text";
/// Used when the flag is unset or blank.
const DEFAULT_LOG_LEVEL: &str = "info";

#[derive(Debug, Args)]
pub struct LoggingArgs {
    /// Format of Tendril's own log: text or json.
    #[arg(
        long,
        global = true,
        env = "TENDRIL_LOG_FORMAT",
        value_name = "FORMAT",
        default_value = DEFAULT_LOG_FORMAT
    )]
    pub log_format: String,
    /// Level (or tracing filter) of Tendril's own log, e.g. info, debug or
    /// `info,tendril=debug`.
    #[arg(
        long,
        global = true,
        env = "TENDRIL_LOG_LEVEL",
        value_name = "FILTER",
        default_value = DEFAULT_LOG_LEVEL
    )]
    pub log_level: String,
}

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

impl LoggingArgs {
    /// The log settings; a filter directive that names no level (`loud`,
    /// which tracing would take for a target and so silence everything
    /// else) is refused.
    pub fn resolve(&self) -> Result<LogSettings, ConfigError> {
        let format = match or_default(&self.log_format, DEFAULT_LOG_FORMAT) {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::new(
                    "TENDRIL_LOG_FORMAT (--log-format)",
                    format!("'{other}' is not a log format (use text or json)"),
                ))
            }
        };
        let filter = or_default(&self.log_level, DEFAULT_LOG_LEVEL);
        for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            let level = directive
                .rsplit_once('=')
                .map_or(directive, |(_, level)| level);
            if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
                return Err(ConfigError::new(
                    "TENDRIL_LOG_LEVEL (--log-level)",
                    format!(
                        "'{directive}' names no level (use one of {}, or target=level, e.g. info,tendril=debug)",
                        LEVELS.join(", ")
                    ),
                ));
            }
        }
        Ok(LogSettings {
            format,
            filter: filter.to_string(),
        })
    }
}

/// The trimmed value, or the default when it is blank.
fn or_default<'a>(value: &'a str, default: &'a str) -> &'a str {
    match value.trim() {
        "" => default,
        trimmed => trimmed,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        logging: LoggingArgs,
    }

    #[test]
    fn a_log_filter_must_name_a_level_and_the_format_be_known() {
        let logging = |format: Option<&str>, level: Option<&str>| {
            let format = format.map(|format| ["--log-format", format]);
            let level = level.map(|level| ["--log-level", level]);
            let flags = format.into_iter().chain(level).flatten();
            Cli::parse_from(std::iter::once("test").chain(flags)).logging
        };
        assert_eq!(logging(None, None).resolve().unwrap().filter, "info");
        assert!(logging(None, Some("info,tendril=debug,hyper=WARN"))
            .resolve()
            .is_ok());
        let loud = logging(None, Some("loud"))
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(
            loud.starts_with("TENDRIL_LOG_LEVEL (--log-level): 'loud' names no level"),
            "{loud}"
        );
        assert!(logging(None, Some("tendril=loud")).resolve().is_err());
        let xml = logging(Some("xml"), None)
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(
            xml.starts_with("TENDRIL_LOG_FORMAT (--log-format): 'xml'"),
            "{xml}"
        );
        assert_eq!(
            logging(Some("json"), None).resolve().unwrap().format,
            LogFormat::Json
        );
    }
}
