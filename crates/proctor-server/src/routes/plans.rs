//! `GET /v1/plans`, `GET /v1/plans/{key}` and `GET /v1/plans/{key}/chain`: plans as their
//! ledger rows and chains tell them, merged with the applies this server runs.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use proctor_contract::{CanonError, ErrorCode};
use proctor_ledger::ChainReport;
use proctor_plan::{PlanReport, PlanStatus, TransitionState};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::http::ApiError;
use crate::jobs::{JobState, PlanJob};
use crate::routes::events::ledger_event_json;
use crate::routes::executions::bad_query;

/// Events of a chain page when `limit` is not given.
const DEFAULT_CHAIN_LIMIT: u32 = 500;
/// The most events one chain page holds.
const MAX_CHAIN_LIMIT: u32 = 5000;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/plans", get(list))
        .route("/v1/plans/{key}", get(detail))
        .route("/v1/plans/{key}/chain", get(chain))
}

/// Whether this server is applying the plan now.
fn is_applying(job: Option<&PlanJob>) -> bool {
    job.is_some_and(|job| matches!(job.state, JobState::Queued | JobState::Running))
}

/// `GET /v1/plans`: every ledger plan with its figures, by key.
async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let summaries = state
        .ledger
        .plan_summaries()
        .await
        .map_err(CanonError::from)?;
    let plans: Vec<Value> = summaries
        .iter()
        .map(|summary| {
            let applying = is_applying(state.jobs.plan(&summary.plan.key).as_ref());
            json!({
                "plan": summary.plan.key,
                "state": if applying { "applying" } else { "idle" },
                "head_seq": summary.plan.head_seq,
                "executions": summary.executions,
                "budget_micro_usd": summary.plan.budget_micro_usd,
                "reserved_micro_usd": summary.plan.reserved_micro_usd,
                "spent_micro_usd": summary.plan.spent_micro_usd,
                "created_at": summary.plan.created_at,
            })
        })
        .collect();
    Ok(Json(json!({ "plans": plans })))
}

fn unknown_plan(key: &str) -> ApiError {
    ApiError(CanonError::new(ErrorCode::UnknownPlan, format!("`{key}`")))
}

/// `GET /v1/plans/{key}`: the last applied graph with each transition's state, and this
/// server's apply of it.
async fn detail(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = state.jobs.plan(&key);
    let known = state.ledger.plan(&key).await.map_err(CanonError::from)?;
    if known.is_none() && job.is_none() {
        return Err(unknown_plan(&key));
    }
    // A plan that was never applied (only run under, or budgeted) has no graph.
    let status = match known {
        Some(_) => match proctor_plan::status(&state.ledger, &key).await {
            Ok(status) => Some(status),
            Err(error) if error.code() == ErrorCode::Plan => None,
            Err(error) => return Err(ApiError(error)),
        },
        None => None,
    };
    let report = job
        .as_ref()
        .filter(|job| !is_applying(Some(job)))
        .and_then(|job| job.report.as_ref());
    let mut status = status;
    if let (Some(status), Some(report)) = (status.as_mut(), report) {
        settle_pending(status, report);
    }
    let plan_state = plan_state(job.as_ref(), status.as_ref());
    let error = job
        .as_ref()
        .and_then(|job| job.error.as_ref())
        .or_else(|| report.and_then(|report| report.error.as_ref()));
    Ok(Json(json!({
        "plan": key,
        "plan_cid": status
            .as_ref()
            .map(|status| status.plan_cid.as_str())
            .or(job.as_ref().map(|job| job.plan_cid.as_str())),
        "state": plan_state,
        "transitions": status.as_ref().map(|status| &status.transitions).into_iter().flatten().collect::<Vec<_>>(),
        "report": report,
        "error": error,
    })))
}

/// A transition the chain shows `pending` (no run recorded) after this server's apply of
/// the same file ended was never admitted: it takes the state the apply's report gives it
/// (`not_started`, or `failed` when refused at admission).
fn settle_pending(status: &mut PlanStatus, report: &PlanReport) {
    if report.plan_cid != status.plan_cid {
        return;
    }
    for transition in &mut status.transitions {
        if transition.state != TransitionState::Pending {
            continue;
        }
        if let Some(ended) = report.transitions.iter().find(|t| t.id == transition.id) {
            transition.state = ended.state;
            transition.execution_id.clone_from(&ended.execution_id);
            transition.error.clone_from(&ended.error);
        }
    }
}

/// `applying` while this server applies it; else how this server's last apply ended; else
/// what the chain's last apply recorded (`idle` when it recorded no end).
fn plan_state(job: Option<&PlanJob>, status: Option<&PlanStatus>) -> &'static str {
    if is_applying(job) {
        return "applying";
    }
    if let Some(job) = job {
        return match job.state {
            JobState::Succeeded => "succeeded",
            _ => "failed",
        };
    }
    let Some(status) = status else {
        return "idle";
    };
    let states = || status.transitions.iter().map(|t| t.state);
    if states().any(|s| matches!(s, TransitionState::Failed | TransitionState::NotStarted)) {
        "failed"
    } else if !status.transitions.is_empty()
        && states().all(|s| matches!(s, TransitionState::Succeeded | TransitionState::Skipped))
    {
        "succeeded"
    } else {
        "idle"
    }
}

/// The query of `GET /v1/plans/{key}/chain`.
#[derive(Debug, Default, Deserialize)]
struct ChainParams {
    after: Option<u64>,
    limit: Option<u32>,
}

/// `GET /v1/plans/{key}/chain`: a page of the plan's events and the verification of its
/// whole chain.
async fn chain(
    State(state): State<AppState>,
    Path(key): Path<String>,
    params: Result<Query<ChainParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params.map_err(|rejection| bad_query(&rejection))?;
    let limit = params.limit.unwrap_or(DEFAULT_CHAIN_LIMIT);
    if limit == 0 || limit > MAX_CHAIN_LIMIT {
        return Err(ApiError(CanonError::new(
            ErrorCode::Inputs,
            format!("`limit` must be 1 to {MAX_CHAIN_LIMIT}: {limit}"),
        )));
    }
    if state
        .ledger
        .plan(&key)
        .await
        .map_err(CanonError::from)?
        .is_none()
    {
        return Err(unknown_plan(&key));
    }
    let events = state
        .ledger
        .events(&key, params.after.unwrap_or(0), limit)
        .await
        .map_err(CanonError::from)?;
    let report = state
        .ledger
        .verify_chain(&key)
        .await
        .map_err(CanonError::from)?;
    Ok(Json(json!({
        "plan": key,
        "events": events.iter().map(ledger_event_json).collect::<Vec<_>>(),
        "verification": chain_json(&report),
    })))
}

/// A chain's verification as the API shows it: `ok`, its length and head, the break (if
/// any) and the table rows that disagree with it, and the error `ledger verify` reports.
pub(crate) fn chain_json(report: &ChainReport) -> Value {
    json!({
        "ok": report.is_valid(),
        "length": report.head_seq,
        "verified": report.verified,
        "head_seq": report.head_seq,
        "head_hash": report.head_hash,
        "breaks": report.broken.iter().collect::<Vec<_>>(),
        "mismatches": report.mismatches,
        "error": report.to_error().map(|error| json!({
            "code": error.code().as_str(),
            "message": error.message(),
        })),
    })
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use proctor_contract::{AppliedTransition, LedgerEvent, PlanAppliedEvent, TransitionRunEvent};
    use proctor_ledger::NewEvent;
    use proctor_plan::{TransitionReport, TransitionStatus};

    use super::*;
    use crate::routes::test_support::TestServer;

    /// `demo`: a plan applied with `a` and `b` after it, and `a` recorded as run by `e1`.
    async fn apply_demo(server: &TestServer) {
        let transition = |id: &str, after: &[&str]| AppliedTransition {
            id: id.to_owned(),
            processor_ref: "text/stats@1".to_owned(),
            after: after.iter().map(|a| (*a).to_owned()).collect(),
        };
        let applied = NewEvent::new(
            None,
            LedgerEvent::PlanApplied(PlanAppliedEvent {
                plan_cid: "b3:plan".to_owned(),
                transitions: vec![transition("a", &[]), transition("b", &["a"])],
            }),
        )
        .unwrap();
        let ran = NewEvent::new(
            Some("e1"),
            LedgerEvent::TransitionRun(TransitionRunEvent {
                transition: "a".to_owned(),
                identity: "id-a".to_owned(),
                resolved: Vec::new(),
                error: None,
            }),
        )
        .unwrap();
        server
            .ledger()
            .append_batch("demo", &[applied, ran])
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn plans_show_their_graph_states_and_figures() {
        let server = TestServer::new().await;
        apply_demo(&server).await;
        server
            .ledger()
            .set_budget("budgeted", Some(5_000))
            .await
            .unwrap();

        let (status, body) = server.get_json("/v1/plans").await;
        assert_eq!(status, StatusCode::OK);
        let plans = body["plans"].as_array().unwrap();
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[0]["plan"], "budgeted");
        assert_eq!(plans[0]["budget_micro_usd"], 5_000);
        assert_eq!(plans[1]["plan"], "demo");
        assert_eq!(plans[1]["state"], "idle");
        assert_eq!(plans[1]["head_seq"], 2);
        assert_eq!(plans[1]["executions"], 0);
        assert_eq!(plans[1]["budget_micro_usd"], serde_json::Value::Null);

        let (status, demo) = server.get_json("/v1/plans/demo").await;
        assert_eq!(status, StatusCode::OK, "{demo}");
        assert_eq!(demo["plan_cid"], "b3:plan");
        assert_eq!(demo["state"], "idle");
        let transitions = demo["transitions"].as_array().unwrap();
        assert_eq!(transitions[0]["id"], "a");
        assert_eq!(transitions[0]["state"], "succeeded");
        assert_eq!(transitions[0]["execution_id"], "e1");
        assert_eq!(transitions[1]["after"], serde_json::json!(["a"]));
        assert_eq!(transitions[1]["state"], "pending");

        let (status, budgeted) = server.get_json("/v1/plans/budgeted").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(budgeted["transitions"], serde_json::json!([]));
        assert_eq!(budgeted["plan_cid"], serde_json::Value::Null);
        assert_eq!(budgeted["state"], "idle");
    }

    #[test]
    fn transitions_never_admitted_take_the_ended_applys_states() {
        let pending = |id: &str| TransitionStatus {
            id: id.to_owned(),
            processor_ref: "text/stats@1".to_owned(),
            after: Vec::new(),
            state: TransitionState::Pending,
            execution_id: None,
            error: None,
        };
        let mut status = PlanStatus {
            plan: "demo".to_owned(),
            plan_cid: "b3:plan".to_owned(),
            transitions: vec![
                TransitionStatus {
                    state: TransitionState::Failed,
                    execution_id: Some("e1".to_owned()),
                    ..pending("a")
                },
                pending("b"),
            ],
        };
        let ended = |id: &str, state| TransitionReport {
            id: id.to_owned(),
            processor_ref: "text/stats@1".to_owned(),
            state,
            execution_id: None,
            error: None,
        };
        let mut report = PlanReport {
            plan: "demo".to_owned(),
            plan_cid: "b3:other".to_owned(),
            ok: false,
            transitions: vec![
                ended("a", TransitionState::Failed),
                ended("b", TransitionState::NotStarted),
            ],
            error: None,
        };
        // Another file's report says nothing of this graph.
        settle_pending(&mut status, &report);
        assert_eq!(status.transitions[1].state, TransitionState::Pending);
        report.plan_cid = "b3:plan".to_owned();
        settle_pending(&mut status, &report);
        assert_eq!(status.transitions[1].state, TransitionState::NotStarted);
        assert_eq!(status.transitions[0].execution_id.as_deref(), Some("e1"));
        assert_eq!(plan_state(None, Some(&status)), "failed");
    }

    #[tokio::test]
    async fn a_chain_is_paged_and_verified() {
        let server = TestServer::new().await;
        apply_demo(&server).await;
        let (status, chain) = server.get_json("/v1/plans/demo/chain").await;
        assert_eq!(status, StatusCode::OK, "{chain}");
        let events = chain["events"].as_array().unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0]["kind"], "plan.applied");
        assert_eq!(events[1]["prev_hash"], events[0]["this_hash"]);
        let verification = &chain["verification"];
        assert_eq!(verification["ok"], true, "{verification}");
        assert_eq!(verification["length"], 2);
        assert_eq!(verification["head_hash"], events[1]["this_hash"]);
        assert_eq!(verification["breaks"], serde_json::json!([]));

        let (_, page) = server
            .get_json("/v1/plans/demo/chain?after=1&limit=1")
            .await;
        let events = page["events"].as_array().unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["seq"], 2);
        assert_eq!(events[0]["execution_id"], "e1");

        for uri in ["/v1/plans/nope", "/v1/plans/nope/chain"] {
            let (status, body) = server.get_json(uri).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
            assert_eq!(body["error"]["code"], "ERR_UNKNOWN_PLAN");
        }
        for query in ["limit=0", "after=x"] {
            let (status, body) = server
                .get_json(&format!("/v1/plans/demo/chain?{query}"))
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
            assert_eq!(body["error"]["code"], "ERR_INPUTS");
        }
    }
}
