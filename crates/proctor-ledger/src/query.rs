//! Reads for browsing the ledger: executions filtered and paged newest first, plans with
//! their execution counts, and every plan's head for a poller that follows the chains.

use proctor_contract::{CanonError, ErrorCode};
use serde::Serialize;
use sqlx::Row;

use crate::budget::Plan;
use crate::clock::Timestamp;
use crate::error::{LedgerError, Result};
use crate::executions::{Execution, ExecutionStatus, SELECT_EXECUTION, execution_from_row};
use crate::ledger::{Ledger, from_db, text, to_db};

/// Which executions [`Ledger::list_executions`] returns: every filter set must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionQuery {
    /// Only this processor ref (`ns/name@version`).
    pub processor_ref: Option<String>,
    /// Only this plan.
    pub plan: Option<String>,
    /// Only this status.
    pub status: Option<ExecutionStatus>,
    /// Only executions whose error code is, or is not, this one.
    pub error_code: Option<ErrorCodeFilter>,
    /// Only executions started at or after this RFC 3339 time.
    pub since: Option<String>,
    /// Only executions started before this RFC 3339 time.
    pub until: Option<String>,
    /// At most this many rows.
    pub limit: u32,
    /// Rows skipped first, newest first.
    pub offset: u64,
}

/// A condition on an execution's error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCodeFilter {
    /// The code is this one (`ERR_INTERRUPTED`, …).
    Is(ErrorCode),
    /// The code is another one, or none.
    IsNot(ErrorCode),
}

/// One page of executions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecutionPage {
    /// The page, newest first (by start, then by execution id).
    pub executions: Vec<Execution>,
    /// How many executions match the filters, on every page together.
    pub total: u64,
}

/// A plan and how many executions it recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanSummary {
    /// The plan row.
    #[serde(flatten)]
    pub plan: Plan,
    /// Its execution rows.
    pub executions: u64,
}

/// Where one plan's chain ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanHead {
    /// The plan.
    pub plan: String,
    /// The seq of its last event (0 before the first).
    pub head_seq: u64,
}

impl Ledger {
    /// The executions `query` selects, newest first, and how many there are in all. A
    /// `since` or `until` that is not RFC 3339 is `ERR_INPUTS`.
    pub async fn list_executions(&self, query: &ExecutionQuery) -> Result<ExecutionPage> {
        let mut conditions = Vec::new();
        let mut binds: Vec<String> = Vec::new();
        let mut bind = |condition: &str, value: String| {
            binds.push(value);
            conditions.push(condition.replace('?', &format!("${}", binds.len())));
        };
        if let Some(processor_ref) = &query.processor_ref {
            bind("processor_ref = ?", processor_ref.clone());
        }
        if let Some(plan) = &query.plan {
            bind("plan = ?", plan.clone());
        }
        if let Some(status) = query.status {
            bind("status = ?", status.as_str().to_owned());
        }
        match &query.error_code {
            Some(ErrorCodeFilter::Is(code)) => bind("error_code = ?", code.as_str().to_owned()),
            Some(ErrorCodeFilter::IsNot(code)) => bind(
                "(error_code IS NULL OR error_code <> ?)",
                code.as_str().to_owned(),
            ),
            None => {}
        }
        if let Some(since) = &query.since {
            bind("started_at >= ?", stored_time("since", since)?);
        }
        if let Some(until) = &query.until {
            bind("started_at < ?", stored_time("until", until)?);
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let count_sql = format!("SELECT COUNT(*) AS total FROM executions{filter}");
        let mut count = sqlx::query(&count_sql);
        for value in &binds {
            count = count.bind(value.as_str());
        }
        let total = count
            .fetch_one(self.pool())
            .await
            .map_err(|e| LedgerError::database("counting executions", e))?;
        let total = from_db(total.try_get("total"), "the execution count")?;
        let page_sql = format!(
            "{SELECT_EXECUTION}{filter} ORDER BY started_at DESC, execution_id DESC \
             LIMIT ${} OFFSET ${}",
            binds.len() + 1,
            binds.len() + 2
        );
        let mut page = sqlx::query(&page_sql);
        for value in &binds {
            page = page.bind(value.as_str());
        }
        let rows = page
            .bind(i64::from(query.limit))
            .bind(to_db(query.offset)?)
            .fetch_all(self.pool())
            .await
            .map_err(|e| LedgerError::database("listing executions", e))?;
        Ok(ExecutionPage {
            executions: rows.iter().map(execution_from_row).collect::<Result<_>>()?,
            total,
        })
    }

    /// Every plan with its execution count, by key.
    pub async fn plan_summaries(&self) -> Result<Vec<PlanSummary>> {
        let rows = sqlx::query(
            "SELECT key, budget_micro_usd, reserved_micro_usd, spent_micro_usd, head_seq, \
             head_hash, created_at, \
             (SELECT COUNT(*) FROM executions WHERE executions.plan = plans.key) AS executions \
             FROM plans ORDER BY key",
        )
        .fetch_all(self.pool())
        .await
        .map_err(|e| LedgerError::database("listing plans", e))?;
        rows.iter()
            .map(|row| {
                Ok(PlanSummary {
                    plan: crate::budget::plan_from_row(row)?,
                    executions: from_db(row.try_get("executions"), "the execution count")?,
                })
            })
            .collect()
    }

    /// Where every plan's chain ends, by key: one cheap read for a poller, which then reads
    /// the events past what it saw with [`Ledger::events`].
    pub async fn plan_heads(&self) -> Result<Vec<PlanHead>> {
        let rows = sqlx::query("SELECT key, head_seq FROM plans ORDER BY key")
            .fetch_all(self.pool())
            .await
            .map_err(|e| LedgerError::database("reading plan heads", e))?;
        rows.iter()
            .map(|row| {
                Ok(PlanHead {
                    plan: text(row, "key")?,
                    head_seq: from_db(row.try_get("head_seq"), "plans.head_seq")?,
                })
            })
            .collect()
    }
}

/// An RFC 3339 time from a query, in the stored form; anything else is `ERR_INPUTS`.
fn stored_time(name: &str, value: &str) -> Result<String> {
    Timestamp::parse_rfc3339(value)
        .map(Timestamp::into_string)
        .ok_or_else(|| {
            LedgerError::Canon(CanonError::new(
                ErrorCode::Inputs,
                format!(
                    "`{name}` must be an RFC 3339 time such as 2026-01-02T03:04:05Z: `{value}`"
                ),
            ))
        })
}
