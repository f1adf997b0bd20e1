//! Leases on write paths, so that two executions never write under overlapping prefixes.
//!
//! A selector is a canonical world path: exact (`/artifacts/a/b.json`) or a prefix ending
//! in `/` that covers everything below it. Two selectors overlap when one covers the other.
//! Acquiring refuses with `ERR_LEASE_CONFLICT` while another execution holds an overlapping
//! lease that has not expired; an expired one is taken over (a crashed holder's lease ends
//! with its TTL). Each acquire and release appends `lease.acquire` / `lease.release` to the
//! plan the lease was taken under. Expiry is judged by the clock of the machine that
//! acquires, so machines sharing a PostgreSQL ledger need synchronized clocks.

use std::time::Duration;

use proctor_contract::{
    CanonError, ErrorCode, LeaseAcquireEvent, LeaseReleaseEvent, LeaseReleaseReason, LedgerEvent,
    SelectorKind, TakenOverLease, WorldPath,
};
use serde::Serialize;

use crate::clock::Timestamp;
use crate::error::{LedgerError, Result};
use crate::event::NewEvent;
use crate::group::{PlanTxn, Write};
use crate::ledger::{Ledger, text};

/// A lease row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    /// The leased selector.
    pub selector: WorldPath,
    /// The execution holding it.
    pub holder: String,
    /// The plan whose chain records it.
    pub plan: String,
    /// When it was acquired (or last renewed).
    pub acquired_at: String,
    /// When it expires.
    pub expires_at: String,
}

impl Lease {
    /// Exact or prefix.
    pub fn kind(&self) -> SelectorKind {
        self.selector.kind()
    }

    /// Whether it has expired.
    pub fn is_expired(&self) -> bool {
        self.expires_at.as_str() <= Timestamp::now().as_str()
    }
}

/// Whether two selectors overlap: one covers the other.
pub fn selectors_overlap(a: &WorldPath, b: &WorldPath) -> bool {
    a.covers(b) || b.covers(a)
}

/// A held lease. Release it with [`LeaseGuard::release`]; a guard dropped without that
/// (an early return, an error, a panic) releases the lease in the background on the
/// current Tokio runtime, which [`Ledger::wait_for_dropped_leases`] awaits. If even that
/// cannot run (the process dies), the lease expires after its TTL.
#[derive(Debug)]
#[must_use = "a lease guard dropped at once releases its lease"]
pub struct LeaseGuard {
    ledger: Ledger,
    lease: Lease,
    released: bool,
}

impl LeaseGuard {
    /// The lease held.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Releases the lease and appends `lease.release`. Returns `false` when the lease was
    /// no longer held (it expired and another execution took it over). On error the guard
    /// still releases in the background as when dropped.
    pub async fn release(mut self) -> Result<bool> {
        let released = release(
            &self.ledger,
            &self.lease.selector,
            &self.lease.holder,
            LeaseReleaseReason::Released,
        )
        .await?;
        self.released = true;
        Ok(released)
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(selector = %self.lease.selector, "lease.left_to_expire");
            return;
        };
        let ledger = self.ledger.clone();
        let selector = self.lease.selector.clone();
        let holder = self.lease.holder.clone();
        let task = runtime.spawn(async move {
            if let Err(err) =
                release(&ledger, &selector, &holder, LeaseReleaseReason::Dropped).await
            {
                tracing::warn!(selector = %selector, error = %err, "lease.release_failed");
            }
        });
        if let Ok(mut pending) = self.ledger.dropped_releases.lock() {
            pending.retain(|task| !task.is_finished());
            pending.push(task);
        }
    }
}

impl Ledger {
    /// Leases `selector` for `holder` (an execution id) for `ttl`, appending
    /// `lease.acquire` to `plan`. Refused with `ERR_LEASE_CONFLICT` while another holder
    /// has an overlapping unexpired lease; overlapping expired leases are taken over. The
    /// same holder may hold overlapping leases; re-acquiring its own selector renews it.
    pub async fn acquire_lease(
        &self,
        plan: &str,
        selector: &WorldPath,
        holder: &str,
        ttl: Duration,
    ) -> Result<LeaseGuard> {
        if holder.is_empty() {
            return Err(LedgerError::ledger(
                "a lease holder (execution id) is required",
            ));
        }
        let lease = self
            .write(Write::AcquireLease {
                plan: plan.to_owned(),
                selector: selector.clone(),
                holder: holder.to_owned(),
                ttl,
            })
            .await?
            .lease()?;
        tracing::debug!(selector = %selector, holder, "lease.acquire");
        Ok(LeaseGuard {
            ledger: self.clone(),
            lease,
            released: false,
        })
    }

    /// Releases `holder`'s lease on `selector` and appends `lease.release` to its plan;
    /// `false` when it holds no such lease (never acquired, released, or taken over).
    pub async fn release_lease(&self, selector: &WorldPath, holder: &str) -> Result<bool> {
        release(self, selector, holder, LeaseReleaseReason::Released).await
    }

    /// Every lease row, expired ones included, by selector.
    pub async fn leases(&self) -> Result<Vec<Lease>> {
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(|e| LedgerError::database("acquiring a connection", e))?;
        all_leases(&mut conn).await
    }

    /// Waits until every release started by a dropped [`LeaseGuard`] has finished.
    pub async fn wait_for_dropped_leases(&self) {
        loop {
            let pending = match self.dropped_releases.lock() {
                Ok(mut pending) => std::mem::take(&mut *pending),
                Err(_) => return,
            };
            if pending.is_empty() {
                return;
            }
            for task in pending {
                // A release task that panicked has nothing left to wait for.
                let _ = task.await;
            }
        }
    }
}

/// Leases `selector` for `holder` in `txn` (which holds the lease lock) and appends
/// `lease.acquire`; `ERR_LEASE_CONFLICT` while another holder has an overlapping unexpired
/// lease.
pub(crate) async fn acquire_in(
    txn: &mut PlanTxn<'_>,
    selector: &WorldPath,
    holder: &str,
    ttl: Duration,
) -> Result<Lease> {
    let now = txn.now.clone();
    let mut taken_over = Vec::new();
    let mut renewing = false;
    for lease in all_leases(txn.conn()).await? {
        if !selectors_overlap(&lease.selector, selector) {
            continue;
        }
        if lease.holder == holder {
            renewing |= lease.selector == *selector;
            continue;
        }
        if lease.expires_at.as_str() > now.as_str() {
            return Err(LedgerError::Canon(CanonError::new(
                ErrorCode::LeaseConflict,
                format!(
                    "`{selector}` overlaps `{}` held by execution `{}` until {}",
                    lease.selector, lease.holder, lease.expires_at
                ),
            )));
        }
        delete_lease(txn, &lease.selector).await?;
        taken_over.push(TakenOverLease {
            selector: lease.selector,
            holder: lease.holder,
            expired_at: lease.expires_at,
        });
    }
    let expires_at = Timestamp::after(ttl);
    let plan = txn.key.clone();
    let written = if renewing {
        sqlx::query(
            "UPDATE leases SET plan = $3, acquired_at = $4, expires_at = $5 \
             WHERE selector = $1 AND holder = $2",
        )
        .bind(selector.as_str())
        .bind(holder)
        .bind(plan.as_str())
        .bind(now.as_str())
        .bind(expires_at.as_str())
        .execute(txn.writing())
        .await
    } else {
        sqlx::query(
            "INSERT INTO leases (selector, holder, plan, acquired_at, expires_at, kind) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(selector.as_str())
        .bind(holder)
        .bind(plan.as_str())
        .bind(now.as_str())
        .bind(expires_at.as_str())
        .bind(selector.kind().as_str())
        .execute(txn.writing())
        .await
    };
    written.map_err(|e| LedgerError::database(format!("leasing `{selector}`"), e))?;
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let event = NewEvent::internal(
        Some(holder),
        LedgerEvent::LeaseAcquire(LeaseAcquireEvent {
            selector: selector.clone(),
            selector_kind: selector.kind(),
            expires_at: expires_at.as_str().to_owned(),
            ttl_ms,
            renewed: renewing,
            taken_over,
        }),
    );
    txn.append(&event)?;
    Ok(Lease {
        selector: selector.clone(),
        holder: holder.to_owned(),
        plan,
        acquired_at: now.into_string(),
        expires_at: expires_at.into_string(),
    })
}

async fn release(
    ledger: &Ledger,
    selector: &WorldPath,
    holder: &str,
    reason: LeaseReleaseReason,
) -> Result<bool> {
    let Some(plan) = held_lease_plan(ledger, selector, holder).await? else {
        return Ok(false);
    };
    let released = ledger
        .write(Write::ReleaseLease {
            plan,
            selector: selector.clone(),
            holder: holder.to_owned(),
            reason,
        })
        .await?
        .released()?;
    tracing::debug!(selector = %selector, holder, released, "lease.release");
    Ok(released)
}

/// Releases `holder`'s lease on `selector` in `txn` (which holds the lease lock) and
/// appends `lease.release`; `false` when it holds no such lease.
pub(crate) async fn release_in(
    txn: &mut PlanTxn<'_>,
    selector: &WorldPath,
    holder: &str,
    reason: LeaseReleaseReason,
) -> Result<bool> {
    let held = all_leases(txn.conn())
        .await?
        .into_iter()
        .any(|lease| lease.selector == *selector && lease.holder == holder);
    if !held {
        return Ok(false);
    }
    delete_lease(txn, selector).await?;
    let event = NewEvent::internal(
        Some(holder),
        LedgerEvent::LeaseRelease(LeaseReleaseEvent {
            selector: selector.clone(),
            reason,
        }),
    );
    txn.append(&event)?;
    Ok(true)
}

/// Releases, in `txn` (which holds the lease lock), every lease `holder` holds under the
/// transaction's plan, appending one `lease.release` each; gives their selectors.
pub(crate) async fn release_all_in(
    txn: &mut PlanTxn<'_>,
    holder: &str,
    reason: LeaseReleaseReason,
) -> Result<Vec<WorldPath>> {
    let held: Vec<WorldPath> = all_leases(txn.conn())
        .await?
        .into_iter()
        .filter(|lease| lease.holder == holder && lease.plan == txn.key)
        .map(|lease| lease.selector)
        .collect();
    for selector in &held {
        release_in(txn, selector, holder, reason).await?;
    }
    Ok(held)
}

/// The plan of `holder`'s lease on `selector`, if it holds one.
async fn held_lease_plan(
    ledger: &Ledger,
    selector: &WorldPath,
    holder: &str,
) -> Result<Option<String>> {
    sqlx::query_scalar("SELECT plan FROM leases WHERE selector = $1 AND holder = $2")
        .bind(selector.as_str())
        .bind(holder)
        .fetch_optional(ledger.pool())
        .await
        .map_err(|e| LedgerError::database(format!("reading the lease on `{selector}`"), e))
}

async fn delete_lease(txn: &mut PlanTxn<'_>, selector: &WorldPath) -> Result<()> {
    sqlx::query("DELETE FROM leases WHERE selector = $1")
        .bind(selector.as_str())
        .execute(txn.writing())
        .await
        .map_err(|e| LedgerError::database(format!("removing the lease on `{selector}`"), e))?;
    Ok(())
}

async fn all_leases(conn: &mut sqlx::AnyConnection) -> Result<Vec<Lease>> {
    let rows = sqlx::query(
        "SELECT selector, holder, plan, acquired_at, expires_at FROM leases ORDER BY selector",
    )
    .fetch_all(conn)
    .await
    .map_err(|e| LedgerError::database("reading leases", e))?;
    rows.iter()
        .map(|row| {
            Ok(Lease {
                selector: WorldPath::parse(&text(row, "selector")?)?,
                holder: text(row, "holder")?,
                plan: text(row, "plan")?,
                acquired_at: text(row, "acquired_at")?,
                expires_at: text(row, "expires_at")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(raw: &str) -> WorldPath {
        WorldPath::parse(raw).unwrap()
    }

    #[test]
    fn overlap_is_coverage_either_way() {
        let prefix = path("/artifacts/outputs/demo/");
        assert!(selectors_overlap(
            &prefix,
            &path("/artifacts/outputs/demo/e1/")
        ));
        assert!(selectors_overlap(
            &path("/artifacts/outputs/demo/e1/x.json"),
            &prefix
        ));
        assert!(selectors_overlap(&prefix, &prefix));
        assert!(selectors_overlap(
            &path("/artifacts/a"),
            &path("/artifacts/a")
        ));
        assert!(!selectors_overlap(
            &path("/artifacts/outputs/demo/e1/"),
            &path("/artifacts/outputs/demo/e2/")
        ));
        assert!(!selectors_overlap(
            &path("/artifacts/a"),
            &path("/artifacts/ab")
        ));
        assert!(!selectors_overlap(
            &path("/artifacts/a/"),
            &path("/artifacts/ab/")
        ));
        assert!(!selectors_overlap(
            &path("/artifacts/a"),
            &path("/artifacts/b")
        ));
    }
}
