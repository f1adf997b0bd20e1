//! The ledger's schema migrations, embedded in the binary: the files of
//! `migrations/sqlite/` and `migrations/postgres/`, applied by sqlx's migrator as
//! `sqlx::migrate!` would apply them (same versions, descriptions and checksums), without
//! the compile-time macro, whose proc-macro crate builds sqlx and its drivers a second time
//! for the host.

use std::borrow::Cow;

use futures_util::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

use crate::error::Result;

/// SQLite's migrations, in version order.
pub(crate) const SQLITE: EmbeddedMigrations = EmbeddedMigrations(&[
    (
        "0001_ledger.sql",
        include_str!("../migrations/sqlite/0001_ledger.sql"),
    ),
    (
        "0002_checkpoints.sql",
        include_str!("../migrations/sqlite/0002_checkpoints.sql"),
    ),
    (
        "0003_memo_keys.sql",
        include_str!("../migrations/sqlite/0003_memo_keys.sql"),
    ),
]);

/// PostgreSQL's migrations, in version order.
pub(crate) const POSTGRES: EmbeddedMigrations = EmbeddedMigrations(&[
    (
        "0001_ledger.sql",
        include_str!("../migrations/postgres/0001_ledger.sql"),
    ),
    (
        "0002_checkpoints.sql",
        include_str!("../migrations/postgres/0002_checkpoints.sql"),
    ),
    (
        "0003_memo_keys.sql",
        include_str!("../migrations/postgres/0003_memo_keys.sql"),
    ),
]);

/// Migration files as `(file name, SQL)`, each named `<version>_<description>.sql`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EmbeddedMigrations(&'static [(&'static str, &'static str)]);

impl EmbeddedMigrations {
    /// The migrator applying these migrations.
    pub(crate) async fn migrator(self) -> Result<Migrator> {
        Ok(Migrator::new(self).await?)
    }

    /// How many migrations there are.
    #[cfg(test)]
    pub(crate) fn len(self) -> usize {
        self.0.len()
    }
}

impl MigrationSource<'static> for EmbeddedMigrations {
    fn resolve(self) -> BoxFuture<'static, std::result::Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            self.0
                .iter()
                .map(|&(name, sql)| migration(name, sql))
                .collect()
        })
    }
}

/// One migration, read from its file name as sqlx reads a migrations directory.
fn migration(
    file_name: &'static str,
    sql: &'static str,
) -> std::result::Result<Migration, BoxDynError> {
    let (version, rest) = file_name
        .split_once('_')
        .filter(|(_, rest)| rest.ends_with(".sql"))
        .ok_or_else(|| {
            format!("migration {file_name:?} is not named <version>_<description>.sql")
        })?;
    let version: i64 = version
        .parse()
        .map_err(|_| format!("migration {file_name:?} has no integer version"))?;
    let migration_type = MigrationType::from_filename(rest);
    let description = rest
        .trim_end_matches(migration_type.suffix())
        .replace('_', " ");
    Ok(Migration::new(
        version,
        Cow::Owned(description),
        migration_type,
        Cow::Borrowed(sql),
        sql.starts_with("-- no-transaction"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of a backend's migrations directory is embedded, and nothing else.
    fn embeds_the_directory(embedded: EmbeddedMigrations, backend: &str) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(backend);
        let mut on_disk: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&path).unwrap())
            })
            .collect();
        on_disk.sort();
        let embedded: Vec<(String, String)> = embedded
            .0
            .iter()
            .map(|&(name, sql)| (name.to_owned(), sql.to_owned()))
            .collect();
        assert_eq!(
            embedded, on_disk,
            "{backend}: add new migration files to migrations.rs"
        );
    }

    #[test]
    fn every_migration_file_is_embedded() {
        embeds_the_directory(SQLITE, "sqlite");
        embeds_the_directory(POSTGRES, "postgres");
    }

    #[test]
    fn file_names_give_version_and_description_as_sqlx_reads_them() {
        let first = migration("0002_memo_keys.sql", "SELECT 1;").unwrap();
        assert_eq!(
            (first.version, first.description.as_ref()),
            (2, "memo keys")
        );
        assert!(!first.no_tx);
        assert!(migration("memo.sql", "").is_err());
        assert!(migration("x_memo.sql", "").is_err());
        assert!(migration("0001_memo.txt", "").is_err());
    }
}
