//! `proctor doctor`: the checks of [`proctor_engine::doctor`] as one line each (✓ ok, ! warn,
//! ✗ fail, with the fix beside what is not ok), or `--json`. A failed check is `ERR_DOCTOR`;
//! warnings alone exit 0.

use std::fmt::Write as _;

use proctor_contract::CanonError;
use proctor_engine::{CheckStatus, DoctorReport, DoctorRequest, doctor};
use serde_json::json;

use crate::args::{DoctorConfig, OutputFormat};
use crate::deploy_commands::host_env;
use crate::output::{emit, error_json, json_report};

/// Runs `proctor doctor` with the process environment; returns the exit code (0, or
/// `ERR_DOCTOR`'s when a check failed).
pub(crate) async fn execute(config: &DoctorConfig) -> anyhow::Result<i32> {
    let request = DoctorRequest {
        env: host_env(),
        ..config.request.clone()
    };
    let report = doctor(&request).await;
    let error = report.to_error();
    emit(&render(&report, error.as_ref(), config.format))?;
    Ok(error.map_or(0, |error| error.code().exit_code()))
}

/// One JSON line `{"status","checks"}` (with `"error"` when a check failed), or a line per
/// check and a verdict.
fn render(report: &DoctorReport, error: Option<&CanonError>, format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => {
            let mut body = json!({"checks": report.checks});
            if let Some(error) = error {
                body["error"] = error_json(error);
            }
            json_report(&body)
        }
        OutputFormat::Human => {
            let mut text = String::new();
            let width = report
                .checks
                .iter()
                .map(|check| check.name.chars().count())
                .max()
                .unwrap_or(0);
            for check in &report.checks {
                let mark = match check.status {
                    CheckStatus::Ok => '✓',
                    CheckStatus::Warn => '!',
                    CheckStatus::Fail => '✗',
                };
                let _ = write!(text, "{mark} {:<width$}  {}", check.name, check.detail);
                if let Some(fix) = &check.fix {
                    let _ = write!(text, " — fix: {fix}");
                }
                text.push('\n');
            }
            let warnings = report
                .checks
                .iter()
                .filter(|check| check.status == CheckStatus::Warn)
                .count();
            let _ = match error {
                Some(error) => writeln!(text, "error: {error}"),
                None => writeln!(text, "no check failed ({warnings} warnings)"),
            };
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use proctor_engine::DoctorCheck;

    use super::*;

    fn report() -> DoctorReport {
        let check = |name: &str, status, fix: Option<&str>| DoctorCheck {
            name: name.to_owned(),
            status,
            detail: format!("{name} detail"),
            fix: fix.map(str::to_owned),
        };
        DoctorReport {
            checks: vec![
                check("engine", CheckStatus::Ok, None),
                check("pins a/b@1", CheckStatus::Warn, Some("pin it")),
                check("ledger", CheckStatus::Fail, Some("restore it")),
            ],
        }
    }

    #[test]
    fn people_get_a_marked_line_per_check_with_its_fix() {
        let report = report();
        let error = report.to_error();
        let text = render(&report, error.as_ref(), OutputFormat::Human);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "✓ engine      engine detail");
        assert_eq!(lines[1], "! pins a/b@1  pins a/b@1 detail — fix: pin it");
        assert_eq!(lines[2], "✗ ledger      ledger detail — fix: restore it");
        assert_eq!(
            lines[3],
            "error: ERR_DOCTOR: doctor check failed: ledger; the fix is beside each"
        );
        let passing = DoctorReport {
            checks: report.checks[..2].to_vec(),
        };
        let text = render(&passing, None, OutputFormat::Human);
        assert!(text.ends_with("no check failed (1 warnings)\n"), "{text}");
    }

    #[test]
    fn json_is_one_line_with_status_checks_and_the_error() {
        let report = report();
        let error = report.to_error();
        let text = render(&report, error.as_ref(), OutputFormat::Json);
        assert_eq!(text.lines().count(), 1);
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["status"], "error");
        assert_eq!(body["error"]["code"], "ERR_DOCTOR");
        assert_eq!(body["checks"][1]["status"], "warn");
        assert_eq!(body["checks"][0]["fix"], serde_json::Value::Null);
        let body: serde_json::Value =
            serde_json::from_str(&render(&report, None, OutputFormat::Json)).unwrap();
        assert_eq!(body["status"], "ok");
        assert!(body.get("error").is_none());
    }
}
