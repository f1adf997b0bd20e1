//! Plans and their budgets, in integer micro-USD.
//!
//! A run reserves its maximum cost before it invokes anything and settles its actual cost
//! afterwards. The plan row keeps `reserved + spent <= budget` (when a budget is set) and
//! both amounts non-negative, checked here with a canonical refusal and enforced again by
//! the database's constraints.

use proctor_contract::{
    BudgetReserveEvent, BudgetSetEvent, BudgetSettleEvent, CanonError, ErrorCode, LedgerEvent,
};
use serde::Serialize;

use crate::error::{LedgerError, Result};
use crate::event::{Appended, NewEvent};
use crate::executions::fetch_execution;
use crate::group::{PlanTxn, Write};
use crate::ledger::{Ledger, from_db, text, to_db};

/// A plan: a named hash chain with an optional budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Its key, e.g. `default`.
    pub key: String,
    /// Its budget, or `None` for no limit.
    pub budget_micro_usd: Option<u64>,
    /// Reserved by executions that have not settled yet.
    pub reserved_micro_usd: u64,
    /// Spent by settled executions.
    pub spent_micro_usd: u64,
    /// The seq of its last event (0 before the first).
    pub head_seq: u64,
    /// The `this_hash` of its last event.
    pub head_hash: String,
    /// When it was created.
    pub created_at: String,
}

impl Plan {
    /// What can still be reserved, or `None` without a budget.
    pub fn available_micro_usd(&self) -> Option<u64> {
        self.budget_micro_usd
            .map(|budget| budget.saturating_sub(self.reserved_micro_usd + self.spent_micro_usd))
    }
}

fn budget_exceeded(detail: String) -> LedgerError {
    LedgerError::Canon(CanonError::new(ErrorCode::BudgetExceeded, detail))
}

impl Ledger {
    /// The plan named `plan`, if it exists.
    pub async fn plan(&self, plan: &str) -> Result<Option<Plan>> {
        let row = sqlx::query(&format!("{SELECT_PLAN} WHERE key = $1"))
            .bind(plan)
            .fetch_optional(self.pool())
            .await
            .map_err(|e| LedgerError::database(format!("reading plan `{plan}`"), e))?;
        row.as_ref().map(plan_from_row).transpose()
    }

    /// Every plan, by key.
    pub async fn plans(&self) -> Result<Vec<Plan>> {
        let rows = sqlx::query(&format!("{SELECT_PLAN} ORDER BY key"))
            .fetch_all(self.pool())
            .await
            .map_err(|e| LedgerError::database("listing plans", e))?;
        rows.iter().map(plan_from_row).collect()
    }

    /// Sets (or with `None` removes) the budget of `plan`, creating the plan if needed, and
    /// appends `budget.set`. A budget below what is already reserved and spent is
    /// `ERR_BUDGET_EXCEEDED`.
    pub async fn set_budget(&self, plan: &str, budget_micro_usd: Option<u64>) -> Result<Appended> {
        budget_micro_usd.map(to_db).transpose()?;
        self.write(Write::SetBudget {
            plan: plan.to_owned(),
            budget_micro_usd,
        })
        .await?
        .event()
    }

    /// Reserves `amount_micro_usd` of `plan`'s budget for `execution_id` (whose start is
    /// recorded) and appends `budget.reserve`. Refused with `ERR_BUDGET_EXCEEDED`, changing
    /// nothing, when reserved + spent would pass the budget.
    pub async fn reserve(
        &self,
        plan: &str,
        execution_id: &str,
        amount_micro_usd: u64,
    ) -> Result<Appended> {
        to_db(amount_micro_usd)?;
        self.write(Write::Reserve {
            plan: plan.to_owned(),
            execution_id: execution_id.to_owned(),
            amount_micro_usd,
        })
        .await?
        .event()
    }

    /// Settles `execution_id`'s budget: its reservation is released and `actual_micro_usd`
    /// is added to what `plan` has spent; appends `budget.settle`. Settling twice is
    /// `ERR_LEDGER`; an actual cost that would pass the budget is `ERR_BUDGET_EXCEEDED`
    /// and changes nothing (reserve the maximum cost up front).
    pub async fn settle(
        &self,
        plan: &str,
        execution_id: &str,
        actual_micro_usd: u64,
    ) -> Result<Appended> {
        to_db(actual_micro_usd)?;
        self.write(Write::SettleBudget {
            plan: plan.to_owned(),
            execution_id: execution_id.to_owned(),
            actual_micro_usd,
        })
        .await?
        .event()
    }
}

/// Sets (or with `None` removes) the budget of the plan `txn` holds and appends
/// `budget.set`; `ERR_BUDGET_EXCEEDED` below what is already reserved and spent.
pub(crate) async fn set_budget_in(
    txn: &mut PlanTxn<'_>,
    budget_micro_usd: Option<u64>,
) -> Result<Appended> {
    let plan = txn.key.clone();
    let committed = txn.reserved + txn.spent;
    if let Some(budget) = budget_micro_usd.filter(|budget| *budget < committed) {
        return Err(budget_exceeded(format!(
            "plan `{plan}`: a budget of {budget} micro-USD is below the {committed} \
             already reserved and spent"
        )));
    }
    sqlx::query("UPDATE plans SET budget_micro_usd = $2 WHERE key = $1")
        .bind(plan.as_str())
        .bind(budget_micro_usd.map(to_db).transpose()?)
        .execute(txn.writing())
        .await
        .map_err(|e| LedgerError::database(format!("setting the budget of `{plan}`"), e))?;
    txn.budget = budget_micro_usd;
    let event = NewEvent::internal(
        None,
        LedgerEvent::BudgetSet(BudgetSetEvent { budget_micro_usd }),
    );
    txn.append(&event)
}

/// Reserves `amount_micro_usd` of the budget of the plan `txn` holds for `execution_id`
/// and appends `budget.reserve`; `ERR_BUDGET_EXCEEDED`, changing nothing, past the budget.
pub(crate) async fn reserve_in(
    txn: &mut PlanTxn<'_>,
    execution_id: &str,
    amount_micro_usd: u64,
) -> Result<Appended> {
    let plan = txn.key.clone();
    let execution = open_execution(txn, execution_id).await?;
    let reserved = txn.reserved.checked_add(amount_micro_usd);
    let committed = reserved.and_then(|reserved| reserved.checked_add(txn.spent));
    let over_budget = match (txn.budget, committed) {
        (Some(budget), Some(committed)) => committed > budget,
        (_, None) => true,
        (None, Some(_)) => false,
    };
    if over_budget {
        return Err(budget_exceeded(format!(
            "plan `{plan}`: reserving {amount_micro_usd} micro-USD for execution \
             `{execution_id}` would pass its budget of {} ({} reserved, {} spent)",
            txn.budget
                .map_or_else(|| "none".to_owned(), |b| b.to_string()),
            txn.reserved,
            txn.spent
        )));
    }
    let (reserved, spent) = (reserved.unwrap_or(txn.reserved), txn.spent);
    update_amounts(txn, reserved, spent).await?;
    set_execution_amounts(
        txn,
        execution_id,
        execution.reserved_micro_usd + amount_micro_usd,
        None,
    )
    .await?;
    let event = NewEvent::internal(
        Some(execution_id),
        LedgerEvent::BudgetReserve(BudgetReserveEvent {
            amount_micro_usd,
            plan_reserved_micro_usd: reserved,
            plan_spent_micro_usd: spent,
            budget_micro_usd: txn.budget,
        }),
    );
    txn.append(&event)
}

/// Settles `execution_id`'s budget in `txn` (which holds its plan): its reservation is
/// released and `actual_micro_usd` added to what the plan has spent; appends
/// `budget.settle`. Settling twice is `ERR_LEDGER`; an actual cost that would pass the
/// budget is `ERR_BUDGET_EXCEEDED`.
pub(crate) async fn settle_in(
    txn: &mut PlanTxn<'_>,
    execution_id: &str,
    actual_micro_usd: u64,
) -> Result<Appended> {
    to_db(actual_micro_usd)?;
    let plan = txn.key.clone();
    let execution = open_execution(txn, execution_id).await?;
    let released = execution.reserved_micro_usd;
    let reserved = txn.reserved.checked_sub(released).ok_or_else(|| {
        LedgerError::ledger(format!(
            "plan `{plan}` reserves {} micro-USD, less than execution `{execution_id}` holds",
            txn.reserved
        ))
    })?;
    let spent = txn.spent.checked_add(actual_micro_usd);
    let committed = spent.and_then(|spent| spent.checked_add(reserved));
    let over_budget = match (txn.budget, committed) {
        (Some(budget), Some(committed)) => committed > budget,
        (_, None) => true,
        (None, Some(_)) => false,
    };
    if over_budget {
        return Err(budget_exceeded(format!(
            "plan `{plan}`: settling {actual_micro_usd} micro-USD for execution \
             `{execution_id}` (reserved {released}) would pass its budget of {}",
            txn.budget
                .map_or_else(|| "none".to_owned(), |b| b.to_string()),
        )));
    }
    let spent = spent.unwrap_or(txn.spent);
    update_amounts(txn, reserved, spent).await?;
    set_execution_amounts(txn, execution_id, 0, Some(actual_micro_usd)).await?;
    let event = NewEvent::internal(
        Some(execution_id),
        LedgerEvent::BudgetSettle(BudgetSettleEvent {
            released_micro_usd: released,
            actual_micro_usd,
            plan_reserved_micro_usd: reserved,
            plan_spent_micro_usd: spent,
            budget_micro_usd: txn.budget,
        }),
    );
    txn.append(&event)
}

const SELECT_PLAN: &str = "SELECT key, budget_micro_usd, reserved_micro_usd, spent_micro_usd, \
     head_seq, head_hash, created_at FROM plans";

pub(crate) fn plan_from_row(row: &sqlx::any::AnyRow) -> Result<Plan> {
    use sqlx::Row;
    let budget: Option<i64> = row
        .try_get("budget_micro_usd")
        .map_err(|e| LedgerError::database("reading plans.budget_micro_usd", e))?;
    Ok(Plan {
        key: text(row, "key")?,
        budget_micro_usd: budget
            .map(|b| from_db(Ok(b), "plans.budget_micro_usd"))
            .transpose()?,
        reserved_micro_usd: from_db(
            row.try_get("reserved_micro_usd"),
            "plans.reserved_micro_usd",
        )?,
        spent_micro_usd: from_db(row.try_get("spent_micro_usd"), "plans.spent_micro_usd")?,
        head_seq: from_db(row.try_get("head_seq"), "plans.head_seq")?,
        head_hash: text(row, "head_hash")?,
        created_at: text(row, "created_at")?,
    })
}

/// The execution's budget state, checked to belong to the locked plan and to be unsettled.
async fn open_execution(txn: &mut PlanTxn<'_>, execution_id: &str) -> Result<crate::Execution> {
    let execution = fetch_execution(txn.conn(), execution_id)
        .await?
        .ok_or_else(|| {
            LedgerError::ledger(format!(
                "unknown execution `{execution_id}`: record its start first"
            ))
        })?;
    if execution.plan != txn.key {
        return Err(LedgerError::ledger(format!(
            "execution `{execution_id}` belongs to plan `{}`, not `{}`",
            execution.plan, txn.key
        )));
    }
    if execution.spent_micro_usd.is_some() {
        return Err(LedgerError::ledger(format!(
            "the budget of execution `{execution_id}` is already settled"
        )));
    }
    Ok(execution)
}

async fn update_amounts(txn: &mut PlanTxn<'_>, reserved: u64, spent: u64) -> Result<()> {
    let key = txn.key.clone();
    sqlx::query("UPDATE plans SET reserved_micro_usd = $2, spent_micro_usd = $3 WHERE key = $1")
        .bind(key.as_str())
        .bind(to_db(reserved)?)
        .bind(to_db(spent)?)
        .execute(txn.writing())
        .await
        .map_err(|e| LedgerError::database(format!("updating the budget of `{key}`"), e))?;
    txn.reserved = reserved;
    txn.spent = spent;
    Ok(())
}

async fn set_execution_amounts(
    txn: &mut PlanTxn<'_>,
    execution_id: &str,
    reserved: u64,
    spent: Option<u64>,
) -> Result<()> {
    sqlx::query("UPDATE executions SET reserved_micro_usd = $2, spent_micro_usd = $3 WHERE execution_id = $1")
        .bind(execution_id)
        .bind(to_db(reserved)?)
        .bind(spent.map(to_db).transpose()?)
        .execute(txn.writing())
        .await
        .map_err(|e| LedgerError::database(format!("updating the budget of execution `{execution_id}`"), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_is_what_is_left() {
        let plan = Plan {
            key: "p".to_owned(),
            budget_micro_usd: Some(100),
            reserved_micro_usd: 30,
            spent_micro_usd: 50,
            head_seq: 0,
            head_hash: String::new(),
            created_at: String::new(),
        };
        assert_eq!(plan.available_micro_usd(), Some(20));
        assert_eq!(
            Plan {
                budget_micro_usd: None,
                ..plan
            }
            .available_micro_usd(),
            None
        );
    }
}
