//! The memo cache: a run whose memo key matches an earlier successful execution whose
//! evidence still verifies is answered with that execution's outputs, and no container
//! starts.
//!
//! **Key.** [`MemoKey`]: the processor ref, the image digest the run would use (the pinned
//! digest, or for `build` the image ID the adapter builds, before any container starts),
//! the mode, the inputs hash of the resolved inputs and the CIDs of the upstream outputs
//! they were resolved from. Every successful local execution records its key
//! ([`record_key`]); a run asks for a hit only when its request says `memo` (plans: on by
//! default in `mock`, `memo: true` in `real`; `proctor run --memo`), and only through the
//! local adapter, whose evidence lives in the World's store.
//!
//! **Lookup.** One indexed ledger query gives the newest successful executions with the
//! key ([`proctor_ledger::Ledger::memo_sources`]); the first whose evidence verifies is the
//! source: its stored outputs re-hash to its index, both receipt copies are byte-identical,
//! the receipt re-derives the key, and the receipt and index hash to the content ids its
//! settle event recorded. A source whose evidence no longer verifies (an output tampered
//! with or deleted) is not a hit: the run goes on as if there were none. Its plan's whole
//! chain is not replayed here; `proctor verify` of the hit does that.
//!
//! **Record.** A hit is not an execution: the ledger records one `execution.memo` event on
//! the run's plan under the hit's own id, naming the source (no execution row, no
//! reservation, no lease, nothing spent). The envelope carries the hit's id, the source's
//! outputs and index path, and `memo_source`; `duration_ms` is 0, since no processor ran.

use std::path::PathBuf;

use proctor_adapters::{ImageBuild, ImageSource, host_platform};
use proctor_contract::{
    CanonError, Envelope, ErrorCode, ExecutionMemoEvent, Mode, OutputsIndex, ProcessorRef, Receipt,
    SuccessMeta, UpstreamOutput, WorldPath, canonical_json, cid, inputs_hash,
};
use proctor_ledger::{Ledger, MemoSource};
use proctor_registry::ProcessorSpec;
use proctor_store::ArtifactStore;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::run::{AdapterHandle, AdapterKind, Engine, RunRequest};

/// How many of the newest sources of a key are checked before the run goes on without a hit.
const CANDIDATES: u32 = 4;

/// What makes two runs answer alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemoKey {
    processor_ref: String,
    image_digest: String,
    mode: Mode,
    hash_schema: String,
    inputs_hash: String,
    upstream_cids: Vec<String>,
}

impl MemoKey {
    /// The key of a run of `processor_ref` on `image_digest` with these resolved inputs.
    pub(crate) fn of_run(
        processor_ref: &ProcessorRef,
        image_digest: &str,
        mode: Mode,
        inputs: &Value,
        upstream: &[UpstreamOutput],
    ) -> MemoKey {
        let hash = inputs_hash(inputs);
        MemoKey {
            processor_ref: processor_ref.to_string(),
            image_digest: image_digest.to_owned(),
            mode,
            hash_schema: hash.hash_schema,
            inputs_hash: hash.value,
            upstream_cids: upstream.iter().map(|u| u.cid.clone()).collect(),
        }
    }

    /// The key a committed receipt records.
    pub(crate) fn of_receipt(receipt: &Receipt) -> MemoKey {
        MemoKey {
            processor_ref: receipt.processor_ref.to_string(),
            image_digest: receipt.image_digest.clone(),
            mode: receipt.mode,
            hash_schema: receipt.hash_schema.clone(),
            inputs_hash: receipt.inputs_hash.clone(),
            upstream_cids: receipt.upstream.iter().map(|u| u.cid.clone()).collect(),
        }
    }

    /// The key as the ledger indexes it: the content id of its canonical JSON.
    pub(crate) fn id(&self) -> String {
        let text = canonical_json(&json!({
            "ref": self.processor_ref,
            "image_digest": self.image_digest,
            "mode": self.mode,
            "inputs_hash": {"hash_schema": self.hash_schema, "value": self.inputs_hash},
            "upstream_cids": self.upstream_cids,
        }));
        cid(text.as_bytes())
    }
}

/// A source whose evidence verified for a key.
#[derive(Debug)]
pub(crate) struct VerifiedSource {
    source: MemoSource,
    receipt: Receipt,
    index: OutputsIndex,
    receipt_cid: String,
}

/// What the memo cache answers a run with: the envelope and where its outputs were saved,
/// or `None` for no hit.
pub(crate) type MemoAnswer = Result<Option<(Envelope, Option<PathBuf>)>, CanonError>;

/// Answers the run `hit_id` of `request` from the memo cache when a source of its key
/// verifies; `None` when none does. `image` is where the run's image would come from.
pub(crate) async fn answer_from_memo(
    engine: &Engine,
    request: &RunRequest,
    hit_id: &str,
    spec: &ProcessorSpec,
    image: &ImageSource,
    inputs: &Value,
    cancel: &CancellationToken,
) -> MemoAnswer {
    let digest = image_digest(engine, image, spec).await?;
    let key = MemoKey::of_run(
        &spec.processor_ref,
        &digest,
        request.mode,
        inputs,
        &request.upstream,
    );
    let ledger = engine.ledger().await?;
    match find_source(engine.store().as_ref(), ledger, &key).await? {
        Some(source) => answer(engine, request, hit_id, &key, source, cancel)
            .await
            .map(Some),
        None => Ok(None),
    }
}

/// The image digest a local run of `image` will report: the pin, or the ID of the image
/// `build` makes (built now, once per adapter; the adapter's run then finds it built).
async fn image_digest(
    engine: &Engine,
    image: &ImageSource,
    spec: &ProcessorSpec,
) -> Result<String, CanonError> {
    match image {
        ImageSource::Pinned { reference } => Ok(reference.digest().to_string()),
        ImageSource::Local { image_id } => Ok(image_id.clone()),
        ImageSource::Build { workspace_root } => {
            let AdapterHandle::Borrowed(local) = engine.adapter(AdapterKind::Local)? else {
                unreachable!("the local adapter is the engine's own");
            };
            let build = ImageBuild {
                spec,
                workspace_root,
                platform: host_platform()?,
            };
            local.build_image(&build).await.map(|built| built.id)
        }
    }
}

/// The newest source of `key` whose evidence verifies, if any.
pub(crate) async fn find_source(
    store: &dyn ArtifactStore,
    ledger: &Ledger,
    key: &MemoKey,
) -> Result<Option<VerifiedSource>, CanonError> {
    let key_id = key.id();
    for source in ledger.memo_sources(&key_id, CANDIDATES).await? {
        let execution_id = source.execution_id.clone();
        match check_source(store, key, source).await? {
            Ok(verified) => return Ok(Some(verified)),
            Err(why) => tracing::info!(
                event = "memo.stale",
                memo_key = %key_id,
                source = %execution_id,
                reason = %why,
            ),
        }
    }
    Ok(None)
}

/// `source` verified for `key`, or why it is not a hit.
async fn check_source(
    store: &dyn ArtifactStore,
    key: &MemoKey,
    source: MemoSource,
) -> Result<Result<VerifiedSource, String>, CanonError> {
    let stored = proctor_store::verify_execution(store, &source.execution_id).await?;
    if let Some(failed) = stored.failures().next() {
        return Ok(Err(format!("{}: {}", failed.name, failed.detail)));
    }
    let (Some(receipt), Some(index)) = (stored.receipt, stored.index) else {
        return Ok(Err("its receipt or index was not read".to_owned()));
    };
    if MemoKey::of_receipt(&receipt) != *key {
        return Ok(Err("its receipt records another memo key".to_owned()));
    }
    if receipt.outputs_index.as_str() != source.settled.index_path {
        return Ok(Err(
            "its receipt names another index than its settle event".to_owned()
        ));
    }
    let receipt_path = WorldPath::execution_receipt(&source.execution_id)?;
    let receipt_cid = cid(&store.get(&receipt_path).await?);
    if source.settled.receipt_cid.as_deref() != Some(receipt_cid.as_str()) {
        return Ok(Err(
            "its receipt is not the one its settle event recorded".to_owned()
        ));
    }
    let index_cid = cid(&store.get(&receipt.outputs_index).await?);
    if index_cid != source.settled.outputs_index_cid {
        return Ok(Err(
            "its outputs index is not the one its settle event recorded".to_owned(),
        ));
    }
    Ok(Ok(VerifiedSource {
        source,
        receipt,
        index,
        receipt_cid,
    }))
}

/// Answers the run `hit_id` of `request` with `verified`: copies the outputs to
/// `save_dir` when asked, records `execution.memo`, and gives the envelope.
async fn answer(
    engine: &Engine,
    request: &RunRequest,
    hit_id: &str,
    key: &MemoKey,
    verified: VerifiedSource,
    cancel: &CancellationToken,
) -> Result<(Envelope, Option<PathBuf>), CanonError> {
    if cancel.is_cancelled() {
        return Err(CanonError::new(
            ErrorCode::Interrupted,
            format!(
                "interrupted before answering {} from execution `{}`",
                request.processor_ref, verified.source.execution_id
            ),
        ));
    }
    let VerifiedSource {
        source,
        receipt,
        index,
        receipt_cid,
    } = verified;
    let Envelope::Success(mut success) = Envelope::success(
        hit_id,
        index.outputs,
        receipt.outputs_index.clone(),
        SuccessMeta {
            image_digest: receipt.image_digest.clone(),
            env_fingerprint: receipt.env_fingerprint.clone(),
            duration_ms: 0,
            mode: receipt.mode,
        },
    ) else {
        unreachable!("Envelope::success makes a success envelope");
    };
    success.memo_source = Some(source.execution_id.clone());
    let saved_to = match &request.save_dir {
        Some(save_dir) => {
            crate::save::save_outputs(
                engine.store().as_ref(),
                &engine.config().artifacts_root,
                &success,
                save_dir,
            )
            .await?;
            Some(save_dir.clone())
        }
        None => None,
    };
    let memo = ExecutionMemoEvent {
        processor_ref: key.processor_ref.clone(),
        mode: key.mode,
        image_digest: key.image_digest.clone(),
        inputs_hash: key.inputs_hash.clone(),
        memo_key: key.id(),
        source_execution_id: source.execution_id.clone(),
        source_plan: source.plan,
        index_path: source.settled.index_path,
        outputs_index_cid: source.settled.outputs_index_cid,
        receipt_cid,
    };
    let appended = engine
        .ledger()
        .await?
        .record_memo_hit(&request.plan, hit_id, &memo)
        .await?;
    tracing::info!(
        event = "execution.memo",
        execution_id = %hit_id,
        source = %source.execution_id,
        plan = %request.plan,
        seq = appended.seq,
    );
    Ok((Envelope::Success(success), saved_to))
}

/// Records the memo key of a successful local execution, so later runs can be answered by
/// it; a failure is logged (the execution is then simply never a source).
pub(crate) async fn record_key(ledger: &Ledger, execution_id: &str, key: &MemoKey) {
    if let Err(error) = ledger.record_memo_key(execution_id, &key.id()).await {
        tracing::warn!(
            event = "memo.record_failed",
            execution_id = %execution_id,
            error = %error,
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use proctor_contract::{OutputEntry, Usage};
    use proctor_ledger::{ExecutionSettle, ExecutionStart, Outcome};
    use proctor_store::FsStore;

    use super::*;

    const DIGEST: &str = "sha256:0123";

    fn stats_ref() -> ProcessorRef {
        "text/stats@1".parse().unwrap()
    }

    fn inputs() -> Value {
        json!({"schema": "v1", "text": "The quick brown fox."})
    }

    fn upstream(cid: &str) -> Vec<UpstreamOutput> {
        vec![UpstreamOutput {
            execution_id: "up".into(),
            path: WorldPath::parse("/artifacts/o/up/outputs/a.txt").unwrap(),
            cid: cid.into(),
        }]
    }

    fn host(root: &Path, path: &str) -> std::path::PathBuf {
        root.join(path.strip_prefix("/artifacts/").unwrap())
    }

    fn write(root: &Path, path: &str, bytes: &[u8]) {
        let host = host(root, path);
        std::fs::create_dir_all(host.parent().unwrap()).unwrap();
        std::fs::write(host, bytes).unwrap();
    }

    /// A World and ledger holding the successful execution `e1` of `text/stats@1` on
    /// [`DIGEST`] with [`inputs`], its evidence committed and `indexed` recorded as its memo
    /// key (its own key when `None`).
    async fn world_indexed(
        indexed: Option<&MemoKey>,
    ) -> (tempfile::TempDir, FsStore, Ledger, MemoKey) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("artifacts");
        let output = "/artifacts/o/e1/outputs/stats.json";
        write(&root, output, b"{\"words\":4}");
        let index = OutputsIndex {
            outputs: vec![OutputEntry {
                path: WorldPath::parse(output).unwrap(),
                cid: cid(b"{\"words\":4}"),
                size_bytes: 11,
                mime: "application/json".into(),
            }],
        };
        write(&root, "/artifacts/o/e1/outputs.json", &index.to_bytes());
        let hash = inputs_hash(&inputs());
        let receipt = Receipt {
            execution_id: "e1".into(),
            processor_ref: stats_ref(),
            image_digest: DIGEST.into(),
            env_fingerprint: "mode=mock".into(),
            inputs_hash: hash.value,
            hash_schema: hash.hash_schema,
            outputs_index: WorldPath::parse("/artifacts/o/e1/outputs.json").unwrap(),
            processor_info: "mock".into(),
            usage: Usage::new(),
            timestamp_utc: "2026-01-01T00:00:00Z".into(),
            duration_ms: 3,
            mode: Mode::Mock,
            upstream: Vec::new(),
            artifacts_read: Vec::new(),
        };
        write(&root, "/artifacts/o/e1/receipt.json", &receipt.to_bytes());
        write(
            &root,
            "/artifacts/execution/e1/receipt.json",
            &receipt.to_bytes(),
        );
        let ledger = Ledger::open(&format!("sqlite://{}/ledger.db", dir.path().display()))
            .await
            .unwrap();
        ledger
            .record_start(&ExecutionStart {
                execution_id: "e1".into(),
                plan: "p".into(),
                processor_ref: "text/stats@1".into(),
                mode: Mode::Mock,
                write_prefix: "/artifacts/o/e1/".into(),
                image_digest: Some(DIGEST.into()),
                owner: None,
            })
            .await
            .unwrap();
        ledger
            .record_settle(&ExecutionSettle {
                execution_id: "e1".into(),
                outcome: Outcome::Success {
                    index_path: "/artifacts/o/e1/outputs.json".into(),
                    outputs_index_cid: cid(&index.to_bytes()),
                    receipt_cid: Some(cid(&receipt.to_bytes())),
                },
                image_digest: Some(DIGEST.into()),
                duration_ms: 3,
            })
            .await
            .unwrap();
        let key = MemoKey::of_run(&stats_ref(), DIGEST, Mode::Mock, &inputs(), &[]);
        assert_eq!(MemoKey::of_receipt(&receipt), key);
        record_key(&ledger, "e1", indexed.unwrap_or(&key)).await;
        (dir, FsStore::new(&root), ledger, key)
    }

    async fn world() -> (tempfile::TempDir, FsStore, Ledger, MemoKey) {
        world_indexed(None).await
    }

    #[test]
    fn the_key_changes_with_each_of_its_parts_and_nothing_else() {
        let key = |digest: &str, mode, inputs: &Value, upstream: &[UpstreamOutput]| {
            MemoKey::of_run(&stats_ref(), digest, mode, inputs, upstream).id()
        };
        let base = key(DIGEST, Mode::Mock, &inputs(), &upstream("b3:aa"));
        assert!(base.starts_with("b3:"), "{base}");
        // The upstream execution and path are not part of it: only the bytes' CID.
        let mut moved = upstream("b3:aa");
        moved[0].execution_id = "elsewhere".into();
        assert_eq!(base, key(DIGEST, Mode::Mock, &inputs(), &moved));
        // Key order in the inputs does not matter: the hash is of canonical JSON.
        let reordered = json!({"text": "The quick brown fox.", "schema": "v1"});
        assert_eq!(
            base,
            key(DIGEST, Mode::Mock, &reordered, &upstream("b3:aa"))
        );
        let other = json!({"schema": "v1", "text": "Another fox."});
        for changed in [
            key("sha256:4567", Mode::Mock, &inputs(), &upstream("b3:aa")),
            key(DIGEST, Mode::Real, &inputs(), &upstream("b3:aa")),
            key(DIGEST, Mode::Mock, &other, &upstream("b3:aa")),
            key(DIGEST, Mode::Mock, &inputs(), &upstream("b3:bb")),
            key(DIGEST, Mode::Mock, &inputs(), &[]),
        ] {
            assert_ne!(base, changed);
        }
        let other_ref = MemoKey::of_run(
            &"text/stats@2".parse().unwrap(),
            DIGEST,
            Mode::Mock,
            &inputs(),
            &upstream("b3:aa"),
        );
        assert_ne!(base, other_ref.id());
    }

    #[tokio::test]
    async fn a_verified_success_with_the_key_is_the_source() {
        let (_dir, store, ledger, key) = world().await;
        let found = find_source(&store, &ledger, &key).await.unwrap().unwrap();
        assert_eq!(found.source.execution_id, "e1");
        assert_eq!(found.receipt.execution_id, "e1");
        assert_eq!(found.index.outputs.len(), 1);
        let other = MemoKey::of_run(&stats_ref(), "sha256:4567", Mode::Mock, &inputs(), &[]);
        assert!(
            find_source(&store, &ledger, &other)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_source_whose_evidence_no_longer_verifies_is_no_hit() {
        let (dir, store, ledger, key) = world().await;
        let root = dir.path().join("artifacts");
        let output = host(&root, "/artifacts/o/e1/outputs/stats.json");
        std::fs::write(&output, b"{\"words\":5}").unwrap();
        assert!(find_source(&store, &ledger, &key).await.unwrap().is_none());
        std::fs::write(&output, b"{\"words\":4}").unwrap();
        assert!(find_source(&store, &ledger, &key).await.unwrap().is_some());
        std::fs::remove_file(&output).unwrap();
        assert!(find_source(&store, &ledger, &key).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_consistent_rewrite_of_the_evidence_is_no_hit() {
        let (dir, store, ledger, key) = world().await;
        let root = dir.path().join("artifacts");
        // Both receipt copies rewritten alike: the store half still agrees with itself, but
        // the receipt is not the one the settle event recorded.
        let path = host(&root, "/artifacts/execution/e1/receipt.json");
        let mut receipt: Receipt = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        receipt.processor_info = "forged".into();
        for copy in [
            "/artifacts/execution/e1/receipt.json",
            "/artifacts/o/e1/receipt.json",
        ] {
            write(&root, copy, &receipt.to_bytes());
        }
        assert!(find_source(&store, &ledger, &key).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_source_indexed_under_a_key_its_receipt_does_not_record_is_no_hit() {
        let other = MemoKey::of_run(&stats_ref(), DIGEST, Mode::Mock, &json!({"x": 1}), &[]);
        let (_dir, store, ledger, key) = world_indexed(Some(&other)).await;
        assert!(
            find_source(&store, &ledger, &other)
                .await
                .unwrap()
                .is_none()
        );
        assert!(find_source(&store, &ledger, &key).await.unwrap().is_none());
    }
}
