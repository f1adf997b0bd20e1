//! `GET /v1/events?plan=KEY&after=SEQ`: server-sent events.
//!
//! `event: ledger` for each ledger event appended after the stream opened (or, on `plan`,
//! after `after`, or after the `Last-Event-ID` a reconnecting client sends), by this
//! process or any other writing the same ledger: the stream polls every plan's head and
//! reads the events past what it sent. Each has `id: {plan}:{seq}` and the event as data.
//! `event: job` for each state change of this server's jobs. A comment keeps idle
//! connections open; the stream ends when the server shuts down.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing::get;
use http::{HeaderMap, header};
use proctor_contract::{CanonError, ErrorCode};
use proctor_engine::CancellationToken;
use proctor_ledger::{Event, Ledger};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::AppState;
use crate::http::ApiError;
use crate::jobs::JobChange;
use crate::routes::executions::bad_query;

/// How often the ledger's plan heads are read.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How often an idle stream sends a comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Events read from the ledger at a time.
const PAGE: u32 = 500;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/v1/events", get(events))
}

/// A ledger event as the API shows it, everywhere: its chain position, hashes, payload
/// (as JSON) and `at`.
pub(crate) fn ledger_event_json(event: &Event) -> Value {
    json!({
        "plan": event.plan,
        "seq": event.seq,
        "kind": event.kind_name,
        "execution_id": event.execution_id,
        "payload": serde_json::from_str::<Value>(&event.payload)
            .unwrap_or_else(|_| Value::String(event.payload.clone())),
        "prev_hash": event.prev_hash,
        "this_hash": event.this_hash,
        "at": event.created_at,
    })
}

/// The query of `GET /v1/events`.
#[derive(Debug, Default, Deserialize)]
struct EventParams {
    plan: Option<String>,
    after: Option<u64>,
}

async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<EventParams>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(params) = params.map_err(|rejection| bad_query(&rejection))?;
    let plan = params.plan.filter(|plan| !plan.is_empty());
    let resume = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|id| id.rsplit_once(':'))
        .and_then(|(plan, seq)| Some((plan.to_owned(), seq.parse::<u64>().ok()?)));
    // Subscribe before the heads are read, so no change falls between the two.
    let jobs = state.jobs.subscribe();
    let heads = state.ledger.plan_heads().await.map_err(CanonError::from)?;
    let mut seen: BTreeMap<String, u64> = heads
        .into_iter()
        .filter(|head| plan.as_ref().is_none_or(|plan| *plan == head.plan))
        .map(|head| (head.plan, head.head_seq))
        .collect();
    match (&plan, params.after, resume) {
        (None, Some(_), _) => {
            return Err(ApiError(CanonError::new(
                ErrorCode::Inputs,
                "`after` needs `plan`: it is a seq of that plan's chain",
            )));
        }
        (Some(plan), Some(after), _) => {
            seen.insert(plan.clone(), after);
        }
        (_, None, Some((resumed, seq))) => {
            if plan.as_ref().is_none_or(|plan| *plan == resumed) {
                seen.insert(resumed, seq);
            }
        }
        (_, None, None) => {}
    }
    let follower = Follower {
        ledger: state.ledger.clone(),
        plan,
        seen,
        pending: VecDeque::new(),
        jobs: Some(jobs),
        shutdown: state.shutdown.clone(),
        poll: tokio::time::interval(POLL_INTERVAL),
    };
    let stream = futures_util::stream::unfold(follower, |mut follower| async move {
        let event = follower.next().await?;
        Some((Ok::<_, Infallible>(event), follower))
    });
    // Like every response, never stored (the stream's own default is `no-cache`).
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)),
    ))
}

/// What one stream has sent and still has to send.
struct Follower {
    ledger: Ledger,
    /// The one plan followed, or every plan.
    plan: Option<String>,
    /// The last seq sent (or not to be sent) of each plan; a plan not here is new.
    seen: BTreeMap<String, u64>,
    pending: VecDeque<SseEvent>,
    /// `None` once the job channel is closed.
    jobs: Option<broadcast::Receiver<JobChange>>,
    shutdown: CancellationToken,
    poll: tokio::time::Interval,
}

impl Follower {
    /// The next event to send; `None` ends the stream (the server shuts down).
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            let job = async {
                match self.jobs.as_mut() {
                    Some(jobs) => jobs.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.shutdown.cancelled() => return None,
                change = job => match change {
                    Ok(change) => self.push_job(&change),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(event = "serve.events_lagged", missed);
                    }
                    Err(broadcast::error::RecvError::Closed) => self.jobs = None,
                },
                _ = self.poll.tick() => {
                    if let Err(error) = self.read_ledger().await {
                        tracing::warn!(event = "serve.events_poll_failed", error = %error);
                    }
                }
            }
        }
    }

    fn push_job(&mut self, change: &JobChange) {
        let followed = match &self.plan {
            None => true,
            Some(plan) => change.plan.as_deref() == Some(plan.as_str()),
        };
        if followed && let Ok(event) = SseEvent::default().event("job").json_data(change) {
            self.pending.push_back(event);
        }
    }

    /// Queues the events appended past what was sent, plan by plan.
    async fn read_ledger(&mut self) -> Result<(), CanonError> {
        for head in self.ledger.plan_heads().await? {
            if self.plan.as_ref().is_some_and(|plan| *plan != head.plan) {
                continue;
            }
            let seen = self.seen.entry(head.plan.clone()).or_insert(0);
            while *seen < head.head_seq {
                let events = self.ledger.events(&head.plan, *seen, PAGE).await?;
                let Some(last) = events.last() else {
                    break;
                };
                *seen = last.seq;
                for event in &events {
                    let sse = SseEvent::default()
                        .event("ledger")
                        .id(format!("{}:{}", event.plan, event.seq))
                        .json_data(ledger_event_json(event));
                    if let Ok(sse) = sse {
                        self.pending.push_back(sse);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http::{Method, StatusCode, header};
    use http_body_util::BodyExt as _;
    use proctor_ledger::NewEvent;

    use crate::routes::test_support::{FAILING_RUN, TestServer, UNREACHABLE_PIN};

    /// Reads `body` until its text holds every one of `wanted`, and returns the text.
    async fn read_until(body: &mut Body, wanted: &[&str]) -> String {
        let mut text = String::new();
        while !wanted.iter().all(|w| text.contains(w)) {
            let frame = body
                .frame()
                .await
                .unwrap_or_else(|| panic!("the stream ended before {wanted:?}: {text}"))
                .unwrap();
            if let Ok(data) = frame.into_data() {
                text.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
        text
    }

    #[tokio::test]
    async fn appended_events_and_job_changes_are_streamed_until_shutdown() {
        let server = TestServer::new().await;
        let ledger = server.ledger();
        ledger
            .append(
                "demo",
                &NewEvent::predicate_check("e0", "before", true, "old"),
            )
            .await
            .unwrap();
        let response = server.request(Method::GET, "/v1/events").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
        let mut body = response.into_body();

        ledger
            .append(
                "demo",
                &NewEvent::predicate_check("e1", "after", true, "new"),
            )
            .await
            .unwrap();
        let text = read_until(&mut body, &["id: demo:2"]).await;
        assert!(text.contains("event: ledger"), "{text}");
        assert!(text.contains(r#""predicate":"after""#), "{text}");
        assert!(
            !text.contains("demo:1"),
            "an event from before the stream: {text}"
        );

        // A run of this server that fails at once: each of its job changes is streamed.
        server.add_processor("text/stats/1", &[UNREACHABLE_PIN]);
        let mut submit = server.authorized(Method::POST, "/v1/runs");
        *submit.body_mut() = Body::from(FAILING_RUN);
        submit
            .headers_mut()
            .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        let submitted = server.send(submit).await;
        assert_eq!(submitted.status(), StatusCode::ACCEPTED);
        let text = read_until(&mut body, &["event: job", r#""state":"failed""#]).await;
        assert!(text.contains(r#""execution_id":""#), "{text}");

        server.state.shutdown.cancel();
        while let Some(frame) = body.frame().await {
            frame.unwrap();
        }
    }

    #[tokio::test]
    async fn one_plan_is_followed_from_a_seq() {
        let server = TestServer::new().await;
        let ledger = server.ledger();
        for (plan, name) in [("demo", "one"), ("other", "x"), ("demo", "two")] {
            ledger
                .append(plan, &NewEvent::predicate_check("e1", name, true, ""))
                .await
                .unwrap();
        }
        let response = server
            .request(Method::GET, "/v1/events?plan=demo&after=1")
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body();
        ledger
            .append("other", &NewEvent::predicate_check("e1", "y", true, ""))
            .await
            .unwrap();
        ledger
            .append("demo", &NewEvent::predicate_check("e1", "three", true, ""))
            .await
            .unwrap();
        let text = read_until(&mut body, &["id: demo:2", "id: demo:3"]).await;
        assert!(!text.contains("other:"), "{text}");
        assert!(!text.contains("demo:1"), "{text}");
        assert!(text.find("demo:2") < text.find("demo:3"), "{text}");

        // A reconnecting client resumes after the last id it saw.
        let mut resumed = server.authorized(Method::GET, "/v1/events?plan=demo");
        resumed
            .headers_mut()
            .insert("last-event-id", "demo:2".parse().unwrap());
        let response = server.send(resumed).await;
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body();
        let text = read_until(&mut body, &["id: demo:3"]).await;
        assert!(!text.contains("demo:2"), "{text}");

        let (status, refused) = server.get_json("/v1/events?after=3").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(refused["error"]["code"], "ERR_INPUTS");
    }
}
