//! What the predicate tests evaluate against: a real filesystem store and a real SQLite
//! ledger in a temporary directory.

use std::path::PathBuf;

use proctor_contract::{ErrorCode, Mode};
use proctor_ledger::{ExecutionStart, Ledger};
use proctor_store::FsStore;
use serde_json::Value;

use super::{Predicate, PredicateContext, PredicateSpec};

/// The plan key every test evaluates under.
pub(super) const PLAN: &str = "predicates";

/// A World and a ledger that disappear with the value.
pub(super) struct Fixture {
    pub(super) store: FsStore,
    pub(super) ledger: Ledger,
    _dir: tempfile::TempDir,
}

impl Fixture {
    pub(super) async fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = FsStore::new(dir.path().join("artifacts"));
        let ledger = Ledger::open(&format!("sqlite://{}/ledger.db", dir.path().display()))
            .await
            .expect("open the ledger");
        Fixture {
            store,
            ledger,
            _dir: dir,
        }
    }

    /// The file behind the world path `path`.
    fn file(&self, path: &str) -> PathBuf {
        let below = path
            .strip_prefix("/artifacts/")
            .expect("a path under /artifacts/");
        self.store.root().join(below)
    }

    /// Writes `bytes` at the world path `path`.
    pub(super) async fn put(&self, path: &str, bytes: &[u8]) {
        let file = self.file(path);
        std::fs::create_dir_all(file.parent().expect("a parent")).expect("create directories");
        std::fs::write(file, bytes).expect("write the artifact");
    }

    /// Makes the world path `path` a symbolic link to the world path `target`.
    pub(super) fn link(&self, path: &str, target: &str) {
        std::os::unix::fs::symlink(self.file(target), self.file(path)).expect("symlink");
    }

    /// Records the start of `execution_id` under [`PLAN`], so it can reserve and lease.
    pub(super) async fn start_execution(&self, execution_id: &str) {
        self.ledger
            .record_start(&ExecutionStart {
                execution_id: execution_id.to_owned(),
                plan: PLAN.to_owned(),
                processor_ref: "text/stats@1".to_owned(),
                mode: Mode::Mock,
                write_prefix: format!("/artifacts/plans/{PLAN}/t/{execution_id}/"),
                image_digest: None,
                owner: None,
            })
            .await
            .expect("record the start");
    }

    /// The context of an admission without a reservation or a write prefix.
    pub(super) fn admission(&self) -> PredicateContext<'_> {
        PredicateContext {
            store: &self.store,
            ledger: &self.ledger,
            plan: PLAN,
            outputs: None,
            reserve_micro_usd: 0,
            write_prefix: None,
        }
    }

    /// The context of a success check whose `{outputs}` is `outputs`.
    pub(super) fn success<'a>(&'a self, outputs: &'a str) -> PredicateContext<'a> {
        PredicateContext {
            outputs: Some(outputs),
            ..self.admission()
        }
    }
}

/// The predicate `id` with `args`, which must parse.
pub(super) fn predicate(id: &str, args: Value) -> Predicate {
    Predicate::parse(&PredicateSpec {
        id: id.to_owned(),
        args,
    })
    .unwrap_or_else(|err| panic!("{id}: {err}"))
}

/// Asserts that the predicate `id` with `args` is refused when parsed: `ERR_PLAN`, naming
/// the predicate, and saying `why`.
pub(super) fn assert_refused(id: &str, args: Value, why: &str) {
    let err = Predicate::parse(&PredicateSpec {
        id: id.to_owned(),
        args,
    })
    .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Plan);
    assert!(
        err.message().contains(&format!("predicate `{id}`")),
        "{err}"
    );
    assert!(err.message().contains(why), "{why}: {err}");
}
