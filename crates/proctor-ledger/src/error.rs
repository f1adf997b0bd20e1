//! Errors of the ledger: refusals that belong to the error canon (budget, lease, bad input)
//! and failures of the database underneath, which the canon reports as `ERR_LEDGER`.

use proctor_contract::{CanonError, ErrorCode};

/// Everything a ledger operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A canonical refusal: `ERR_BUDGET_EXCEEDED`, `ERR_LEASE_CONFLICT`, `ERR_LEDGER` for a
    /// bad request (unknown execution, settled twice, …), or a world-path error.
    #[error(transparent)]
    Canon(#[from] CanonError),
    /// The database refused or failed a statement.
    #[error("ledger database error while {operation}: {source}")]
    Database {
        /// What the ledger was doing, e.g. `appending to plan default`.
        operation: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The schema migrations could not be applied.
    #[error("ledger schema migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl LedgerError {
    /// A canonical `ERR_LEDGER` refusal with `detail`.
    pub(crate) fn ledger(detail: impl Into<String>) -> LedgerError {
        LedgerError::Canon(CanonError::new(ErrorCode::Ledger, detail))
    }

    /// A database error raised while doing `operation`.
    pub(crate) fn database(operation: impl Into<String>, source: sqlx::Error) -> LedgerError {
        LedgerError::Database {
            operation: operation.into(),
            source,
        }
    }

    /// The canonical code: the refusal's own code, `ERR_LEDGER` for database failures.
    pub fn code(&self) -> ErrorCode {
        match self {
            LedgerError::Canon(err) => err.code(),
            LedgerError::Database { .. } | LedgerError::Migrate(_) => ErrorCode::Ledger,
        }
    }

    /// Whether this is a budget refusal (`ERR_BUDGET_EXCEEDED`).
    pub fn is_budget_exceeded(&self) -> bool {
        self.code() == ErrorCode::BudgetExceeded
    }

    /// Whether this is a lease refusal (`ERR_LEASE_CONFLICT`).
    pub fn is_lease_conflict(&self) -> bool {
        self.code() == ErrorCode::LeaseConflict
    }

    /// The error as a canonical error, for envelopes and exit codes.
    pub fn to_canon(&self) -> CanonError {
        match self {
            LedgerError::Canon(err) => err.clone(),
            other => CanonError::new(ErrorCode::Ledger, other.to_string()),
        }
    }

    /// The driver error underneath, if any.
    pub(crate) fn sqlx_error(&self) -> Option<&sqlx::Error> {
        match self {
            LedgerError::Database { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<LedgerError> for CanonError {
    fn from(err: LedgerError) -> CanonError {
        match err {
            LedgerError::Canon(err) => err,
            other => CanonError::new(ErrorCode::Ledger, other.to_string()),
        }
    }
}

/// Shorthand for results of ledger operations.
pub type Result<T, E = LedgerError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_failures_are_err_ledger() {
        let err = LedgerError::database("reading plan p", sqlx::Error::RowNotFound);
        assert_eq!(err.code(), ErrorCode::Ledger);
        let canon = err.to_canon();
        assert!(
            canon
                .message()
                .starts_with("ledger error: ledger database error while reading plan p")
        );
    }

    #[test]
    fn refusals_keep_their_code() {
        let err = LedgerError::from(CanonError::new(ErrorCode::BudgetExceeded, "plan p"));
        assert!(err.is_budget_exceeded());
        assert!(!err.is_lease_conflict());
        assert_eq!(CanonError::from(err).message(), "budget exceeded: plan p");
    }
}
