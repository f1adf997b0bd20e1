//! A plan's state as its ledger chain tells it, for `plan status` and `plan graph`: the graph
//! of the last `plan.applied` with the transitions its planners proposed (`plan.proposed`),
//! and each transition's last `transition.run` or `transition.skipped` after it.

use std::collections::BTreeMap;

use proctor_contract::{CanonError, ErrorBody, ErrorCode, LedgerEvent};
use proctor_ledger::Ledger;
use serde::Serialize;

use crate::graph::{GraphFormat, TransitionState, render};

/// A plan's last application.
#[derive(Debug, Clone, Serialize)]
pub struct PlanStatus {
    /// The ledger plan key.
    pub plan: String,
    /// `cid` of the plan file last applied.
    pub plan_cid: String,
    /// Each transition of that file, in file order.
    pub transitions: Vec<TransitionStatus>,
}

/// One transition's last recorded state.
#[derive(Debug, Clone, Serialize)]
pub struct TransitionStatus {
    /// Its id.
    pub id: String,
    /// Its processor.
    #[serde(rename = "ref")]
    pub processor_ref: String,
    /// What it runs after.
    pub after: Vec<String>,
    /// `succeeded`, `failed` or `skipped` as last recorded; `pending` when the last apply
    /// recorded no run of it (not started, or still running).
    pub state: TransitionState,
    /// The execution that ran it or stands for it.
    pub execution_id: Option<String>,
    /// Why it failed.
    pub error: Option<ErrorBody>,
}

impl PlanStatus {
    /// The graph with each transition's state.
    pub fn render(&self, format: GraphFormat) -> String {
        let edges: Vec<(String, Vec<String>)> = self
            .transitions
            .iter()
            .map(|t| (t.id.clone(), t.after.clone()))
            .collect();
        let states: BTreeMap<String, TransitionState> = self
            .transitions
            .iter()
            .map(|t| (t.id.clone(), t.state))
            .collect();
        render(&edges, &states, format)
    }
}

/// The status of `plan`'s last application; `ERR_PLAN` when it was never applied.
pub async fn status(ledger: &Ledger, plan: &str) -> Result<PlanStatus, CanonError> {
    const PAGE: u32 = 1000;
    let mut status: Option<PlanStatus> = None;
    let mut after = 0;
    loop {
        let events = ledger.events(plan, after, PAGE).await?;
        let Some(last) = events.last() else {
            break;
        };
        after = last.seq;
        for event in &events {
            let Ok(payload) = event.ledger_event() else {
                continue;
            };
            match payload {
                LedgerEvent::PlanApplied(applied) => {
                    status = Some(PlanStatus {
                        plan: plan.to_owned(),
                        plan_cid: applied.plan_cid,
                        transitions: applied
                            .transitions
                            .into_iter()
                            .map(|t| TransitionStatus {
                                id: t.id,
                                processor_ref: t.processor_ref,
                                after: t.after,
                                state: TransitionState::Pending,
                                execution_id: None,
                                error: None,
                            })
                            .collect(),
                    });
                }
                LedgerEvent::PlanProposed(proposed) => {
                    if let Some(status) = status.as_mut() {
                        status
                            .transitions
                            .extend(proposed.transitions.into_iter().map(|t| TransitionStatus {
                                id: t.id,
                                processor_ref: t.processor_ref,
                                after: t.after,
                                state: TransitionState::Pending,
                                execution_id: None,
                                error: None,
                            }));
                    }
                }
                LedgerEvent::TransitionRun(run) => {
                    if let Some(t) = find(&mut status, &run.transition) {
                        t.state = if run.error.is_some() {
                            TransitionState::Failed
                        } else {
                            TransitionState::Succeeded
                        };
                        t.execution_id.clone_from(&event.execution_id);
                        t.error = run.error;
                    }
                }
                LedgerEvent::TransitionSkipped(skipped) => {
                    if let Some(t) = find(&mut status, &skipped.transition) {
                        t.state = TransitionState::Skipped;
                        t.execution_id = Some(skipped.by_execution);
                        t.error = None;
                    }
                }
                _ => {}
            }
        }
    }
    status.ok_or_else(|| {
        CanonError::new(
            ErrorCode::Plan,
            format!("plan `{plan}` has never been applied"),
        )
    })
}

fn find<'a>(status: &'a mut Option<PlanStatus>, id: &str) -> Option<&'a mut TransitionStatus> {
    status.as_mut()?.transitions.iter_mut().find(|t| t.id == id)
}
