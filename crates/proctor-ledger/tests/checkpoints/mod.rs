//! Signed checkpoints, on both backends: a chain rewritten from some event on with every
//! hash recomputed verifies as a chain, and only the checkpoint signed before the rewrite
//! notices it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use proctor_contract::ErrorCode;
use proctor_ledger::{
    CheckpointProblem, CheckpointPublicKey, CheckpointSigningKey, HeadMismatch, Ledger,
    public_key_path,
};
use sqlx::AnyPool;

use crate::support::TestDb;
use crate::{append_checks, check_event, exec};

/// Generates one test per backend for each function of this module.
macro_rules! checkpoints_on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = crate::support::TestDb::new(crate::support::Kind::Sqlite).await;
                    super::$name(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = crate::support::TestDb::new(crate::support::Kind::Postgres).await;
                    super::$name(&db).await;
                }
            )*
        }
    };
}

checkpoints_on_both_backends!(
    a_growing_chain_still_matches_its_checkpoint,
    a_rewritten_chain_fails_only_against_the_checkpoint,
    truncated_and_removed_plans_fail,
    wrong_keys_forged_and_missing_checkpoints_fail,
    broken_chains_are_never_checkpointed,
);

/// A new key pair in `dir`: the signing key and the public key read back from its file.
fn key_pair(dir: &Path, name: &str) -> (CheckpointSigningKey, CheckpointPublicKey) {
    let path = dir.join(name);
    let signing = CheckpointSigningKey::generate(&path).unwrap();
    let public = CheckpointPublicKey::parse(public_key_path(&path).to_str().unwrap()).unwrap();
    assert_eq!(signing.public_key(), public);
    (signing, public)
}

/// Rewrites `plan`'s chain from `from_seq` on, as a writer of the database could: the payload
/// at `from_seq` edited, every later link and hash recomputed, the plan's head moved.
async fn rewrite_chain(ledger: &Ledger, raw: &AnyPool, plan: &str, from_seq: u64) {
    let events = ledger.events(plan, from_seq - 1, 1000).await.unwrap();
    let mut prev = blake3::Hash::from_hex(&events[0].prev_hash).unwrap();
    for (i, event) in events.iter().enumerate() {
        let payload = if i == 0 {
            let edited = event.payload.replace("check ", "check 9");
            assert_ne!(edited, event.payload);
            edited
        } else {
            event.payload.clone()
        };
        let mut hasher = blake3::Hasher::new();
        hasher.update(prev.as_bytes());
        hasher.update(payload.as_bytes());
        let this = hasher.finalize();
        exec(
            raw,
            &format!(
                "UPDATE events SET payload = '{payload}', prev_hash = '{}', this_hash = '{}' \
                 WHERE plan = '{plan}' AND seq = {}",
                prev.to_hex(),
                this.to_hex(),
                event.seq
            ),
        )
        .await
        .unwrap();
        prev = this;
    }
    exec(
        raw,
        &format!(
            "UPDATE plans SET head_hash = '{}' WHERE key = '{plan}'",
            prev.to_hex()
        ),
    )
    .await
    .unwrap();
}

pub(crate) async fn a_growing_chain_still_matches_its_checkpoint(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let (signing, public) = key_pair(dir.path(), "signing.pem");
    let ledger = db.ledger().await;
    append_checks(&ledger, "p", 4).await;
    append_checks(&ledger, "q", 2).await;

    let first = ledger.checkpoint(&signing).await.unwrap();
    assert_eq!(first.seq, 1);
    let heads: Vec<(&str, u64)> = first
        .statement
        .heads
        .iter()
        .map(|head| (head.plan.as_str(), head.seq))
        .collect();
    assert_eq!(heads, [("p", 4), ("q", 2)]);
    assert_eq!(first.statement.key_id, public.key_id());

    ledger.append("p", &check_event("e2", 5)).await.unwrap();
    append_checks(&ledger, "r", 1).await;
    let report = ledger.verify_checkpoint(&public, None).await.unwrap();
    assert!(report.is_valid(), "{report:?}");
    assert_eq!(report.seq, Some(1));
    assert_eq!(report.heads.len(), 2);
    assert!(report.to_error().is_none());

    let second = ledger.checkpoint(&signing).await.unwrap();
    assert_eq!(second.seq, 2);
    assert_eq!(second.statement.heads.len(), 3);
    let report = ledger.verify_checkpoint(&public, Some("p")).await.unwrap();
    assert!(report.is_valid(), "{report:?}");
    assert_eq!(report.seq, Some(2));
    assert_eq!((report.heads.len(), report.heads[0].seq), (1, 5));
}

pub(crate) async fn a_rewritten_chain_fails_only_against_the_checkpoint(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let (signing, public) = key_pair(dir.path(), "signing.pem");
    let ledger = db.ledger().await;
    append_checks(&ledger, "p", 6).await;
    append_checks(&ledger, "q", 3).await;
    ledger.checkpoint(&signing).await.unwrap();
    ledger.append("p", &check_event("e2", 7)).await.unwrap();

    rewrite_chain(&ledger, &db.raw().await, "p", 3).await;
    // The chain alone cannot tell: every link and the head agree.
    let chain = ledger.verify_chain("p").await.unwrap();
    assert!(chain.is_valid(), "{chain:?}");

    let report = ledger.verify_checkpoint(&public, None).await.unwrap();
    assert!(!report.is_valid());
    let p = &report.heads[0];
    assert_eq!((p.plan.as_str(), p.seq), ("p", 6));
    assert!(
        matches!(&p.mismatch, Some(HeadMismatch::Rewritten { .. })),
        "{p:?}"
    );
    assert_eq!(report.heads[1].mismatch, None);
    let error = report.to_error().unwrap();
    assert_eq!(error.code(), ErrorCode::LedgerChain);
    assert!(
        error.message().contains("plan `p` at seq 6: this_hash is"),
        "{error}"
    );
    assert!(error.message().contains("(chain rewritten)"), "{error}");

    let only_q = ledger.verify_checkpoint(&public, Some("q")).await.unwrap();
    assert!(only_q.is_valid(), "{only_q:?}");
}

pub(crate) async fn truncated_and_removed_plans_fail(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let (signing, public) = key_pair(dir.path(), "signing.pem");
    let ledger = db.ledger().await;
    append_checks(&ledger, "p", 6).await;
    append_checks(&ledger, "q", 2).await;
    ledger.checkpoint(&signing).await.unwrap();

    // Truncated behind the ledger's back, with the head moved so the chain stays valid.
    let raw = db.raw().await;
    let fourth = ledger.events("p", 3, 1).await.unwrap().remove(0);
    exec(&raw, "DELETE FROM events WHERE plan = 'p' AND seq > 4")
        .await
        .unwrap();
    exec(
        &raw,
        &format!(
            "UPDATE plans SET head_seq = 4, head_hash = '{}' WHERE key = 'p'",
            fourth.this_hash
        ),
    )
    .await
    .unwrap();
    assert!(ledger.verify_chain("p").await.unwrap().is_valid());
    // The whole of `q` removed.
    exec(&raw, "DELETE FROM events WHERE plan = 'q'")
        .await
        .unwrap();
    exec(&raw, "DELETE FROM plans WHERE key = 'q'")
        .await
        .unwrap();
    assert!(
        ledger
            .verify_all()
            .await
            .unwrap()
            .iter()
            .all(|r| r.is_valid())
    );

    let report = ledger.verify_checkpoint(&public, None).await.unwrap();
    let mismatches: Vec<_> = report
        .heads
        .iter()
        .map(|head| (head.plan.as_str(), head.mismatch.clone()))
        .collect();
    assert_eq!(
        mismatches,
        [
            ("p", Some(HeadMismatch::Truncated { head_seq: 4 })),
            ("q", Some(HeadMismatch::PlanRemoved)),
        ]
    );
    let error = report.to_error().unwrap();
    assert!(error.message().contains("plan `p` at seq 6"), "{error}");
    assert!(error.message().contains("(truncated)"), "{error}");
}

pub(crate) async fn wrong_keys_forged_and_missing_checkpoints_fail(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let (signing, public) = key_pair(dir.path(), "signing.pem");
    let (forger, forger_public) = key_pair(dir.path(), "forger.pem");
    let ledger = db.ledger().await;
    append_checks(&ledger, "p", 3).await;

    let missing = ledger.verify_checkpoint(&public, None).await.unwrap();
    assert_eq!(missing.problem, Some(CheckpointProblem::Missing));
    assert!(
        missing
            .to_error()
            .unwrap()
            .message()
            .contains("no checkpoint")
    );

    ledger.checkpoint(&signing).await.unwrap();
    let wrong = ledger
        .verify_checkpoint(&forger_public, None)
        .await
        .unwrap();
    assert_eq!(
        wrong.problem,
        Some(CheckpointProblem::OtherKey {
            signed_by: public.key_id()
        })
    );
    assert!(wrong.heads.is_empty());

    // A checkpoint signed by another key, appended after a rewrite, does not pass.
    rewrite_chain(&ledger, &db.raw().await, "p", 2).await;
    ledger.checkpoint(&forger).await.unwrap();
    let forged = ledger.verify_checkpoint(&public, None).await.unwrap();
    assert!(
        matches!(&forged.problem, Some(CheckpointProblem::OtherKey { signed_by }) if *signed_by == forger_public.key_id()),
        "{forged:?}"
    );

    // An edited statement under the right key id: the signature no longer verifies.
    let raw = db.raw().await;
    exec(&raw, "DELETE FROM checkpoints WHERE seq = 2")
        .await
        .unwrap();
    exec(
        &raw,
        "UPDATE checkpoints SET statement = replace(statement, '\"seq\":3', '\"seq\":2') \
         WHERE seq = 1",
    )
    .await
    .unwrap();
    let tampered = ledger.verify_checkpoint(&public, None).await.unwrap();
    assert_eq!(
        tampered.problem,
        Some(CheckpointProblem::BadSignature { seq: 1 })
    );
    assert!(
        tampered
            .to_error()
            .unwrap()
            .message()
            .contains("checkpoint 1 has a bad signature")
    );
}

pub(crate) async fn broken_chains_are_never_checkpointed(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let (signing, _) = key_pair(dir.path(), "signing.pem");
    let ledger = db.ledger().await;
    append_checks(&ledger, "p", 3).await;
    exec(
        &db.raw().await,
        "DELETE FROM events WHERE plan = 'p' AND seq = 2",
    )
    .await
    .unwrap();
    let error = ledger.checkpoint(&signing).await.unwrap_err().to_canon();
    assert_eq!(error.code(), ErrorCode::LedgerChain);
    assert!(error.message().contains("plan `p` at seq 2"), "{error}");

    // A signing key others may read is refused before any use.
    let path = dir.path().join("signing.pem");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = CheckpointSigningKey::read(&path).unwrap_err().to_canon();
    assert_eq!(error.code(), ErrorCode::Ledger);
    assert!(error.message().contains("mode 0644"), "{error}");
}
