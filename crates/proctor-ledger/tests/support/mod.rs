//! The test harness: a fresh ledger database per test on either backend, raw SQL access
//! for tampering and constraint checks, and cleanup when the test ends (even on failure).
//!
//! SQLite lives in a temporary directory. PostgreSQL is the server `scripts/setup.sh`
//! starts on 127.0.0.1:55432 (override with `PROCTOR_TEST_POSTGRES_URL`, pointing at a
//! database the test user may create databases from); each test creates its own database
//! and drops it afterwards. A missing server fails the test: it is never skipped.

// A cleanup that fails is reported on stderr, never silently.
#![allow(clippy::print_stderr)]

use proctor_ledger::Ledger;
use sqlx::{AnyConnection, AnyPool, Connection};

/// The server `scripts/setup.sh` starts.
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:55432/postgres";

/// The backend a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Sqlite,
    Postgres,
}

/// A fresh, empty ledger database that disappears with the value.
pub(crate) struct TestDb {
    pub(crate) url: String,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<PostgresDatabase>,
}

struct PostgresDatabase {
    admin_url: String,
    name: String,
}

impl TestDb {
    pub(crate) async fn new(kind: Kind) -> TestDb {
        sqlx::any::install_default_drivers();
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}/state/ledger.db", dir.path().display());
                TestDb {
                    url,
                    _dir: Some(dir),
                    postgres: None,
                }
            }
            Kind::Postgres => {
                let admin_url = std::env::var("PROCTOR_TEST_POSTGRES_URL")
                    .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
                let mut admin = AnyConnection::connect(&admin_url).await.unwrap_or_else(|err| {
                    panic!(
                        "PostgreSQL is not reachable at {admin_url} ({err}); run scripts/setup.sh, \
                         which starts the test server on 127.0.0.1:55432"
                    )
                });
                let name = format!("proctor_ledger_{}", uuid::Uuid::new_v4().simple());
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .await
                    .expect("create the test database");
                let _ = admin.close().await;
                let base = admin_url
                    .rsplit_once('/')
                    .map_or(admin_url.as_str(), |(base, _)| base);
                let url = format!("{base}/{name}");
                TestDb {
                    url,
                    _dir: None,
                    postgres: Some(PostgresDatabase { admin_url, name }),
                }
            }
        }
    }

    /// Opens (and on first use migrates) the ledger.
    pub(crate) async fn ledger(&self) -> Ledger {
        Ledger::open(&self.url).await.expect("open the ledger")
    }

    /// A raw pool on the same database, bypassing the ledger.
    pub(crate) async fn raw(&self) -> AnyPool {
        AnyPool::connect(&self.url).await.expect("raw connection")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(database) = self.postgres.take() else {
            return;
        };
        // Dropping runs on its own thread and runtime, so it works inside or outside Tokio.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut admin = AnyConnection::connect(&database.admin_url).await?;
                sqlx::query(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    database.name
                ))
                .execute(&mut admin)
                .await?;
                admin.close().await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test database: {dropped:?}");
        }
    }
}
