//! The events of the ledger's hash chain: each kind's wire name and the typed fields its
//! payload carries, for the writer and for every reader.
//!
//! A stored payload is the canonical JSON of the kind's fields plus the keys the ledger
//! adds itself (`kind`, `at` and, for an execution's events, `execution_id`).
//! [`LedgerEvent::fields`] gives the fields alone and [`LedgerEvent::from_fields`] reads them
//! back; the JSON they produce is part of the chain, so a field is never renamed.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{ErrorBody, Mode, OutputEntry, SelectorKind, WorldPath};

macro_rules! ledger_events {
    ($($variant:ident($payload:ty) => ($wire:literal, $doc:literal),)*) => {
        /// What an event records. Serialized as its wire name, e.g. `execution.start`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum EventKind {
            $(
                #[doc = concat!("`", $wire, "`: ", $doc)]
                #[serde(rename = $wire)]
                $variant,
            )*
        }

        impl EventKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant),*];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self { $(EventKind::$variant => $wire,)* }
            }

            /// Parses a wire name.
            pub fn from_wire(name: &str) -> Option<EventKind> {
                match name { $($wire => Some(EventKind::$variant),)* _ => None }
            }
        }

        /// An event's typed payload, one variant per [`EventKind`].
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum LedgerEvent {
            $(
                #[doc = concat!("`", $wire, "`: ", $doc)]
                $variant($payload),
            )*
        }

        impl LedgerEvent {
            /// The kind of event this payload belongs to.
            pub fn kind(&self) -> EventKind {
                match self { $(LedgerEvent::$variant(_) => EventKind::$variant,)* }
            }

            /// The payload's fields, as the ledger hashes them (before it adds `kind`, `at`
            /// and `execution_id`).
            pub fn fields(&self) -> Result<Map<String, Value>, serde_json::Error> {
                let value = match self {
                    $(LedgerEvent::$variant(payload) => serde_json::to_value(payload)?,)*
                };
                match value {
                    Value::Object(fields) => Ok(fields),
                    other => Err(serde::de::Error::custom(format!(
                        "a ledger event payload must be a JSON object, not {other}"
                    ))),
                }
            }

            /// Reads the fields of an event of `kind` (without the keys the ledger adds).
            pub fn from_fields(
                kind: EventKind,
                fields: Map<String, Value>,
            ) -> Result<LedgerEvent, serde_json::Error> {
                let fields = Value::Object(fields);
                Ok(match kind {
                    $(EventKind::$variant => LedgerEvent::$variant(serde_json::from_value(fields)?),)*
                })
            }
        }
    };
}

ledger_events! {
    ExecutionStart(ExecutionStartEvent) => ("execution.start", "an execution was recorded before its invocation"),
    ExecutionSettleSuccess(ExecutionSuccessEvent) => ("execution.settle.success", "an execution ended with a success envelope"),
    ExecutionSettleFailure(ExecutionFailureEvent) => ("execution.settle.failure", "an execution ended with a canonical error"),
    ArtifactProduce(OutputEntry) => ("artifact.produce", "an execution produced an output"),
    BudgetSet(BudgetSetEvent) => ("budget.set", "a plan's budget was set or removed"),
    BudgetReserve(BudgetReserveEvent) => ("budget.reserve", "an amount was reserved for an execution"),
    BudgetSettle(BudgetSettleEvent) => ("budget.settle", "an execution's reservation was replaced by its actual cost"),
    PredicateCheck(PredicateCheckEvent) => ("predicate.check", "a predicate was checked against an execution"),
    LeaseAcquire(LeaseAcquireEvent) => ("lease.acquire", "an execution leased a write path"),
    LeaseRelease(LeaseReleaseEvent) => ("lease.release", "a write-path lease was released"),
    PlanApplied(PlanAppliedEvent) => ("plan.applied", "a plan file was applied"),
    TransitionRun(TransitionRunEvent) => ("transition.run", "a plan transition ran as an execution, or was refused at admission"),
    TransitionSkipped(TransitionSkippedEvent) => ("transition.skipped", "a plan transition was skipped: an earlier execution of it still verifies"),
    PredicateRegressed(PredicateRegressedEvent) => ("predicate.regressed", "a plan invariant that held no longer holds"),
    PlanProposed(PlanProposedEvent) => ("plan.proposed", "a planner's proposal was admitted into the running plan"),
    ExecutionMemo(ExecutionMemoEvent) => ("execution.memo", "a run was answered by an earlier execution's verified outputs: no processor ran"),
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `execution.start`: what the run was about to execute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionStartEvent {
    /// The processor ref, `ns/name@version`.
    #[serde(rename = "ref")]
    pub processor_ref: String,
    /// `mock` or `real`.
    pub mode: Mode,
    /// The expanded write prefix (ending in `/`).
    pub write_prefix: String,
    /// The digest a pinned run must report; absent for a run built from source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// The process that runs the execution, so a later one can tell that it died;
    /// absent in chains written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<ExecutionOwner>,
}

/// The process running an execution: which boot of which host, and which process there. A
/// pid alone is reused; with the process's start time it names one process of one boot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExecutionOwner {
    /// The host's name.
    pub hostname: String,
    /// The host's boot id (`/proc/sys/kernel/random/boot_id` on Linux).
    pub boot_id: String,
    /// The process id.
    pub pid: u32,
    /// When the process started, in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_time: u64,
}

impl ExecutionOwner {
    /// `BOOT_ID:PID:START_TIME`: names this process among every process the host ever ran,
    /// e.g. to label what it leaves behind.
    pub fn process_key(&self) -> String {
        format!("{}:{}:{}", self.boot_id, self.pid, self.start_time)
    }
}

/// `execution.settle.success`: where the outputs went and the content ids tying the files
/// to the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionSuccessEvent {
    /// The envelope's `index_path`.
    pub index_path: String,
    /// `cid` of the `outputs.json` bytes.
    pub outputs_index_cid: String,
    /// `cid` of the `receipt.json` bytes; absent when the receipt stayed with a remote
    /// adapter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_cid: Option<String>,
    /// The image digest the run reported, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// How long the run took.
    pub duration_ms: u64,
}

/// `execution.settle.failure`: the canonical error the run ended with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionFailureEvent {
    /// The error's code and message (never a secret value).
    pub error: ErrorBody,
    /// The image digest, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// How long the run took.
    pub duration_ms: u64,
}

/// `execution.memo`: a run was a memo hit. Its memo key matched an earlier successful
/// execution whose evidence still verified, and that execution's outputs answered it; no
/// processor ran, no budget was reserved and no write path leased. The event's
/// `execution_id` is the hit's own id; the hit has no execution row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionMemoEvent {
    /// The processor ref asked for, `ns/name@version`.
    #[serde(rename = "ref")]
    pub processor_ref: String,
    /// `mock` or `real`.
    pub mode: Mode,
    /// The image digest the run would have used (the pin, or the built image ID).
    pub image_digest: String,
    /// Hex BLAKE3 of the JCS inputs (`jcs-blake3-v1`), as the source's receipt records it.
    pub inputs_hash: String,
    /// The memo key both share.
    pub memo_key: String,
    /// The execution whose outputs answered the run.
    pub source_execution_id: String,
    /// The plan that records the source execution.
    pub source_plan: String,
    /// The source's outputs index, `{write_prefix}outputs.json`.
    pub index_path: String,
    /// `cid` of the source's `outputs.json` bytes, as verified for the hit.
    pub outputs_index_cid: String,
    /// `cid` of the source's `receipt.json` bytes, as verified for the hit.
    pub receipt_cid: String,
}

/// `budget.set`: a plan's budget after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetSetEvent {
    /// The budget in micro-USD; `null` when removed.
    pub budget_micro_usd: Option<u64>,
}

/// `budget.reserve`: an amount reserved for an execution, and the plan's totals after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetReserveEvent {
    /// The amount reserved.
    pub amount_micro_usd: u64,
    /// What the plan has reserved, this amount included.
    pub plan_reserved_micro_usd: u64,
    /// What the plan has spent.
    pub plan_spent_micro_usd: u64,
    /// The plan's budget; `null` when it has none.
    pub budget_micro_usd: Option<u64>,
}

/// `budget.settle`: an execution's reservation replaced by its actual cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetSettleEvent {
    /// The reservation released.
    pub released_micro_usd: u64,
    /// The actual cost.
    pub actual_micro_usd: u64,
    /// What the plan has reserved afterwards.
    pub plan_reserved_micro_usd: u64,
    /// What the plan has spent afterwards.
    pub plan_spent_micro_usd: u64,
    /// The plan's budget; `null` when it has none.
    pub budget_micro_usd: Option<u64>,
}

/// `predicate.check`: a predicate checked against an execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PredicateCheckEvent {
    /// The predicate's name.
    pub predicate: String,
    /// Whether it held.
    pub passed: bool,
    /// What was found.
    pub detail: String,
}

/// `lease.acquire`: an execution leased a write path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseAcquireEvent {
    /// The leased selector.
    pub selector: WorldPath,
    /// Exact path or prefix.
    pub selector_kind: SelectorKind,
    /// When the lease expires.
    pub expires_at: String,
    /// Its time to live.
    pub ttl_ms: u64,
    /// Whether the holder already held it (a renewal).
    pub renewed: bool,
    /// Expired leases of other executions this one replaced.
    pub taken_over: Vec<TakenOverLease>,
}

/// An expired lease taken over by a new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakenOverLease {
    /// Its selector.
    pub selector: WorldPath,
    /// The execution that held it.
    pub holder: String,
    /// When it had expired.
    pub expired_at: String,
}

/// `lease.release`: a write-path lease ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseReleaseEvent {
    /// The released selector.
    pub selector: WorldPath,
    /// Why it ended.
    pub reason: LeaseReleaseReason,
}

/// Why a lease ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseReleaseReason {
    /// Released explicitly.
    Released,
    /// Released because its guard was dropped without an explicit release.
    Dropped,
    /// Released by recovery, which settled its execution: the process running it died, or
    /// its run panicked.
    Recovered,
}

/// `plan.applied`: a plan file was validated and its transitions are about to be admitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanAppliedEvent {
    /// `cid` of the plan file's bytes.
    pub plan_cid: String,
    /// The plan's graph, in file order: what `plan status` and `plan graph` show.
    pub transitions: Vec<AppliedTransition>,
}

/// One transition of an applied plan: its id, processor and dependencies (explicit and
/// implied by `$from`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedTransition {
    /// The transition's id.
    pub id: String,
    /// The processor ref, `ns/name@version`.
    #[serde(rename = "ref")]
    pub processor_ref: String,
    /// The transitions it runs after.
    pub after: Vec<String>,
}

/// `transition.run`: a transition ran as the event's execution, with these resolved inputs,
/// and succeeded or failed, recorded once its success predicates were checked; or, without
/// an execution, it was refused at admission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionRunEvent {
    /// The transition's id in the plan.
    pub transition: String,
    /// The transition's identity: what a later apply compares to skip it.
    pub identity: String,
    /// The upstream outputs its `$from` references resolved to.
    pub resolved: Vec<ResolvedReference>,
    /// Why the transition failed: its execution's error, or a success predicate that did
    /// not hold; absent when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// One `$from` reference resolved to an upstream execution's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedReference {
    /// The upstream transition.
    pub transition: String,
    /// The upstream execution that produced the output.
    pub execution_id: String,
    /// The output's world path.
    pub path: WorldPath,
    /// The output's content id, as its execution's outputs index records it.
    pub cid: String,
}

/// `transition.skipped`: a transition was not run because an earlier execution of it, with
/// the same identity, still verifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionSkippedEvent {
    /// The transition's id in the plan.
    pub transition: String,
    /// The identity both share.
    pub identity: String,
    /// The earlier execution that stands for it.
    pub by_execution: String,
}

/// `plan.proposed`: a planner transition's proposal passed validation and its transitions
/// joined the running plan, namespaced under the planner's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanProposedEvent {
    /// The planner transition's id.
    pub planner: String,
    /// `cid` of the proposal's bytes (`plan/transitions.json`).
    pub proposal_cid: String,
    /// The admitted transitions, namespaced, with their dependencies.
    pub transitions: Vec<AppliedTransition>,
}

/// `predicate.regressed`: a plan invariant held and no longer does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PredicateRegressedEvent {
    /// The predicate's id, `name@version`.
    pub predicate: String,
    /// The transition after which it was found false.
    pub after_transition: String,
    /// What was found.
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::{ErrorCode, canonical_json};

    /// The largest integer every number in canonical JSON holds exactly.
    const MAX_EXACT: u64 = 1 << 53;

    fn path(raw: &str) -> WorldPath {
        WorldPath::parse(raw).unwrap()
    }

    /// One event of every kind, with the JSON each produced before the fields were typed.
    fn golden() -> Vec<(LedgerEvent, Value)> {
        vec![
            (
                LedgerEvent::ExecutionStart(ExecutionStartEvent {
                    processor_ref: "text/stats@1".into(),
                    mode: Mode::Mock,
                    write_prefix: "/artifacts/o/e1/".into(),
                    image_digest: Some("sha256:abc".into()),
                    owner: None,
                }),
                json!({"ref": "text/stats@1", "mode": "mock", "write_prefix": "/artifacts/o/e1/", "image_digest": "sha256:abc"}),
            ),
            (
                LedgerEvent::ExecutionStart(ExecutionStartEvent {
                    processor_ref: "text/stats@1".into(),
                    mode: Mode::Real,
                    write_prefix: "/artifacts/o/e1/".into(),
                    image_digest: None,
                    owner: Some(ExecutionOwner {
                        hostname: "build-7".into(),
                        boot_id: "5f0c".into(),
                        pid: 4242,
                        start_time: 98_765,
                    }),
                }),
                json!({"ref": "text/stats@1", "mode": "real", "write_prefix": "/artifacts/o/e1/", "owner": {"hostname": "build-7", "boot_id": "5f0c", "pid": 4242, "start_time": 98_765}}),
            ),
            (
                LedgerEvent::ExecutionSettleSuccess(ExecutionSuccessEvent {
                    index_path: "/artifacts/o/e1/outputs.json".into(),
                    outputs_index_cid: "b3:aa".into(),
                    receipt_cid: Some("b3:bb".into()),
                    image_digest: Some("sha256:abc".into()),
                    duration_ms: 12,
                }),
                json!({"index_path": "/artifacts/o/e1/outputs.json", "outputs_index_cid": "b3:aa", "receipt_cid": "b3:bb", "image_digest": "sha256:abc", "duration_ms": 12}),
            ),
            (
                LedgerEvent::ExecutionSettleSuccess(ExecutionSuccessEvent {
                    index_path: "/artifacts/o/e1/outputs.json".into(),
                    outputs_index_cid: "b3:aa".into(),
                    receipt_cid: None,
                    image_digest: None,
                    duration_ms: 0,
                }),
                json!({"index_path": "/artifacts/o/e1/outputs.json", "outputs_index_cid": "b3:aa", "duration_ms": 0}),
            ),
            (
                LedgerEvent::ExecutionSettleFailure(ExecutionFailureEvent {
                    error: ErrorBody {
                        code: ErrorCode::Timeout,
                        message: "execution timed out: after 30 s".into(),
                    },
                    image_digest: None,
                    duration_ms: 30_000,
                }),
                json!({"error": {"code": "ERR_TIMEOUT", "message": "execution timed out: after 30 s"}, "duration_ms": 30000}),
            ),
            (
                LedgerEvent::ArtifactProduce(OutputEntry {
                    path: path("/artifacts/o/e1/outputs/stats.json"),
                    cid: "b3:cc".into(),
                    size_bytes: 42,
                    mime: "application/json".into(),
                }),
                json!({"path": "/artifacts/o/e1/outputs/stats.json", "cid": "b3:cc", "size_bytes": 42, "mime": "application/json"}),
            ),
            (
                LedgerEvent::BudgetSet(BudgetSetEvent {
                    budget_micro_usd: None,
                }),
                json!({"budget_micro_usd": null}),
            ),
            (
                LedgerEvent::BudgetReserve(BudgetReserveEvent {
                    amount_micro_usd: 5,
                    plan_reserved_micro_usd: 7,
                    plan_spent_micro_usd: 1,
                    budget_micro_usd: Some(100),
                }),
                json!({"amount_micro_usd": 5, "plan_reserved_micro_usd": 7, "plan_spent_micro_usd": 1, "budget_micro_usd": 100}),
            ),
            (
                LedgerEvent::BudgetSettle(BudgetSettleEvent {
                    released_micro_usd: 5,
                    actual_micro_usd: 3,
                    plan_reserved_micro_usd: 2,
                    plan_spent_micro_usd: 4,
                    budget_micro_usd: None,
                }),
                json!({"released_micro_usd": 5, "actual_micro_usd": 3, "plan_reserved_micro_usd": 2, "plan_spent_micro_usd": 4, "budget_micro_usd": null}),
            ),
            (
                LedgerEvent::PredicateCheck(PredicateCheckEvent {
                    predicate: "nonempty".into(),
                    passed: true,
                    detail: "3 outputs".into(),
                }),
                json!({"predicate": "nonempty", "passed": true, "detail": "3 outputs"}),
            ),
            (
                LedgerEvent::LeaseAcquire(LeaseAcquireEvent {
                    selector: path("/artifacts/o/e1/"),
                    selector_kind: SelectorKind::Prefix,
                    expires_at: "2026-01-02T03:04:05.678Z".into(),
                    ttl_ms: 600_000,
                    renewed: false,
                    taken_over: vec![TakenOverLease {
                        selector: path("/artifacts/o/e0/x.json"),
                        holder: "e0".into(),
                        expired_at: "2026-01-01T00:00:00.000Z".into(),
                    }],
                }),
                json!({
                    "selector": "/artifacts/o/e1/", "selector_kind": "prefix",
                    "expires_at": "2026-01-02T03:04:05.678Z", "ttl_ms": 600000, "renewed": false,
                    "taken_over": [{"selector": "/artifacts/o/e0/x.json", "holder": "e0", "expired_at": "2026-01-01T00:00:00.000Z"}],
                }),
            ),
            (
                LedgerEvent::LeaseRelease(LeaseReleaseEvent {
                    selector: path("/artifacts/o/e1/"),
                    reason: LeaseReleaseReason::Dropped,
                }),
                json!({"selector": "/artifacts/o/e1/", "reason": "dropped"}),
            ),
            (
                LedgerEvent::PlanApplied(PlanAppliedEvent {
                    plan_cid: "b3:dd".into(),
                    transitions: vec![AppliedTransition {
                        id: "summary".into(),
                        processor_ref: "llm/litellm@1".into(),
                        after: vec!["stats".into()],
                    }],
                }),
                json!({"plan_cid": "b3:dd", "transitions": [{"id": "summary", "ref": "llm/litellm@1", "after": ["stats"]}]}),
            ),
            (
                LedgerEvent::TransitionRun(TransitionRunEvent {
                    transition: "summary".into(),
                    identity: "b3:ee".into(),
                    resolved: vec![ResolvedReference {
                        transition: "stats".into(),
                        execution_id: "e0".into(),
                        path: path("/artifacts/o/e0/outputs/normalized.txt"),
                        cid: "b3:ff".into(),
                    }],
                    error: None,
                }),
                json!({"transition": "summary", "identity": "b3:ee", "resolved": [{"transition": "stats", "execution_id": "e0", "path": "/artifacts/o/e0/outputs/normalized.txt", "cid": "b3:ff"}]}),
            ),
            (
                LedgerEvent::TransitionRun(TransitionRunEvent {
                    transition: "stats".into(),
                    identity: "b3:ee".into(),
                    resolved: vec![],
                    error: Some(ErrorBody {
                        code: ErrorCode::Predicate,
                        message: "predicate not satisfied: x".into(),
                    }),
                }),
                json!({"transition": "stats", "identity": "b3:ee", "resolved": [], "error": {"code": "ERR_PREDICATE", "message": "predicate not satisfied: x"}}),
            ),
            (
                LedgerEvent::TransitionSkipped(TransitionSkippedEvent {
                    transition: "stats".into(),
                    identity: "b3:ee".into(),
                    by_execution: "e0".into(),
                }),
                json!({"transition": "stats", "identity": "b3:ee", "by_execution": "e0"}),
            ),
            (
                LedgerEvent::PlanProposed(PlanProposedEvent {
                    planner: "map".into(),
                    proposal_cid: "b3:aa".into(),
                    transitions: vec![AppliedTransition {
                        id: "map/merge".into(),
                        processor_ref: "json/merge@1".into(),
                        after: vec!["map/chunk-0000".into()],
                    }],
                }),
                json!({"planner": "map", "proposal_cid": "b3:aa", "transitions": [{"id": "map/merge", "ref": "json/merge@1", "after": ["map/chunk-0000"]}]}),
            ),
            (
                LedgerEvent::PredicateRegressed(PredicateRegressedEvent {
                    predicate: "artifact.exists@1".into(),
                    after_transition: "stats".into(),
                    detail: "absent".into(),
                }),
                json!({"predicate": "artifact.exists@1", "after_transition": "stats", "detail": "absent"}),
            ),
            (
                LedgerEvent::ExecutionMemo(ExecutionMemoEvent {
                    processor_ref: "text/stats@1".into(),
                    mode: Mode::Mock,
                    image_digest: "sha256:abc".into(),
                    inputs_hash: "00ff".into(),
                    memo_key: "b3:0a".into(),
                    source_execution_id: "e1".into(),
                    source_plan: "default".into(),
                    index_path: "/artifacts/o/e1/outputs.json".into(),
                    outputs_index_cid: "b3:01".into(),
                    receipt_cid: "b3:02".into(),
                }),
                json!({"ref": "text/stats@1", "mode": "mock", "image_digest": "sha256:abc", "inputs_hash": "00ff", "memo_key": "b3:0a", "source_execution_id": "e1", "source_plan": "default", "index_path": "/artifacts/o/e1/outputs.json", "outputs_index_cid": "b3:01", "receipt_cid": "b3:02"}),
            ),
        ]
    }

    #[test]
    fn fields_are_the_json_every_chain_holds() {
        let mut kinds = std::collections::HashSet::new();
        for (event, expected) in golden() {
            let fields = Value::Object(event.fields().unwrap());
            assert_eq!(
                canonical_json(&fields),
                canonical_json(&expected),
                "{:?}",
                event.kind()
            );
            let Value::Object(expected) = expected else {
                unreachable!()
            };
            assert_eq!(
                LedgerEvent::from_fields(event.kind(), expected).unwrap(),
                event
            );
            kinds.insert(event.kind());
        }
        assert_eq!(kinds.len(), EventKind::ALL.len(), "every kind has a golden");
    }

    #[test]
    fn fields_of_another_kind_are_refused() {
        let fields = LedgerEvent::BudgetSet(BudgetSetEvent {
            budget_micro_usd: Some(1),
        })
        .fields()
        .unwrap();
        assert!(LedgerEvent::from_fields(EventKind::ExecutionStart, fields).is_err());
        let mut extra = Map::new();
        extra.insert("at".into(), json!("2026-01-01T00:00:00.000Z"));
        assert!(LedgerEvent::from_fields(EventKind::ArtifactProduce, extra).is_err());
    }

    #[test]
    fn kinds_round_trip_their_wire_names() {
        for &kind in EventKind::ALL {
            assert_eq!(EventKind::from_wire(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{kind}\""));
        }
        assert_eq!(EventKind::from_wire("execution.settle"), None);
    }

    proptest! {
        /// Amounts up to 2^53, which RFC 8785 numbers (IEEE doubles) hold exactly.
        #[test]
        fn budget_events_round_trip(
            amount in 0..=MAX_EXACT,
            reserved in 0..=MAX_EXACT,
            spent in 0..=MAX_EXACT,
            budget in prop::option::of(0..=MAX_EXACT),
        ) {
            let event = LedgerEvent::BudgetReserve(BudgetReserveEvent {
                amount_micro_usd: amount,
                plan_reserved_micro_usd: reserved,
                plan_spent_micro_usd: spent,
                budget_micro_usd: budget,
            });
            let text = canonical_json(&Value::Object(event.fields().unwrap()));
            let Value::Object(parsed) = serde_json::from_str(&text).unwrap() else {
                unreachable!()
            };
            prop_assert_eq!(LedgerEvent::from_fields(EventKind::BudgetReserve, parsed).unwrap(), event);
        }

        #[test]
        fn start_events_round_trip(
            processor_ref in "\\PC{0,20}",
            prefix in "\\PC{0,20}",
            digest in prop::option::of("\\PC{0,20}"),
            real in any::<bool>(),
            owner in prop::option::of(("\\PC{0,20}", "\\PC{0,20}", any::<u32>(), 0..MAX_EXACT)),
        ) {
            let event = LedgerEvent::ExecutionStart(ExecutionStartEvent {
                processor_ref,
                mode: if real { Mode::Real } else { Mode::Mock },
                write_prefix: prefix,
                image_digest: digest,
                owner: owner.map(|(hostname, boot_id, pid, start_time)| ExecutionOwner {
                    hostname,
                    boot_id,
                    pid,
                    start_time,
                }),
            });
            let text = canonical_json(&Value::Object(event.fields().unwrap()));
            let Value::Object(parsed) = serde_json::from_str(&text).unwrap() else {
                unreachable!()
            };
            prop_assert_eq!(LedgerEvent::from_fields(EventKind::ExecutionStart, parsed).unwrap(), event);
        }
    }
}
