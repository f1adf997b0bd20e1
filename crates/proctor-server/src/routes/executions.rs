//! `GET /v1/executions` and `GET /v1/executions/{id}`: executions as the ledger recorded
//! them, merged with the runs this server was given and has not started yet, and one
//! execution's evidence (envelope, receipt, outputs, verification, events).
//!
//! One `state` names where an execution stands, whoever knows it: `queued` (submitted to
//! this server, not started), `running`, `succeeded`, `failed`, or `cancelled` (a failure
//! settled as `ERR_INTERRUPTED`, or a submission cancelled before it started).

use std::collections::HashSet;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use proctor_contract::{
    CanonError, Envelope, ErrorCode, ExecutionMemoEvent, LedgerEvent, Mode, OutputEntry,
    OutputsIndex, Receipt, SuccessMeta, WorldPath,
};
use proctor_engine::{EvidenceSources, verify_execution};
use proctor_ledger::{ErrorCodeFilter, Event, Execution, ExecutionQuery, ExecutionStatus, Ledger};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::AppState;
use crate::http::ApiError;
use crate::jobs::{JobState, RunJob};
use crate::routes::events::ledger_event_json;

/// Rows of a page when `limit` is not given.
const DEFAULT_LIMIT: u32 = 50;
/// The most rows one page holds.
const MAX_LIMIT: u32 = 500;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/executions", get(list))
        .route("/v1/executions/{id}", get(detail))
}

/// One execution in a list: what the ledger row (or, before the ledger knows it, this
/// server's job) says.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ExecutionSummary {
    execution_id: String,
    #[serde(rename = "ref")]
    processor_ref: String,
    plan: String,
    mode: Mode,
    state: JobState,
    image_digest: Option<String>,
    error_code: Option<String>,
    started_at: Option<String>,
    settled_at: Option<String>,
    write_prefix: Option<String>,
}

impl ExecutionSummary {
    fn of_row(row: Execution) -> ExecutionSummary {
        ExecutionSummary {
            state: state_of_row(&row),
            execution_id: row.execution_id,
            processor_ref: row.processor_ref,
            plan: row.plan,
            mode: row.mode,
            image_digest: row.image_digest,
            error_code: row.error_code,
            started_at: Some(row.started_at),
            settled_at: row.settled_at,
            write_prefix: Some(row.write_prefix),
        }
    }

    fn of_job(job: &RunJob) -> ExecutionSummary {
        let envelope = job.envelope.as_ref();
        let text_at = |pointer: &str| {
            envelope
                .and_then(|envelope| envelope.pointer(pointer))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        ExecutionSummary {
            execution_id: job.execution_id.clone(),
            processor_ref: job.processor_ref.clone(),
            plan: job.plan.clone(),
            mode: job.mode,
            state: job.state,
            image_digest: text_at("/meta/image_digest"),
            error_code: text_at("/error/code"),
            started_at: None,
            settled_at: None,
            write_prefix: None,
        }
    }
}

impl ExecutionSummary {
    /// A memo hit: succeeded when it was recorded, with the image its source ran.
    fn of_memo_hit(event: &Event, hit: &ExecutionMemoEvent) -> ExecutionSummary {
        ExecutionSummary {
            execution_id: event.execution_id.clone().unwrap_or_default(),
            processor_ref: hit.processor_ref.clone(),
            plan: event.plan.clone(),
            mode: hit.mode,
            state: JobState::Succeeded,
            image_digest: Some(hit.image_digest.clone()),
            error_code: None,
            started_at: Some(event.created_at.clone()),
            settled_at: Some(event.created_at.clone()),
            write_prefix: None,
        }
    }
}

/// The merged state of a ledger row.
fn state_of_row(row: &Execution) -> JobState {
    match row.status {
        ExecutionStatus::Running => JobState::Running,
        ExecutionStatus::Success => JobState::Succeeded,
        ExecutionStatus::Failure
            if row.error_code.as_deref() == Some(ErrorCode::Interrupted.as_str()) =>
        {
            JobState::Cancelled
        }
        ExecutionStatus::Failure => JobState::Failed,
    }
}

/// The query of `GET /v1/executions`.
#[derive(Debug, Default, Deserialize)]
struct ListParams {
    #[serde(rename = "ref")]
    processor_ref: Option<String>,
    state: Option<String>,
    plan: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<u32>,
    offset: Option<u64>,
}

/// A query string that does not parse is `ERR_INPUTS`, naming what is wrong.
pub(crate) fn bad_query(rejection: &QueryRejection) -> ApiError {
    ApiError(CanonError::new(ErrorCode::Inputs, rejection.body_text()))
}

/// A non-empty filter value, or none.
fn filter(value: Option<String>) -> Option<String> {
    value.filter(|value| !value.is_empty())
}

/// `GET /v1/executions`: this server's queued runs (newest first), then the ledger's
/// executions (newest first), filtered and paged together.
async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params.map_err(|rejection| bad_query(&rejection))?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError(CanonError::new(
            ErrorCode::Inputs,
            format!("`limit` must be 1 to {MAX_LIMIT}: {limit}"),
        )));
    }
    let offset = params.offset.unwrap_or(0);
    let wanted = filter(params.state)
        .map(|name| parse_state(&name))
        .transpose()?;
    let mut query = ExecutionQuery {
        processor_ref: filter(params.processor_ref),
        plan: filter(params.plan),
        since: filter(params.since),
        until: filter(params.until),
        limit,
        offset: 0,
        ..ExecutionQuery::default()
    };
    match wanted {
        Some(JobState::Running) => query.status = Some(ExecutionStatus::Running),
        Some(JobState::Succeeded) => query.status = Some(ExecutionStatus::Success),
        Some(JobState::Failed) => {
            query.status = Some(ExecutionStatus::Failure);
            query.error_code = Some(ErrorCodeFilter::IsNot(ErrorCode::Interrupted));
        }
        Some(JobState::Cancelled) => {
            query.status = Some(ExecutionStatus::Failure);
            query.error_code = Some(ErrorCodeFilter::Is(ErrorCode::Interrupted));
        }
        Some(JobState::Queued) | None => {}
    }
    // A queued run has not started: a time range, which compares starts, leaves it out.
    let queued: Vec<ExecutionSummary> = if matches!(wanted, None | Some(JobState::Queued))
        && query.since.is_none()
        && query.until.is_none()
    {
        state
            .jobs
            .queued_runs()
            .iter()
            .filter(|job| {
                query
                    .processor_ref
                    .as_ref()
                    .is_none_or(|r| *r == job.processor_ref)
                    && query.plan.as_ref().is_none_or(|p| *p == job.plan)
            })
            .map(ExecutionSummary::of_job)
            .collect()
    } else {
        Vec::new()
    };
    let queued_count = queued.len() as u64;
    // A run that starts while this answer is made is listed once, as queued.
    let queued_ids: HashSet<String> = queued.iter().map(|q| q.execution_id.clone()).collect();
    let mut executions: Vec<ExecutionSummary> = queued
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(limit as usize)
        .collect();
    let total = if wanted == Some(JobState::Queued) {
        queued_count
    } else {
        query.offset = offset.saturating_sub(queued_count);
        query.limit = limit - u32::try_from(executions.len()).unwrap_or(limit);
        let page = state
            .ledger
            .list_executions(&query)
            .await
            .map_err(CanonError::from)?;
        if query.limit > 0 {
            executions.extend(
                page.executions
                    .into_iter()
                    .filter(|row| !queued_ids.contains(&row.execution_id))
                    .map(ExecutionSummary::of_row),
            );
        }
        queued_count + page.total
    };
    Ok(Json(json!({"executions": executions, "total": total})))
}

/// A `state` filter's value.
fn parse_state(name: &str) -> Result<JobState, ApiError> {
    [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ]
    .into_iter()
    .find(|state| state.as_str() == name)
    .ok_or_else(|| {
        ApiError(CanonError::new(
            ErrorCode::Inputs,
            format!("`state` must be queued, running, succeeded, failed or cancelled: `{name}`"),
        ))
    })
}

/// `GET /v1/executions/{id}`: the summary, envelope, receipt, outputs, verification and
/// ledger events of one execution.
async fn detail(
    State(state): State<AppState>,
    Path(execution_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let ledger = &state.ledger;
    let row = ledger
        .execution(&execution_id)
        .await
        .map_err(CanonError::from)?;
    let job = state.jobs.run(&execution_id);
    let events = ledger
        .events_for_execution(&execution_id)
        .await
        .map_err(CanonError::from)?;
    let memo = memo_event(&events);
    let summary = match (row, &job, &memo) {
        (Some(row), _, _) => ExecutionSummary::of_row(row),
        (None, Some(job), _) => ExecutionSummary::of_job(job),
        (None, None, Some((event, hit))) => ExecutionSummary::of_memo_hit(event, hit),
        (None, None, None) => {
            return Err(ApiError(CanonError::new(
                ErrorCode::UnknownExecution,
                format!("`{execution_id}`"),
            )));
        }
    };
    // Nothing was recorded of a run refused before its start: there is nothing to verify.
    let recorded = !events.is_empty();
    let settled = settle_event(&events);
    let store = state.engine.store().as_ref();
    let receipt = read_json(store, WorldPath::execution_receipt(&execution_id).ok()).await;
    let job_envelope = job.as_ref().and_then(|job| job.envelope.as_ref());
    let index_path = match (&settled, &memo) {
        (Some(LedgerEvent::ExecutionSettleSuccess(success)), _) => Some(success.index_path.clone()),
        (_, Some((_, hit))) => Some(hit.index_path.clone()),
        _ => job_envelope
            .and_then(|envelope| envelope.get("index_path"))
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    let outputs = outputs_of(store, index_path.as_deref(), &events).await;
    let envelope = match job.and_then(|job| job.envelope) {
        Some(envelope) => Some(envelope),
        None => rebuilt_envelope(&summary, settled.as_ref(), receipt.as_ref(), &outputs),
    };
    let verification = match summary.state {
        JobState::Queued | JobState::Running => Value::Null,
        _ if !recorded => Value::Null,
        _ => verification(&state, ledger, &execution_id).await,
    };
    Ok(Json(json!({
        "execution": summary,
        "envelope": envelope,
        "receipt": receipt,
        "index_path": index_path,
        "outputs": outputs,
        "verification": verification,
        "events": events.iter().map(ledger_event_json).collect::<Vec<_>>(),
    })))
}

/// The execution's `execution.memo` event and its payload, when it is a memo hit (answered
/// by an earlier execution's outputs, with no execution row of its own).
fn memo_event(events: &[Event]) -> Option<(&Event, ExecutionMemoEvent)> {
    events.iter().find_map(|event| match event.ledger_event() {
        Ok(LedgerEvent::ExecutionMemo(hit)) => Some((event, hit)),
        _ => None,
    })
}

/// The typed payload of the execution's settle event, if it is settled.
fn settle_event(events: &[Event]) -> Option<LedgerEvent> {
    events
        .iter()
        .filter_map(|event| event.ledger_event().ok())
        .find(|event| {
            matches!(
                event,
                LedgerEvent::ExecutionSettleSuccess(_) | LedgerEvent::ExecutionSettleFailure(_)
            )
        })
}

/// A JSON file of the store, or `None` when it is missing or not JSON.
async fn read_json(
    store: &dyn proctor_store::ArtifactStore,
    path: Option<WorldPath>,
) -> Option<Value> {
    let bytes = store.get(&path?).await.ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The outputs of the index at `index_path`, or, when it cannot be read, those the ledger
/// recorded (`artifact.produce`).
async fn outputs_of(
    store: &dyn proctor_store::ArtifactStore,
    index_path: Option<&str>,
    events: &[Event],
) -> Vec<OutputEntry> {
    let index_path = index_path.and_then(|path| WorldPath::parse(path).ok());
    if let Some(index) = read_json(store, index_path).await
        && let Ok(index) = serde_json::from_value::<OutputsIndex>(index)
    {
        return index.outputs;
    }
    events
        .iter()
        .filter_map(|event| match event.ledger_event() {
            Ok(LedgerEvent::ArtifactProduce(output)) => Some(output),
            _ => None,
        })
        .collect()
}

/// The envelope a settled execution answered with, rebuilt from its settle event (and, for
/// a success, its receipt, which holds the environment's fingerprint); `None` when the
/// ledger and the store do not hold enough.
fn rebuilt_envelope(
    summary: &ExecutionSummary,
    settled: Option<&LedgerEvent>,
    receipt: Option<&Value>,
    outputs: &[OutputEntry],
) -> Option<Value> {
    let envelope = match settled? {
        LedgerEvent::ExecutionSettleFailure(failure) => Envelope::error(
            &summary.execution_id,
            &failure.error.to_canon_error(),
            summary.mode,
            failure.duration_ms,
            failure.image_digest.clone(),
        ),
        LedgerEvent::ExecutionSettleSuccess(success) => {
            let receipt: Receipt = serde_json::from_value(receipt?.clone()).ok()?;
            Envelope::success(
                &summary.execution_id,
                outputs.to_vec(),
                WorldPath::parse(&success.index_path).ok()?,
                SuccessMeta {
                    image_digest: success.image_digest.clone().unwrap_or(receipt.image_digest),
                    env_fingerprint: receipt.env_fingerprint,
                    duration_ms: receipt.duration_ms,
                    mode: summary.mode,
                },
            )
        }
        _ => return None,
    };
    serde_json::to_value(envelope).ok()
}

/// `proctor verify`'s report for a settled execution; an execution whose evidence cannot be
/// read at all is a failed verification naming why.
async fn verification(state: &AppState, ledger: &Ledger, execution_id: &str) -> Value {
    let sources = EvidenceSources {
        store: state.engine.store().as_ref(),
        ledger,
        registry_root: &state.engine.config().registry_root,
        chains: None,
    };
    match verify_execution(&sources, execution_id).await {
        Ok(report) => serde_json::to_value(report).unwrap_or(Value::Null),
        Err(error) => json!({
            "ok": false,
            "checks": [],
            "error": {"code": error.code().as_str(), "message": error.message()},
        }),
    }
}

#[cfg(test)]
mod tests {
    use proctor_contract::{Receipt, cid};
    use proctor_ledger::{ExecutionSettle, ExecutionStart, NewEvent, Outcome};

    use super::*;
    use crate::routes::test_support::TestServer;

    const PREFIX: &str = "/artifacts/outputs/text/stats/1/e1/";

    fn start(execution_id: &str, plan: &str) -> ExecutionStart {
        ExecutionStart {
            execution_id: execution_id.to_owned(),
            plan: plan.to_owned(),
            processor_ref: "text/stats@1".to_owned(),
            mode: Mode::Mock,
            write_prefix: format!("/artifacts/outputs/text/stats/1/{execution_id}/"),
            image_digest: None,
            owner: None,
        }
    }

    fn failure(execution_id: &str, error: CanonError) -> ExecutionSettle {
        ExecutionSettle {
            execution_id: execution_id.to_owned(),
            outcome: Outcome::Failure(error),
            image_digest: None,
            duration_ms: 5,
        }
    }

    /// `e1`: a success with its output, index and both receipts in the store; its output
    /// and the content ids of its index and receipt.
    async fn record_success(server: &TestServer) -> (OutputEntry, String, String) {
        let ledger = server.ledger();
        ledger.record_start(&start("e1", "default")).await.unwrap();
        let bytes = br#"{"words":2}"#;
        let output = OutputEntry {
            path: WorldPath::parse(&format!("{PREFIX}outputs/stats.json")).unwrap(),
            cid: cid(bytes),
            size_bytes: bytes.len() as u64,
            mime: "application/json".to_owned(),
        };
        server.put(output.path.as_str(), bytes).await;
        let index = serde_json::to_vec(&OutputsIndex {
            outputs: vec![output.clone()],
        })
        .unwrap();
        server.put(&format!("{PREFIX}outputs.json"), &index).await;
        let receipt = Receipt {
            execution_id: "e1".to_owned(),
            processor_ref: "text/stats@1".parse().unwrap(),
            image_digest: format!("sha256:{}", "a".repeat(64)),
            env_fingerprint: "mode=mock".to_owned(),
            inputs_hash: cid(b"{}"),
            hash_schema: "jcs-blake3".to_owned(),
            outputs_index: WorldPath::parse(&format!("{PREFIX}outputs.json")).unwrap(),
            processor_info: "stats 1".to_owned(),
            usage: Default::default(),
            timestamp_utc: "2026-03-01T10:00:00Z".to_owned(),
            duration_ms: 7,
            mode: Mode::Mock,
            upstream: Vec::new(),
            artifacts_read: Vec::new(),
        }
        .to_bytes();
        server.put(&format!("{PREFIX}receipt.json"), &receipt).await;
        server
            .put("/artifacts/execution/e1/receipt.json", &receipt)
            .await;
        ledger
            .append("default", &NewEvent::artifact_produce("e1", &output))
            .await
            .unwrap();
        ledger
            .record_settle(&ExecutionSettle {
                execution_id: "e1".to_owned(),
                outcome: Outcome::Success {
                    index_path: format!("{PREFIX}outputs.json"),
                    outputs_index_cid: cid(&index),
                    receipt_cid: Some(cid(&receipt)),
                },
                image_digest: Some(format!("sha256:{}", "a".repeat(64))),
                duration_ms: 9,
            })
            .await
            .unwrap();
        (output, cid(&index), cid(&receipt))
    }

    #[tokio::test]
    async fn a_recorded_success_is_shown_with_its_evidence_and_verification() {
        let server = TestServer::new().await;
        let (output, _, _) = record_success(&server).await;
        let (status, body) = server.get_json("/v1/executions/e1").await;
        assert_eq!(status, http::StatusCode::OK, "{body}");
        let execution = &body["execution"];
        assert_eq!(execution["state"], "succeeded");
        assert_eq!(execution["ref"], "text/stats@1");
        assert_eq!(execution["write_prefix"], PREFIX);
        assert_eq!(body["index_path"], format!("{PREFIX}outputs.json"));
        assert_eq!(body["outputs"], json!([output]));
        assert_eq!(body["receipt"]["env_fingerprint"], "mode=mock");
        // Rebuilt from the settle event and the receipt: a valid success envelope.
        let envelope = Envelope::validate(&body["envelope"]).unwrap();
        assert_eq!(envelope.execution_id(), "e1");
        assert_eq!(body["envelope"]["meta"]["duration_ms"], 7);
        let kinds: Vec<&str> = body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|event| event["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "execution.start",
                "artifact.produce",
                "execution.settle.success"
            ]
        );
        let event = &body["events"][0];
        assert_eq!(event["plan"], "default");
        assert_eq!(event["seq"], 1);
        assert!(event["at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(event["payload"]["kind"], "execution.start");
        // The checks of `proctor verify`, every one passing for this evidence.
        let verification = &body["verification"];
        let checks = verification["checks"].as_array().unwrap();
        let output_check = checks
            .iter()
            .find(|check| check["name"] == format!("output:{}", output.path))
            .unwrap_or_else(|| panic!("no output check: {verification}"));
        assert_eq!(output_check["ok"], true, "{output_check}");
        assert!(checks.iter().any(|check| check["name"] == "ledger.chain"));
        assert_eq!(verification["ok"], true, "{verification}");
        assert!(verification.get("error").is_none_or(Value::is_null));
    }

    #[tokio::test]
    async fn states_merge_statuses_and_interruptions_and_filter_the_list() {
        let server = TestServer::new().await;
        record_success(&server).await;
        let ledger = server.ledger();
        ledger.record_start(&start("e2", "nightly")).await.unwrap();
        ledger
            .record_settle(&failure(
                "e2",
                CanonError::new(ErrorCode::Timeout, "after 1 s"),
            ))
            .await
            .unwrap();
        ledger.record_start(&start("e3", "nightly")).await.unwrap();
        ledger
            .record_settle(&failure(
                "e3",
                CanonError::new(ErrorCode::Interrupted, "cancelled"),
            ))
            .await
            .unwrap();
        ledger.record_start(&start("e4", "nightly")).await.unwrap();

        let states = |body: &Value| -> Vec<(String, String)> {
            body["executions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["execution_id"].as_str().unwrap().to_owned(),
                        e["state"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        };
        let (status, body) = server.get_json("/v1/executions").await;
        assert_eq!(status, http::StatusCode::OK);
        assert_eq!(body["total"], 4);
        let mut all = states(&body);
        all.sort();
        assert_eq!(
            all,
            [
                ("e1".to_owned(), "succeeded".to_owned()),
                ("e2".to_owned(), "failed".to_owned()),
                ("e3".to_owned(), "cancelled".to_owned()),
                ("e4".to_owned(), "running".to_owned()),
            ]
        );
        for (query, want) in [
            ("state=cancelled", vec!["e3"]),
            ("state=failed", vec!["e2"]),
            ("state=running&plan=nightly", vec!["e4"]),
            ("state=queued", vec![]),
            ("plan=default", vec!["e1"]),
            ("ref=text/stats@1&state=succeeded", vec!["e1"]),
            ("ref=text/stats@2", vec![]),
            ("since=2999-01-01T00:00:00Z", vec![]),
        ] {
            let (status, body) = server.get_json(&format!("/v1/executions?{query}")).await;
            assert_eq!(status, http::StatusCode::OK, "{query}: {body}");
            let ids: Vec<String> = states(&body).into_iter().map(|(id, _)| id).collect();
            assert_eq!(ids, want, "{query}");
            assert_eq!(body["total"], want.len(), "{query}");
        }
        let (_, page) = server.get_json("/v1/executions?limit=2&offset=3").await;
        assert_eq!(page["total"], 4);
        assert_eq!(page["executions"].as_array().unwrap().len(), 1);

        let (_, failed) = server.get_json("/v1/executions/e2").await;
        assert_eq!(failed["envelope"]["status"], "error");
        assert_eq!(failed["envelope"]["error"]["code"], "ERR_TIMEOUT");
        assert_eq!(failed["outputs"], json!([]));
        let (_, running) = server.get_json("/v1/executions/e4").await;
        assert_eq!(running["verification"], Value::Null);
        assert_eq!(running["envelope"], Value::Null);
        assert_eq!(running["execution"]["settled_at"], Value::Null);
    }

    #[tokio::test]
    async fn a_memo_hit_is_shown_with_its_sources_outputs_and_verification() {
        let server = TestServer::new().await;
        let (output, index_cid, receipt_cid) = record_success(&server).await;
        let hit = ExecutionMemoEvent {
            processor_ref: "text/stats@1".to_owned(),
            mode: Mode::Mock,
            image_digest: format!("sha256:{}", "a".repeat(64)),
            inputs_hash: cid(b"{}"),
            memo_key: "key".to_owned(),
            source_execution_id: "e1".to_owned(),
            source_plan: "default".to_owned(),
            index_path: format!("{PREFIX}outputs.json"),
            outputs_index_cid: index_cid,
            receipt_cid,
        };
        server
            .ledger()
            .record_memo_hit("default", "h1", &hit)
            .await
            .unwrap();
        let (status, body) = server.get_json("/v1/executions/h1").await;
        assert_eq!(status, http::StatusCode::OK, "{body}");
        assert_eq!(body["execution"]["state"], "succeeded");
        assert_eq!(body["execution"]["ref"], "text/stats@1");
        assert_eq!(body["outputs"], json!([output]));
        assert_eq!(body["events"][0]["kind"], "execution.memo");
        let checks = body["verification"]["checks"].as_array().unwrap();
        assert!(
            checks.iter().any(|check| check["name"] == "memo.hit"),
            "{checks:?}"
        );
    }

    #[tokio::test]
    async fn a_run_that_ended_before_the_ledger_knew_it_has_its_envelope_and_nothing_to_verify() {
        let server = TestServer::new().await;
        let mut changes = server.state.jobs.subscribe();
        // Submissions are admitted first (an unknown processor is a 404 at once); a job the
        // ledger never recorded is one that failed between its admission and its start.
        let id = proctor_engine::Engine::new_execution_id();
        server
            .state
            .jobs
            .submit_run(
                id.clone(),
                crate::jobs::tests::request("no/such@1", proctor_engine::Inputs::NotGiven),
            )
            .unwrap();
        let id = id.as_str();
        while changes.recv().await.unwrap().state != JobState::Failed {}
        let (status, body) = server.get_json(&format!("/v1/executions/{id}")).await;
        assert_eq!(status, http::StatusCode::OK, "{body}");
        assert_eq!(body["execution"]["state"], "failed");
        assert_eq!(body["execution"]["error_code"], "ERR_UNKNOWN_PROCESSOR");
        assert_eq!(body["envelope"]["error"]["code"], "ERR_UNKNOWN_PROCESSOR");
        assert_eq!(body["verification"], Value::Null);
        assert_eq!(body["events"], json!([]));
    }

    #[tokio::test]
    async fn unknown_executions_and_bad_queries_are_refused() {
        let server = TestServer::new().await;
        let (status, body) = server.get_json("/v1/executions/nope").await;
        assert_eq!(status, http::StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "ERR_UNKNOWN_EXECUTION");
        for query in [
            "state=done",
            "limit=0",
            "limit=501",
            "limit=x",
            "offset=-1",
            "since=yesterday",
        ] {
            let (status, body) = server.get_json(&format!("/v1/executions?{query}")).await;
            assert_eq!(status, http::StatusCode::BAD_REQUEST, "{query}: {body}");
            assert_eq!(body["error"]["code"], "ERR_INPUTS", "{query}");
        }
    }
}
