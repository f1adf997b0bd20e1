//! Applying a plan: ready transitions run concurrently, each through
//! [`Engine::run`](proctor_engine::Engine::run), which does every per-run check and the
//! ledger record (start, reservation, lease, settle).
//!
//! For each transition, in admission order once everything it runs after succeeded or was
//! skipped: its `$from` references resolve to the upstream outputs' bytes (read from the
//! World and checked against the upstream outputs index), or with `"as": "artifact"` to
//! their `$artifact` objects (which the engine checks against the World before the run),
//! and its attachments are stored in the World and their `$attach` references resolved
//! ([`Engine::store_attachments`]) → its identity is computed → an
//! earlier execution (or memo hit) with that identity that still verifies makes it
//! `skipped` (`transition.skipped`) → its admission predicates (a false one: not started,
//! `ERR_PREDICATE`) → `Engine::run` → its success predicates after a success envelope (a
//! false one: failed, evidence kept) → `transition.run`. Every predicate evaluation is a
//! `predicate.check` event; the plan's invariants are checked before the first transition
//! and after every one, and one that flips from true to false is `predicate.regressed` and
//! a failure. `on_failure: stop` admits nothing after a failure (running transitions
//! finish); `continue` runs everything not downstream of one. Cancellation admits nothing
//! more and cancels running executions, which clean up as single runs do.
//!
//! **Identity.** A transition's identity is the content id of the canonical JSON of its id,
//! processor ref, mode, adapter, image source (pinned or built), write prefix template, the
//! inputs hash of its resolved inputs and, for every reference, its text and the resolved
//! output's `cid`. The upstream execution ids and world paths are recorded
//! (`transition.run`, and the run's payload and receipt as `upstream`) but not part of it,
//! so a downstream transition reruns only when the bytes it reads changed. A pinned
//! execution's image digest is checked by verification against the current pin.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use proctor_contract::{
    AppliedTransition, ArtifactRef, CanonError, Envelope, ErrorBody, ErrorCode, LedgerEvent,
    OutputEntry, OutputsIndex, PROPOSAL_OUTPUT, PlanAppliedEvent, PlanProposedEvent,
    PredicateCheckEvent, PredicateRegressedEvent, ProgressUnit, ResolvedReference, SelectorKind,
    TransitionRunEvent, TransitionSkippedEvent, UpstreamOutput, WorldPath, WritePrefix,
    canonical_json, cid, inputs_hash, resolve_attachments,
};
use proctor_engine::{
    AdapterKind, CancellationToken, Engine, EvidenceSources, Inputs, RunRequest, verify_execution,
};
use proctor_ledger::{ChainCache, ExecutionStatus, Ledger, NewEvent};
use proctor_store::ArtifactStore;
use serde::Serialize;
use serde_json::{Value, json};

use crate::graph::{TransitionState, admission_order};
use crate::load::{MAX_PLAN_BYTES, load_proposal};
use crate::model::{OnFailure, Plan, Transition};
use crate::predicates::{Predicate, PredicateContext};
use crate::reference::{FromRef, replace_references};

/// How a plan is applied, beyond what the plan file says.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Overrides the plan's `policy.max_parallel` (1..=64).
    pub max_parallel: Option<u32>,
    /// Build the images of local transitions from source instead of running their pinned
    /// digests; Modal transitions run their pins whatever this says (Modal runs pinned
    /// images only).
    pub build: bool,
    /// Adapter-specific options for every transition (`null` for none).
    pub adapter_options: Value,
}

/// What applying a plan did.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    /// The ledger plan key.
    pub plan: String,
    /// `cid` of the plan file.
    pub plan_cid: String,
    /// Whether every transition succeeded or was skipped.
    pub ok: bool,
    /// Each transition, in file order.
    pub transitions: Vec<TransitionReport>,
    /// The first failure, in the order failures happened.
    pub error: Option<ErrorBody>,
}

impl PlanReport {
    /// 0 when every transition succeeded or was skipped, else the first failure's exit code.
    pub fn exit_code(&self) -> i32 {
        self.error
            .as_ref()
            .map_or(0, |error| error.code.exit_code())
    }
}

/// What happened to one transition.
#[derive(Debug, Clone, Serialize)]
pub struct TransitionReport {
    /// Its id.
    pub id: String,
    /// Its processor.
    #[serde(rename = "ref")]
    pub processor_ref: String,
    /// Where it ended.
    pub state: TransitionState,
    /// The execution that ran it, or the earlier one that stands for it when skipped.
    pub execution_id: Option<String>,
    /// Why it failed or was not started.
    pub error: Option<ErrorBody>,
}

/// The transitions being applied: the plan's, then those its planners proposed, with their
/// reports and admission order.
#[derive(Default)]
struct Graph {
    transitions: Vec<Arc<Transition>>,
    reports: Vec<TransitionReport>,
    admitted: Vec<bool>,
    position: HashMap<String, usize>,
    /// Indexes in admission order.
    order: Vec<usize>,
}

/// Whether a pending transition can be admitted.
enum Readiness {
    /// Everything it runs after succeeded or was skipped.
    Ready,
    /// Something it runs after has not finished.
    Waiting,
    /// Something it runs after failed or was not started.
    Blocked,
}

impl Graph {
    /// Adds a pending transition and recomputes the admission order.
    fn add(&mut self, transition: Transition) {
        self.position
            .insert(transition.id.clone(), self.transitions.len());
        self.reports.push(TransitionReport {
            id: transition.id.clone(),
            processor_ref: transition.processor_ref.to_string(),
            state: TransitionState::Pending,
            execution_id: None,
            error: None,
        });
        self.admitted.push(false);
        self.transitions.push(Arc::new(transition));
        let edges: Vec<(String, Vec<String>)> = self
            .transitions
            .iter()
            .map(|t| (t.id.clone(), t.after.clone()))
            .collect();
        self.order = admission_order(&edges)
            .iter()
            .map(|id| self.position[id.as_str()])
            .collect();
    }

    fn readiness(&self, transition: &Transition) -> Readiness {
        let mut readiness = Readiness::Ready;
        for id in &transition.after {
            match self.reports[self.position[id.as_str()]].state {
                TransitionState::Succeeded | TransitionState::Skipped => {}
                TransitionState::Failed | TransitionState::NotStarted => return Readiness::Blocked,
                TransitionState::Pending => readiness = Readiness::Waiting,
            }
        }
        readiness
    }
}

/// A transition's finished execution, as downstream references read it.
#[derive(Debug, Clone)]
struct Done {
    execution_id: String,
    write_prefix: WritePrefix,
}

/// How one admitted transition ended.
struct Finished {
    state: TransitionState,
    done: Option<Done>,
    execution_id: Option<String>,
    error: Option<CanonError>,
    /// What a planner proposed, namespaced, to join the plan.
    proposed: Vec<Transition>,
}

impl Finished {
    fn failed(error: CanonError, execution_id: Option<String>) -> Finished {
        Finished {
            state: TransitionState::Failed,
            done: None,
            execution_id,
            error: Some(error),
            proposed: Vec::new(),
        }
    }
}

/// What every admitted transition shares.
struct Context<'a> {
    engine: &'a Engine,
    ledger: &'a Ledger,
    store: &'a dyn ArtifactStore,
    plan: &'a Plan,
    build: bool,
    adapter_options: &'a Value,
    cancel: &'a CancellationToken,
    /// Earlier `transition.run` successes of this plan: transition → (identity,
    /// execution id), newest first.
    earlier: HashMap<String, Vec<(String, String)>>,
    /// The chains verified while this plan is applied: each earlier execution checked for a
    /// skip lies on a chain verified once, not once per transition.
    chains: ChainCache,
}

/// Applies `plan` through `engine`. The engine's [`Engine::progress`] hears of the plan as
/// one task counting transitions settled (the total grows as planners propose more), with a
/// note per transition as it settles (`✓ stats succeeded (e-123)`). Fails outright only when
/// the ledger cannot be read or written before the first transition; every transition's
/// failure is in the report.
pub async fn apply(
    engine: &Engine,
    plan: &Plan,
    options: &ApplyOptions,
    cancel: &CancellationToken,
) -> Result<PlanReport, CanonError> {
    let ledger = engine.ledger().await?;
    if let Some(budget) = plan.budget_micro_usd {
        let current = ledger.plan(&plan.key).await?;
        if current.and_then(|p| p.budget_micro_usd) != Some(budget) {
            ledger.set_budget(&plan.key, Some(budget)).await?;
        }
    }
    let earlier = earlier_runs(ledger, &plan.key).await?;
    append(
        ledger,
        &plan.key,
        None,
        LedgerEvent::PlanApplied(PlanAppliedEvent {
            plan_cid: plan.cid.clone(),
            transitions: plan.transitions.iter().map(applied).collect(),
        }),
    )
    .await?;
    let cx = Context {
        engine,
        ledger,
        store: engine.store().as_ref(),
        plan,
        build: options.build,
        adapter_options: &options.adapter_options,
        cancel,
        earlier,
        chains: ChainCache::default(),
    };
    let max_parallel = options.max_parallel.unwrap_or(plan.max_parallel).max(1) as usize;
    // The plan's transitions, and those its planners propose as they succeed.
    let mut graph = Graph::default();
    for transition in &plan.transitions {
        graph.add(transition.clone());
    }
    let task = engine.progress().start(
        format!("applying plan {}", plan.key),
        ProgressUnit::Items,
        Some(graph.transitions.len() as u64),
    );
    let settled = |report: &TransitionReport| {
        task.advance(1);
        task.note(settled_line(report));
    };
    let mut done: HashMap<String, Done> = HashMap::new();
    let mut first_error: Option<ErrorBody> = None;
    let mut stopping = false;
    let (mut invariants, _) = check_invariants(&cx, None, &[]).await;
    let mut running = FuturesUnordered::new();
    loop {
        if !stopping && !cancel.is_cancelled() {
            for i in graph.order.clone() {
                if running.len() >= max_parallel {
                    break;
                }
                if graph.admitted[i] || graph.reports[i].state != TransitionState::Pending {
                    continue;
                }
                let transition = Arc::clone(&graph.transitions[i]);
                match graph.readiness(&transition) {
                    Readiness::Waiting => continue,
                    Readiness::Blocked => {
                        let report = &mut graph.reports[i];
                        report.state = TransitionState::NotStarted;
                        report.error = Some(body(&CanonError::new(
                            ErrorCode::Plan,
                            format!(
                                "transition `{}` not started: it runs after a transition that did not succeed",
                                transition.id
                            ),
                        )));
                        settled(report);
                        continue;
                    }
                    Readiness::Ready => {}
                }
                graph.admitted[i] = true;
                let upstream: HashMap<String, Done> = transition
                    .after
                    .iter()
                    .filter_map(|id| done.get(id).map(|d| (id.clone(), d.clone())))
                    .collect();
                let cx = &cx;
                running.push(async move { (i, run_transition(cx, &transition, upstream).await) });
            }
        }
        let Some((i, finished)) = running.next().await else {
            break;
        };
        let id = graph.transitions[i].id.clone();
        let report = &mut graph.reports[i];
        report.state = finished.state;
        report.execution_id = finished.execution_id;
        report.error = finished.error.as_ref().map(body);
        settled(&graph.reports[i]);
        if let Some(d) = finished.done {
            done.insert(id.clone(), d);
        }
        if !finished.proposed.is_empty() {
            for transition in finished.proposed {
                graph.add(transition);
            }
            task.set_total(graph.transitions.len() as u64);
        }
        let mut failure = finished.error;
        let (now, regressions) = check_invariants(&cx, Some(&id), &invariants).await;
        invariants = now;
        if failure.is_none()
            && let Some(regressed) = regressions.into_iter().next()
        {
            failure = Some(regressed);
        }
        if let Some(error) = &failure {
            if first_error.is_none() {
                first_error = Some(body(error));
            }
            if plan.on_failure == OnFailure::Stop {
                stopping = true;
            }
        }
    }
    let mut reports = graph.reports;
    for report in reports
        .iter_mut()
        .filter(|r| r.state == TransitionState::Pending)
    {
        report.state = TransitionState::NotStarted;
        let why = if cancel.is_cancelled() {
            CanonError::new(ErrorCode::Interrupted, "the plan was cancelled")
        } else {
            CanonError::new(
                ErrorCode::Plan,
                "not started: the plan stopped after a failure (on_failure: stop)",
            )
        };
        if cancel.is_cancelled() && first_error.is_none() {
            first_error = Some(body(&why));
        }
        report.error = Some(body(&why));
        settled(report);
    }
    Ok(PlanReport {
        plan: plan.key.clone(),
        plan_cid: plan.cid.clone(),
        ok: first_error.is_none(),
        transitions: reports,
        error: first_error,
    })
}

/// One line for a settled transition, e.g. `✓ stats succeeded (e-123)`.
fn settled_line(report: &TransitionReport) -> String {
    let mark = match report.state {
        TransitionState::Succeeded | TransitionState::Skipped => "✓",
        TransitionState::Failed => "✗",
        TransitionState::NotStarted | TransitionState::Pending => "·",
    };
    let mut line = format!("{mark} {} {}", report.id, report.state.as_str());
    if let Some(execution_id) = &report.execution_id {
        line.push_str(&format!(" ({execution_id})"));
    }
    if let Some(error) = &report.error {
        line.push_str(&format!(": {}", error.message));
    }
    line
}

fn body(error: &CanonError) -> ErrorBody {
    ErrorBody {
        code: error.code(),
        message: error.message(),
    }
}

async fn append(
    ledger: &Ledger,
    plan: &str,
    execution_id: Option<&str>,
    event: LedgerEvent,
) -> Result<(), CanonError> {
    let event = NewEvent::new(execution_id, event)?;
    ledger.append(plan, &event).await?;
    Ok(())
}

/// Every successful `transition.run` on `plan`'s chain: transition → (identity, execution
/// id), newest first.
async fn earlier_runs(
    ledger: &Ledger,
    plan: &str,
) -> Result<HashMap<String, Vec<(String, String)>>, CanonError> {
    const PAGE: u32 = 1000;
    let mut runs: HashMap<String, Vec<(String, String)>> = HashMap::new();
    let mut after = 0;
    loop {
        let events = ledger.events(plan, after, PAGE).await?;
        let Some(last) = events.last() else {
            break;
        };
        after = last.seq;
        for event in &events {
            if let Ok(LedgerEvent::TransitionRun(run)) = event.ledger_event()
                && run.error.is_none()
                && let Some(execution_id) = &event.execution_id
            {
                runs.entry(run.transition)
                    .or_default()
                    .insert(0, (run.identity, execution_id.clone()));
            }
        }
    }
    Ok(runs)
}

/// Checks the plan's invariants; with `after` (the transition just settled), those that
/// held in `before` and no longer do are recorded as `predicate.regressed` and returned as
/// `ERR_PREDICATE`. Gives each invariant's verdict (an evaluation error counts as false).
async fn check_invariants(
    cx: &Context<'_>,
    after: Option<&str>,
    before: &[bool],
) -> (Vec<bool>, Vec<CanonError>) {
    let mut holds = Vec::with_capacity(cx.plan.invariants.len());
    let mut regressed = Vec::new();
    for (i, predicate) in cx.plan.invariants.iter().enumerate() {
        let context = PredicateContext {
            store: cx.store,
            ledger: cx.ledger,
            plan: &cx.plan.key,
            outputs: None,
            reserve_micro_usd: 0,
            write_prefix: None,
        };
        let scope = match after {
            Some(transition) => format!("invariant after `{transition}`"),
            None => "invariant".to_owned(),
        };
        let (held, detail) = evaluate(cx, predicate, &context, None, &scope).await;
        if let Some(transition) = after
            && before.get(i).copied().unwrap_or(false)
            && !held
        {
            let id = predicate.spec().id.clone();
            let recorded = append(
                cx.ledger,
                &cx.plan.key,
                None,
                LedgerEvent::PredicateRegressed(PredicateRegressedEvent {
                    predicate: id.clone(),
                    after_transition: transition.to_owned(),
                    detail: detail.clone(),
                }),
            )
            .await;
            regressed.push(recorded.err().unwrap_or_else(|| {
                CanonError::new(
                    ErrorCode::Predicate,
                    format!("invariant `{id}` no longer holds after `{transition}`: {detail}"),
                )
            }));
        }
        holds.push(held);
    }
    (holds, regressed)
}

/// Evaluates `predicate` and records a `predicate.check` (its detail prefixed with the
/// scope and the transition, e.g. ``admission of `stats`: …``); an evaluation error is a
/// false verdict naming the error.
async fn evaluate(
    cx: &Context<'_>,
    predicate: &Predicate,
    context: &PredicateContext<'_>,
    execution_id: Option<&str>,
    scope: &str,
) -> (bool, String) {
    let (holds, detail) = match predicate.evaluate(context).await {
        Ok(verdict) => (verdict.holds, verdict.detail),
        Err(error) => (false, error.to_string()),
    };
    let recorded = append(
        cx.ledger,
        &cx.plan.key,
        execution_id,
        LedgerEvent::PredicateCheck(PredicateCheckEvent {
            predicate: predicate.spec().id.clone(),
            passed: holds,
            detail: format!("{scope}: {detail}"),
        }),
    )
    .await;
    match recorded {
        Ok(()) => (holds, detail),
        Err(error) => (false, format!("recording the check failed: {error}")),
    }
}

/// Resolves, skips or admits and runs one transition.
async fn run_transition(
    cx: &Context<'_>,
    transition: &Transition,
    upstream: HashMap<String, Done>,
) -> Finished {
    let max_bytes = cx.engine.config().limits.max_inputs_bytes;
    let (inputs, resolved) = match resolve(cx.store, transition, &upstream, max_bytes).await {
        Ok(resolved) => resolved,
        Err(error) => return Finished::failed(error, None),
    };
    let inputs = match cx.engine.store_attachments(&transition.attachments).await {
        Ok(attached) => match resolve_attachments(&inputs, &attached) {
            Ok(inputs) => inputs,
            Err(error) => return Finished::failed(error, None),
        },
        Err(error) => return Finished::failed(error, None),
    };
    let build = cx.build && transition.adapter == AdapterKind::Local;
    let identity = identity(transition, &inputs, &resolved, build);
    let resolved: Vec<ResolvedReference> = resolved.into_iter().map(|(_, r)| r).collect();
    match reusable(cx, transition, &identity).await {
        Ok(Some(done)) => return done,
        Ok(None) => {}
        Err(error) => return Finished::failed(error, None),
    }
    let selector = prefix_selector(&transition.write_prefix);
    for predicate in &transition.admission {
        let context = PredicateContext {
            store: cx.store,
            ledger: cx.ledger,
            plan: &cx.plan.key,
            outputs: None,
            reserve_micro_usd: transition.reserve_micro_usd,
            write_prefix: selector.as_ref(),
        };
        let scope = format!("admission of `{}`", transition.id);
        let (holds, detail) = evaluate(cx, predicate, &context, None, &scope).await;
        if !holds {
            let refused = CanonError::new(
                ErrorCode::Predicate,
                format!(
                    "admission `{}` of transition `{}`: {detail}",
                    predicate.spec().id,
                    transition.id
                ),
            );
            let recorded = append(
                cx.ledger,
                &cx.plan.key,
                None,
                LedgerEvent::TransitionRun(TransitionRunEvent {
                    transition: transition.id.clone(),
                    identity,
                    resolved,
                    error: Some(body(&refused)),
                }),
            )
            .await;
            return Finished::failed(recorded.err().unwrap_or(refused), None);
        }
    }
    let request = RunRequest {
        processor_ref: transition.processor_ref.to_string(),
        adapter: transition.adapter,
        mode: transition.mode,
        build,
        write_prefix: Some(transition.write_prefix.clone()),
        inputs: Inputs::Value(inputs),
        params: Default::default(),
        adapter_options: cx.adapter_options.clone(),
        timeout: transition.timeout,
        save_dir: None,
        plan: cx.plan.key.clone(),
        reserve_micro_usd: transition.reserve_micro_usd,
        lane: None,
        upstream: resolved
            .iter()
            .map(|reference| UpstreamOutput {
                execution_id: reference.execution_id.clone(),
                path: reference.path.clone(),
                cid: reference.cid.clone(),
            })
            .collect(),
        // Stored and resolved above, so that the identity covers their content ids.
        attachments: Vec::new(),
        memo: transition.memo,
    };
    let outcome = cx.engine.run(&request, cx.cancel).await;
    let (execution_id, result) = match &outcome.envelope {
        Envelope::Success(success) => {
            let execution_id = success.execution_id.clone();
            let checked = match written_prefix(&success.index_path) {
                Ok(prefix) => match check_success(cx, transition, &execution_id, &prefix).await {
                    Ok(()) => {
                        // A memo hit's outputs are its source's: downstream references
                        // name the execution that produced them.
                        let done = Done {
                            execution_id: success
                                .memo_source
                                .clone()
                                .unwrap_or_else(|| execution_id.clone()),
                            write_prefix: prefix,
                        };
                        propose(cx, transition, &done).await.map(|p| (done, p))
                    }
                    Err(error) => Err(error),
                },
                Err(error) => Err(error),
            };
            (execution_id, checked)
        }
        Envelope::Error(error) => (
            error.execution_id.clone(),
            Err(error.error.to_canon_error()),
        ),
    };
    let recorded = append(
        cx.ledger,
        &cx.plan.key,
        Some(&execution_id),
        LedgerEvent::TransitionRun(TransitionRunEvent {
            transition: transition.id.clone(),
            identity,
            resolved,
            error: result.as_ref().err().map(body),
        }),
    )
    .await;
    match (result, recorded) {
        (Ok((done, proposed)), Ok(())) => Finished {
            state: TransitionState::Succeeded,
            done: Some(done),
            execution_id: Some(execution_id),
            error: None,
            proposed,
        },
        (Err(error), _) | (Ok(_), Err(error)) => Finished::failed(error, Some(execution_id)),
    }
}

/// A planner's proposal, read from its committed outputs (checked against its outputs
/// index), validated like a plan file, within the plan's remaining budget, namespaced under
/// the planner's id and recorded as `plan.proposed`; nothing for other processors.
async fn propose(
    cx: &Context<'_>,
    transition: &Transition,
    done: &Done,
) -> Result<Vec<Transition>, CanonError> {
    if !transition.planner {
        return Ok(Vec::new());
    }
    let refused = |detail: String| {
        CanonError::new(
            ErrorCode::Proposal,
            format!("proposal of `{}`: {detail}", transition.id),
        )
    };
    let reference = FromRef {
        transition: transition.id.clone(),
        path: PROPOSAL_OUTPUT.to_owned(),
        as_artifact: false,
    };
    let (text, output) = read_output(cx.store, &reference, done, MAX_PLAN_BYTES as u64)
        .await
        .map_err(|error| refused(error.message()))?;
    let proposed = load_proposal(text.as_bytes(), &transition.id, cx.plan, cx.engine.config())?;
    let reserved: u64 = proposed.iter().map(|t| t.reserve_micro_usd).sum();
    let available = cx
        .ledger
        .plan(&cx.plan.key)
        .await?
        .and_then(|plan| plan.available_micro_usd());
    if let Some(available) = available
        && reserved > available
    {
        return Err(refused(format!(
            "its transitions reserve {reserved} micro-USD, the plan has {available} left"
        )));
    }
    append(
        cx.ledger,
        &cx.plan.key,
        Some(&done.execution_id),
        LedgerEvent::PlanProposed(PlanProposedEvent {
            planner: transition.id.clone(),
            proposal_cid: output.cid,
            transitions: proposed.iter().map(applied).collect(),
        }),
    )
    .await?;
    Ok(proposed)
}

/// A transition as `plan.applied` and `plan.proposed` record it.
fn applied(transition: &Transition) -> AppliedTransition {
    AppliedTransition {
        id: transition.id.clone(),
        processor_ref: transition.processor_ref.to_string(),
        after: transition.after.clone(),
    }
}

/// Runs the success predicates of `transition` against its committed outputs.
async fn check_success(
    cx: &Context<'_>,
    transition: &Transition,
    execution_id: &str,
    prefix: &WritePrefix,
) -> Result<(), CanonError> {
    let outputs = format!("{}outputs", prefix.as_str());
    let scope = format!("success of `{}`", transition.id);
    for predicate in &transition.success {
        let context = PredicateContext {
            store: cx.store,
            ledger: cx.ledger,
            plan: &cx.plan.key,
            outputs: Some(&outputs),
            reserve_micro_usd: transition.reserve_micro_usd,
            write_prefix: Some(prefix.path()),
        };
        let (holds, detail) = evaluate(cx, predicate, &context, Some(execution_id), &scope).await;
        if !holds {
            return Err(CanonError::new(
                ErrorCode::Predicate,
                format!(
                    "success `{}` of transition `{}`: {detail}",
                    predicate.spec().id,
                    transition.id
                ),
            ));
        }
    }
    Ok(())
}

/// The write prefix an index path lies under (`{prefix}outputs.json`).
fn written_prefix(index_path: &WorldPath) -> Result<WritePrefix, CanonError> {
    let prefix = index_path
        .as_str()
        .strip_suffix("outputs.json")
        .ok_or_else(|| {
            CanonError::new(
                ErrorCode::Envelope,
                format!("index path `{index_path}` does not end in outputs.json"),
            )
        })?;
    WritePrefix::from_expanded(prefix)
}

/// The part of a write prefix template before `{execution_id}`, as a prefix selector: what
/// every execution of the transition writes under.
fn prefix_selector(template: &str) -> Option<WorldPath> {
    let head = &template[..template.find(proctor_contract::EXECUTION_ID_PLACEHOLDER)?];
    let head = &head[..=head.rfind('/')?];
    WorldPath::parse_kind(head, SelectorKind::Prefix).ok()
}

/// The transition's inputs with every reference replaced by the upstream output's text (or
/// its `$artifact` object), and the references as resolved (each once, in document order).
async fn resolve(
    store: &dyn ArtifactStore,
    transition: &Transition,
    upstream: &HashMap<String, Done>,
    max_bytes: u64,
) -> Result<(Value, Vec<(FromRef, ResolvedReference)>), CanonError> {
    let mut texts: BTreeMap<FromRef, Value> = BTreeMap::new();
    let mut resolved = Vec::new();
    for reference in &transition.references {
        if texts.contains_key(reference) {
            continue;
        }
        let done = upstream.get(&reference.transition).ok_or_else(|| {
            CanonError::new(
                ErrorCode::Internal,
                format!("`{reference}`: its transition has not finished"),
            )
        })?;
        let (value, output) = if reference.as_artifact {
            let (artifact, output) = output_artifact(store, reference, done).await?;
            (artifact.to_value(), output)
        } else {
            let (text, output) = read_output(store, reference, done, max_bytes).await?;
            (Value::from(text), output)
        };
        texts.insert(reference.clone(), value);
        resolved.push((reference.clone(), output));
    }
    let inputs = replace_references(&transition.inputs, &mut |reference| {
        Ok(texts[reference].clone())
    })?;
    Ok((inputs, resolved))
}

/// The `$artifact` object of the output `reference` names, as `done`'s outputs index
/// records it; its bytes are not read here (the engine checks them before the run).
async fn output_artifact(
    store: &dyn ArtifactStore,
    reference: &FromRef,
    done: &Done,
) -> Result<(ArtifactRef, ResolvedReference), CanonError> {
    let entry = index_entry(store, reference, done).await?;
    let artifact = ArtifactRef {
        path: entry.path.clone(),
        cid: entry.cid.clone(),
        mime: entry.mime,
    };
    let resolved = ResolvedReference {
        transition: reference.transition.clone(),
        execution_id: done.execution_id.clone(),
        path: entry.path,
        cid: entry.cid,
    };
    Ok((artifact, resolved))
}

/// The entry of `done`'s outputs index for the output `reference` names.
async fn index_entry(
    store: &dyn ArtifactStore,
    reference: &FromRef,
    done: &Done,
) -> Result<OutputEntry, CanonError> {
    let index = store.get(&done.write_prefix.index_path()).await?;
    let index = OutputsIndex::from_bytes(&index)?;
    let path = done.write_prefix.output_path(&reference.path)?;
    index
        .outputs
        .into_iter()
        .find(|entry| entry.path == path)
        .ok_or_else(|| {
            CanonError::new(
                ErrorCode::Inputs,
                format!(
                    "`$from` `{reference}`: execution `{}` has no output `{path}`",
                    done.execution_id
                ),
            )
        })
}

/// Reads the output `reference` names from `done`'s committed outputs, checked against its
/// outputs index; UTF-8 text only.
async fn read_output(
    store: &dyn ArtifactStore,
    reference: &FromRef,
    done: &Done,
    max_bytes: u64,
) -> Result<(String, ResolvedReference), CanonError> {
    let entry = index_entry(store, reference, done).await?;
    let path = entry.path.clone();
    if entry.size_bytes > max_bytes {
        return Err(CanonError::new(
            ErrorCode::Inputs,
            format!(
                "`$from` `{reference}`: `{path}` is {} bytes, over the {max_bytes}-byte limit \
                 for what a transition reads",
                entry.size_bytes
            ),
        ));
    }
    let bytes = store.get(&path).await?;
    let found = cid(&bytes);
    if found != entry.cid {
        return Err(CanonError::new(
            ErrorCode::Evidence,
            format!(
                "`$from` `{reference}`: `{path}` is {found}, its outputs index says {}",
                entry.cid
            ),
        ));
    }
    let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
        CanonError::new(
            ErrorCode::Inputs,
            format!("`$from` `{reference}`: `{path}` is not UTF-8 text"),
        )
    })?;
    Ok((
        text,
        ResolvedReference {
            transition: reference.transition.clone(),
            execution_id: done.execution_id.clone(),
            path,
            cid: found,
        },
    ))
}

/// The transition's identity (see the module documentation).
fn identity(
    transition: &Transition,
    inputs: &Value,
    resolved: &[(FromRef, ResolvedReference)],
    build: bool,
) -> String {
    let references: Vec<Value> = resolved
        .iter()
        .map(|(reference, r)| json!({"from": reference.to_string(), "cid": r.cid}))
        .collect();
    let hash = inputs_hash(inputs);
    cid(canonical_json(&json!({
        "transition": transition.id,
        "ref": transition.processor_ref.to_string(),
        "mode": transition.mode,
        "adapter": transition.adapter.as_str(),
        "image": if build { "build" } else { "pinned" },
        "write_prefix": transition.write_prefix,
        "inputs_hash": {"hash_schema": hash.hash_schema, "value": hash.value},
        "resolved": references,
    }))
    .as_bytes())
}

/// The outputs an earlier run recorded on this plan stands for: those of an execution
/// that succeeded here, or, for a memo hit recorded here, those of its source (a hit's
/// verification verifies its source); `None` for anything else.
async fn standing_outputs(
    cx: &Context<'_>,
    execution_id: &str,
) -> Result<Option<Done>, CanonError> {
    if let Some(execution) = cx.ledger.execution(execution_id).await? {
        if execution.status != ExecutionStatus::Success || execution.plan != cx.plan.key {
            return Ok(None);
        }
        return Ok(Some(Done {
            execution_id: execution_id.to_owned(),
            write_prefix: WritePrefix::from_expanded(&execution.write_prefix)?,
        }));
    }
    match cx.ledger.memo_hit(execution_id).await? {
        Some(hit) if hit.event.plan == cx.plan.key => Ok(Some(Done {
            write_prefix: written_prefix(&WorldPath::parse(&hit.memo.index_path)?)?,
            execution_id: hit.memo.source_execution_id,
        })),
        _ => Ok(None),
    }
}

/// The newest earlier execution of `transition` with `identity` that still verifies, as a
/// skipped transition (recorded as `transition.skipped`), or `None`.
async fn reusable(
    cx: &Context<'_>,
    transition: &Transition,
    identity: &str,
) -> Result<Option<Finished>, CanonError> {
    let Some(runs) = cx.earlier.get(&transition.id) else {
        return Ok(None);
    };
    let sources = EvidenceSources {
        store: cx.store,
        ledger: cx.ledger,
        registry_root: &cx.engine.config().registry_root,
        chains: Some(&cx.chains),
    };
    for (earlier_identity, execution_id) in runs {
        if earlier_identity != identity {
            continue;
        }
        let Some(done) = standing_outputs(cx, execution_id).await? else {
            continue;
        };
        let Ok(report) = verify_execution(&sources, execution_id).await else {
            continue;
        };
        if !report.ok {
            continue;
        }
        append(
            cx.ledger,
            &cx.plan.key,
            None,
            LedgerEvent::TransitionSkipped(TransitionSkippedEvent {
                transition: transition.id.clone(),
                identity: identity.to_owned(),
                by_execution: execution_id.clone(),
            }),
        )
        .await?;
        // A skipped planner's proposal joins the plan again, checked as at first.
        return Ok(Some(match propose(cx, transition, &done).await {
            Ok(proposed) => Finished {
                state: TransitionState::Skipped,
                done: Some(done),
                execution_id: Some(execution_id.clone()),
                error: None,
                proposed,
            },
            Err(error) => Finished::failed(error, Some(execution_id.clone())),
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use proctor_contract::OutputEntry;
    use proctor_store::FsStore;

    use super::*;

    #[test]
    fn a_settled_transition_is_one_line_with_its_mark_execution_and_error() {
        let report = |state, execution_id: Option<&str>, error: Option<&str>| TransitionReport {
            id: "stats".to_owned(),
            processor_ref: "text/stats@1".to_owned(),
            state,
            execution_id: execution_id.map(str::to_owned),
            error: error.map(|message| ErrorBody {
                code: ErrorCode::Plan,
                message: message.to_owned(),
            }),
        };
        assert_eq!(
            settled_line(&report(TransitionState::Succeeded, Some("e-1"), None)),
            "✓ stats succeeded (e-1)"
        );
        assert_eq!(
            settled_line(&report(TransitionState::Failed, Some("e-2"), Some("boom"))),
            "✗ stats failed (e-2): boom"
        );
        assert_eq!(
            settled_line(&report(
                TransitionState::NotStarted,
                None,
                Some("after a failure")
            )),
            "· stats not_started: after a failure"
        );
    }

    /// A World holding one execution `e1` under `/artifacts/p/e1/` whose index lists
    /// `outputs/a.txt` (`text`), `outputs/bin` (non-UTF-8) and `outputs/changed.txt`
    /// (listed with the CID of other bytes).
    fn world() -> (tempfile::TempDir, FsStore, Done) {
        let root = tempfile::tempdir().unwrap();
        let prefix = WritePrefix::from_expanded("/artifacts/p/e1/").unwrap();
        let files: [(&str, &[u8], &[u8]); 3] = [
            ("a.txt", b"text", b"text"),
            ("bin", b"\xff\xfe", b"\xff\xfe"),
            ("changed.txt", b"now", b"before"),
        ];
        let mut outputs = Vec::new();
        for (name, bytes, indexed) in files {
            let path = prefix.output_path(name).unwrap();
            let host = root.path().join(&path.as_str()["/artifacts/".len()..]);
            std::fs::create_dir_all(host.parent().unwrap()).unwrap();
            std::fs::write(&host, bytes).unwrap();
            outputs.push(OutputEntry {
                path,
                cid: cid(indexed),
                size_bytes: indexed.len() as u64,
                mime: "text/plain".into(),
            });
        }
        let index = OutputsIndex { outputs };
        std::fs::write(root.path().join("p/e1/outputs.json"), index.to_bytes()).unwrap();
        let store = FsStore::new(root.path());
        let done = Done {
            execution_id: "e1".into(),
            write_prefix: prefix,
        };
        (root, store, done)
    }

    fn reference(path: &str) -> FromRef {
        FromRef::parse(&format!("up:outputs/{path}")).unwrap()
    }

    #[tokio::test]
    async fn resolves_an_output_to_its_text_pinned_by_its_cid() {
        let (_root, store, done) = world();
        let (text, resolved) = read_output(&store, &reference("a.txt"), &done, 64)
            .await
            .unwrap();
        assert_eq!(text, "text");
        assert_eq!(resolved.execution_id, "e1");
        assert_eq!(resolved.path.as_str(), "/artifacts/p/e1/outputs/a.txt");
        assert_eq!(resolved.cid, cid(b"text"));
    }

    #[tokio::test]
    async fn refuses_missing_changed_and_binary_outputs() {
        let (_root, store, done) = world();
        for (path, code, fragment) in [
            ("nope.txt", ErrorCode::Inputs, "has no output"),
            ("changed.txt", ErrorCode::Evidence, "its outputs index says"),
            ("bin", ErrorCode::Inputs, "not UTF-8"),
        ] {
            let err = read_output(&store, &reference(path), &done, 64)
                .await
                .unwrap_err();
            assert_eq!(err.code(), code, "{err}");
            assert!(err.message().contains(fragment), "{err}");
        }
        let err = read_output(&store, &reference("a.txt"), &done, 3)
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::Inputs, "{err}");
        assert!(
            err.message().contains("is 4 bytes, over the 3-byte limit"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_invariant_that_stops_holding_is_recorded_as_regressed() {
        let root = tempfile::tempdir().unwrap();
        let engine = Engine::new(proctor_engine::EngineConfig {
            registry_root: root.path().join("processors"),
            artifacts_root: root.path().join("artifacts"),
            ledger_url: format!("sqlite://{}/ledger.db", root.path().display()),
            env: BTreeMap::new(),
            limits: proctor_engine::Limits::default(),
        });
        let input = root.path().join("artifacts/inputs/style.md");
        std::fs::create_dir_all(input.parent().unwrap()).unwrap();
        std::fs::write(&input, "short").unwrap();
        let spec = crate::PredicateSpec {
            id: "artifact.exists@1".into(),
            args: json!({"path": "/artifacts/inputs/style.md"}),
        };
        let plan = Plan {
            key: "inv".into(),
            cid: String::new(),
            budget_micro_usd: None,
            default_mode: None,
            default_adapter: proctor_engine::AdapterKind::Local,
            max_parallel: 1,
            on_failure: OnFailure::Stop,
            invariants: vec![Predicate::parse(&spec).unwrap()],
            transitions: Vec::new(),
        };
        let (cancel, adapter_options) = (CancellationToken::new(), Value::Null);
        let ledger = engine.ledger().await.unwrap();
        let cx = Context {
            engine: &engine,
            ledger,
            store: engine.store().as_ref(),
            plan: &plan,
            build: false,
            adapter_options: &adapter_options,
            cancel: &cancel,
            earlier: HashMap::new(),
            chains: ChainCache::default(),
        };
        let (before, regressed) = check_invariants(&cx, None, &[]).await;
        assert_eq!((before.as_slice(), regressed.len()), (&[true][..], 0));
        let (still, regressed) = check_invariants(&cx, Some("t1"), &before).await;
        assert_eq!((still.as_slice(), regressed.len()), (&[true][..], 0));
        std::fs::remove_file(&input).unwrap();
        let (now, regressed) = check_invariants(&cx, Some("t2"), &still).await;
        assert_eq!(now, [false]);
        assert_eq!(regressed[0].code(), ErrorCode::Predicate);
        assert!(
            regressed[0]
                .message()
                .contains("no longer holds after `t2`")
        );
        // A false invariant that was false before is not a regression.
        let (_, regressed) = check_invariants(&cx, Some("t3"), &now).await;
        assert!(regressed.is_empty());
        let events = ledger.events("inv", 0, 100).await.unwrap();
        let kinds: Vec<_> = events.iter().map(|e| e.kind_name.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "predicate.check",
                "predicate.check",
                "predicate.check",
                "predicate.regressed",
                "predicate.check"
            ]
        );
        let Ok(LedgerEvent::PredicateRegressed(event)) = events[3].ledger_event() else {
            panic!("{:?}", events[3]);
        };
        assert_eq!(event.after_transition, "t2");
        let chain = ledger.verify_chain("inv").await.unwrap();
        assert!(chain.broken.is_none() && chain.mismatches.is_empty());
        assert_eq!(chain.verified, 5);
    }

    /// A planner `map` whose committed execution `e1` proposed two `text/stats@1`
    /// transitions reserving 4 and 5 micro-USD, on a plan with `budget`.
    async fn planner_world(budget: u64) -> (tempfile::TempDir, Engine, Plan, Transition, Done) {
        let root = tempfile::tempdir().unwrap();
        let registry = root.path().join("processors/text/stats/1");
        std::fs::create_dir_all(&registry).unwrap();
        let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../processors/text/stats/1/registry.yaml");
        std::fs::copy(shipped, registry.join("registry.yaml")).unwrap();
        let proposal = br#"{"transitions": [
            {"id": "a", "ref": "text/stats@1", "reserve_micro_usd": 4, "inputs": {"schema": "v1", "text": "x"}},
            {"id": "b", "ref": "text/stats@1", "reserve_micro_usd": 5, "after": ["a"], "inputs": {"schema": "v1", "text": "y"}}
        ]}"#;
        let prefix = WritePrefix::from_expanded("/artifacts/p/e1/").unwrap();
        let path = prefix.output_path(PROPOSAL_OUTPUT).unwrap();
        let host = root
            .path()
            .join("artifacts")
            .join(&path.as_str()["/artifacts/".len()..]);
        std::fs::create_dir_all(host.parent().unwrap()).unwrap();
        std::fs::write(&host, proposal).unwrap();
        let index = OutputsIndex {
            outputs: vec![OutputEntry {
                path,
                cid: cid(proposal),
                size_bytes: proposal.len() as u64,
                mime: "application/json".into(),
            }],
        };
        std::fs::write(
            root.path().join("artifacts/p/e1/outputs.json"),
            index.to_bytes(),
        )
        .unwrap();
        let engine = Engine::new(proctor_engine::EngineConfig {
            registry_root: root.path().join("processors"),
            artifacts_root: root.path().join("artifacts"),
            ledger_url: format!("sqlite://{}/ledger.db", root.path().display()),
            env: BTreeMap::new(),
            limits: proctor_engine::Limits::default(),
        });
        let ledger = engine.ledger().await.unwrap();
        ledger.set_budget("p", Some(budget)).await.unwrap();
        let plan = Plan {
            key: "p".into(),
            cid: String::new(),
            budget_micro_usd: Some(budget),
            default_mode: Some(proctor_contract::Mode::Mock),
            default_adapter: proctor_engine::AdapterKind::Local,
            max_parallel: 1,
            on_failure: OnFailure::Stop,
            invariants: Vec::new(),
            transitions: Vec::new(),
        };
        let planner = Transition {
            id: "map".into(),
            processor_ref: "plan/map@1".parse().unwrap(),
            mode: proctor_contract::Mode::Mock,
            adapter: proctor_engine::AdapterKind::Local,
            inputs: json!({}),
            after: Vec::new(),
            references: Vec::new(),
            attachments: Vec::new(),
            reserve_micro_usd: 0,
            write_prefix: "/artifacts/p/{execution_id}/".into(),
            timeout: None,
            admission: Vec::new(),
            success: Vec::new(),
            planner: true,
            memo: false,
        };
        let done = Done {
            execution_id: "e1".into(),
            write_prefix: prefix,
        };
        (root, engine, plan, planner, done)
    }

    async fn proposed(budget: u64) -> (Result<Vec<Transition>, CanonError>, Vec<String>) {
        let (_root, engine, plan, planner, done) = planner_world(budget).await;
        let (cancel, adapter_options) = (CancellationToken::new(), Value::Null);
        let ledger = engine.ledger().await.unwrap();
        let cx = Context {
            engine: &engine,
            ledger,
            store: engine.store().as_ref(),
            plan: &plan,
            build: false,
            adapter_options: &adapter_options,
            cancel: &cancel,
            earlier: HashMap::new(),
            chains: ChainCache::default(),
        };
        let result = propose(&cx, &planner, &done).await;
        let kinds = ledger
            .events("p", 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind_name)
            .collect();
        (result, kinds)
    }

    #[tokio::test]
    async fn a_proposal_within_budget_joins_the_plan_namespaced() {
        let (result, kinds) = proposed(9).await;
        let admitted = result.unwrap();
        let ids: Vec<&str> = admitted.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["map/a", "map/b"]);
        assert_eq!(admitted[1].after, ["map/a"]);
        assert_eq!(kinds, ["budget.set", "plan.proposed"]);
    }

    #[tokio::test]
    async fn a_proposal_over_budget_admits_nothing() {
        let (result, kinds) = proposed(8).await;
        let err = result.unwrap_err();
        assert_eq!(err.code(), ErrorCode::Proposal, "{err}");
        assert!(
            err.message()
                .contains("reserve 9 micro-USD, the plan has 8 left"),
            "{err}"
        );
        assert_eq!(kinds, ["budget.set"], "nothing proposed");
    }

    #[test]
    fn a_prefix_selector_is_the_template_before_the_execution_id() {
        let selector = prefix_selector("/artifacts/plans/p/t/{execution_id}/").unwrap();
        assert_eq!(selector.as_str(), "/artifacts/plans/p/t/");
        assert_eq!(selector.kind(), SelectorKind::Prefix);
        assert_eq!(prefix_selector("/artifacts/x/"), None);
    }
}
