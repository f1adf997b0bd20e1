//! Submissions and cancellations: `POST /v1/runs`, `POST /v1/executions/{id}/cancel`,
//! `POST /v1/plans` and `POST /v1/plans/{key}/cancel`.
//!
//! A body is read whole (up to a limit) and parsed here, so that every problem with it —
//! not JSON, a key given twice, an unknown or missing field, a bad value — is one
//! `400 ERR_INPUTS` naming it. A run is then admitted by the engine's own checks, in the
//! run's order (`Engine::admit`: CI guard, ref, registry, inputs and their schema, secrets,
//! write prefix, image pin), so a request that could never run is refused at once with its
//! canonical code; what happens after (the container, the evidence) ends in the run's
//! envelope and ledger record.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::routing::post;
use http::StatusCode;
use proctor_contract::{CanonError, ErrorCode, Mode};
use proctor_engine::{AdapterKind, Engine, Inputs, Limits, RunRequest};
use proctor_ledger::ExecutionStatus;
use proctor_plan::{ApplyOptions, MAX_PLAN_BYTES};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::AppState;
use crate::http::ApiError;
use crate::jobs::NotCancelled;

/// The largest `POST /v1/runs` body: the default inputs limit and room for the other
/// fields. The engine applies the configured inputs limit to the inputs themselves.
const MAX_RUN_BODY_BYTES: usize = Limits::DEFAULT_MAX_INPUTS_BYTES as usize + 64 * 1024;

/// The largest `POST /v1/plans` body: a plan file of the largest size, as a JSON string
/// with room for escapes.
const MAX_PLAN_BODY_BYTES: usize = 2 * MAX_PLAN_BYTES + 64 * 1024;

/// The ledger plan a run is recorded on when the body names none, as `proctor run`'s.
const DEFAULT_RUN_PLAN: &str = "default";

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/runs",
            post(submit_run).layer(DefaultBodyLimit::max(MAX_RUN_BODY_BYTES)),
        )
        .route("/v1/executions/{id}/cancel", post(cancel_execution))
        .route(
            "/v1/plans",
            post(submit_plan).layer(DefaultBodyLimit::max(MAX_PLAN_BODY_BYTES)),
        )
        .route("/v1/plans/{key}/cancel", post(cancel_plan))
}

/// The body of `POST /v1/runs`: `proctor run`'s request fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunBody {
    #[serde(rename = "ref")]
    processor_ref: String,
    mode: Mode,
    #[serde(default = "local_adapter")]
    adapter: AdapterKind,
    #[serde(default)]
    build: bool,
    #[serde(default)]
    write_prefix: Option<String>,
    #[serde(default)]
    inputs: Option<Value>,
    #[serde(default)]
    example: Option<String>,
    #[serde(default)]
    params: BTreeMap<String, String>,
    #[serde(default)]
    timeout_s: Option<u64>,
    #[serde(default = "default_run_plan")]
    plan: String,
    #[serde(default)]
    reserve_micro_usd: u64,
    #[serde(default)]
    memo: bool,
}

fn local_adapter() -> AdapterKind {
    AdapterKind::Local
}

fn default_run_plan() -> String {
    DEFAULT_RUN_PLAN.to_owned()
}

/// The body of `POST /v1/plans`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanBody {
    /// The plan document: a JSON object, or the text of a YAML or JSON file.
    plan: Value,
    #[serde(default)]
    max_parallel: Option<u32>,
    #[serde(default)]
    build: bool,
}

/// `POST /v1/runs`: `202 {"execution_id", "state": "queued", "links"}` at once.
async fn submit_run(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body: RunBody = parse_body(body)?;
    let execution_id = Engine::new_execution_id();
    let request = run_request(body)?;
    state.engine.admit(&request, &execution_id).await?;
    state.jobs.submit_run(execution_id.clone(), request)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "execution_id": execution_id,
            "state": "queued",
            "links": {"self": format!("/v1/executions/{execution_id}")},
        })),
    ))
}

/// The engine's request for a run body: one source of inputs at most, a timeout of a
/// second or more.
fn run_request(body: RunBody) -> Result<RunRequest, CanonError> {
    let inputs = match (body.inputs, body.example) {
        (Some(_), Some(_)) => {
            return Err(invalid("give `inputs` or `example`, not both"));
        }
        (Some(inputs), None) => Inputs::Value(Value::Object(
            proctor_contract::inputs_object(inputs)
                .map_err(|why| invalid(format!("`inputs`: {why}")))?,
        )),
        (None, Some(name)) => Inputs::Example(name),
        (None, None) => Inputs::NotGiven,
    };
    let timeout = match body.timeout_s {
        Some(0) => return Err(invalid("`timeout_s` must be at least 1")),
        seconds => seconds.map(Duration::from_secs),
    };
    Ok(RunRequest {
        processor_ref: body.processor_ref,
        adapter: body.adapter,
        mode: body.mode,
        build: body.build,
        write_prefix: body.write_prefix,
        inputs,
        params: body.params,
        adapter_options: Value::Object(Default::default()),
        timeout,
        save_dir: None,
        plan: body.plan,
        reserve_micro_usd: body.reserve_micro_usd,
        lane: None,
        upstream: Vec::new(),
        attachments: Vec::new(),
        memo: body.memo,
    })
}

/// `POST /v1/executions/{id}/cancel`: `202 {"execution_id", "state"}`.
async fn cancel_execution(
    State(state): State<AppState>,
    Path(execution_id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let refused = match state.jobs.cancel_run(&execution_id) {
        Ok(cancellation) => {
            return Ok((
                StatusCode::ACCEPTED,
                Json(json!({"execution_id": execution_id, "state": cancellation.as_str()})),
            ));
        }
        Err(refused) => refused,
    };
    let error = match refused {
        NotCancelled::Finished(ended) => CanonError::new(
            ErrorCode::Conflict,
            format!(
                "execution `{execution_id}` already ended ({})",
                ended.as_str()
            ),
        ),
        NotCancelled::Unknown => match state.ledger.execution(&execution_id).await {
            Err(error) => CanonError::from(error),
            Ok(None) => CanonError::new(
                ErrorCode::UnknownExecution,
                format!("no execution `{execution_id}`"),
            ),
            Ok(Some(execution)) if execution.status == ExecutionStatus::Running => CanonError::new(
                ErrorCode::Conflict,
                format!("execution `{execution_id}` is run by another process; stop it there"),
            ),
            Ok(Some(execution)) => CanonError::new(
                ErrorCode::Conflict,
                format!(
                    "execution `{execution_id}` already ended ({})",
                    execution.status.as_str()
                ),
            ),
        },
    };
    Err(ApiError(error))
}

/// `POST /v1/plans`: the plan is loaded and checked whole, then applied in the background;
/// `202 {"plan", "plan_cid", "state", "links"}`.
async fn submit_plan(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body: PlanBody = parse_body(body)?;
    let document = match body.plan {
        Value::String(text) => text.into_bytes(),
        object @ Value::Object(_) => serde_json::to_vec(&object)
            .map_err(|e| invalid(format!("`plan` cannot be written as JSON: {e}")))?,
        _ => {
            return Err(ApiError(invalid(
                "`plan` must be a plan document (an object) or its text (a string)",
            )));
        }
    };
    if body.max_parallel.is_some_and(|n| !(1..=64).contains(&n)) {
        return Err(ApiError(invalid("`max_parallel` must be between 1 and 64")));
    }
    let plan = proctor_plan::load(&document, state.engine.config())?;
    if let Some(transition) = plan.transitions.iter().find(|t| !t.attachments.is_empty()) {
        return Err(ApiError(CanonError::new(
            ErrorCode::Plan,
            format!(
                "transition `{}` attaches files; a submitted plan cannot read the server's \
                 files (apply it with `proctor plan apply`)",
                transition.id
            ),
        )));
    }
    let (key, cid) = (plan.key.clone(), plan.cid.clone());
    let options = ApplyOptions {
        max_parallel: body.max_parallel,
        build: body.build,
        adapter_options: Value::Object(Default::default()),
    };
    state.jobs.submit_plan(plan, options)?;
    let job_state = state
        .jobs
        .plan(&key)
        .map_or("running", |job| job.state.as_str());
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "plan": key,
            "plan_cid": cid,
            "state": job_state,
            "links": {"self": format!("/v1/plans/{key}")},
        })),
    ))
}

/// `POST /v1/plans/{key}/cancel`: `202 {"plan", "state": "cancelling"}`.
async fn cancel_plan(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let error = match state.jobs.cancel_plan(&key) {
        Ok(cancellation) => {
            return Ok((
                StatusCode::ACCEPTED,
                Json(json!({"plan": key, "state": cancellation.as_str()})),
            ));
        }
        Err(NotCancelled::Finished(ended)) => CanonError::new(
            ErrorCode::Conflict,
            format!(
                "plan `{key}` is not being applied (its apply {})",
                ended.as_str()
            ),
        ),
        Err(NotCancelled::Unknown) => match state.ledger.plan(&key).await {
            Err(error) => CanonError::from(error),
            Ok(None) => CanonError::new(ErrorCode::UnknownPlan, format!("no plan `{key}`")),
            Ok(Some(_)) => CanonError::new(
                ErrorCode::Conflict,
                format!("plan `{key}` is not being applied by this server"),
            ),
        },
    };
    Err(ApiError(error))
}

/// A JSON body as `T`: no key twice at any depth, no unknown field; any problem is
/// `ERR_INPUTS` saying what it is.
fn parse_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(|rejection| invalid(format!("request body: {rejection}")))?;
    if bytes.is_empty() {
        return Err(ApiError(invalid(
            "the request body is empty; send a JSON object",
        )));
    }
    let object = proctor_contract::parse_inputs(&bytes)
        .map_err(|why| invalid(format!("request body: {why}")))?;
    serde_json::from_value(Value::Object(object))
        .map_err(|e| ApiError(invalid(format!("request body: {e}"))))
}

fn invalid(message: impl Into<String>) -> CanonError {
    CanonError::new(ErrorCode::Inputs, message)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::Arc;

    use axum::response::IntoResponse;

    use super::*;
    use crate::jobs::tests::engine_with_env;
    use crate::jobs::{JobState, Jobs};
    use crate::routes::test_support::FAILING_RUN;
    use crate::{Shared, token};

    async fn state(dir: &Path, env: &[(&str, &str)]) -> AppState {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let engine = engine_with_env(dir, env);
        let ledger = engine.ledger().await.unwrap().clone();
        let (token, _) = token::TokenFile::load_or_create(&dir.join(".proctor")).unwrap();
        AppState(Arc::new(Shared {
            jobs: Jobs::new(Arc::clone(&engine), 1),
            engine,
            ledger,
            token,
            shutdown: Default::default(),
        }))
    }

    /// The status and JSON body of an answer.
    async fn answer(response: impl IntoResponse) -> (StatusCode, Value) {
        let response = response.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// A plan body of one `text/stats@1` transition in `mode`, `extra` added to the
    /// transition.
    fn plan_body(mode: &str, extra: &str) -> String {
        format!(
            r#"{{"plan": {{"plan": "p", "transitions": [{{"id": "a", "ref": "text/stats@1",
               "mode": "{mode}", "inputs": {{"schema": "v1", "text": "x"}}{extra}}}]}}}}"#
        )
    }

    async fn post_plan(
        state: &AppState,
        body: &str,
    ) -> Result<(StatusCode, Json<Value>), ApiError> {
        submit_plan(State(state.clone()), Ok(Bytes::from(body.to_owned()))).await
    }

    async fn post_run(state: &AppState, body: &str) -> (StatusCode, Value) {
        answer(submit_run(State(state.clone()), Ok(Bytes::from(body.to_owned()))).await).await
    }

    /// Asserts the error shape: the status, `{"status":"error","error":{"code","message"}}`
    /// with the code, and the message naming `detail`.
    fn assert_refused(answer: &(StatusCode, Value), status: StatusCode, code: &str, detail: &str) {
        let (got, body) = answer;
        assert_eq!(*got, status, "{body}");
        assert_eq!(body["status"], "error", "{body}");
        assert_eq!(body["error"]["code"], code, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(detail), "{message:?} lacks {detail:?}");
    }

    #[tokio::test]
    async fn a_run_submission_is_answered_at_once_with_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path(), &[]).await;
        let (status, body) = post_run(
            &state,
            r#"{"ref":"text/stats@1","mode":"mock","adapter":"modal","inputs":{"schema":"v1","text":"hi"},"timeout_s":5}"#,
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["state"], "queued");
        let id = body["execution_id"].as_str().unwrap();
        assert_eq!(body["links"]["self"], format!("/v1/executions/{id}"));
        let job = state.jobs.run(id).unwrap();
        assert_eq!(job.processor_ref, "text/stats@1");
        assert_eq!(job.plan, DEFAULT_RUN_PLAN);
    }

    #[tokio::test]
    async fn every_problem_with_a_run_body_is_a_400_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path(), &[]).await;
        let inputs = |body: &str, detail: &str| (body.to_owned(), detail.to_owned());
        for (body, detail) in [
            inputs("", "empty"),
            inputs("{", "not JSON"),
            inputs("[]", "must be a JSON object"),
            inputs(r#"{"ref":"text/stats@1"}"#, "missing field `mode`"),
            inputs(
                r#"{"ref":"text/stats@1","mode":"REAL"}"#,
                "unknown variant `REAL`",
            ),
            inputs(
                r#"{"ref":"text/stats@1","mode":"mock","adapter":"k8s"}"#,
                "k8s",
            ),
            inputs(
                r#"{"ref":"text/stats@1","mode":"mock","colour":1}"#,
                "unknown field `colour`",
            ),
            inputs(
                r#"{"ref":"text/stats@1","mode":"mock","mode":"real"}"#,
                "mode",
            ),
            inputs(
                r#"{"ref":"a/b@1","mode":"mock","inputs":{"x":1,"x":2}}"#,
                "x",
            ),
            inputs(
                r#"{"ref":"a/b@1","mode":"mock","inputs":{},"example":"smoke"}"#,
                "not both",
            ),
            inputs(r#"{"ref":"a/b@1","mode":"mock","inputs":[1]}"#, "`inputs`"),
            inputs(
                r#"{"ref":"a/b@1","mode":"mock","params":{"n":3}}"#,
                "invalid type",
            ),
            inputs(
                r#"{"ref":"a/b@1","mode":"mock","timeout_s":0}"#,
                "at least 1",
            ),
        ] {
            let refused = post_run(&state, &body).await;
            assert_refused(&refused, StatusCode::BAD_REQUEST, "ERR_INPUTS", &detail);
        }
        let refused = post_run(&state, r#"{"ref":"no-version","mode":"mock"}"#).await;
        assert_refused(&refused, StatusCode::BAD_REQUEST, "ERR_PROCESSOR_REF", "");
        let refused = post_run(
            &state,
            r#"{"ref":"text/stats@1","mode":"mock","adapter":"modal","write_prefix":"/artifacts/fixed/"}"#,
        )
        .await;
        assert_refused(&refused, StatusCode::BAD_REQUEST, "ERR_WRITE_PREFIX", "");
        assert!(state.jobs.queued_runs().is_empty(), "nothing was queued");
    }

    #[tokio::test]
    async fn a_run_that_could_never_start_is_refused_at_once_with_the_engines_code() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path(), &[]).await;
        let unknown = post_run(&state, r#"{"ref":"no/such@1","mode":"mock"}"#).await;
        assert_refused(
            &unknown,
            StatusCode::NOT_FOUND,
            "ERR_UNKNOWN_PROCESSOR",
            "no/such@1",
        );
        let example = post_run(
            &state,
            r#"{"ref":"text/stats@1","mode":"mock","example":"huge"}"#,
        )
        .await;
        assert_refused(&example, StatusCode::BAD_REQUEST, "ERR_INPUTS", "smoke");
        let schema = post_run(
            &state,
            r#"{"ref":"text/stats@1","mode":"mock","inputs":{"schema":"v1","text":3}}"#,
        )
        .await;
        assert_refused(&schema, StatusCode::BAD_REQUEST, "ERR_INPUTS", "text");
        assert!(state.jobs.queued_runs().is_empty(), "nothing was queued");
    }

    #[tokio::test]
    async fn real_mode_under_ci_is_refused_before_anything_else() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path(), &[("CI", "true")]).await;
        let refused = post_run(&state, r#"{"ref":"not a ref","mode":"real"}"#).await;
        assert_refused(&refused, StatusCode::FORBIDDEN, "ERR_CI_SAFETY", "CI=true");
        let (status, _) = post_run(&state, FAILING_RUN).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let plan = answer(post_plan(&state, &plan_body("real", "")).await).await;
        assert_refused(&plan, StatusCode::FORBIDDEN, "ERR_CI_SAFETY", "CI=true");
    }

    #[tokio::test]
    async fn a_server_shutting_down_refuses_submissions_with_503() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path(), &[]).await;
        state.jobs.clone().shut_down().await;
        let refused = post_run(&state, FAILING_RUN).await;
        assert_refused(
            &refused,
            StatusCode::SERVICE_UNAVAILABLE,
            "ERR_SERVE",
            "shutting down",
        );
        let plan = answer(post_plan(&state, &plan_body("mock", "")).await).await;
        assert_refused(
            &plan,
            StatusCode::SERVICE_UNAVAILABLE,
            "ERR_SERVE",
            "shutting down",
        );
    }

    #[tokio::test]
    async fn cancelling_what_is_unknown_or_ended_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path(), &[]).await;
        let cancel = |id: &str| cancel_execution(State(state.clone()), Path(id.to_owned()));
        let unknown = answer(cancel("no-such-execution").await).await;
        assert_refused(
            &unknown,
            StatusCode::NOT_FOUND,
            "ERR_UNKNOWN_EXECUTION",
            "no-such-execution",
        );
        let mut changes = state.jobs.subscribe();
        let (_, body) = post_run(&state, FAILING_RUN).await;
        let id = body["execution_id"].as_str().unwrap();
        while !changes.recv().await.unwrap().state.is_finished() {}
        assert_eq!(state.jobs.run(id).unwrap().state, JobState::Failed);
        let ended = answer(cancel(id).await).await;
        assert_refused(
            &ended,
            StatusCode::CONFLICT,
            "ERR_CONFLICT",
            "already ended (failed)",
        );
        let plan = answer(cancel_plan(State(state.clone()), Path("nope".to_owned())).await).await;
        assert_refused(&plan, StatusCode::NOT_FOUND, "ERR_UNKNOWN_PLAN", "nope");
    }

    #[tokio::test]
    async fn a_plan_body_that_is_no_plan_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path(), &[]).await;
        for (body, code, detail) in [
            (r#"{"plan":3}"#, "ERR_INPUTS", "plan document"),
            (
                r#"{"plan":{},"extra":1}"#,
                "ERR_INPUTS",
                "unknown field `extra`",
            ),
            (
                r#"{"plan":{},"max_parallel":65}"#,
                "ERR_INPUTS",
                "max_parallel",
            ),
            (r#"{"plan":"plan: ["}"#, "ERR_PLAN", "not YAML or JSON"),
        ] {
            let refused = answer(post_plan(&state, body).await).await;
            assert_refused(&refused, StatusCode::BAD_REQUEST, code, detail);
        }
        let attaching = plan_body("mock", r#", "attach": {"doc": "/etc/notes.txt"}"#)
            .replace(r#""text": "x""#, r#""text": {"$attach": "doc"}"#);
        let refused = answer(post_plan(&state, &attaching).await).await;
        assert_refused(
            &refused,
            StatusCode::BAD_REQUEST,
            "ERR_PLAN",
            "attaches files",
        );
        assert!(state.jobs.plan("p").is_none());
    }
}
