//! `proctor conform REF`: the conformance kit's checks of one processor image
//! ([`proctor_conform::conform`]), as a report (✓/✗/– per check) or `--json`; any failed
//! check is `ERR_ACCEPTANCE`.

use std::fmt::Write as _;

use proctor_conform::{ConformReport, Status, conform};
use proctor_engine::CancellationToken;

use crate::args::{ConformConfig, OutputFormat};
use crate::output::{emit, json_report, print_error};

/// Runs `proctor conform`; returns the exit code (0, `ERR_ACCEPTANCE`'s, or another
/// canonical error's when no check could start).
pub(crate) async fn execute(
    config: &ConformConfig,
    cancel: &CancellationToken,
) -> anyhow::Result<i32> {
    match conform(&config.request, cancel).await {
        Ok(report) => {
            emit(&render(&report, config.format))?;
            Ok(report
                .error
                .as_ref()
                .map_or(0, |error| error.code().exit_code()))
        }
        Err(error) => {
            print_error(&error, config.format)?;
            Ok(error.code().exit_code())
        }
    }
}

fn render(report: &ConformReport, format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => json_report(report),
        OutputFormat::Human => {
            let mut text = String::new();
            let _ = writeln!(
                text,
                "processor: {} ({})",
                report.processor_ref,
                report.image_digest.as_deref().unwrap_or("no image digest")
            );
            let width = report
                .checks
                .iter()
                .map(|check| check.name.len())
                .max()
                .unwrap_or(0);
            for check in &report.checks {
                let mark = match check.status {
                    Status::Pass => '✓',
                    Status::Fail => '✗',
                    Status::NotApplicable => '–',
                };
                let _ = writeln!(text, "{mark} {:<width$}  {}", check.name, check.evidence);
            }
            match &report.error {
                None => {
                    let _ = writeln!(text, "conforms: no check failed");
                }
                Some(error) => {
                    let _ = writeln!(text, "error: {error}");
                }
            }
            text
        }
    }
}
