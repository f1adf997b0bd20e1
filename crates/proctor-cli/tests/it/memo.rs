//! The memo cache on the Docker engine: `plan apply` (on by default in mock) and
//! `proctor run --memo`, with `text/stats@1` built from source.
//!
//! "No container" is asked of the engine itself: every container carries the label of its
//! phase's [`ContainerSweep`], and the engine's `create` events for that label are counted.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::query_parameters::EventsOptions;
use futures_util::StreamExt;
use proctor_contract::ErrorCode;
use serde_json::Value;

use crate::engine::ContainerSweep;
use crate::ledger::PostgresDatabase;
use crate::plan::{
    apply_in, containers_started, ledger_events, transition, verify_chain, verify_execution_on,
};
use crate::util::{Run, TestDir, workspace_registry};

/// The two-level plan of `plan.rs` under the key `KEY`, plus `third`, which reads `stats`'
/// output with other inputs than `again`.
const PLAN: &str = r#"
plan: KEY
mode: mock
policy: {max_parallel: 1}
transitions:
  - id: stats
    ref: text/stats@1
    inputs: {schema: v1, text: "The quick brown fox. The lazy dog."}
  - id: again
    ref: text/stats@1
    inputs: {schema: v1, text: {$from: "stats:outputs/normalized.txt"}}
  - id: third
    ref: text/stats@1
    inputs: {schema: v1, top_n: 3, text: {$from: "stats:outputs/normalized.txt"}}
"#;

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// How many containers the engine created with `sweep`'s label since `since_s`.
fn containers_created(sweep: &ContainerSweep, since_s: u64) -> usize {
    let options: Value = serde_json::from_str(&sweep.adapter_options()).unwrap();
    let (key, value) = options["labels"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    let label = format!("{key}={}", value.as_str().unwrap());
    let until_s = now_s() + 1;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let docker = Docker::connect_with_local_defaults().unwrap();
            let docker = docker.negotiate_version().await.unwrap();
            let filters = HashMap::from([
                ("type".to_owned(), vec!["container".to_owned()]),
                ("event".to_owned(), vec!["create".to_owned()]),
                ("label".to_owned(), vec![label]),
            ]);
            let events = docker.events(Some(EventsOptions {
                since: Some(since_s.to_string()),
                until: Some(until_s.to_string()),
                filters: Some(filters),
            }));
            events
                .filter(|event| std::future::ready(event.is_ok()))
                .count()
                .await
        })
    })
    .join()
    .unwrap()
}

fn registry() -> String {
    workspace_registry().display().to_string()
}

fn apply(dir: &TestDir, sweep: &ContainerSweep, key: &str, plan: &str) -> Run {
    apply_in(dir, sweep, &plan.replace("KEY", key), &registry(), &[])
}

/// `proctor verify ID --json` on the test's SQLite ledger.
fn verify(dir: &TestDir, execution_id: &str) -> Run {
    verify_on(dir, execution_id, "sqlite://ledger.db")
}

/// `proctor verify ID --json` on `ledger`.
fn verify_on(dir: &TestDir, execution_id: &str, ledger: &str) -> Run {
    verify_execution_on(dir, execution_id, &registry(), ledger)
}

/// `proctor run` of mock `text/stats@1` on `text`, recorded in `ledger`, with `extra` flags.
fn run_stats(
    dir: &TestDir,
    sweep: &ContainerSweep,
    ledger: &str,
    text: &str,
    extra: &[&str],
) -> Run {
    let inputs = serde_json::json!({"schema": "v1", "text": text}).to_string();
    let options = sweep.adapter_options();
    let root = registry();
    let mut args = vec![
        "run",
        "--ref",
        "text/stats@1",
        "--adapter",
        "local",
        "--mode",
        "mock",
        "--build",
        "--write-prefix",
        "/artifacts/o/{execution_id}/",
        "--inputs-json",
        &inputs,
        "--adapter-opts-json",
        &options,
        "--registry-root",
        &root,
        "--artifacts-root",
        "artifacts",
        "--ledger",
        ledger,
        "--json",
    ];
    args.extend_from_slice(extra);
    let run = dir.proctor(&args).run();
    run.check(sweep.containers().is_empty(), "no container left");
    run
}

fn execution_id(report: &Value, id: &str) -> String {
    transition(report, id)["execution_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_mock_plan_applied_again_under_a_new_name_is_answered_by_its_first_executions() {
    let dir = TestDir::new();
    let first_sweep = ContainerSweep::new();
    let since = now_s();
    let first = apply(&dir, &first_sweep, "memo-first", PLAN);
    first.exits(0);
    first.check(
        containers_created(&first_sweep, since) >= 1 && containers_started(&first) == 3,
        "the first apply ran every transition",
    );
    let first = first.json();

    // Same transitions under a new plan key: nothing is skipped (skips are per plan), and
    // every transition is a memo hit of the first apply's execution.
    let second_sweep = ContainerSweep::new();
    let second = apply(&dir, &second_sweep, "memo-second", PLAN);
    second.exits(0);
    second.check(
        containers_started(&second) == 0,
        "no run reached a container",
    );
    second.check(
        containers_created(&second_sweep, since) == 0,
        "the engine created no container for the second apply",
    );
    let report = second.json();
    let memo_events = ledger_events(&dir, "memo-second");
    for id in ["stats", "again", "third"] {
        let t = transition(&report, id);
        second.check(t["state"] == "succeeded", "a hit satisfies the transition");
        let hit = execution_id(&report, id);
        let source = execution_id(&first, id);
        second.check(hit != source, "a hit has its own id");
        let recorded = memo_events
            .iter()
            .find(|e| e["kind"] == "execution.memo" && e["execution_id"] == hit.as_str())
            .unwrap_or_else(|| panic!("no execution.memo for {id}: {memo_events:?}"));
        second.check(
            recorded["source_execution_id"] == source.as_str()
                && recorded["source_plan"] == "memo-first",
            "the hit names its source",
        );
        let verified = verify(&dir, &hit);
        verified.exits(0);
        let checks = verified.json()["checks"].clone();
        verified.check(
            checks[0]["name"] == "memo.hit"
                && checks[0]["detail"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("a memo hit of execution `{source}`")),
            "verify reports the hit of its source",
        );
        verified.check(
            checks
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["name"] == "receipt.prefix_copy" && c["ok"] == true),
            "verify checked the source's receipts",
        );
    }
    second.check(
        !memo_events.iter().any(|e| {
            matches!(
                e["kind"].as_str(),
                Some("execution.start" | "budget.reserve" | "lease.acquire")
            )
        }),
        "a hit records no execution, reservation or lease",
    );
    // `again` read the hit's outputs, which are the first `stats`' outputs.
    let resolved = memo_events
        .iter()
        .find(|e| e["kind"] == "transition.run" && e["transition"] == "again")
        .unwrap()["resolved"][0]["execution_id"]
        .clone();
    second.check(
        resolved == execution_id(&first, "stats").as_str(),
        "a reference to a hit names the execution that produced the output",
    );
    for plan in ["memo-first", "memo-second"] {
        verify_chain(&dir, plan).exits(0);
    }
    // Re-applying and reading the status keep working over hits.
    let again_sweep = ContainerSweep::new();
    let reapplied = apply(&dir, &again_sweep, "memo-second", PLAN);
    reapplied.exits(0);
    reapplied.check(
        containers_created(&again_sweep, since) == 0,
        "a re-apply starts no container either",
    );
    for id in ["stats", "again", "third"] {
        let t = transition(&reapplied.json(), id);
        reapplied.check(
            t["state"] == "skipped" && t["execution_id"] == execution_id(&report, id).as_str(),
            "a re-apply skips each transition its verified hit stands for",
        );
    }
    let status = dir
        .proctor(&[
            "plan",
            "status",
            "memo-second",
            "--json",
            "--ledger",
            "sqlite://ledger.db",
        ])
        .run();
    status.exits(0);
    status.check(
        status.json()["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["state"] == "succeeded" || t["state"] == "skipped"),
        "every transition succeeded",
    );
}

#[test]
fn a_downstream_run_after_a_hit_names_the_producing_execution_in_its_receipt() {
    let dir = TestDir::new();
    let sweep = ContainerSweep::new();
    let first = apply(&dir, &sweep, "memo-up", PLAN);
    first.exits(0);
    let first = first.json();
    // `third` opts out: it runs, reading the output the hit of `stats` stands for.
    let opted_out = PLAN.replace(
        "inputs: {schema: v1, top_n: 3,",
        "memo: false\n    inputs: {schema: v1, top_n: 3,",
    );
    let second_sweep = ContainerSweep::new();
    let since = now_s();
    let second = apply(&dir, &second_sweep, "memo-down", &opted_out);
    second.exits(0);
    second.check(
        containers_created(&second_sweep, since) == 1 && containers_started(&second) == 1,
        "only the transition that opted out ran",
    );
    let third = execution_id(&second.json(), "third");
    let receipt: Value = serde_json::from_slice(
        &std::fs::read(
            dir.path()
                .join(format!("artifacts/execution/{third}/receipt.json")),
        )
        .unwrap(),
    )
    .unwrap();
    second.check(
        receipt["upstream"][0]["execution_id"] == execution_id(&first, "stats").as_str(),
        "the receipt names the execution that produced the output it read",
    );
    verify(&dir, &third).exits(0);
}

#[test]
fn run_memo_hits_only_a_source_that_still_verifies_on_sqlite() {
    run_memo_hits_only_a_source_that_still_verifies("sqlite://ledger.db");
}

#[test]
fn run_memo_hits_only_a_source_that_still_verifies_on_postgres() {
    let database = PostgresDatabase::create();
    run_memo_hits_only_a_source_that_still_verifies(&database.url());
}

fn run_memo_hits_only_a_source_that_still_verifies(ledger: &str) {
    let dir = TestDir::new();
    let sweep = ContainerSweep::new();
    let text = "Memo me. Memo me again.";
    let source = run_stats(&dir, &sweep, ledger, text, &["--memo"]);
    source.exits(0);
    source.check(containers_started(&source) == 1, "the first run ran");
    let source_id = source.json()["execution_id"].as_str().unwrap().to_owned();
    source.check(
        source.json().get("memo_source").is_none(),
        "a run is no hit",
    );

    let hit_sweep = ContainerSweep::new();
    let since = now_s();
    let hit = run_stats(
        &dir,
        &hit_sweep,
        ledger,
        text,
        &["--memo", "--save-dir", "saved"],
    );
    hit.exits(0);
    hit.check(
        containers_created(&hit_sweep, since) == 0,
        "a hit creates no container",
    );
    let envelope = hit.json();
    hit.check(envelope["memo_source"] == source_id.as_str(), "memo_source");
    hit.check(
        envelope["outputs"] == source.json()["outputs"]
            && envelope["index_path"] == source.json()["index_path"],
        "the hit's outputs are the source's",
    );
    let saved = dir
        .path()
        .join(format!("saved/artifacts/o/{source_id}/outputs/stats.json"));
    let world = dir
        .path()
        .join(format!("artifacts/o/{source_id}/outputs/stats.json"));
    hit.check(
        saved.is_file() && std::fs::read(&saved).unwrap() == std::fs::read(&world).unwrap(),
        "--save-dir copies the source's outputs",
    );
    let hit_id = envelope["execution_id"].as_str().unwrap().to_owned();
    verify_on(&dir, &hit_id, ledger).exits(0);

    // Without --memo, a run runs.
    let plain_sweep = ContainerSweep::new();
    let plain = run_stats(&dir, &plain_sweep, ledger, text, &[]);
    plain.exits(0);
    plain.check(
        containers_created(&plain_sweep, since) == 1 && plain.json().get("memo_source").is_none(),
        "a run without --memo never hits",
    );

    // Tamper with every source's output: no hit, the run runs, and the hits answered by
    // the tampered source no longer verify.
    for execution in [&source_id, plain.json()["execution_id"].as_str().unwrap()] {
        let stats = dir
            .path()
            .join(format!("artifacts/o/{execution}/outputs/stats.json"));
        let mut permissions = std::fs::metadata(&stats).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        permissions.set_readonly(false);
        std::fs::set_permissions(&stats, permissions).unwrap();
        std::fs::write(&stats, b"{\"words\":0}").unwrap();
    }
    let tampered_sweep = ContainerSweep::new();
    let rerun = run_stats(&dir, &tampered_sweep, ledger, text, &["--memo"]);
    rerun.exits(0);
    rerun.check(
        containers_created(&tampered_sweep, since) == 1,
        "a tampered source is not a hit: the run ran",
    );
    rerun.check(rerun.json().get("memo_source").is_none(), "no memo_source");
    let failed = verify_on(&dir, &hit_id, ledger);
    failed.exits(ErrorCode::Verify.exit_code());
    failed.check(
        failed.json()["error"]["code"] == ErrorCode::Verify.as_str()
            && failed.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("output:"),
        "the hit no longer verifies: its source's output was changed",
    );
    dir.proctor(&["ledger", "verify", "--ledger", ledger])
        .run()
        .exits(0);
}

#[test]
fn real_mode_hits_only_transitions_that_ask_for_it() {
    let dir = TestDir::new();
    let real = r#"
plan: KEY
mode: real
transitions:
  - id: stats
    ref: text/stats@1
    inputs: {schema: v1, text: "Real text, measured for real."}
"#;
    let sweep = ContainerSweep::new();
    apply(&dir, &sweep, "real-first", real).exits(0);
    let default_sweep = ContainerSweep::new();
    let since = now_s();
    let second = apply(&dir, &default_sweep, "real-second", real);
    second.exits(0);
    second.check(
        containers_created(&default_sweep, since) == 1,
        "real mode without memo: true never hits",
    );
    let opted_in = real.replace("    inputs:", "    memo: true\n    inputs:");
    let opted_sweep = ContainerSweep::new();
    let third = apply(&dir, &opted_sweep, "real-third", &opted_in);
    third.exits(0);
    third.check(
        containers_created(&opted_sweep, since) == 0,
        "memo: true in real mode hits",
    );
    let hit = execution_id(&third.json(), "stats");
    verify(&dir, &hit).exits(0);
}
