//! `proctor verify EXECUTION_ID`: the engine's check of the whole chain of evidence one
//! execution left ([`proctor_engine::verify_execution`]: outputs, receipts, ledger records,
//! pin), against the store and the existing ledger the flags name.
//!
//! Every finding is a check (✓/✗ per line, or `--json`); any failed check is `ERR_VERIFY`.

use std::fmt::Write as _;
use std::sync::Arc;

use proctor_contract::CanonError;
use proctor_engine::{EvidenceSources, VerifyReport, verify_execution};
use proctor_store::{ArtifactStore, FsStore};

use crate::args::{OutputFormat, StoreLocation, VerifyConfig};
use crate::ledger_commands::open_existing;
use crate::output::{emit, json_report, print_error};

/// The widest check name the human report pads the others to.
const NAME_COLUMN_MAX: usize = 24;

/// Runs `proctor verify`; returns the exit code (0, `ERR_VERIFY`'s, or another canonical
/// error's when the evidence cannot be read at all).
pub(crate) async fn execute(config: &VerifyConfig) -> anyhow::Result<i32> {
    match verify(config).await {
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

async fn verify(config: &VerifyConfig) -> Result<VerifyReport, CanonError> {
    let store: Arc<dyn ArtifactStore> = match &config.store {
        StoreLocation::ArtifactsRoot(root) => Arc::new(FsStore::new(root)),
        StoreLocation::Url(url) => proctor_store::open(url)?,
    };
    let ledger = open_existing(&config.ledger_url).await?;
    let sources = EvidenceSources {
        store: store.as_ref(),
        ledger: &ledger,
        registry_root: &config.registry_root,
        chains: None,
    };
    let report = verify_execution(&sources, &config.execution_id).await;
    ledger.close().await;
    report
}

fn render(report: &VerifyReport, format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => json_report(report),
        OutputFormat::Human => {
            let mut text = String::new();
            let _ = writeln!(text, "execution: {}", report.execution_id);
            let _ = writeln!(text, "store:     {}", report.store);
            let _ = writeln!(
                text,
                "ledger:    {}{}",
                report.ledger,
                report
                    .plan
                    .as_deref()
                    .map(|plan| format!(", plan `{plan}`"))
                    .unwrap_or_default()
            );
            // Output check names are long world paths: they are not padded for.
            let width = report
                .checks
                .iter()
                .map(|check| check.name.chars().count())
                .filter(|width| *width <= NAME_COLUMN_MAX)
                .max()
                .unwrap_or(0);
            for check in &report.checks {
                let mark = if check.ok { '✓' } else { '✗' };
                let _ = writeln!(text, "{mark} {:<width$}  {}", check.name, check.detail);
            }
            match &report.error {
                None => {
                    let _ = writeln!(text, "verified: all {} checks passed", report.checks.len());
                }
                Some(error) => {
                    let _ = writeln!(text, "error: {error}");
                }
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use proctor_contract::ErrorCode;
    use proctor_store::Check;

    use super::*;

    fn report(checks: &[(&str, bool)]) -> VerifyReport {
        let failed = checks.iter().filter(|(_, ok)| !ok).count();
        VerifyReport {
            execution_id: "e1".to_owned(),
            ok: failed == 0,
            store: "file:///a".to_owned(),
            ledger: "sqlite",
            plan: Some("default".to_owned()),
            checks: checks
                .iter()
                .map(|(name, ok)| Check {
                    name: (*name).to_owned(),
                    ok: *ok,
                    detail: "d".to_owned(),
                })
                .collect(),
            error: (failed > 0).then(|| CanonError::new(ErrorCode::Verify, "e1: b")),
            receipt: None,
            index: None,
        }
    }

    #[test]
    fn human_reports_mark_each_check() {
        let failing = report(&[("alpha", true), ("b", false)]);
        let text = render(&failing, OutputFormat::Human);
        assert!(text.contains("✓ alpha  d\n"), "{text}");
        assert!(text.contains("✗ b      d\n"), "{text}");
        assert!(
            text.contains("error: ERR_VERIFY: verification failed"),
            "{text}"
        );
        assert!(text.contains("ledger:    sqlite, plan `default`"), "{text}");
        let passing = report(&[("a", true)]);
        let text = render(&passing, OutputFormat::Human);
        assert!(text.ends_with("verified: all 1 checks passed\n"), "{text}");
    }

    #[test]
    fn json_reports_carry_the_error_only_when_a_check_failed() {
        let json: serde_json::Value =
            serde_json::from_str(&render(&report(&[("a", true)]), OutputFormat::Json)).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "execution_id",
                "ok",
                "store",
                "ledger",
                "plan",
                "checks",
                "status"
            ]
        );
        assert_eq!(json["status"], "ok");
        let json: serde_json::Value =
            serde_json::from_str(&render(&report(&[("b", false)]), OutputFormat::Json)).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(json["status"], "error");
        assert_eq!(json["error"]["code"], "ERR_VERIFY");
        assert_eq!(json["error"]["message"], "verification failed: e1: b");
    }
}
