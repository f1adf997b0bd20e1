//! `proctor ledger show PLAN`, `proctor ledger verify [PLAN]`, `proctor ledger recover
//! [PLAN]` and `proctor ledger budget PLAN --set N | --unset`, on the ledger named by
//! `--ledger` (SQLite by default).
//!
//! `show` and `verify` only read: they refuse an SQLite ledger file that does not exist
//! rather than create an empty one. A broken chain is `ERR_LEDGER_CHAIN`, naming the plan
//! and its first broken seq, and so is a `plans` or `executions` row that disagrees with a
//! valid chain, named with its table, key, column and both values; every other ledger
//! failure is the ledger's own canonical error.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use proctor_contract::{CanonError, ErrorCode};
use proctor_engine::{Engine, EngineConfig, Limits, RecoverScope};
use proctor_ledger::{ChainReport, Event, Ledger, Plan};
use serde_json::json;

use crate::args::{LedgerAction, LedgerConfig, OutputFormat};
use crate::checkpoint_command;
use crate::output::{emit, error_json, json_report, print_error, table};

/// How many hex characters of a hash the human views show.
const HASH_PREFIX_LEN: usize = 12;
/// How many events one read of `ledger show` fetches.
const EVENTS_PER_PAGE: u32 = 1000;

/// Runs a `ledger` command; returns the exit code (a canonical error's, or 0).
pub(crate) async fn execute(config: &LedgerConfig) -> anyhow::Result<i32> {
    let format = config.format;
    let url = config.url.as_str();
    let rendered = match &config.action {
        LedgerAction::Keygen { out } => checkpoint_command::keygen(out, format),
        LedgerAction::Show { plan } => {
            on_ledger(open_existing(url).await, async |ledger| {
                show(ledger, plan, format).await
            })
            .await
        }
        LedgerAction::Verify { plan, public_key } => {
            on_ledger(open_existing(url).await, async |ledger| {
                verify(ledger, plan.as_deref(), public_key.as_deref(), format).await
            })
            .await
        }
        LedgerAction::Checkpoint { key } => {
            on_ledger(open_existing(url).await, async |ledger| {
                checkpoint_command::checkpoint(ledger, key, format).await
            })
            .await
        }
        // A missing ledger is refused as by the reading commands; the engine opens its own
        // connection, next to the container engine's.
        LedgerAction::Recover { scope } => {
            on_ledger(open_existing(url).await, async |_| {
                recover(url, scope, format).await
            })
            .await
        }
        LedgerAction::Budget {
            plan,
            budget_micro_usd,
        } => {
            on_ledger(open(url).await, async |ledger| {
                budget(ledger, plan, *budget_micro_usd, format).await
            })
            .await
        }
    };
    match rendered {
        Ok((text, code)) => {
            emit(&text)?;
            Ok(code)
        }
        Err(error) => {
            tracing::error!(event = "ledger.fail", code = %error.code(), message = %error.message());
            print_error(&error, config.format)?;
            Ok(error.code().exit_code())
        }
    }
}

/// Recovers the abandoned executions `scope` selects through the engine (which removes
/// their containers); exits with the containers' error when some may be left.
async fn recover(
    url: &str,
    scope: &RecoverScope,
    format: OutputFormat,
) -> Result<(String, i32), CanonError> {
    let engine = Engine::new(EngineConfig {
        registry_root: PathBuf::new(),
        artifacts_root: PathBuf::new(),
        ledger_url: url.to_owned(),
        env: crate::deploy_commands::host_env(),
        limits: Limits::default(),
    });
    let report = proctor_engine::recover(&engine, scope).await;
    engine.close().await;
    let report = report?;
    let code = report
        .executions
        .iter()
        .find_map(|execution| execution.containers_error.as_ref())
        .map_or(0, |error| error.code.exit_code());
    let text = match format {
        OutputFormat::Json => json_report(&report),
        OutputFormat::Human if report.executions.is_empty() => {
            "no abandoned execution\n".to_owned()
        }
        OutputFormat::Human => {
            let rows: Vec<[String; 5]> = report
                .executions
                .iter()
                .map(|execution| {
                    let containers = match &execution.containers_error {
                        Some(error) => format!("not all removed: {}", error.message),
                        None if execution.containers_removed.is_empty() => "-".to_owned(),
                        None => execution.containers_removed.join(" "),
                    };
                    [
                        execution.execution_id.clone(),
                        execution.plan.clone(),
                        execution.released_leases.join(" "),
                        execution.released_micro_usd.to_string(),
                        containers,
                    ]
                })
                .collect();
            table(
                [
                    "EXECUTION",
                    "PLAN",
                    "LEASES RELEASED",
                    "RESERVATION RELEASED",
                    "CONTAINERS REMOVED",
                ],
                &rows,
            )
        }
    };
    Ok((text, code))
}

/// Runs `act` on an opened ledger, then closes it.
async fn on_ledger<T>(
    opened: Result<Ledger, CanonError>,
    act: impl AsyncFnOnce(&Ledger) -> Result<T, CanonError>,
) -> Result<T, CanonError> {
    let ledger = opened?;
    let result = act(&ledger).await;
    ledger.close().await;
    result
}

/// Opens (creating it when absent) the ledger at `url`.
pub(crate) async fn open(url: &str) -> Result<Ledger, CanonError> {
    Ledger::open(url).await.map_err(CanonError::from)
}

/// Opens the ledger at `url` for reading: an SQLite file that does not exist is
/// `ERR_LEDGER` instead of a new, empty ledger.
pub(crate) async fn open_existing(url: &str) -> Result<Ledger, CanonError> {
    let sqlite_path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"));
    if let Some(path) = sqlite_path.filter(|path| !path.is_empty() && !Path::new(path).exists()) {
        return Err(CanonError::new(
            ErrorCode::Ledger,
            format!("no ledger at `{path}`; `proctor run` creates it, or pass --ledger URL"),
        ));
    }
    open(url).await
}

/// The first characters of a hash, for tables.
pub(crate) fn hash_prefix(hash: &str) -> &str {
    hash.get(..HASH_PREFIX_LEN).unwrap_or(hash)
}

/// The plan's budget line and its events, or one JSON line `{"plan", "events"}`.
async fn show(
    ledger: &Ledger,
    plan_key: &str,
    format: OutputFormat,
) -> Result<(String, i32), CanonError> {
    let plan = ledger
        .plan(plan_key)
        .await?
        .ok_or_else(|| CanonError::new(ErrorCode::Ledger, format!("unknown plan `{plan_key}`")))?;
    let mut events = Vec::new();
    loop {
        let after = events.last().map_or(0, |event: &Event| event.seq);
        let page = ledger.events(plan_key, after, EVENTS_PER_PAGE).await?;
        let full = page.len() == EVENTS_PER_PAGE as usize;
        events.extend(page);
        if !full {
            break;
        }
    }
    let text = match format {
        OutputFormat::Json => json_report(&json!({"plan": plan, "events": events})),
        OutputFormat::Human => {
            let mut text = plan_summary(&plan);
            let rows: Vec<[String; 4]> = events
                .iter()
                .map(|event| {
                    [
                        event.seq.to_string(),
                        event.kind_name.clone(),
                        event.execution_id.clone().unwrap_or_else(|| "-".to_owned()),
                        hash_prefix(&event.this_hash).to_owned(),
                    ]
                })
                .collect();
            if rows.is_empty() {
                text.push_str("(no events)\n");
            } else {
                text.push_str(&table(["SEQ", "KIND", "EXECUTION", "HASH"], &rows));
            }
            text
        }
    };
    Ok((text, 0))
}

/// `plan KEY` and its budget and head lines.
fn plan_summary(plan: &Plan) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "plan:   {}", plan.key);
    let amounts = format!(
        "reserved {}, spent {}",
        plan.reserved_micro_usd, plan.spent_micro_usd
    );
    match (plan.budget_micro_usd, plan.available_micro_usd()) {
        (Some(budget), Some(available)) => {
            let _ = writeln!(
                text,
                "budget: {budget} micro-USD ({amounts}, available {available})"
            );
        }
        _ => {
            let _ = writeln!(text, "budget: none ({amounts})");
        }
    }
    let _ = writeln!(
        text,
        "head:   seq {} ({})",
        plan.head_seq,
        hash_prefix(&plan.head_hash)
    );
    text
}

/// Verifies one plan or every plan, and with `public_key` checks them against the latest
/// signed checkpoint; a broken chain, a table that disagrees with its chain, or a chain that
/// no longer holds its checkpointed head (or a missing or badly signed checkpoint) answers
/// `ERR_LEDGER_CHAIN`'s exit code with the report still printed.
async fn verify(
    ledger: &Ledger,
    plan: Option<&str>,
    public_key: Option<&str>,
    format: OutputFormat,
) -> Result<(String, i32), CanonError> {
    let reports = match plan {
        Some(plan) => vec![ledger.verify_chain(plan).await?],
        None => ledger.verify_all().await?,
    };
    let checkpoint = match public_key {
        Some(key) => Some(checkpoint_command::check(ledger, key, plan).await?),
        None => None,
    };
    let first_break = reports
        .iter()
        .find_map(ChainReport::to_error)
        .or_else(|| checkpoint.as_ref()?.to_error());
    for report in &reports {
        match &report.broken {
            None if report.mismatches.is_empty() => {
                tracing::info!(event = "ledger.verify", plan = %report.plan, verified = report.verified, ok = true)
            }
            None => {
                tracing::error!(event = "ledger.verify", plan = %report.plan, verified = report.verified, ok = false, table_mismatches = report.mismatches.len())
            }
            Some(broken) => {
                tracing::error!(event = "ledger.verify", plan = %report.plan, verified = report.verified, ok = false, broken_seq = broken.seq)
            }
        }
    }
    let code = first_break
        .as_ref()
        .map_or(0, |error| error.code().exit_code());
    let text = match format {
        OutputFormat::Json => {
            let mut body = json!({
                "ok": first_break.is_none(),
                "plans": reports,
                "checkpoint": checkpoint,
            });
            if let Some(error) = &first_break {
                body["error"] = error_json(error);
            }
            json_report(&body)
        }
        OutputFormat::Human => {
            let mut text = String::new();
            if reports.is_empty() {
                text.push_str("no plans in the ledger\n");
            }
            let width = reports.iter().map(|r| r.plan.len()).max().unwrap_or(0);
            for report in &reports {
                let _ = match &report.broken {
                    None if report.mismatches.is_empty() => writeln!(
                        text,
                        "✓ {:<width$}  {} events verified, head seq {}",
                        report.plan, report.verified, report.head_seq
                    ),
                    None => {
                        let _ = writeln!(
                            text,
                            "✗ {:<width$}  {} events verified, but the tables disagree with them:",
                            report.plan, report.verified
                        );
                        report
                            .mismatches
                            .iter()
                            .try_for_each(|mismatch| writeln!(text, "    {mismatch}"))
                    }
                    Some(broken) => writeln!(
                        text,
                        "✗ {:<width$}  broken at seq {}: {}",
                        report.plan, broken.seq, broken.reason
                    ),
                };
            }
            text.push_str(&checkpoint_command::summary(checkpoint.as_ref()));
            if let Some(error) = &first_break {
                let _ = writeln!(text, "error: {error}");
            }
            text
        }
    };
    Ok((text, code))
}

/// Sets or removes a plan's budget.
async fn budget(
    ledger: &Ledger,
    plan_key: &str,
    budget_micro_usd: Option<u64>,
    format: OutputFormat,
) -> Result<(String, i32), CanonError> {
    let appended = ledger.set_budget(plan_key, budget_micro_usd).await?;
    let plan = ledger
        .plan(plan_key)
        .await?
        .ok_or_else(|| CanonError::new(ErrorCode::Ledger, format!("plan `{plan_key}` vanished")))?;
    tracing::info!(event = "ledger.budget", plan = %plan_key, budget_micro_usd, seq = appended.seq);
    let text = match format {
        OutputFormat::Json => json_report(&json!({"plan": plan, "seq": appended.seq})),
        OutputFormat::Human => plan_summary(&plan),
    };
    Ok((text, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_prefixes_are_short_and_total() {
        assert_eq!(hash_prefix(&"ab".repeat(32)), "abababababab");
        assert_eq!(hash_prefix("abc"), "abc");
    }

    #[test]
    fn budget_lines_show_what_is_left() {
        let plan = Plan {
            key: "p".to_owned(),
            budget_micro_usd: Some(100),
            reserved_micro_usd: 30,
            spent_micro_usd: 50,
            head_seq: 3,
            head_hash: "f".repeat(64),
            created_at: String::new(),
        };
        let text = plan_summary(&plan);
        assert!(
            text.contains("budget: 100 micro-USD (reserved 30, spent 50, available 20)"),
            "{text}"
        );
        assert!(text.contains("head:   seq 3 (ffffffffffff)"), "{text}");
        let text = plan_summary(&Plan {
            budget_micro_usd: None,
            ..plan
        });
        assert!(
            text.contains("budget: none (reserved 30, spent 50)"),
            "{text}"
        );
    }
}
