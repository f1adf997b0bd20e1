//! The plan model: the file as written ([`PlanFile`], [`TransitionSpec`]) and the plan
//! after every load-time check ([`Plan`], [`Transition`]).

use std::collections::BTreeMap;
use std::time::Duration;

use proctor_contract::{Mode, ProcessorRef};
use proctor_engine::{AdapterKind, Attachment};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::predicates::{Predicate, PredicateSpec};
use crate::reference::FromRef;

/// The write prefix of a transition that sets none; `{plan}` and `{transition}` are filled
/// in at load time, `{execution_id}` by the engine.
pub const DEFAULT_WRITE_PREFIX: &str = "/artifacts/plans/{plan}/{transition}/{execution_id}/";

/// How many transitions run at once unless the plan says otherwise.
pub const DEFAULT_MAX_PARALLEL: u32 = 4;

/// A plan file as written (after its schema check).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    /// The ledger plan key.
    pub plan: String,
    /// The plan's budget, set on the ledger's plan when it differs.
    #[serde(default)]
    pub budget_micro_usd: Option<u64>,
    /// The default mode of its transitions.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// The default adapter of its transitions (`local` when absent).
    #[serde(default)]
    pub adapter: Option<AdapterKind>,
    /// Parallelism and failure policy.
    #[serde(default)]
    pub policy: PolicySpec,
    /// Plan-level predicates re-checked after every transition.
    #[serde(default)]
    pub invariants: Vec<PredicateSpec>,
    /// The transitions.
    pub transitions: Vec<TransitionSpec>,
}

/// The policy as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// At most this many transitions run at once (1..=64).
    #[serde(default)]
    pub max_parallel: Option<u32>,
    /// What a failure does to the rest of the plan.
    #[serde(default)]
    pub on_failure: Option<OnFailure>,
}

/// What a failed transition does to the rest of the plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Admit nothing more; running transitions finish.
    #[default]
    Stop,
    /// Run everything that is not downstream of a failure.
    Continue,
}

/// A transition as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransitionSpec {
    /// Unique in the plan.
    pub id: String,
    /// The processor, `ns/name@version`.
    #[serde(rename = "ref")]
    pub processor_ref: String,
    /// Its mode; the plan's when absent.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Its adapter; the plan's when absent.
    #[serde(default)]
    pub adapter: Option<AdapterKind>,
    /// Its inputs, which may hold `$from` references and `$attach` references.
    #[serde(default = "empty_object")]
    pub inputs: Value,
    /// The files its inputs refer to as `{"$attach": NAME}`, by name: paths absolute or
    /// relative to the directory proctor runs in. Plan files only: a proposal attaches
    /// nothing.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attach: BTreeMap<String, String>,
    /// Transitions it runs after, besides those its `$from` references name.
    #[serde(default)]
    pub after: Vec<String>,
    /// The budget reserved before it runs.
    #[serde(default)]
    pub reserve_micro_usd: u64,
    /// Its write prefix template; [`DEFAULT_WRITE_PREFIX`] when absent.
    #[serde(default)]
    pub write_prefix: Option<String>,
    /// Overrides the processor's timeout.
    #[serde(default)]
    pub timeout_s: Option<u64>,
    /// Whether a verified earlier result with its memo key may answer it; by default on
    /// in `mock` and off in `real`.
    #[serde(default)]
    pub memo: Option<bool>,
    /// Its admission and success predicates.
    #[serde(default)]
    pub predicates: PredicatesSpec,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// A transition's predicates as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredicatesSpec {
    /// Checked before it starts.
    #[serde(default)]
    pub admission: Vec<PredicateSpec>,
    /// Checked after its success envelope.
    #[serde(default)]
    pub success: Vec<PredicateSpec>,
}

/// A plan that passed every load-time check.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The ledger plan key.
    pub key: String,
    /// `cid` of the plan file's bytes.
    pub cid: String,
    /// The budget to set on the ledger's plan, when the file gives one.
    pub budget_micro_usd: Option<u64>,
    /// The plan file's default mode, which proposed transitions fall back on too.
    pub default_mode: Option<Mode>,
    /// The plan file's default adapter.
    pub default_adapter: AdapterKind,
    /// At most this many transitions run at once.
    pub max_parallel: u32,
    /// What a failure does to the rest of the plan.
    pub on_failure: OnFailure,
    /// Plan-level predicates.
    pub invariants: Vec<Predicate>,
    /// The transitions, in file order.
    pub transitions: Vec<Transition>,
}

impl Plan {
    /// The transition with `id`.
    pub fn transition(&self, id: &str) -> Option<&Transition> {
        self.transitions
            .iter()
            .find(|transition| transition.id == id)
    }

    /// The graph as `(id, after)` pairs in file order.
    pub fn edges(&self) -> Vec<(String, Vec<String>)> {
        self.transitions
            .iter()
            .map(|t| (t.id.clone(), t.after.clone()))
            .collect()
    }
}

/// A transition that passed every load-time check.
#[derive(Debug, Clone)]
pub struct Transition {
    /// Its id, unique in the plan.
    pub id: String,
    /// The processor.
    pub processor_ref: ProcessorRef,
    /// Its mode.
    pub mode: Mode,
    /// Its adapter.
    pub adapter: AdapterKind,
    /// Its inputs as written, `$from` references included.
    pub inputs: Value,
    /// Every transition it runs after: `after` and those its references name, each once,
    /// in the order first named.
    pub after: Vec<String>,
    /// Its `$from` references, in document order.
    pub references: Vec<FromRef>,
    /// The files its `$attach` references name, stored in the World when it is admitted.
    pub attachments: Vec<Attachment>,
    /// The budget reserved before it runs.
    pub reserve_micro_usd: u64,
    /// Its write prefix template, `{execution_id}` still in it.
    pub write_prefix: String,
    /// Overrides the processor's timeout.
    pub timeout: Option<Duration>,
    /// Checked before it starts.
    pub admission: Vec<Predicate>,
    /// Checked after its success envelope.
    pub success: Vec<Predicate>,
    /// Whether its processor is a planner, whose proposal joins the plan after its success.
    pub planner: bool,
    /// Whether a verified earlier result with its memo key may answer it (the file's
    /// `memo`, else `true` in `mock` and `false` in `real`).
    pub memo: bool,
}
