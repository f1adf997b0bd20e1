//! The ledger handle: opening a backend by URL, migrations, write transactions that lock a
//! plan's chain head, appends, reads and chain verification.
//!
//! **Concurrency.** Every write runs in one transaction that first takes the plan's write
//! lock: on SQLite `BEGIN IMMEDIATE` (the database write lock, waited for through
//! `busy_timeout`), on PostgreSQL `SELECT … FOR UPDATE` of the plan row (plus a
//! transaction-scoped advisory lock for lease changes, which span plans). The chain head
//! (last seq and hash) lives in the plan row, so an append reads it, inserts the events and
//! moves it, all under that lock. Transient failures (busy, serialization failure,
//! deadlock, a unique violation) roll the transaction back and retry it.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use futures_util::TryStreamExt;
use proctor_contract::Redactor;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Executor, Row, Transaction};
use tokio::task::JoinHandle;

use crate::clock::Timestamp;
use crate::error::{LedgerError, Result};
use crate::event::{Appended, Event, GENESIS_HASH, NewEvent, chain_hash, is_free};
use crate::executions::fetch_plan_executions;
use crate::verify::{ChainReport, ChainVerifier, PlanAmounts, StoredRow, TableReplay};

/// The ledger URL `proctor` uses when none is given: an SQLite file under `.proctor/`.
pub const DEFAULT_LEDGER_URL: &str = "sqlite://.proctor/ledger.db";

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// Characters escaped in an SQLite file path placed in a connection URL.
const PATH_ESCAPES: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b'%')
    .add(b'?')
    .add(b'#')
    .add(b' ');
/// How long an SQLite connection waits for the write lock before reporting busy.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 30_000;
/// How many times a write transaction is tried before a transient failure is reported.
const MAX_ATTEMPTS: u32 = 50;
/// Events inserted by one `INSERT` statement of a batch (5 parameters each).
const ROWS_PER_INSERT: usize = 100;
/// The PostgreSQL advisory lock key that serializes lease changes ("proctor" in ASCII).
const LEASES_LOCK_KEY: i64 = 0x0070_726f_6374_6f72;

/// The database behind a ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file in WAL mode: the default, for one machine.
    Sqlite,
    /// A PostgreSQL server: for teams sharing one ledger.
    Postgres,
}

impl Backend {
    /// `sqlite` or `postgres`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A connection to a ledger. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Ledger {
    pool: AnyPool,
    backend: Backend,
    /// Releases started by dropped [`crate::LeaseGuard`]s, awaited by
    /// [`Ledger::wait_for_dropped_leases`].
    pub(crate) dropped_releases: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// What every payload passes before it is hashed and stored; clones share it.
    redactor: Arc<RwLock<Redactor>>,
}

/// Which locks a write transaction takes besides its plan's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locks {
    /// The plan's chain head only.
    Plan,
    /// The lease table too (taken first, so lock order is always leases, then plan).
    LeasesAndPlan,
}

impl Ledger {
    /// Opens (creating it if needed) the ledger at `url` and applies pending migrations.
    ///
    /// `sqlite://PATH` (relative to the working directory; parent directories are created;
    /// `sqlite:///abs/path` for an absolute path) or `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`.
    pub async fn open(url: &str) -> Result<Ledger> {
        sqlx::any::install_default_drivers();
        let ledger = match parse_url(url)? {
            Target::Sqlite(path) => open_sqlite(&path).await?,
            Target::Postgres(url) => {
                let pool = AnyPoolOptions::new()
                    .max_connections(8)
                    .connect(&url)
                    .await
                    .map_err(|e| {
                        LedgerError::database(format!("connecting to {}", redact_url(&url)), e)
                    })?;
                POSTGRES_MIGRATIONS.run(&pool).await?;
                Ledger::from_pool(pool, Backend::Postgres)
            }
        };
        tracing::debug!(backend = ledger.backend.as_str(), "ledger.open");
        Ok(ledger)
    }

    fn from_pool(pool: AnyPool, backend: Backend) -> Ledger {
        Ledger {
            pool,
            backend,
            dropped_releases: Arc::default(),
            redactor: Arc::default(),
        }
    }

    /// Masks, from now on, what `redactor` masks in every payload this ledger (and its
    /// clones) writes: the values of a run's secrets never reach the hash chain, where they
    /// could not be removed. Credential patterns (tokens, `Authorization`, URL userinfo) are
    /// masked in every payload anyway.
    pub fn redact_with(&self, redactor: &Redactor) {
        self.redactor
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .merge(redactor);
    }

    /// The database behind this ledger.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Waits for dropped leases to be released, then closes the connection pool (which
    /// every clone of this handle shares).
    pub async fn close(self) {
        self.wait_for_dropped_leases().await;
        self.pool.close().await;
    }

    /// Appends one event of a kind [`NewEvent::new`] accepts (`artifact.produce`,
    /// `predicate.check`) to `plan`, creating the plan if needed.
    pub async fn append(&self, plan: &str, event: &NewEvent) -> Result<Appended> {
        let mut appended = self.append_batch(plan, std::slice::from_ref(event)).await?;
        appended
            .pop()
            .ok_or_else(|| LedgerError::ledger("append returned no event"))
    }

    /// Appends `events` to `plan` in one transaction: all or none, consecutive seqs, one
    /// lock and one commit for the whole batch (much faster than one append per event).
    pub async fn append_batch(&self, plan: &str, events: &[NewEvent]) -> Result<Vec<Appended>> {
        if let Some(event) = events.iter().find(|event| !is_free(event.kind())) {
            return Err(LedgerError::ledger(format!(
                "`{}` events are appended by their own ledger operation, not by append",
                event.kind()
            )));
        }
        self.retrying(|| async move {
            let mut txn = self.begin_write(plan, Locks::Plan).await?;
            let appended = txn.append_all(events).await?;
            txn.commit().await?;
            Ok(appended)
        })
        .await
    }

    /// Up to `limit` events of `plan` with seq greater than `after_seq`, in seq order.
    pub async fn events(&self, plan: &str, after_seq: u64, limit: u32) -> Result<Vec<Event>> {
        let rows = sqlx::query(
            "SELECT plan, seq, kind, execution_id, payload, prev_hash, this_hash, created_at \
             FROM events WHERE plan = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(plan)
        .bind(to_db(after_seq)?)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| LedgerError::database(format!("reading events of plan `{plan}`"), e))?;
        rows.iter().map(event_from_row).collect()
    }

    /// Every event that belongs to `execution_id`, in plan and seq order.
    pub async fn events_for_execution(&self, execution_id: &str) -> Result<Vec<Event>> {
        let rows = sqlx::query(
            "SELECT plan, seq, kind, execution_id, payload, prev_hash, this_hash, created_at \
             FROM events WHERE execution_id = $1 ORDER BY plan, seq",
        )
        .bind(execution_id)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| {
            LedgerError::database(format!("reading events of execution `{execution_id}`"), e)
        })?;
        rows.iter().map(event_from_row).collect()
    }

    /// Recomputes the hash chain of `plan` and reports the first broken seq, if any; a valid
    /// chain is then replayed and the plan's `plans` and `executions` rows checked against
    /// it (see [`ChainReport::mismatches`]). Everything is read from one snapshot. An
    /// unknown plan, or a valid chain whose payloads do not decode, is `ERR_LEDGER`.
    pub async fn verify_chain(&self, plan: &str) -> Result<ChainReport> {
        let operation = || format!("verifying plan `{plan}`");
        let mut tx = self.begin_read().await?;
        let head = sqlx::query(
            "SELECT budget_micro_usd, reserved_micro_usd, spent_micro_usd, head_seq, head_hash \
             FROM plans WHERE key = $1",
        )
        .bind(plan)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| LedgerError::database(operation(), e))?
        .ok_or_else(|| LedgerError::ledger(format!("unknown plan `{plan}`")))?;
        let head_seq = from_db(head.try_get("head_seq"), "plans.head_seq")?;
        let head_hash: String = head
            .try_get("head_hash")
            .map_err(|e| LedgerError::database(operation(), e))?;
        let budget: Option<i64> = head
            .try_get("budget_micro_usd")
            .map_err(|e| LedgerError::database(operation(), e))?;
        let amounts = PlanAmounts {
            budget: budget
                .map(|b| from_db(Ok(b), "plans.budget_micro_usd"))
                .transpose()?,
            reserved: from_db(
                head.try_get("reserved_micro_usd"),
                "plans.reserved_micro_usd",
            )?,
            spent: from_db(head.try_get("spent_micro_usd"), "plans.spent_micro_usd")?,
        };
        let mut verifier = ChainVerifier::new(head_seq, head_hash.clone());
        let mut replay = TableReplay::new(plan);
        let mut replay_failure = None;
        let mut broken = None;
        {
            let mut rows = sqlx::query(
                "SELECT seq, payload, prev_hash, this_hash FROM events WHERE plan = $1 ORDER BY seq",
            )
            .bind(plan)
            .fetch(&mut *tx);
            while let Some(row) = rows
                .try_next()
                .await
                .map_err(|e| LedgerError::database(operation(), e))?
            {
                let row = stored_row(&row)?;
                if let Err(chain_break) = verifier.check(&row) {
                    broken = Some(chain_break);
                    break;
                }
                // A replay failure counts only if the whole chain turns out valid.
                if replay_failure.is_none() {
                    replay_failure = replay.apply(&row).err();
                }
            }
        }
        if broken.is_none() {
            broken = verifier.finish().err();
        }
        let mut mismatches = Vec::new();
        if broken.is_none() {
            if let Some(failure) = replay_failure {
                return Err(failure);
            }
            let executions = fetch_plan_executions(&mut tx, plan).await?;
            mismatches = replay.mismatches(amounts, &executions);
        }
        tx.commit()
            .await
            .map_err(|e| LedgerError::database(operation(), e))?;
        Ok(ChainReport {
            plan: plan.to_owned(),
            verified: verifier.verified(),
            head_seq,
            head_hash,
            broken,
            mismatches,
        })
    }

    /// Verifies the chain of every plan, in plan order.
    pub async fn verify_all(&self) -> Result<Vec<ChainReport>> {
        let mut reports = Vec::new();
        for plan in self.plan_keys().await? {
            reports.push(self.verify_chain(&plan).await?);
        }
        Ok(reports)
    }

    async fn plan_keys(&self) -> Result<Vec<String>> {
        sqlx::query_scalar("SELECT key FROM plans ORDER BY key")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| LedgerError::database("listing plans", e))
    }

    /// The pool, for reads that need no transaction.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A read-only transaction that sees one snapshot of the database.
    async fn begin_read(&self) -> Result<Transaction<'static, Any>> {
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN",
            Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        };
        self.pool
            .begin_with(begin)
            .await
            .map_err(|e| LedgerError::database("beginning a read", e))
    }

    /// Begins a write transaction holding `plan`'s write lock (and the lease lock with
    /// [`Locks::LeasesAndPlan`]), creating the plan if it does not exist.
    pub(crate) async fn begin_write(&self, plan: &str, locks: Locks) -> Result<PlanTxn> {
        validate_plan_key(plan)?;
        let operation = || format!("locking plan `{plan}`");
        let now = Timestamp::now();
        let mut tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
        .map_err(|e| LedgerError::database(operation(), e))?;
        if self.backend == Backend::Postgres && locks == Locks::LeasesAndPlan {
            sqlx::query("SELECT 1 AS locked FROM pg_advisory_xact_lock($1)")
                .bind(LEASES_LOCK_KEY)
                .execute(&mut *tx)
                .await
                .map_err(|e| LedgerError::database("locking leases", e))?;
        }
        let select = match self.backend {
            Backend::Sqlite => {
                "SELECT budget_micro_usd, reserved_micro_usd, spent_micro_usd, head_seq, head_hash \
                 FROM plans WHERE key = $1"
            }
            Backend::Postgres => {
                "SELECT budget_micro_usd, reserved_micro_usd, spent_micro_usd, head_seq, head_hash \
                 FROM plans WHERE key = $1 FOR UPDATE"
            }
        };
        let mut row = sqlx::query(select)
            .bind(plan)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| LedgerError::database(operation(), e))?;
        if row.is_none() {
            sqlx::query(
                "INSERT INTO plans (key, head_hash, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(plan)
            .bind(GENESIS_HASH)
            .bind(now.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| LedgerError::database(format!("creating plan `{plan}`"), e))?;
            row = Some(
                sqlx::query(select)
                    .bind(plan)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| LedgerError::database(operation(), e))?,
            );
        }
        let row = row.ok_or_else(|| LedgerError::ledger(format!("plan `{plan}` vanished")))?;
        let head_hash: String = row
            .try_get("head_hash")
            .map_err(|e| LedgerError::database(operation(), e))?;
        let head = blake3::Hash::from_hex(&head_hash)
            .map_err(|_| LedgerError::ledger(format!("plan `{plan}` has a malformed head hash")))?;
        let budget: Option<i64> = row
            .try_get("budget_micro_usd")
            .map_err(|e| LedgerError::database(operation(), e))?;
        Ok(PlanTxn {
            tx,
            redactor: self
                .redactor
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            key: plan.to_owned(),
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
            now,
        })
    }

    /// Runs `attempt` until it succeeds, fails for good, or runs out of tries on transient
    /// database failures.
    pub(crate) async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut tries = 1;
        loop {
            match attempt().await {
                Err(err) if tries < MAX_ATTEMPTS && self.is_transient(&err) => {
                    tracing::debug!(tries, error = %err, "ledger.retry");
                    tokio::time::sleep(Duration::from_millis(u64::from(tries.min(20)))).await;
                    tries += 1;
                }
                result => return result,
            }
        }
    }

    /// Whether `err` is a lock, serialization or uniqueness failure worth retrying.
    fn is_transient(&self, err: &LedgerError) -> bool {
        let Some(sqlx::Error::Database(db_error)) = err.sqlx_error() else {
            return false;
        };
        let Some(code) = db_error.code() else {
            return false;
        };
        match self.backend {
            // serialization_failure, deadlock_detected, lock_not_available, unique_violation
            Backend::Postgres => matches!(&*code, "40001" | "40P01" | "55P03" | "23505"),
            // SQLITE_BUSY and SQLITE_LOCKED (any extended code), SQLITE_CONSTRAINT_PRIMARYKEY
            // and SQLITE_CONSTRAINT_UNIQUE.
            Backend::Sqlite => code
                .parse::<i32>()
                .is_ok_and(|code| matches!(code & 0xff, 5 | 6) || matches!(code, 1555 | 2067)),
        }
    }
}

/// A write transaction holding one plan's lock, with the plan's row as read under it.
pub(crate) struct PlanTxn {
    tx: Transaction<'static, Any>,
    /// What every payload this transaction writes passes first.
    redactor: Redactor,
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
    /// The time every row written by this transaction carries.
    pub(crate) now: Timestamp,
}

impl PlanTxn {
    /// The connection, for statements of the ledger's own operations.
    pub(crate) fn conn(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }

    /// Appends `event` after the current head.
    pub(crate) async fn append(&mut self, event: &NewEvent) -> Result<Appended> {
        let mut appended = self.append_all(std::slice::from_ref(event)).await?;
        appended
            .pop()
            .ok_or_else(|| LedgerError::ledger("append returned no event"))
    }

    /// Appends `events` after the current head, in order, with one multi-row `INSERT` per
    /// [`ROWS_PER_INSERT`] events.
    pub(crate) async fn append_all(&mut self, events: &[NewEvent]) -> Result<Vec<Appended>> {
        let mut appended = Vec::with_capacity(events.len());
        for chunk in events.chunks(ROWS_PER_INSERT) {
            let mut rows = Vec::with_capacity(chunk.len());
            let (mut seq, mut head) = (self.head_seq, self.head);
            for event in chunk {
                seq += 1;
                let payload = event.payload(&self.now, &self.redactor)?;
                let this = chain_hash(&head, &payload);
                rows.push((seq, to_db(seq)?, payload, head.to_hex(), this.to_hex()));
                head = this;
            }
            let sql = insert_events_sql(rows.len());
            let mut insert = sqlx::query(&sql);
            for (_, seq, payload, prev_hash, this_hash) in &rows {
                insert = insert
                    .bind(self.key.as_str())
                    .bind(*seq)
                    .bind(payload.as_str())
                    .bind(prev_hash.as_str())
                    .bind(this_hash.as_str());
            }
            insert.execute(&mut *self.tx).await.map_err(|e| {
                LedgerError::database(format!("appending to plan `{}`", self.key), e)
            })?;
            appended.extend(rows.iter().map(|(seq, _, _, _, this_hash)| Appended {
                seq: *seq,
                this_hash: this_hash.to_string(),
            }));
            (self.head_seq, self.head, self.head_moved) = (seq, head, true);
        }
        Ok(appended)
    }

    /// Moves the plan's recorded head to the last appended event and commits.
    pub(crate) async fn commit(mut self) -> Result<()> {
        let operation = || format!("committing to plan `{}`", self.key);
        if self.head_moved {
            sqlx::query("UPDATE plans SET head_seq = $2, head_hash = $3 WHERE key = $1")
                .bind(self.key.as_str())
                .bind(to_db(self.head_seq)?)
                .bind(self.head.to_hex().as_str())
                .execute(&mut *self.tx)
                .await
                .map_err(|e| LedgerError::database(operation(), e))?;
        }
        self.tx
            .commit()
            .await
            .map_err(|e| LedgerError::database(operation(), e))
    }
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

/// Where a ledger URL points.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Sqlite(PathBuf),
    Postgres(String),
}

fn parse_url(url: &str) -> Result<Target> {
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        if path.is_empty() || path.contains('?') || path.contains(":memory:") {
            return Err(LedgerError::ledger(format!(
                "ledger URL `{url}` must name a database file: sqlite://PATH, without parameters"
            )));
        }
        return Ok(Target::Sqlite(PathBuf::from(path)));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Target::Postgres(url.to_owned()));
    }
    Err(LedgerError::ledger(format!(
        "unsupported ledger URL `{}`: use sqlite://PATH or postgres://USER@HOST:PORT/DB",
        redact_url(url)
    )))
}

/// `url` with any password replaced by `***`, for messages and logs.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let authority_start = scheme_end + 3;
    let authority_end = url[authority_start..]
        .find('/')
        .map_or(url.len(), |i| authority_start + i);
    let authority = &url[authority_start..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..authority_start],
            &authority[..colon],
            &url[authority_start + at..]
        ),
        _ => url.to_owned(),
    }
}

async fn open_sqlite(path: &Path) -> Result<Ledger> {
    let path = std::path::absolute(path).map_err(|e| {
        LedgerError::ledger(format!(
            "cannot resolve ledger path {}: {e}",
            path.display()
        ))
    })?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| LedgerError::ledger(format!("cannot create {}: {e}", parent.display())))?;
    }
    let encoded =
        percent_encoding::utf8_percent_encode(&path.to_string_lossy(), PATH_ESCAPES).to_string();
    let url = format!("sqlite://{encoded}?mode=rwc");
    let operation = || format!("opening {}", path.display());
    let pool = AnyPoolOptions::new()
        .max_connections(4)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute(format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}").as_str())
                    .await?;
                conn.execute("PRAGMA synchronous = NORMAL").await?;
                conn.execute("PRAGMA foreign_keys = ON").await?;
                Ok(())
            })
        })
        .connect(&url)
        .await
        .map_err(|e| LedgerError::database(operation(), e))?;
    let ledger = Ledger::from_pool(pool, Backend::Sqlite);
    let journal_mode: String = ledger
        .retrying(|| async {
            sqlx::query_scalar("PRAGMA journal_mode = WAL")
                .fetch_one(ledger.pool())
                .await
                .map_err(|e| LedgerError::database("enabling WAL", e))
        })
        .await?;
    if !journal_mode.eq_ignore_ascii_case("wal") {
        return Err(LedgerError::ledger(format!(
            "{} stays in journal mode `{journal_mode}`; WAL is required",
            path.display()
        )));
    }
    // Two processes creating the same fresh ledger race to apply the migrations; the one
    // that loses sees them applied on its second try.
    if SQLITE_MIGRATIONS.run(ledger.pool()).await.is_err() {
        SQLITE_MIGRATIONS.run(ledger.pool()).await?;
    }
    Ok(ledger)
}

/// A plan key: 1 to 128 characters from `A-Z a-z 0-9 . _ -`.
pub(crate) fn validate_plan_key(plan: &str) -> Result<()> {
    let valid = !plan.is_empty()
        && plan.len() <= 128
        && plan
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(LedgerError::ledger(format!(
            "invalid plan key `{plan}`: use 1 to 128 characters from A-Z a-z 0-9 . _ -"
        )))
    }
}

/// An unsigned amount or seq as the database stores it.
pub(crate) fn to_db(value: u64) -> Result<i64> {
    i64::try_from(value)
        .map_err(|_| LedgerError::ledger(format!("{value} is too large for the ledger")))
}

/// A stored integer that must not be negative.
pub(crate) fn from_db(value: std::result::Result<i64, sqlx::Error>, column: &str) -> Result<u64> {
    let value = value.map_err(|e| LedgerError::database(format!("reading {column}"), e))?;
    u64::try_from(value)
        .map_err(|_| LedgerError::ledger(format!("{column} holds a negative value")))
}

/// A column as text.
pub(crate) fn text(row: &AnyRow, column: &str) -> Result<String> {
    row.try_get(column)
        .map_err(|e| LedgerError::database(format!("reading {column}"), e))
}

/// A nullable column as text.
pub(crate) fn optional_text(row: &AnyRow, column: &str) -> Result<Option<String>> {
    row.try_get(column)
        .map_err(|e| LedgerError::database(format!("reading {column}"), e))
}

fn event_from_row(row: &AnyRow) -> Result<Event> {
    Ok(Event {
        plan: text(row, "plan")?,
        seq: from_db(row.try_get("seq"), "events.seq")?,
        kind_name: text(row, "kind")?,
        execution_id: optional_text(row, "execution_id")?,
        payload: text(row, "payload")?,
        prev_hash: text(row, "prev_hash")?,
        this_hash: text(row, "this_hash")?,
        created_at: text(row, "created_at")?,
    })
}

fn stored_row(row: &AnyRow) -> Result<StoredRow> {
    Ok(StoredRow {
        seq: from_db(row.try_get("seq"), "events.seq")?,
        payload: text(row, "payload")?,
        prev_hash: text(row, "prev_hash")?,
        this_hash: text(row, "this_hash")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_the_backend() {
        assert_eq!(
            parse_url("sqlite://.proctor/ledger.db").unwrap(),
            Target::Sqlite(PathBuf::from(".proctor/ledger.db"))
        );
        assert_eq!(
            parse_url("sqlite:///tmp/l.db").unwrap(),
            Target::Sqlite(PathBuf::from("/tmp/l.db"))
        );
        assert_eq!(
            parse_url("postgres://u@127.0.0.1:55432/db").unwrap(),
            Target::Postgres("postgres://u@127.0.0.1:55432/db".to_owned())
        );
        for bad in [
            "sqlite://",
            "sqlite::memory:",
            "sqlite://a.db?mode=ro",
            "mysql://x",
            "ledger.db",
        ] {
            assert_eq!(
                parse_url(bad).unwrap_err().code(),
                proctor_contract::ErrorCode::Ledger,
                "{bad}"
            );
        }
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_url("postgres://u:hunter2@h:5/db"),
            "postgres://u:***@h:5/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        let err = parse_url("mysql://u:hunter2@h/db").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn plan_keys_are_plain() {
        assert!(validate_plan_key("default").is_ok());
        assert!(validate_plan_key("team-a.q3_run").is_ok());
        for bad in ["", "a b", "a/b", "ü", &"x".repeat(129)] {
            assert!(validate_plan_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn batch_inserts_number_their_parameters() {
        assert_eq!(
            insert_events_sql(2),
            "INSERT INTO events (plan, seq, payload, prev_hash, this_hash) VALUES \
             ($1, $2, $3, $4, $5), ($6, $7, $8, $9, $10)"
        );
    }

    #[test]
    fn migrations_stay_equivalent() {
        let dialect_free = |sql: &str| {
            sql.lines()
                .filter(|line| !line.starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
                .replace("INTEGER", "BIGINT")
                .replace(") STRICT, WITHOUT ROWID;", ");")
                .replace(") STRICT;", ");")
                .replace("substr(selector, -1)", "right(selector, 1)")
                .replace("json_extract(payload, '$.", "(payload::jsonb ->> '")
        };
        let sqlite = include_str!("../migrations/sqlite/0001_ledger.sql");
        let postgres = include_str!("../migrations/postgres/0001_ledger.sql");
        assert_eq!(dialect_free(sqlite), dialect_free(postgres));
        assert_eq!(
            SQLITE_MIGRATIONS.iter().count(),
            POSTGRES_MIGRATIONS.iter().count()
        );
    }
}
