//! What `tendril doctor` found: one [`Check`] per thing it looked at, with a
//! mark, and how the checks are shown: one line each for people, or one
//! JSON document for machines. Every text is masked before it is shown.

use serde::Serialize;

use crate::secrets::mask;
use crate::settings::WorkerMode;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mark {
    Ok,
    /// Worth fixing, but the worker can run its mode's jobs without it.
    Warning,
    /// Something the configured mode needs is broken.
    Failed,
}

impl Mark {
    /// `Failed` for what the mode needs, else `Warning`.
    pub fn unless_needed(needed: bool) -> Mark {
        if needed {
            Mark::Failed
        } else {
            Mark::Warning
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Mark::Ok => "ok",
            Mark::Warning => "warning",
            Mark::Failed => "failed",
        }
    }
}

/// One check: what it is, how it came out, what was seen, and (when not
/// ok) what to do.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub mark: Mark,
    pub detail: String,
    pub hint: Option<String>,
}

impl Check {
    pub fn ok(name: &str, detail: impl Into<String>) -> Check {
        Check {
            name: name.to_string(),
            mark: Mark::Ok,
            detail: detail.into(),
            hint: None,
        }
    }

    /// A check that did not come out ok: `mark` is a warning or a failure.
    pub fn not_ok(
        name: &str,
        mark: Mark,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Check {
        Check {
            name: name.to_string(),
            mark,
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }

    /// A check that could not run because the settings it reads are invalid
    /// (the settings check says why, and already fails the run).
    pub fn not_checked(name: &str) -> Check {
        Check::not_ok(
            name,
            Mark::Warning,
            "not checked: the settings it needs are invalid",
            "fix the settings first (see the settings check)",
        )
    }

    /// The same check with every registered secret masked.
    fn masked(&self) -> Check {
        Check {
            name: self.name.clone(),
            mark: self.mark,
            detail: mask(&self.detail).into_owned(),
            hint: self.hint.as_deref().map(|hint| mask(hint).into_owned()),
        }
    }
}

/// Every check of one run, in the order they are shown.
pub struct Report {
    pub mode: WorkerMode,
    pub checks: Vec<Check>,
    /// Whether the settings themselves are missing or invalid (the run
    /// exits 2, as `start` would).
    pub settings_invalid: bool,
}

#[derive(Serialize)]
struct Summary {
    ok: usize,
    warning: usize,
    failed: usize,
}

#[derive(Serialize)]
struct Document<'a> {
    tendril: &'a str,
    mode: &'a str,
    exit_code: u8,
    summary: Summary,
    checks: Vec<Check>,
}

impl Report {
    /// 2 when a setting is missing or invalid, 1 when a check the mode
    /// needs failed, else 0.
    pub fn exit_code(&self) -> u8 {
        if self.settings_invalid {
            2
        } else if self.count(Mark::Failed) > 0 {
            1
        } else {
            0
        }
    }

    fn count(&self, mark: Mark) -> usize {
        self.checks.iter().filter(|c| c.mark == mark).count()
    }

    fn summary(&self) -> Summary {
        Summary {
            ok: self.count(Mark::Ok),
            warning: self.count(Mark::Warning),
            failed: self.count(Mark::Failed),
        }
    }

    /// One line per check (`mark name: detail -- fix: hint`), then a summary.
    pub fn text(&self) -> String {
        let mut text = String::new();
        for check in self.checks.iter().map(Check::masked) {
            text.push_str(&format!(
                "{:<8} {}: {}",
                check.mark.as_str(),
                check.name,
                one_line(&check.detail)
            ));
            if let Some(hint) = &check.hint {
                text.push_str(&format!(" -- fix: {}", one_line(hint)));
            }
            text.push('\n');
        }
        let summary = self.summary();
        text.push_str(&format!(
            "doctor: {} ok, {} warning(s), {} failed ({} worker)\n",
            summary.ok,
            summary.warning,
            summary.failed,
            self.mode.as_str()
        ));
        text
    }

    /// The whole report as one JSON document.
    pub fn json(&self) -> String {
        let document = Document {
            tendril: crate::VERSION,
            mode: self.mode.as_str(),
            exit_code: self.exit_code(),
            summary: self.summary(),
            checks: self.checks.iter().map(Check::masked).collect(),
        };
        serde_json::to_string_pretty(&document).unwrap_or_default() + "\n"
    }
}

/// `text` on one line: its lines trimmed and joined with " / ".
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(checks: Vec<Check>, settings_invalid: bool) -> Report {
        Report {
            mode: WorkerMode::SelfHosted,
            checks,
            settings_invalid,
        }
    }

    #[test]
    fn a_failure_exits_1_a_warning_does_not_and_bad_settings_exit_2() {
        let warning = Check::not_ok("helm", Mark::Warning, "missing", "install it");
        let failed = Check::not_ok("trellis", Mark::Failed, "refused", "fix it");
        assert_eq!(
            report(vec![Check::ok("a", "fine"), warning.clone()], false).exit_code(),
            0
        );
        assert_eq!(report(vec![warning, failed.clone()], false).exit_code(), 1);
        assert_eq!(report(vec![failed], true).exit_code(), 2);
    }

    #[test]
    fn each_check_is_one_masked_line_with_its_hint() {
        let _secret = crate::secrets::register("report-secret-value");
        let check = Check::not_ok(
            "state-bucket",
            Mark::Failed,
            "An error occurred\n  (403) report-secret-value\n",
            "check the keys",
        );
        let report = report(vec![check], false);
        let text = report.text();
        let first = text.lines().next().unwrap();
        assert_eq!(
            first,
            "failed   state-bucket: An error occurred / (403) *** -- fix: check the keys"
        );
        let json: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
        assert_eq!(
            json["checks"][0]["detail"],
            "An error occurred\n  (403) ***\n"
        );
    }
}
