//! The ledger handle: opening a backend by URL, migrations, appends, reads and chain
//! verification.
//!
//! **Concurrency.** Every write goes to the handle's write queue (see `group`), which
//! commits the writes that arrive together in one transaction holding the write lock of
//! every plan they touch: on SQLite `BEGIN IMMEDIATE` (the database write lock, waited for
//! through `busy_timeout`), on PostgreSQL `SELECT … FOR UPDATE` of the plan rows (plus a
//! transaction-scoped advisory lock for lease changes, which span plans). The chain head
//! (last seq and hash) lives in the plan row, so a write reads it, inserts the events and
//! moves it, all under that lock. Transient failures (busy, serialization failure,
//! deadlock, a unique violation) roll the transaction back and retry it.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use futures_util::TryStreamExt;
use proctor_contract::Redactor;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};
use tokio::task::JoinHandle;

use crate::error::{LedgerError, Result};
use crate::event::{Appended, Event, NewEvent, is_free};
use crate::executions::fetch_plan_executions;
use crate::group::{Write, WriteQueue, Written, is_transient};
use crate::migrations;
use crate::verify::{ChainReport, ChainVerifier, PlanAmounts, StoredRow, TableReplay};

/// The ledger URL `proctor` uses when none is given: an SQLite file under `.proctor/`.
pub const DEFAULT_LEDGER_URL: &str = "sqlite://.proctor/ledger.db";

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
    /// Where every write goes to be committed with the writes that arrive with it.
    writes: Arc<WriteQueue>,
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
                migrations::POSTGRES.migrator().await?.run(&pool).await?;
                Ledger::from_pool(pool, Backend::Postgres)
            }
        };
        tracing::debug!(backend = ledger.backend.as_str(), "ledger.open");
        Ok(ledger)
    }

    fn from_pool(pool: AnyPool, backend: Backend) -> Ledger {
        let redactor = Arc::default();
        Ledger {
            writes: Arc::new(WriteQueue::new(
                pool.clone(),
                backend,
                Arc::clone(&redactor),
            )),
            pool,
            backend,
            dropped_releases: Arc::default(),
            redactor,
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
        self.write(Write::Append {
            plan: plan.to_owned(),
            events: events.to_vec(),
        })
        .await?
        .events()
    }

    /// Queues `write` to be committed with the writes that arrive with it, and gives its
    /// own answer. A bad plan key is refused before it is queued.
    pub(crate) async fn write(&self, write: Write) -> Result<Written> {
        validate_plan_key(write.plan())?;
        self.writes.write(write).await
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

    /// Runs `attempt` until it succeeds, fails for good, or runs out of tries on transient
    /// database failures.
    pub(crate) async fn retrying<T, F, Fut>(&self, attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        retrying(self.backend, attempt).await
    }
}

/// Runs `attempt` until it succeeds, fails for good, or runs out of tries on transient
/// failures of `backend`.
pub(crate) async fn retrying<T, F, Fut>(backend: Backend, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(err) if wait_to_retry(backend, &err, tries).await => tries += 1,
            result => return result,
        }
    }
}

/// Whether try number `tries`, failed with `err`, is to be tried again; waits a little
/// first when it is (a transient failure of `backend`, tries left).
pub(crate) async fn wait_to_retry(backend: Backend, err: &LedgerError, tries: u32) -> bool {
    if tries >= MAX_ATTEMPTS || !is_transient(backend, err) {
        return false;
    }
    tracing::debug!(tries, error = %err, "ledger.retry");
    tokio::time::sleep(Duration::from_millis(u64::from(tries.min(20)))).await;
    true
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
        // A connection to a local file does not go stale: no round trip to check it on
        // every acquire (each write transaction acquires one).
        .test_before_acquire(false)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute(format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}").as_str())
                    .await?;
                conn.execute("PRAGMA synchronous = NORMAL").await?;
                // Statement journals (a multi-row INSERT's undo) in memory, not temporary
                // files created and removed for every group of events.
                conn.execute("PRAGMA temp_store = MEMORY").await?;
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
    let migrator = migrations::SQLITE.migrator().await?;
    if migrator.run(ledger.pool()).await.is_err() {
        migrator.run(ledger.pool()).await?;
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
        assert_eq!(migrations::SQLITE.len(), migrations::POSTGRES.len());
    }
}
