//! The whole chain of evidence one execution left, checked: what `proctor verify` reports
//! and what the lanes' runs must pass.
//!
//! The storage half ([`proctor_store::verify_execution`]): both receipt copies exist and
//! are byte-identical, the index lies where the receipt says, and every output re-hashes to
//! its CID and size in the index; then every input artifact the receipt says the provider
//! read (`artifacts_read`) re-hashes to the content id it was read with (`input:{path}`). The ledger half: the execution is recorded and settled
//! as a success, its plan's chain verifies, its settle event lies on the verified chain,
//! the receipt's processor, mode, outputs index (path and content id), receipt content id
//! and image digest match what the ledger recorded, and the outputs the ledger recorded
//! (`artifact.produce`) are the index's. Last, the image: a pinned run's digest must be the
//! registry's current pin for the host platform; a `build` run (no digest recorded at
//! start) is reported as built from source.
//!
//! A memo hit (`execution.memo`, see [`crate::memo`]) is verified as the hit of its
//! source: `memo.hit` (its event lies on a verified chain; the detail names the source),
//! `memo.key` (the source's receipt re-derives the hit's memo key), `memo.evidence` (the
//! source's receipt and index are the bytes the hit recorded), then every check of the
//! source execution.
//!
//! Every finding is a [`Check`]; any failed check makes the report's error `ERR_VERIFY`.
//! Only evidence that cannot be read at all (an invalid execution id, an unreadable store
//! or ledger) is an error of the call itself.

use std::path::Path;

use proctor_adapters::host_platform;
use proctor_contract::{
    CanonError, ErrorCode, EventKind, ExecutionSuccessEvent, OutputsIndex, PinnedReference,
    ProcessorRef, Receipt, WorldPath, cid,
};
use proctor_ledger::{
    ChainCache, Execution, ExecutionEvidence, ExecutionStatus, Ledger, MemoHit, Settlement,
};
use proctor_registry::{Registry, pinned_image};
use proctor_store::{ArtifactStore, Check};
use serde::Serialize;
use serde_json::Value;

use crate::memo::MemoKey;

/// Hex digits of an event hash shown in a check's detail.
const SHORT_HASH_LEN: usize = 12;

/// Where an execution's evidence is read.
#[derive(Clone, Copy)]
pub struct EvidenceSources<'a> {
    /// The store holding its artifacts.
    pub store: &'a dyn ArtifactStore,
    /// The ledger that recorded it.
    pub ledger: &'a Ledger,
    /// The registry whose current pins pinned runs must carry.
    pub registry_root: &'a Path,
    /// Chain verifications to reuse (one plan apply keeps one), or `None` to verify every
    /// chain afresh.
    pub chains: Option<&'a ChainCache>,
}

/// What the verification of one execution found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The execution verified.
    pub execution_id: String,
    /// Whether every check passed.
    pub ok: bool,
    /// The store read (no credentials).
    pub store: String,
    /// The ledger's backend, `sqlite` or `postgres`.
    pub ledger: &'static str,
    /// The plan that records the execution, when it is recorded.
    pub plan: Option<String>,
    /// Every check made, in order; checks that depend on a failed one are not made.
    pub checks: Vec<Check>,
    /// `ERR_VERIFY` naming the failed checks, when any failed.
    #[serde(
        serialize_with = "crate::error_json::serialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub error: Option<CanonError>,
    /// The receipt, as read from the store, when it could be parsed.
    #[serde(skip)]
    pub receipt: Option<Receipt>,
    /// The outputs index, as read from the store, when it could be parsed.
    #[serde(skip)]
    pub index: Option<OutputsIndex>,
}

/// Verifies the evidence of `execution_id` in `sources`. Logs `verify.ok` or `verify.fail`.
pub async fn verify_execution(
    sources: &EvidenceSources<'_>,
    execution_id: &str,
) -> Result<VerifyReport, CanonError> {
    let verified = verify(sources, execution_id).await;
    match &verified {
        Ok(VerifyReport {
            error: None,
            checks,
            ..
        }) => {
            tracing::info!(event = "verify.ok", execution_id, checks = checks.len());
        }
        Ok(VerifyReport {
            error: Some(error), ..
        })
        | Err(error) => {
            tracing::error!(
                event = "verify.fail",
                execution_id,
                code = %error.code(),
                message = %error.message(),
            );
        }
    }
    verified
}

async fn verify(
    sources: &EvidenceSources<'_>,
    execution_id: &str,
) -> Result<VerifyReport, CanonError> {
    match sources.ledger.memo_hit(execution_id).await? {
        Some(hit) => verify_hit(sources, execution_id, hit).await,
        None => verify_recorded(sources, execution_id).await,
    }
}

/// A memo hit: its `execution.memo` event on a verified chain, the source's receipt and
/// index as the hit recorded them, then every check of the source execution.
async fn verify_hit(
    sources: &EvidenceSources<'_>,
    hit_id: &str,
    hit: MemoHit,
) -> Result<VerifyReport, CanonError> {
    let memo = &hit.memo;
    let source = verify_recorded(sources, &memo.source_execution_id).await?;
    let mut checks = Checks(Vec::new());
    let chain = match sources.chains {
        Some(chains) => {
            sources
                .ledger
                .verify_chain_covering(&hit.event.plan, hit.event.seq, chains)
                .await?
        }
        None => sources.ledger.verify_chain(&hit.event.plan).await?,
    };
    let on_chain = chain.is_valid() && hit.event.seq <= chain.verified;
    checks.record(
        "memo.hit",
        on_chain,
        format!(
            "seq {} execution.memo on plan `{}`{}: a memo hit of execution `{}` (plan `{}`), \
             whose evidence follows",
            hit.event.seq,
            hit.event.plan,
            if on_chain {
                ""
            } else {
                ", not on the verified part of the chain"
            },
            memo.source_execution_id,
            memo.source_plan
        ),
    );
    let key = source.receipt.as_ref().map(|r| MemoKey::of_receipt(r).id());
    checks.record(
        "memo.key",
        key.as_deref() == Some(memo.memo_key.as_str()),
        format!(
            "hit: {}; source receipt: {}",
            memo.memo_key,
            shown(key.as_deref())
        ),
    );
    let receipt_cid = match WorldPath::execution_receipt(&memo.source_execution_id) {
        Ok(path) => stored_cid(sources.store, &path).await,
        Err(_) => None,
    };
    let index_cid = match WorldPath::parse(&memo.index_path) {
        Ok(path) => stored_cid(sources.store, &path).await,
        Err(_) => None,
    };
    checks.record(
        "memo.evidence",
        receipt_cid.as_deref() == Some(memo.receipt_cid.as_str())
            && index_cid.as_deref() == Some(memo.outputs_index_cid.as_str()),
        format!(
            "receipt {} (hit recorded {}), index {} (hit recorded {})",
            shown(receipt_cid.as_deref()),
            memo.receipt_cid,
            shown(index_cid.as_deref()),
            memo.outputs_index_cid
        ),
    );
    checks.0.extend(source.checks);
    let error = failure(hit_id, &checks.0);
    Ok(VerifyReport {
        execution_id: hit_id.to_owned(),
        ok: error.is_none(),
        store: source.store,
        ledger: source.ledger,
        plan: Some(hit.event.plan),
        checks: checks.0,
        error,
        receipt: source.receipt,
        index: source.index,
    })
}

/// An execution that ran: the storage half, then the ledger half.
async fn verify_recorded(
    sources: &EvidenceSources<'_>,
    execution_id: &str,
) -> Result<VerifyReport, CanonError> {
    let stored = proctor_store::verify_execution(sources.store, execution_id).await?;
    let mut checks = Checks(stored.checks);
    if let Some(receipt) = &stored.receipt {
        input_checks(sources.store, receipt, &mut checks).await;
    }
    let recorded = Recorded {
        sources,
        receipt: stored.receipt.as_ref(),
        index: stored.index.as_ref(),
    };
    let plan = recorded.check(execution_id, &mut checks).await?;
    let error = failure(execution_id, &checks.0);
    Ok(VerifyReport {
        execution_id: execution_id.to_owned(),
        ok: error.is_none(),
        store: stored.store,
        ledger: sources.ledger.backend().as_str(),
        plan,
        checks: checks.0,
        error,
        receipt: stored.receipt,
        index: stored.index,
    })
}

/// `ERR_VERIFY` naming the failed checks, or `None` when all passed.
fn failure(execution_id: &str, checks: &[Check]) -> Option<CanonError> {
    let failed: Vec<&str> = checks
        .iter()
        .filter(|check| !check.ok)
        .map(|check| check.name.as_str())
        .collect();
    (!failed.is_empty()).then(|| {
        CanonError::new(
            ErrorCode::Verify,
            format!(
                "execution `{execution_id}`: {} of {} checks failed: {}",
                failed.len(),
                checks.len(),
                failed.join(", ")
            ),
        )
    })
}

/// The checks made so far.
struct Checks(Vec<Check>);

impl Checks {
    fn record(&mut self, name: &str, ok: bool, detail: impl Into<String>) {
        self.0.push(Check {
            name: name.to_owned(),
            ok,
            detail: detail.into(),
        });
    }
}

/// The ledger half, over what the storage half read.
struct Recorded<'a> {
    sources: &'a EvidenceSources<'a>,
    receipt: Option<&'a Receipt>,
    index: Option<&'a OutputsIndex>,
}

impl Recorded<'_> {
    /// Records the ledger and pin checks; returns the execution's plan when it is recorded.
    /// Checks that depend on a failed one are not made.
    async fn check(
        &self,
        execution_id: &str,
        checks: &mut Checks,
    ) -> Result<Option<String>, CanonError> {
        let ledger = self.sources.ledger;
        let evidence = match self.sources.chains {
            Some(chains) => ledger.execution_evidence_with(execution_id, chains).await?,
            None => ledger.execution_evidence(execution_id).await?,
        };
        let Some(evidence) = evidence else {
            checks.record(
                "ledger.execution",
                false,
                format!("execution `{execution_id}` is not recorded in the ledger"),
            );
            return Ok(None);
        };
        let execution = &evidence.execution;
        let plan = Some(execution.plan.clone());
        let status = match (&execution.status, &execution.error_code) {
            (ExecutionStatus::Failure, Some(code)) => format!("failure ({code})"),
            (status, _) => status.as_str().to_owned(),
        };
        checks.record(
            "ledger.execution",
            execution.status == ExecutionStatus::Success,
            format!(
                "plan `{}`: {} {status}",
                execution.plan, execution.processor_ref
            ),
        );
        chain_checks(&evidence, checks);
        if evidence.settle_event.is_none() || execution.status != ExecutionStatus::Success {
            return Ok(plan);
        }
        let settled = success_record(&evidence);
        if let Some(receipt) = self.receipt {
            receipt_checks(self.sources.store, receipt, execution, &settled, checks).await?;
        }
        if let Some(index) = self.index {
            artifact_checks(&evidence, index, checks);
        }
        if let Some(receipt) = self.receipt {
            match evidence.start() {
                Ok(start) => pin_check(
                    self.sources.registry_root,
                    receipt,
                    start
                        .as_ref()
                        .and_then(|start| start.image_digest.as_deref()),
                    checks,
                ),
                Err(error) => checks.record(
                    "image.pin",
                    false,
                    format!(
                        "cannot read how the execution started: {}",
                        CanonError::from(error).message()
                    ),
                ),
            }
        }
        Ok(plan)
    }
}

/// `ledger.chain` and `ledger.settle`.
fn chain_checks(evidence: &ExecutionEvidence, checks: &mut Checks) {
    let chain = &evidence.chain;
    match &chain.broken {
        None => checks.record(
            "ledger.chain",
            true,
            format!(
                "plan `{}`: {} events verified, head seq {}",
                chain.plan, chain.verified, chain.head_seq
            ),
        ),
        Some(broken) => checks.record(
            "ledger.chain",
            false,
            format!(
                "plan `{}` broken at seq {}: {}",
                chain.plan, broken.seq, broken.reason
            ),
        ),
    }
    match &evidence.settle_event {
        None => checks.record(
            "ledger.settle",
            false,
            "no execution.settle event for the execution",
        ),
        Some(event) => {
            let on_valid_chain = event.seq <= chain.verified;
            let short_hash = event
                .this_hash
                .get(..SHORT_HASH_LEN)
                .unwrap_or(&event.this_hash);
            let detail = format!(
                "seq {} {} ({short_hash}){}",
                event.seq,
                event.kind_name,
                if on_valid_chain {
                    ""
                } else {
                    ", not on the verified part of the chain"
                }
            );
            checks.record("ledger.settle", on_valid_chain, detail);
        }
    }
}

/// What the success settle event recorded, or why there is no such record to compare the
/// files with.
fn success_record(evidence: &ExecutionEvidence) -> Result<ExecutionSuccessEvent, String> {
    match evidence.settlement() {
        Ok(Some(Settlement::Success(success))) => Ok(success),
        Ok(Some(Settlement::Failure(failure))) => Err(format!(
            "the settle event records a failure ({})",
            failure.error.code
        )),
        Ok(None) => Err("no settle event".to_owned()),
        Err(error) => Err(CanonError::from(error).message()),
    }
}

/// `Some(text)` or `(none)`, for details.
fn shown(value: Option<&str>) -> &str {
    value.unwrap_or("(none)")
}

/// The content id of a stored artifact, `None` when it cannot be read.
async fn stored_cid(store: &dyn ArtifactStore, path: &WorldPath) -> Option<String> {
    store.get(path).await.ok().map(|bytes| cid(&bytes))
}

/// `input:{path}`: each input artifact the receipt says was read still has the bytes it was
/// read with.
async fn input_checks(store: &dyn ArtifactStore, receipt: &Receipt, checks: &mut Checks) {
    for read in &receipt.artifacts_read {
        let found = crate::attach::streamed_cid(store, &read.path).await;
        let ok = found.as_deref() == Some(read.cid.as_str());
        let detail = if ok {
            format!("{}, as read", read.cid)
        } else {
            format!(
                "{}; the provider read {}",
                shown(found.as_deref()),
                read.cid
            )
        };
        checks.record(&format!("input:{}", read.path), ok, detail);
    }
}

/// The receipt against the execution row and its settle event.
async fn receipt_checks(
    store: &dyn ArtifactStore,
    receipt: &Receipt,
    execution: &Execution,
    settled: &Result<ExecutionSuccessEvent, String>,
    checks: &mut Checks,
) -> Result<(), CanonError> {
    let settled = settled.as_ref();
    let same_processor = receipt.processor_ref.to_string() == execution.processor_ref
        && receipt.mode == execution.mode;
    checks.record(
        "ledger.processor",
        same_processor,
        format!(
            "receipt: {} ({}); ledger: {} ({})",
            receipt.processor_ref, receipt.mode, execution.processor_ref, execution.mode
        ),
    );

    let index_cid = stored_cid(store, &receipt.outputs_index).await;
    let recorded_path = settled.ok().map(|success| success.index_path.as_str());
    let recorded_cid = settled
        .ok()
        .map(|success| success.outputs_index_cid.as_str());
    let same_index = recorded_path == Some(receipt.outputs_index.as_str())
        && index_cid.is_some()
        && index_cid.as_deref() == recorded_cid;
    let detail = if same_index {
        format!(
            "`{}` is {}, as recorded",
            receipt.outputs_index,
            shown(index_cid.as_deref())
        )
    } else {
        format!(
            "receipt: `{}` is {}; ledger: `{}` is {}",
            receipt.outputs_index,
            shown(index_cid.as_deref()),
            shown(recorded_path),
            shown(recorded_cid)
        )
    };
    checks.record("ledger.outputs_index", same_index, detail);

    let receipt_path = WorldPath::execution_receipt(&receipt.execution_id)?;
    let receipt_cid = stored_cid(store, &receipt_path).await;
    match settled.map(|success| success.receipt_cid.as_ref()) {
        Err(why) => checks.record(
            "ledger.receipt",
            false,
            format!(
                "`{receipt_path}` is {}; {why}",
                shown(receipt_cid.as_deref())
            ),
        ),
        // A remote adapter's run: the receipt never reached the recording host.
        Ok(None) => checks.record(
            "ledger.receipt",
            true,
            format!(
                "`{receipt_path}` is {}; no receipt id recorded (the run's artifacts stayed \
                 with its remote adapter)",
                shown(receipt_cid.as_deref())
            ),
        ),
        Ok(Some(recorded)) if receipt_cid.as_ref() == Some(recorded) => checks.record(
            "ledger.receipt",
            true,
            format!("`{receipt_path}` is {recorded}, as recorded"),
        ),
        Ok(Some(recorded)) => checks.record(
            "ledger.receipt",
            false,
            format!(
                "`{receipt_path}` is {}; ledger: {recorded}",
                shown(receipt_cid.as_deref())
            ),
        ),
    }

    let settled_digest = settled
        .ok()
        .and_then(|success| success.image_digest.as_deref());
    let same_digest = settled_digest == Some(receipt.image_digest.as_str())
        && execution.image_digest.as_deref() == Some(receipt.image_digest.as_str());
    checks.record(
        "ledger.image_digest",
        same_digest,
        if same_digest {
            format!("{}, as recorded", receipt.image_digest)
        } else {
            format!(
                "receipt: {}; settle event: {}; execution: {}",
                receipt.image_digest,
                shown(settled_digest),
                shown(execution.image_digest.as_deref())
            )
        },
    );
    Ok(())
}

/// `ledger.artifacts`: the outputs the ledger recorded are the index's entries. The
/// `artifact.produce` payloads are read by key, so a payload with an added key still
/// compares by its output (the chain check reports the edit).
fn artifact_checks(evidence: &ExecutionEvidence, index: &OutputsIndex, checks: &mut Checks) {
    let recorded: Vec<Value> = evidence
        .events
        .iter()
        .filter(|event| event.kind() == Some(EventKind::ArtifactProduce))
        .map(|event| {
            let payload = event.payload_json().unwrap_or(Value::Null);
            serde_json::json!({
                "path": payload["path"],
                "cid": payload["cid"],
                "size_bytes": payload["size_bytes"],
                "mime": payload["mime"],
            })
        })
        .collect();
    let indexed: Vec<Value> = index
        .outputs
        .iter()
        .map(|entry| serde_json::json!(entry))
        .collect();
    let same = recorded == indexed;
    let detail = if same {
        format!("{} outputs, as recorded", indexed.len())
    } else {
        let differing: Vec<String> = indexed
            .iter()
            .filter(|entry| !recorded.contains(entry))
            .chain(recorded.iter().filter(|entry| !indexed.contains(entry)))
            .map(|entry| format!("`{}`", entry["path"].as_str().unwrap_or("?")))
            .collect();
        format!(
            "index has {} outputs, ledger recorded {}; differing: {}",
            indexed.len(),
            recorded.len(),
            differing.join(", ")
        )
    };
    checks.record("ledger.artifacts", same, detail);
}

/// `image.pin`: a pinned run's digest is the registry's pin for the host platform.
fn pin_check(
    registry_root: &Path,
    receipt: &Receipt,
    start_digest: Option<&str>,
    checks: &mut Checks,
) {
    let Some(start_digest) = start_digest else {
        checks.record(
            "image.pin",
            true,
            format!(
                "built from source (image ID {}); no pin applies",
                receipt.image_digest
            ),
        );
        return;
    };
    match current_pin(registry_root, &receipt.processor_ref) {
        Err(error) => checks.record(
            "image.pin",
            false,
            format!("cannot read the pin: {}", error.message()),
        ),
        Ok((platform, pinned)) => {
            let digest = pinned.digest().to_string();
            let ok = digest == receipt.image_digest && digest == start_digest;
            let detail = if ok {
                format!("{} is the {platform} pin `{pinned}`", receipt.image_digest)
            } else {
                format!(
                    "receipt {} (started as {start_digest}) is not the {platform} pin `{pinned}`",
                    receipt.image_digest
                )
            };
            checks.record("image.pin", ok, detail);
        }
    }
}

/// The host platform and the registry's pin of `processor_ref` for it.
fn current_pin(
    registry_root: &Path,
    processor_ref: &ProcessorRef,
) -> Result<(&'static str, PinnedReference), CanonError> {
    let registry = Registry::load(registry_root)?;
    let entry = registry.get(processor_ref)?;
    let platform = host_platform()?;
    Ok((platform.as_str(), pinned_image(entry.spec(), platform)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checks(named: &[(&str, bool)]) -> Vec<Check> {
        named
            .iter()
            .map(|(name, ok)| Check {
                name: (*name).to_owned(),
                ok: *ok,
                detail: "d".to_owned(),
            })
            .collect()
    }

    #[test]
    fn any_failed_check_is_err_verify_naming_it() {
        assert!(failure("e1", &checks(&[("a", true), ("b", true)])).is_none());
        let error = failure(
            "e1",
            &checks(&[("a", true), ("output:/artifacts/x", false), ("c", false)]),
        )
        .unwrap();
        assert_eq!(error.code(), ErrorCode::Verify);
        assert_eq!(
            error.message(),
            "verification failed: execution `e1`: 2 of 3 checks failed: output:/artifacts/x, c"
        );
    }

    const DIGEST: &str = "sha256:3f1c9e0b7a2d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6";

    /// A registry holding the workspace's `text/stats@1` pinned to [`DIGEST`].
    fn pinned_registry() -> tempfile::TempDir {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../processors");
        let yaml = std::fs::read_to_string(workspace.join("text/stats/1/registry.yaml")).unwrap();
        let pin = format!("127.0.0.1:5000/text-stats@{DIGEST}");
        let pinned = yaml.replace(
            "platforms: {amd64: null, arm64: null}",
            &format!("platforms: {{amd64: '{pin}', arm64: '{pin}'}}"),
        );
        assert_ne!(pinned, yaml, "the workspace entry is unpinned");
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("text/stats/1");
        std::fs::create_dir_all(&entry).unwrap();
        std::fs::write(entry.join("registry.yaml"), pinned).unwrap();
        dir
    }

    fn receipt(image_digest: &str) -> Receipt {
        serde_json::from_value(serde_json::json!({
            "execution_id": "e1",
            "processor_ref": "text/stats@1",
            "image_digest": image_digest,
            "env_fingerprint": "mode=mock",
            "inputs_hash": "00",
            "hash_schema": "jcs-blake3-v1",
            "outputs_index": "/artifacts/o/e1/outputs.json",
            "processor_info": "",
            "usage": {},
            "timestamp_utc": "2026-01-01T00:00:00Z",
            "duration_ms": 1,
            "mode": "mock",
        }))
        .unwrap()
    }

    fn pin_verdict(registry: &Path, image_digest: &str, start: Option<&str>) -> Check {
        let mut checks = Checks(Vec::new());
        pin_check(registry, &receipt(image_digest), start, &mut checks);
        checks.0.pop().unwrap()
    }

    #[test]
    fn pinned_runs_must_carry_the_current_pin() {
        let registry = pinned_registry();
        let check = pin_verdict(registry.path(), DIGEST, Some(DIGEST));
        assert!(check.ok, "{check:?}");
        assert!(
            check.detail.contains("pin `127.0.0.1:5000/text-stats@"),
            "{check:?}"
        );

        let other = format!("sha256:{}", "ab".repeat(32));
        let check = pin_verdict(registry.path(), &other, Some(&other));
        assert!(
            !check.ok && check.detail.contains("is not the"),
            "{check:?}"
        );
        let check = pin_verdict(registry.path(), DIGEST, Some(&other));
        assert!(!check.ok, "started as another image: {check:?}");

        let check = pin_verdict(&registry.path().join("absent"), DIGEST, Some(DIGEST));
        assert!(
            !check.ok && check.detail.starts_with("cannot read the pin"),
            "{check:?}"
        );
    }

    #[test]
    fn built_runs_are_reported_as_built_from_source() {
        let registry = pinned_registry();
        let image_id = format!("sha256:{}", "cd".repeat(32));
        let check = pin_verdict(registry.path(), &image_id, None);
        assert!(check.ok, "{check:?}");
        assert_eq!(
            check.detail,
            format!("built from source (image ID {image_id}); no pin applies")
        );
    }
}
