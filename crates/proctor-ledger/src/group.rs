//! Group commit: the writes of one ledger handle (all its clones) go through one committer
//! task, which commits the writes that queued while its previous transaction committed
//! together, in one transaction and in arrival order.
//!
//! Each write is a *member* of its group and gets its own answer. The ledger's operations
//! refuse (a budget refusal, a lease conflict, an unknown execution) before they change
//! anything, so a refused member simply leaves no trace and the rest of its group goes in.
//! Should a member fail after it changed something (a database failure, a refusal found
//! late), the group fails as a whole. Events are not inserted one by one: the
//! group's events are hashed in arrival order after each plan's head, kept in memory, and
//! inserted with a few multi-row `INSERT`s before the plans' heads move and the group
//! commits. A group that fails as a whole on a transient failure (SQLite busy, PostgreSQL
//! serialization failure or deadlock) is retried; one that fails otherwise (a constraint
//! the database enforces) is retried member by member, each alone in its transaction, so
//! only the member at fault gets the error.
//!
//! **Locks.** On SQLite a group runs under `BEGIN IMMEDIATE` (the database write lock). On
//! PostgreSQL it first takes the transaction-scoped advisory lock of the lease table when a
//! member changes leases, then `SELECT … FOR UPDATE` of every plan row it writes, in key
//! order, so groups of different processes lock in one order. Writers in other processes
//! take the same locks: they serialize with this one, they just do not share its groups.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use proctor_contract::{CanonError, LeaseReleaseReason, Redactor, WorldPath};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Row, Transaction};
use tokio::sync::{mpsc, oneshot};

use crate::clock::Timestamp;
use crate::error::{LedgerError, Result};
use crate::event::{Appended, GENESIS_HASH, NewEvent, chain_hash};
use crate::executions::{ExecutionSettle, ExecutionStart};
use crate::leases::Lease;
use crate::ledger::{Backend, from_db, to_db, wait_to_retry};
use crate::recover::SettledAbandoned;

/// The most members one group commits.
const MAX_GROUP: usize = 512;
/// Events inserted by one `INSERT` statement (5 parameters each).
const ROWS_PER_INSERT: usize = 100;
/// The PostgreSQL advisory lock key that serializes lease changes ("proctor" in ASCII).
const LEASES_LOCK_KEY: i64 = 0x0070_726f_6374_6f72;

/// One write operation of the ledger, as its caller asked for it.
#[derive(Debug)]
pub(crate) enum Write {
    /// `append_batch`: free events.
    Append { plan: String, events: Vec<NewEvent> },
    /// `record_start`.
    RecordStart(ExecutionStart),
    /// `set_budget`.
    SetBudget {
        plan: String,
        budget_micro_usd: Option<u64>,
    },
    /// `reserve`.
    Reserve {
        plan: String,
        execution_id: String,
        amount_micro_usd: u64,
    },
    /// `settle` (the budget).
    SettleBudget {
        plan: String,
        execution_id: String,
        actual_micro_usd: u64,
    },
    /// `settle_execution`: the budget settle, then the execution's.
    SettleExecution {
        plan: String,
        actual_micro_usd: u64,
        settle: ExecutionSettle,
    },
    /// `record_settle`, on the execution's plan.
    RecordSettle {
        plan: String,
        settle: ExecutionSettle,
    },
    /// `acquire_lease`.
    AcquireLease {
        plan: String,
        selector: WorldPath,
        holder: String,
        ttl: Duration,
    },
    /// A lease release, on the plan the lease was taken under.
    ReleaseLease {
        plan: String,
        selector: WorldPath,
        holder: String,
        reason: LeaseReleaseReason,
    },
    /// `settle_abandoned`, on the execution's plan.
    SettleAbandoned {
        plan: String,
        execution_id: String,
        error: CanonError,
    },
}

impl Write {
    /// The plan whose chain the write extends.
    pub(crate) fn plan(&self) -> &str {
        match self {
            Write::RecordStart(start) => &start.plan,
            Write::Append { plan, .. }
            | Write::SetBudget { plan, .. }
            | Write::Reserve { plan, .. }
            | Write::SettleBudget { plan, .. }
            | Write::SettleExecution { plan, .. }
            | Write::RecordSettle { plan, .. }
            | Write::AcquireLease { plan, .. }
            | Write::ReleaseLease { plan, .. }
            | Write::SettleAbandoned { plan, .. } => plan,
        }
    }

    /// Whether it changes the lease table, which spans plans.
    fn changes_leases(&self) -> bool {
        matches!(
            self,
            Write::AcquireLease { .. } | Write::ReleaseLease { .. } | Write::SettleAbandoned { .. }
        )
    }

    /// Runs the write in `txn`. Only [`Write::Append`] runs no statement of its own.
    async fn apply(&self, txn: &mut PlanTxn<'_>) -> Result<Written> {
        match self {
            Write::Append { events, .. } => txn.append_all(events).map(Written::Events),
            Write::RecordStart(start) => crate::executions::start_in(txn, start)
                .await
                .map(Written::Event),
            Write::SetBudget {
                budget_micro_usd, ..
            } => crate::budget::set_budget_in(txn, *budget_micro_usd)
                .await
                .map(Written::Event),
            Write::Reserve {
                execution_id,
                amount_micro_usd,
                ..
            } => crate::budget::reserve_in(txn, execution_id, *amount_micro_usd)
                .await
                .map(Written::Event),
            Write::SettleBudget {
                execution_id,
                actual_micro_usd,
                ..
            } => crate::budget::settle_in(txn, execution_id, *actual_micro_usd)
                .await
                .map(Written::Event),
            Write::SettleExecution {
                actual_micro_usd,
                settle,
                ..
            } => {
                let budget =
                    crate::budget::settle_in(txn, &settle.execution_id, *actual_micro_usd).await;
                // A budget refused before it changed anything still lets the end be recorded.
                let budget = match budget {
                    Ok(appended) => Ok(appended),
                    Err(LedgerError::Canon(refusal)) if !txn.changed => Err(refusal),
                    Err(error) => return Err(error),
                };
                let settled = crate::executions::settle_in(txn, settle).await?;
                Ok(Written::Settled { budget, settled })
            }
            Write::RecordSettle { settle, .. } => crate::executions::settle_in(txn, settle)
                .await
                .map(Written::Event),
            Write::AcquireLease {
                selector,
                holder,
                ttl,
                ..
            } => crate::leases::acquire_in(txn, selector, holder, *ttl)
                .await
                .map(Written::Lease),
            Write::ReleaseLease {
                selector,
                holder,
                reason,
                ..
            } => crate::leases::release_in(txn, selector, holder, *reason)
                .await
                .map(Written::Released),
            Write::SettleAbandoned {
                execution_id,
                error,
                ..
            } => crate::recover::settle_abandoned_in(txn, execution_id, error)
                .await
                .map(Written::Abandoned),
        }
    }
}

/// What a write gives its caller.
#[derive(Debug)]
pub(crate) enum Written {
    /// The one event it appended.
    Event(Appended),
    /// The events it appended, in order.
    Events(Vec<Appended>),
    /// The budget settle (or its refusal) and the execution settle it appended.
    Settled {
        budget: std::result::Result<Appended, CanonError>,
        settled: Appended,
    },
    /// The lease it took.
    Lease(Lease),
    /// Whether the lease was still held and is now released.
    Released(bool),
    /// The abandoned execution it settled, if it was still running.
    Abandoned(Option<SettledAbandoned>),
}

impl Written {
    fn unexpected(&self) -> LedgerError {
        LedgerError::ledger(format!("a ledger write answered with {self:?}"))
    }

    /// The one event appended.
    pub(crate) fn event(self) -> Result<Appended> {
        match self {
            Written::Event(appended) => Ok(appended),
            other => Err(other.unexpected()),
        }
    }

    /// The events appended.
    pub(crate) fn events(self) -> Result<Vec<Appended>> {
        match self {
            Written::Events(appended) => Ok(appended),
            other => Err(other.unexpected()),
        }
    }

    /// The budget settle (or its refusal) and the execution settle.
    pub(crate) fn settled(self) -> Result<(std::result::Result<Appended, CanonError>, Appended)> {
        match self {
            Written::Settled { budget, settled } => Ok((budget, settled)),
            other => Err(other.unexpected()),
        }
    }

    /// The lease taken.
    pub(crate) fn lease(self) -> Result<Lease> {
        match self {
            Written::Lease(lease) => Ok(lease),
            other => Err(other.unexpected()),
        }
    }

    /// Whether a lease was released.
    pub(crate) fn released(self) -> Result<bool> {
        match self {
            Written::Released(released) => Ok(released),
            other => Err(other.unexpected()),
        }
    }

    /// The abandoned execution settled.
    pub(crate) fn abandoned(self) -> Result<Option<SettledAbandoned>> {
        match self {
            Written::Abandoned(settled) => Ok(settled),
            other => Err(other.unexpected()),
        }
    }
}

/// A queued write and where its answer goes.
struct Member {
    write: Write,
    reply: oneshot::Sender<Result<Written>>,
}

/// The queue of a ledger handle's writes; its committer task starts with the first write
/// (and again should the runtime that ran it have stopped).
#[derive(Debug)]
pub(crate) struct WriteQueue {
    sender: std::sync::Mutex<Option<mpsc::UnboundedSender<Member>>>,
    committer: Committer,
}

impl WriteQueue {
    pub(crate) fn new(pool: AnyPool, backend: Backend, redactor: Arc<RwLock<Redactor>>) -> Self {
        WriteQueue {
            sender: std::sync::Mutex::new(None),
            committer: Committer {
                pool,
                backend,
                redactor,
            },
        }
    }

    /// Queues `write` and waits for its answer.
    pub(crate) async fn write(&self, write: Write) -> Result<Written> {
        let (reply, answer) = oneshot::channel();
        self.submit(Member { write, reply })?;
        answer
            .await
            .map_err(|_| LedgerError::ledger("the ledger's committer stopped before answering"))?
    }

    fn submit(&self, member: Member) -> Result<()> {
        let mut sender = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
        let member = match sender.as_ref() {
            Some(queue) => match queue.send(member) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendError(member)) => member,
            },
            None => member,
        };
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| LedgerError::ledger("ledger writes need a Tokio runtime"))?;
        let (queue, receiver) = mpsc::unbounded_channel();
        runtime.spawn(self.committer.clone().run(receiver));
        queue
            .send(member)
            .map_err(|_| LedgerError::ledger("the ledger's committer stopped"))?;
        *sender = Some(queue);
        Ok(())
    }
}

/// The task that commits a handle's writes in groups.
#[derive(Debug, Clone)]
struct Committer {
    pool: AnyPool,
    backend: Backend,
    /// What every payload passes before it is hashed and stored.
    redactor: Arc<RwLock<Redactor>>,
}

impl Committer {
    async fn run(self, mut receiver: mpsc::UnboundedReceiver<Member>) {
        let mut group = Vec::with_capacity(MAX_GROUP);
        // The connection is kept while writes keep coming (its page cache stays warm), and
        // goes back to the pool when the queue is idle, for readers and for `close`.
        let mut conn = None;
        loop {
            // The writers the last group answered get to queue their next writes first, so
            // that they join the next group instead of trickling in one by one.
            tokio::task::yield_now().await;
            if receiver.is_empty() {
                conn = None;
            }
            if receiver.recv_many(&mut group, MAX_GROUP).await == 0 {
                return;
            }
            self.commit(&mut conn, std::mem::take(&mut group)).await;
        }
    }

    /// Commits `group` and answers each member.
    async fn commit(&self, conn: &mut Option<PoolConnection<Any>>, group: Vec<Member>) {
        let writes: Vec<&Write> = group.iter().map(|member| &member.write).collect();
        match self.attempt_until_done(conn, &writes).await {
            Ok(results) => {
                for (member, result) in group.into_iter().zip(results) {
                    // A caller that stopped waiting no longer needs its answer.
                    let _ = member.reply.send(result);
                }
            }
            Err(error) if group.len() == 1 => {
                if let Some(member) = group.into_iter().next() {
                    let _ = member.reply.send(Err(error));
                }
            }
            Err(error) => {
                tracing::debug!(members = group.len(), error = %error, "ledger.group_failed");
                for member in group {
                    let alone = [&member.write];
                    let result =
                        self.attempt_until_done(conn, &alone)
                            .await
                            .and_then(|mut results| {
                                results.pop().unwrap_or_else(|| {
                                    Err(LedgerError::ledger("a ledger write gave no answer"))
                                })
                            });
                    let _ = member.reply.send(result);
                }
            }
        }
    }

    /// [`Committer::attempt`] on `conn` (acquired first when none is held), tried again on
    /// transient failures. A connection that failed otherwise is let go.
    async fn attempt_until_done(
        &self,
        conn: &mut Option<PoolConnection<Any>>,
        writes: &[&Write],
    ) -> Result<Vec<Result<Written>>> {
        let mut tries = 1;
        loop {
            let held = match conn {
                Some(held) => held,
                None => conn.insert(
                    self.pool
                        .acquire()
                        .await
                        .map_err(|e| LedgerError::database("acquiring a connection", e))?,
                ),
            };
            match self.attempt(held, writes).await {
                Err(error) if wait_to_retry(self.backend, &error, tries).await => tries += 1,
                Err(error) => {
                    *conn = None;
                    return Err(error);
                }
                answers => return answers,
            }
        }
    }

    /// One transaction for `writes`: each member's answer, or the failure of the whole.
    async fn attempt(
        &self,
        conn: &mut AnyConnection,
        writes: &[&Write],
    ) -> Result<Vec<Result<Written>>> {
        let redactor = self
            .redactor
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut tx = match self.backend {
            Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => conn.begin().await,
        }
        .map_err(|e| LedgerError::database("beginning a write", e))?;
        if self.backend == Backend::Postgres && writes.iter().any(|write| write.changes_leases()) {
            sqlx::query("SELECT 1 AS locked FROM pg_advisory_xact_lock($1)")
                .bind(LEASES_LOCK_KEY)
                .execute(&mut *tx)
                .await
                .map_err(|e| LedgerError::database("locking leases", e))?;
        }
        let keys: BTreeSet<&str> = writes.iter().map(|write| write.plan()).collect();
        let mut plans = lock_plans(&mut tx, self.backend, &keys).await?;
        let alone = writes.len() == 1;
        let mut rows = Vec::new();
        let mut answers = Vec::with_capacity(writes.len());
        for write in writes {
            let key = write.plan();
            let state = plans
                .get(key)
                .copied()
                .ok_or_else(|| LedgerError::ledger(format!("plan `{key}` was not locked")))?;
            let mark = rows.len();
            let mut txn = PlanTxn::new(&mut tx, &redactor, &mut rows, key, state);
            let answer = write.apply(&mut txn).await;
            let (state, changed) = (txn.state(), txn.changed);
            match answer {
                Ok(written) => {
                    plans.insert(key.to_owned(), state);
                    answers.push(Ok(written));
                }
                // A refusal before the member changed anything leaves no trace: the group
                // goes on without it.
                Err(LedgerError::Canon(refusal)) if !changed && !alone => {
                    rows.truncate(mark);
                    answers.push(Err(LedgerError::Canon(refusal)));
                }
                Err(error) if alone && !is_transient(self.backend, &error) => {
                    tx.rollback()
                        .await
                        .map_err(|e| LedgerError::database("rolling back a write", e))?;
                    return Ok(vec![Err(error)]);
                }
                // A database failure, or a refusal after the member changed something: the
                // group fails, and is retried (transient) or its members run alone.
                Err(error) => return Err(error),
            }
        }
        insert_events(&mut tx, &rows).await?;
        move_heads(&mut tx, &plans).await?;
        tx.commit()
            .await
            .map_err(|e| LedgerError::database("committing a write", e))?;
        Ok(answers)
    }
}

/// Whether `err` is a lock, serialization or uniqueness failure worth retrying.
pub(crate) fn is_transient(backend: Backend, err: &LedgerError) -> bool {
    let Some(sqlx::Error::Database(db_error)) = err.sqlx_error() else {
        return false;
    };
    let Some(code) = db_error.code() else {
        return false;
    };
    match backend {
        // serialization_failure, deadlock_detected, lock_not_available, unique_violation
        Backend::Postgres => matches!(&*code, "40001" | "40P01" | "55P03" | "23505"),
        // SQLITE_BUSY and SQLITE_LOCKED (any extended code), SQLITE_CONSTRAINT_PRIMARYKEY
        // and SQLITE_CONSTRAINT_UNIQUE.
        Backend::Sqlite => code
            .parse::<i32>()
            .is_ok_and(|code| matches!(code & 0xff, 5 | 6) || matches!(code, 1555 | 2067)),
    }
}

/// A plan's row as a group holds it: its amounts and chain head.
#[derive(Debug, Clone, Copy)]
struct PlanState {
    budget: Option<u64>,
    reserved: u64,
    spent: u64,
    head_seq: u64,
    head: blake3::Hash,
    head_moved: bool,
}

/// Locks the rows of the plans `keys` (creating those that do not exist yet) and reads
/// them: one statement, in key order.
async fn lock_plans(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    keys: &BTreeSet<&str>,
) -> Result<BTreeMap<String, PlanState>> {
    let mut plans = select_plans(tx, backend, keys).await?;
    let missing: Vec<&str> = keys
        .iter()
        .filter(|key| !plans.contains_key(**key))
        .copied()
        .collect();
    if missing.is_empty() {
        return Ok(plans);
    }
    for plan in missing {
        sqlx::query(
            "INSERT INTO plans (key, head_hash, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(plan)
        .bind(GENESIS_HASH)
        .bind(Timestamp::now().as_str())
        .execute(&mut **tx)
        .await
        .map_err(|e| LedgerError::database(format!("creating plan `{plan}`"), e))?;
    }
    plans = select_plans(tx, backend, keys).await?;
    match keys.iter().find(|key| !plans.contains_key(**key)) {
        Some(plan) => Err(LedgerError::ledger(format!("plan `{plan}` vanished"))),
        None => Ok(plans),
    }
}

/// Reads (on PostgreSQL locking, in key order) the rows of the plans `keys` that exist.
async fn select_plans(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    keys: &BTreeSet<&str>,
) -> Result<BTreeMap<String, PlanState>> {
    let operation = || "locking plans".to_owned();
    let placeholders: Vec<String> = (1..=keys.len()).map(|n| format!("${n}")).collect();
    let lock = match backend {
        Backend::Sqlite => "",
        Backend::Postgres => " FOR UPDATE",
    };
    let sql = format!(
        "SELECT key, budget_micro_usd, reserved_micro_usd, spent_micro_usd, head_seq, \
         head_hash FROM plans WHERE key IN ({}) ORDER BY key{lock}",
        placeholders.join(", ")
    );
    let mut select = sqlx::query(&sql);
    for key in keys {
        select = select.bind(*key);
    }
    let rows = select
        .fetch_all(&mut **tx)
        .await
        .map_err(|e| LedgerError::database(operation(), e))?;
    let mut plans = BTreeMap::new();
    for row in &rows {
        let key: String = row
            .try_get("key")
            .map_err(|e| LedgerError::database(operation(), e))?;
        let head_hash: String = row
            .try_get("head_hash")
            .map_err(|e| LedgerError::database(operation(), e))?;
        let head = blake3::Hash::from_hex(&head_hash)
            .map_err(|_| LedgerError::ledger(format!("plan `{key}` has a malformed head hash")))?;
        let budget: Option<i64> = row
            .try_get("budget_micro_usd")
            .map_err(|e| LedgerError::database(operation(), e))?;
        let state = PlanState {
            budget: budget
                .map(|b| from_db(Ok(b), "plans.budget_micro_usd"))
                .transpose()?,
            reserved: from_db(
                row.try_get("reserved_micro_usd"),
                "plans.reserved_micro_usd",
            )?,
            spent: from_db(row.try_get("spent_micro_usd"), "plans.spent_micro_usd")?,
            head_seq: from_db(row.try_get("head_seq"), "plans.head_seq")?,
            head,
            head_moved: false,
        };
        plans.insert(key, state);
    }
    Ok(plans)
}

/// Moves the recorded head of every plan of `plans` whose chain the group extended: one
/// statement.
async fn move_heads(
    tx: &mut Transaction<'_, Any>,
    plans: &BTreeMap<String, PlanState>,
) -> Result<()> {
    let moved: Vec<(&String, &PlanState)> =
        plans.iter().filter(|(_, state)| state.head_moved).collect();
    if moved.is_empty() {
        return Ok(());
    }
    let mut seqs = String::new();
    let mut hashes = String::new();
    let mut keys = Vec::with_capacity(moved.len());
    for n in 0..moved.len() {
        let (key, seq, hash) = (3 * n + 1, 3 * n + 2, 3 * n + 3);
        seqs.push_str(&format!(" WHEN ${key} THEN ${seq}"));
        hashes.push_str(&format!(" WHEN ${key} THEN ${hash}"));
        keys.push(format!("${key}"));
    }
    let sql = format!(
        "UPDATE plans SET head_seq = CASE key{seqs} END, head_hash = CASE key{hashes} END \
         WHERE key IN ({})",
        keys.join(", ")
    );
    let mut update = sqlx::query(&sql);
    for (key, state) in moved {
        update = update
            .bind(key.as_str())
            .bind(to_db(state.head_seq)?)
            .bind(state.head.to_hex().to_string());
    }
    update
        .execute(&mut **tx)
        .await
        .map_err(|e| LedgerError::database("moving the plans' heads", e))?;
    Ok(())
}

/// An event ready to insert: plan, seq, payload, prev_hash, this_hash.
type EventRow = (String, i64, String, String, String);

/// Inserts `rows` with one multi-row `INSERT` per [`ROWS_PER_INSERT`].
async fn insert_events(tx: &mut Transaction<'_, Any>, rows: &[EventRow]) -> Result<()> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let sql = insert_events_sql(chunk.len());
        let mut insert = sqlx::query(&sql);
        for (plan, seq, payload, prev_hash, this_hash) in chunk {
            insert = insert
                .bind(plan.as_str())
                .bind(*seq)
                .bind(payload.as_str())
                .bind(prev_hash.as_str())
                .bind(this_hash.as_str());
        }
        insert
            .execute(&mut **tx)
            .await
            .map_err(|e| LedgerError::database("appending events", e))?;
    }
    Ok(())
}

/// `INSERT INTO events … VALUES ($1, …, $5), ($6, …, $10), …` for `rows` rows.
fn insert_events_sql(rows: usize) -> String {
    let mut sql =
        String::from("INSERT INTO events (plan, seq, payload, prev_hash, this_hash) VALUES ");
    for row in 0..rows {
        let first = row * 5 + 1;
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(${first}, ${}, ${}, ${}, ${})",
            first + 1,
            first + 2,
            first + 3,
            first + 4
        ));
    }
    sql
}

/// One member's view of its group's transaction: the connection, its plan's row as the
/// members before it left it, and the group's events to insert.
pub(crate) struct PlanTxn<'g> {
    conn: &'g mut AnyConnection,
    /// What every payload this member writes passes first.
    redactor: &'g Redactor,
    /// The group's events, inserted when it commits.
    rows: &'g mut Vec<EventRow>,
    /// The plan key.
    pub(crate) key: String,
    /// Its budget, if set.
    pub(crate) budget: Option<u64>,
    /// What is reserved against it.
    pub(crate) reserved: u64,
    /// What is spent against it.
    pub(crate) spent: u64,
    head_seq: u64,
    head: blake3::Hash,
    head_moved: bool,
    /// Whether this member ran a statement that changes the database.
    changed: bool,
    /// The time every row written by this member carries.
    pub(crate) now: Timestamp,
}

impl<'g> PlanTxn<'g> {
    fn new(
        tx: &'g mut Transaction<'_, Any>,
        redactor: &'g Redactor,
        rows: &'g mut Vec<EventRow>,
        key: &str,
        state: PlanState,
    ) -> Self {
        PlanTxn {
            conn: tx,
            redactor,
            rows,
            key: key.to_owned(),
            budget: state.budget,
            reserved: state.reserved,
            spent: state.spent,
            head_seq: state.head_seq,
            head: state.head,
            head_moved: state.head_moved,
            changed: false,
            now: Timestamp::now(),
        }
    }

    fn state(&self) -> PlanState {
        PlanState {
            budget: self.budget,
            reserved: self.reserved,
            spent: self.spent,
            head_seq: self.head_seq,
            head: self.head,
            head_moved: self.head_moved,
        }
    }

    /// The connection, for the reads of the ledger's own operations.
    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        self.conn
    }

    /// The connection, for statements that change the database: from then on a failure
    /// of this member fails its whole group.
    pub(crate) fn writing(&mut self) -> &mut AnyConnection {
        self.changed = true;
        self.conn
    }

    /// Appends `event` after the current head.
    pub(crate) fn append(&mut self, event: &NewEvent) -> Result<Appended> {
        let mut appended = self.append_all(std::slice::from_ref(event))?;
        appended
            .pop()
            .ok_or_else(|| LedgerError::ledger("append returned no event"))
    }

    /// Appends `events` after the current head, in order: all of them, or (when one does
    /// not serialize) none.
    pub(crate) fn append_all(&mut self, events: &[NewEvent]) -> Result<Vec<Appended>> {
        let mut rows = Vec::with_capacity(events.len());
        let mut appended = Vec::with_capacity(events.len());
        let (mut seq, mut head) = (self.head_seq, self.head);
        for event in events {
            seq += 1;
            let payload = event.payload(&self.now, self.redactor)?;
            let this = chain_hash(&head, &payload);
            let this_hash = this.to_hex().to_string();
            appended.push(Appended {
                seq,
                this_hash: this_hash.clone(),
            });
            rows.push((
                self.key.clone(),
                to_db(seq)?,
                payload,
                head.to_hex().to_string(),
                this_hash,
            ));
            head = this;
        }
        self.rows.extend(rows);
        if !events.is_empty() {
            (self.head_seq, self.head, self.head_moved) = (seq, head, true);
        }
        Ok(appended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_inserts_number_their_parameters() {
        assert_eq!(
            insert_events_sql(2),
            "INSERT INTO events (plan, seq, payload, prev_hash, this_hash) VALUES \
             ($1, $2, $3, $4, $5), ($6, $7, $8, $9, $10)"
        );
    }
}
