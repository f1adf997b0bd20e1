//! `proctor plan apply|status|graph` on the Docker engine: mock mode, images built from
//! source (`--build`), the shipped `text/stats@1`. Every container carries a
//! [`ContainerSweep`] label; "before any container" means no `container.started` log line
//! and no container with the label.

use std::path::Path;

use proctor_contract::ErrorCode;
use serde_json::Value;

use crate::engine::ContainerSweep;
use crate::util::{Proctor, Run, TestDir, fixtures_registry, workspace_registry};

/// A two-level plan: `stats` measures a text, `again` measures `stats`' normalized text
/// (a `$from` reference) once `stats.json` is larger than 10 bytes.
const TWO_LEVELS: &str = r#"
plan: demo
mode: mock
policy: {max_parallel: 2}
transitions:
  - id: stats
    ref: text/stats@1
    inputs: {schema: v1, text: "The quick brown fox. The lazy dog."}
    predicates:
      success: [{id: file.size_gt@1, args: {path: "{outputs}/stats.json", bytes: 10}}]
  - id: again
    ref: text/stats@1
    inputs: {schema: v1, text: {$from: "stats:outputs/normalized.txt"}}
"#;

/// `proctor plan apply FILE --build --json` with the workspace registry, a local World and
/// ledger, and containers labelled by `sweep`.
fn apply(dir: &TestDir, sweep: &ContainerSweep, plan: &str, env: &[(&str, &str)]) -> Run {
    apply_in(
        dir,
        sweep,
        plan,
        &workspace_registry().display().to_string(),
        env,
    )
}

/// [`apply`] with the registry at `root`.
pub(crate) fn apply_in(
    dir: &TestDir,
    sweep: &ContainerSweep,
    plan: &str,
    root: &str,
    env: &[(&str, &str)],
) -> Run {
    let file = dir.write("plan.yaml", plan);
    let mut command = apply_command(dir, sweep, &file, root, "sqlite://ledger.db");
    for (name, value) in env {
        command = command.env(name, value);
    }
    let run = command.run();
    run.check(
        sweep.containers().is_empty(),
        "no container may be left after the plan",
    );
    run
}

/// `proctor plan apply FILE --build --json` with the registry at `root`, the World in
/// `artifacts`, the ledger at `ledger`, and containers labelled by `sweep`.
pub(crate) fn apply_command(
    dir: &TestDir,
    sweep: &ContainerSweep,
    file: &Path,
    root: &str,
    ledger: &str,
) -> Proctor {
    dir.proctor(&[
        "plan",
        "apply",
        file.to_str().unwrap(),
        "--build",
        "--json",
        "--adapter-opts-json",
        &sweep.adapter_options(),
        "--registry-root",
        root,
        "--artifacts-root",
        "artifacts",
        "--ledger",
        ledger,
    ])
}

/// `proctor verify ID --json` with the registry at `root`, on the test's SQLite ledger.
pub(crate) fn verify_execution(dir: &TestDir, execution_id: &str, root: &str) -> Run {
    verify_execution_on(dir, execution_id, root, "sqlite://ledger.db")
}

/// `proctor verify ID --json` with the registry at `root`, on `ledger`.
pub(crate) fn verify_execution_on(
    dir: &TestDir,
    execution_id: &str,
    root: &str,
    ledger: &str,
) -> Run {
    dir.proctor(&[
        "verify",
        execution_id,
        "--json",
        "--artifacts-root",
        "artifacts",
        "--registry-root",
        root,
        "--ledger",
        ledger,
    ])
    .run()
}

/// `proctor ledger verify PLAN` on the test's SQLite ledger.
pub(crate) fn verify_chain(dir: &TestDir, plan: &str) -> Run {
    dir.proctor(&["ledger", "verify", plan, "--ledger", "sqlite://ledger.db"])
        .run()
}

/// `proctor plan status PLAN --json` on the test's SQLite ledger.
fn plan_status(dir: &TestDir, plan: &str) -> Run {
    dir.proctor(&[
        "plan",
        "status",
        plan,
        "--json",
        "--ledger",
        "sqlite://ledger.db",
    ])
    .run()
}

/// How many runs of the command reached a container: a new one (`container.started`) or
/// a warm one (`container.reused`).
pub(crate) fn containers_started(run: &Run) -> usize {
    run.events("container.started").len() + run.events("container.reused").len()
}

/// The report's entry for `id`.
pub(crate) fn transition(report: &Value, id: &str) -> Value {
    report["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no transition {id} in {report}"))
        .clone()
}

/// The plan's ledger events, each payload parsed.
pub(crate) fn ledger_events(dir: &TestDir, plan: &str) -> Vec<Value> {
    let run = dir
        .proctor(&[
            "ledger",
            "show",
            plan,
            "--json",
            "--ledger",
            "sqlite://ledger.db",
        ])
        .run();
    run.exits(0);
    run.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| match &event["payload"] {
            Value::String(text) => serde_json::from_str(text).unwrap(),
            other => other.clone(),
        })
        .collect()
}

fn asserts_plan_refused(run: &Run, code: ErrorCode, detail: &str) {
    run.exits(code.exit_code());
    let message = run.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    run.check(run.json()["error"]["code"] == code.as_str(), "the code");
    run.check(message.starts_with(code.fragment()), "the fragment");
    run.check(
        message.contains(detail),
        &format!("a message naming {detail:?}"),
    );
    run.check(containers_started(run) == 0, "no container started");
}

#[test]
fn a_two_level_plan_runs_verifies_and_reapplies_only_what_is_missing() {
    let dir = TestDir::new();
    let sweep = ContainerSweep::new();
    let run = apply(&dir, &sweep, TWO_LEVELS, &[]);
    run.exits(0);
    let report = run.json();
    run.check(report["ok"] == true, "the plan succeeded");
    let stats = transition(&report, "stats");
    let again = transition(&report, "again");
    for t in [&stats, &again] {
        run.check(t["state"] == "succeeded", "each transition succeeded");
        let execution_id = t["execution_id"].as_str().unwrap();
        verify_execution(
            &dir,
            execution_id,
            &workspace_registry().display().to_string(),
        )
        .exits(0);
    }
    verify_chain(&dir, "demo").exits(0);
    // `again` read the bytes of stats' output, pinned by its CID.
    let events = ledger_events(&dir, "demo");
    let resolved = events
        .iter()
        .find(|e| e["kind"] == "transition.run" && e["transition"] == "again")
        .unwrap()["resolved"][0]
        .clone();
    run.check(
        resolved["execution_id"] == stats["execution_id"],
        "resolved upstream",
    );
    run.check(
        resolved["path"]
            .as_str()
            .unwrap()
            .ends_with("/outputs/normalized.txt"),
        "resolved path",
    );
    // Its committed receipt names the upstream execution, path and CID it read.
    let receipt: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join(format!(
            "artifacts/execution/{}/receipt.json",
            again["execution_id"].as_str().unwrap()
        )))
        .unwrap(),
    )
    .unwrap();
    let normalized_path = resolved["path"].as_str().unwrap();
    let normalized = std::fs::read(
        dir.path()
            .join("artifacts")
            .join(normalized_path.strip_prefix("/artifacts/").unwrap()),
    )
    .unwrap();
    run.check(
        receipt["upstream"]
            == serde_json::json!([{
                "execution_id": stats["execution_id"],
                "path": resolved["path"],
                "cid": proctor_contract::cid(&normalized),
            }]),
        &format!("the receipt names its upstream: {receipt}"),
    );
    run.check(
        events
            .iter()
            .any(|e| e["kind"] == "predicate.check" && e["passed"] == true),
        "the success predicate was recorded",
    );

    // Re-applying a finished plan starts no container.
    let again_run = apply(&dir, &sweep, TWO_LEVELS, &[]);
    again_run.exits(0);
    again_run.check(
        containers_started(&again_run) == 0,
        "no container on re-apply",
    );
    for id in ["stats", "again"] {
        let t = transition(&again_run.json(), id);
        again_run.check(t["state"] == "skipped", "each transition skipped");
    }

    // Deleting stats' output reruns stats; `again` reads the same bytes and is skipped.
    let stats_dir = dir.path().join(format!(
        "artifacts/plans/demo/stats/{}/outputs",
        stats["execution_id"].as_str().unwrap()
    ));
    std::fs::remove_file(stats_dir.join("words.csv")).unwrap();
    let repaired = apply(&dir, &sweep, TWO_LEVELS, &[]);
    repaired.exits(0);
    let report = repaired.json();
    repaired.check(
        transition(&report, "stats")["state"] == "succeeded",
        "stats reran",
    );
    repaired.check(
        transition(&report, "again")["state"] == "skipped",
        "again skipped",
    );
    repaired.check(containers_started(&repaired) == 1, "one container");

    let status = plan_status(&dir, "demo");
    status.exits(0);
    status.check(
        transition(&status.json(), "again")["state"] == "skipped",
        "status reads the last apply",
    );
    let graph = dir
        .proctor(&["plan", "graph", "demo", "--ledger", "sqlite://ledger.db"])
        .run();
    graph.exits(0);
    graph.check(
        graph.stdout.contains("t0 --> t1") && graph.stdout.contains("stats<br/>succeeded"),
        "a Mermaid graph with states",
    );
}

#[test]
fn a_false_admission_predicate_starts_nothing() {
    let dir = TestDir::new();
    let sweep = ContainerSweep::new();
    let plan = TWO_LEVELS.replace(
        "    predicates:\n      success:",
        "    predicates:\n      admission: [{id: artifact.exists@1, args: {path: /artifacts/inputs/style.md}}]\n      success:",
    );
    let run = apply(&dir, &sweep, &plan, &[]);
    run.exits(ErrorCode::Predicate.exit_code());
    run.check(containers_started(&run) == 0, "no container started");
    let report = run.json();
    run.check(report["error"]["code"] == "ERR_PREDICATE", "ERR_PREDICATE");
    run.check(
        transition(&report, "stats")["state"] == "failed",
        "stats refused",
    );
    run.check(
        transition(&report, "again")["state"] == "not_started",
        "again not started",
    );
    let events = ledger_events(&dir, "demo");
    run.check(
        events.iter().any(|e| {
            e["kind"] == "predicate.check"
                && e["predicate"] == "artifact.exists@1"
                && e["passed"] == false
        }),
        "the ledger shows the failed check",
    );
    run.check(
        !events.iter().any(|e| e["kind"] == "execution.start"),
        "no execution started",
    );
    let status = plan_status(&dir, "demo");
    status.exits(0);
    let stats = transition(&status.json(), "stats");
    status.check(
        stats["state"] == "failed" && stats["error"]["code"] == "ERR_PREDICATE",
        "status shows the refusal",
    );
}

#[test]
fn a_false_success_predicate_fails_the_transition_and_keeps_its_evidence() {
    let dir = TestDir::new();
    let sweep = ContainerSweep::new();
    let plan = TWO_LEVELS.replace("bytes: 10}", "bytes: 1000000}");
    let run = apply(&dir, &sweep, &plan, &[]);
    run.exits(ErrorCode::Predicate.exit_code());
    let stats = transition(&run.json(), "stats");
    run.check(stats["state"] == "failed", "stats failed");
    run.check(
        stats["error"]["message"]
            .as_str()
            .unwrap()
            .contains("file.size_gt@1"),
        "the error names the predicate",
    );
    run.check(containers_started(&run) == 1, "only stats ran");
    // Its evidence is kept and verifies.
    verify_execution(
        &dir,
        stats["execution_id"].as_str().unwrap(),
        &workspace_registry().display().to_string(),
    )
    .exits(0);
}

#[test]
fn invalid_plans_are_refused_before_any_container() {
    let dir = TestDir::new();
    let sweep = ContainerSweep::new();
    let cycle = TWO_LEVELS.replace(
        "    predicates:\n      success:",
        "    after: [again]\n    predicates:\n      success:",
    );
    let cases = [
        (cycle, "a cycle"),
        (
            TWO_LEVELS.replace(
                "ref: text/stats@1\n    inputs: {schema: v1, text: {",
                "ref: text/none@1\n    inputs: {schema: v1, text: {",
            ),
            "processor not found in registry",
        ),
        (
            TWO_LEVELS.replace("file.size_gt@1", "file.size_lt@1"),
            "file.size_lt@1",
        ),
        (
            TWO_LEVELS.replace("{schema: v1, text: \"The", "{schema: v2, text: \"The"),
            "invalid inputs payload",
        ),
    ];
    for (plan, detail) in &cases {
        let run = apply(&dir, &sweep, plan, &[]);
        asserts_plan_refused(&run, ErrorCode::Plan, detail);
    }
    let real = TWO_LEVELS.replace(
        "ref: text/stats@1\n    inputs: {schema: v1, text: {",
        "ref: text/stats@1\n    mode: real\n    inputs: {schema: v1, text: {",
    );
    let run = apply(&dir, &sweep, &real, &[("CI", "true")]);
    asserts_plan_refused(&run, ErrorCode::CiSafety, "CI=true");
    run.check(
        !dir.path().join("ledger.db").exists(),
        "nothing was recorded",
    );
}

/// Four transitions under a budget of 10: `second` reserves more than is left.
const BUDGETED: &str = r#"
plan: budgeted
mode: mock
budget_micro_usd: 10
policy: {on_failure: continue}
transitions:
  - {id: first, ref: text/stats@1, reserve_micro_usd: 6, inputs: {schema: v1, text: "one"}}
  - {id: second, ref: text/stats@1, after: [first], reserve_micro_usd: 11, inputs: {schema: v1, text: "two"}}
  - {id: third, ref: text/stats@1, after: [second], inputs: {schema: v1, text: "three"}}
  - {id: fourth, ref: text/stats@1, after: [first], reserve_micro_usd: 4, inputs: {schema: v1, text: "four"}}
"#;

#[test]
fn an_exhausted_budget_refuses_later_transitions_before_their_container() {
    let dir = TestDir::new();
    let sweep = ContainerSweep::new();
    let run = apply(&dir, &sweep, BUDGETED, &[]);
    run.exits(ErrorCode::BudgetExceeded.exit_code());
    let report = run.json();
    run.check(
        transition(&report, "first")["state"] == "succeeded",
        "first ran",
    );
    let second = transition(&report, "second");
    run.check(
        second["error"]["code"] == "ERR_BUDGET_EXCEEDED",
        "second refused",
    );
    run.check(
        transition(&report, "third")["state"] == "not_started",
        "third downstream",
    );
    run.check(
        transition(&report, "fourth")["state"] == "succeeded",
        "fourth ran (continue)",
    );
    run.check(
        containers_started(&run) == 2,
        "only first and fourth started a container",
    );
}

#[test]
fn a_planner_fans_out_three_levels_and_every_execution_verifies() {
    let dir = TestDir::new();
    let sweep = ContainerSweep::new();
    let plan = r#"
plan: mapped
mode: mock
transitions:
  - id: stats
    ref: text/stats@1
    inputs: {schema: v1, text: "The quick brown fox jumps over the lazy dog. The dog sleeps."}
  - id: map
    ref: plan/map@1
    inputs: {schema: v1, text: {$from: "stats:outputs/normalized.txt"}, chunk_chars: 30}
"#;
    let run = apply(&dir, &sweep, plan, &[]);
    run.exits(0);
    let report = run.json();
    let ids: Vec<&str> = report["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    run.check(
        ids.contains(&"map/chunk-0000"),
        "the proposal's chunks joined",
    );
    run.check(ids.contains(&"map/merge"), "the proposal's merge joined");
    for t in report["transitions"].as_array().unwrap() {
        run.check(t["state"] == "succeeded", "every transition succeeded");
        verify_execution(
            &dir,
            t["execution_id"].as_str().unwrap(),
            &workspace_registry().display().to_string(),
        )
        .exits(0);
    }
    verify_chain(&dir, "mapped").exits(0);
    let events = ledger_events(&dir, "mapped");
    run.check(
        events
            .iter()
            .any(|e| e["kind"] == "plan.proposed" && e["planner"] == "map"),
        "plan.proposed recorded",
    );
    let again = apply(&dir, &sweep, plan, &[]);
    again.exits(0);
    again.check(
        containers_started(&again) == 0,
        "re-apply starts no container",
    );
}

#[test]
fn ctrl_c_stops_admitting_and_cancels_the_running_transition() {
    let dir = TestDir::new();
    let sweep = ContainerSweep::new();
    let file = dir.write(
        "plan.yaml",
        r#"
plan: stopped
mode: mock
transitions:
  - {id: hang, ref: testing/faulty@1, timeout_s: 600, inputs: {schema: v1, fault: hang}}
  - {id: later, ref: testing/faulty@1, after: [hang], inputs: {schema: v1}}
"#,
    );
    let started = apply_command(
        &dir,
        &sweep,
        &file,
        &fixtures_registry(),
        "sqlite://ledger.db",
    )
    .start();
    let mut started = started;
    while sweep.containers().is_empty() {
        assert!(
            !started.has_ended(),
            "the plan ended before its container started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let sent = std::process::Command::new("kill")
        .args(["-INT", &started.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let run = started.finish();
    run.exits(130);
    let report = run.json();
    let hang = transition(&report, "hang");
    run.check(
        hang["error"]["code"] == "ERR_INTERRUPTED",
        "the run was interrupted",
    );
    run.check(
        transition(&report, "later")["state"] == "not_started",
        "later not started",
    );
    run.check(sweep.containers().is_empty(), "no container is left");
    verify_chain(&dir, "stopped").exits(0);
}

#[test]
fn on_failure_stop_admits_nothing_after_a_failure() {
    let dir = TestDir::new();
    let sweep = ContainerSweep::new();
    let plan = BUDGETED.replace(
        "policy: {on_failure: continue}",
        "policy: {max_parallel: 1, on_failure: stop}",
    );
    let run = apply(&dir, &sweep, &plan, &[]);
    run.exits(ErrorCode::BudgetExceeded.exit_code());
    let report = run.json();
    run.check(
        transition(&report, "first")["state"] == "succeeded",
        "first ran",
    );
    for id in ["third", "fourth"] {
        run.check(
            transition(&report, id)["state"] == "not_started",
            "nothing after the failure",
        );
    }
    run.check(
        containers_started(&run) == 1,
        "only first started a container",
    );
}
