//! Warm containers in `proctor plan apply`: a container serves later transitions of its
//! kind, each with its own evidence; one that timed out, crashed or never became healthy is
//! never given another; none is left at the end or after Ctrl-C.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::engine::ContainerSweep;
use crate::ledger::ledger_json;
use crate::plan::{
    apply_command, apply_in, containers_started, transition, verify_chain, verify_execution,
};
use crate::util::{Run, Started, TestDir, fixtures_registry, workspace_registry};

/// The container each execution ran in, from the `container.started` and
/// `container.reused` log lines.
fn container_of_execution(run: &Run) -> BTreeMap<String, String> {
    ["container.started", "container.reused"]
        .into_iter()
        .flat_map(|event| run.events(event))
        .map(|line| {
            (
                line["execution_id"].as_str().unwrap().to_owned(),
                line["container"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The container transition `id` ran in.
fn container_of(run: &Run, report: &Value, id: &str) -> String {
    let execution_id = transition(report, id)["execution_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{id} has no execution"))
        .to_owned();
    container_of_execution(run)
        .remove(&execution_id)
        .unwrap_or_else(|| panic!("{id} ran in no container"))
}

#[test]
fn one_warm_container_serves_transitions_that_keep_their_own_evidence() {
    let dir = TestDir::new();
    let sweep = ContainerSweep::new();
    let plan = r#"
plan: warm
mode: mock
policy: {max_parallel: 1}
transitions:
  - {id: first, ref: text/stats@1, inputs: {schema: v1, text: "one two two"}}
  - {id: second, ref: text/stats@1, inputs: {schema: v1, text: "three three three"}}
  - {id: third, ref: text/stats@1, inputs: {schema: v1, text: {$from: "first:outputs/normalized.txt"}}}
"#;
    let registry = workspace_registry().display().to_string();
    let run = apply_in(&dir, &sweep, plan, &registry, &[]);
    run.exits(0);
    let report = run.json();
    run.check(
        run.events("container.started").len() == 1,
        "one container started",
    );
    run.check(
        run.events("container.reused").len() == 2,
        "two runs reused it",
    );
    let container = container_of(&run, &report, "first");
    let mut receipts = Vec::new();
    for id in ["first", "second", "third"] {
        let t = transition(&report, id);
        run.check(t["state"] == "succeeded", "each transition succeeded");
        run.check(
            container_of(&run, &report, id) == container,
            "each ran in the one container",
        );
        let execution_id = t["execution_id"].as_str().unwrap();
        let receipt: Value = serde_json::from_slice(
            &std::fs::read(
                dir.path()
                    .join("artifacts/execution")
                    .join(execution_id)
                    .join("receipt.json"),
            )
            .unwrap(),
        )
        .unwrap();
        run.check(
            receipt["execution_id"] == execution_id,
            "its receipt names its execution",
        );
        run.check(
            receipt["outputs_index"]
                .as_str()
                .unwrap()
                .contains(&format!("/{id}/{execution_id}/")),
            "its index lies under its own write prefix",
        );
        receipts.push(receipt);
        verify_execution(&dir, execution_id, &registry).exits(0);
    }
    run.check(
        receipts[0]["inputs_hash"] != receipts[1]["inputs_hash"],
        "each receipt hashes its own inputs",
    );
    verify_chain(&dir, "warm").exits(0);
}

#[test]
fn a_container_that_timed_out_or_crashed_is_never_reused() {
    let dir = TestDir::new();
    let sweep = ContainerSweep::new();
    // One at a time, in file order: a processor's own error envelope keeps its container;
    // a timeout and a crash discard theirs.
    let plan = r#"
plan: discards
mode: mock
policy: {max_parallel: 1, on_failure: continue}
transitions:
  - {id: refused, ref: testing/faulty@1, inputs: {schema: v1, fault: provider_error}}
  - {id: after_refusal, ref: testing/faulty@1, inputs: {schema: v1, fault: provider_error}}
  - {id: hung, ref: testing/faulty@1, timeout_s: 2, inputs: {schema: v1, fault: hang}}
  - {id: after_timeout, ref: testing/faulty@1, inputs: {schema: v1, fault: provider_error}}
  - {id: crashed, ref: testing/faulty@1, inputs: {schema: v1, fault: crash}}
  - {id: after_crash, ref: testing/faulty@1, inputs: {schema: v1, fault: provider_error}}
"#;
    let run = apply_in(&dir, &sweep, plan, &fixtures_registry(), &[]);
    let report = run.json();
    run.check(
        transition(&report, "hung")["error"]["code"] == "ERR_TIMEOUT",
        "hung timed out",
    );
    run.check(
        transition(&report, "crashed")["error"]["code"] == "ERR_ADAPTER_INVOCATION",
        "crashed failed in the adapter",
    );
    for id in ["refused", "after_refusal", "after_timeout", "after_crash"] {
        run.check(
            transition(&report, id)["error"]["code"] == "ERR_PROVIDER",
            "the other runs answered with their error envelope",
        );
    }
    let of = |id| container_of(&run, &report, id);
    run.check(
        of("after_refusal") == of("refused"),
        "an error envelope keeps the container",
    );
    run.check(
        of("after_timeout") != of("hung"),
        "a timed-out container is not reused",
    );
    run.check(
        of("after_crash") != of("crashed"),
        "a crashed container is not reused",
    );
    run.check(
        run.events("container.started").len() == 3,
        "three containers",
    );
    run.check(
        containers_started(&run) == 6,
        "six runs reached a container",
    );
}

#[test]
fn a_container_that_never_became_healthy_is_never_reused() {
    let dir = TestDir::new();
    let sweep = ContainerSweep::new();
    let plan = r#"
plan: unhealthy
mode: real
policy: {max_parallel: 1, on_failure: continue}
transitions:
  - {id: one, ref: testing/faulty@1, timeout_s: 2, inputs: {schema: v1}}
  - {id: two, ref: testing/faulty@1, timeout_s: 2, inputs: {schema: v1}}
"#;
    let run = apply_in(
        &dir,
        &sweep,
        plan,
        &fixtures_registry(),
        &[("FAULTY_STARTUP", "unhealthy")],
    );
    let report = run.json();
    for id in ["one", "two"] {
        run.check(
            transition(&report, id)["error"]["code"] == "ERR_TIMEOUT",
            "each timed out waiting for health",
        );
    }
    run.check(
        run.events("container.started").len() == 2,
        "each got a fresh container",
    );
    run.check(run.events("container.reused").is_empty(), "none reused");
}

/// Starts `plan apply` of a plan whose `a` and `b` start two warm containers and whose
/// `hang` then takes the first to free up and never answers, the other staying idle; returns
/// once `hang` has been posted to its container.
fn start_with_busy_and_idle_warm_containers(dir: &TestDir, sweep: &ContainerSweep) -> Started {
    let file = dir.write(
        "plan.yaml",
        r#"
plan: interrupted
mode: mock
policy: {max_parallel: 2, on_failure: continue}
transitions:
  - {id: a, ref: testing/faulty@1, inputs: {schema: v1, fault: provider_error}}
  - {id: b, ref: testing/faulty@1, inputs: {schema: v1, fault: provider_error}}
  - {id: hang, ref: testing/faulty@1, timeout_s: 600, inputs: {schema: v1, fault: hang}}
"#,
    );
    let mut started = apply_command(
        dir,
        sweep,
        &file,
        &fixtures_registry(),
        "sqlite://ledger.db",
    )
    .start();
    let hang_admitted = || {
        let run = dir
            .proctor(&[
                "ledger",
                "show",
                "interrupted",
                "--json",
                "--ledger",
                "sqlite://ledger.db",
            ])
            .run();
        run.code == 0
            && run.json()["events"].as_array().is_some_and(|events| {
                events
                    .iter()
                    .filter(|e| e["kind"] == "execution.start")
                    .count()
                    == 3
            })
    };
    while !(sweep.containers().len() == 2 && hang_admitted()) {
        assert!(!started.has_ended(), "the plan ended before `hang` ran");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Give `hang` time to be posted to its container.
    std::thread::sleep(std::time::Duration::from_millis(500));
    started
}

/// Sends `signal` to the started command.
fn signal(started: &Started, signal: &str) {
    let sent = std::process::Command::new("kill")
        .args([signal, &started.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

#[test]
fn ctrl_c_mid_plan_removes_busy_and_idle_warm_containers() {
    let dir = TestDir::new();
    let sweep = ContainerSweep::new();
    let started = start_with_busy_and_idle_warm_containers(&dir, &sweep);
    signal(&started, "-INT");
    let run = started.finish();
    run.exits(130);
    let report = run.json();
    run.check(
        transition(&report, "hang")["error"]["code"] == "ERR_INTERRUPTED",
        "hang was interrupted",
    );
    run.check(sweep.containers().is_empty(), "no container is left");
    verify_chain(&dir, "interrupted").exits(0);
}

#[test]
fn recovery_removes_the_warm_containers_of_a_killed_apply() {
    let dir = TestDir::new();
    let sweep = ContainerSweep::new();
    let started = start_with_busy_and_idle_warm_containers(&dir, &sweep);
    signal(&started, "-KILL");
    drop(started.finish());
    assert_eq!(
        sweep.containers().len(),
        2,
        "both containers outlive the kill"
    );
    let report = ledger_json(&dir, &["recover", "--ledger", "sqlite://ledger.db"]);
    let recovered = report["executions"].as_array().unwrap();
    assert_eq!(recovered.len(), 1, "{report:#}");
    assert_eq!(recovered[0]["error"]["code"], "ERR_ABANDONED", "{report:#}");
    assert_eq!(
        recovered[0]["containers_removed"].as_array().unwrap().len(),
        2,
        "the busy and the idle container: {report:#}"
    );
    assert!(sweep.containers().is_empty(), "no container is left");
    ledger_json(&dir, &["verify", "--ledger", "sqlite://ledger.db"]);
}

#[test]
fn a_busy_warm_container_is_waited_for_and_the_transitions_succeed() {
    let dir = TestDir::new();
    let sweep = ContainerSweep::new();
    // The fixture answers its first two `/run` requests busy, then runs (with receipts)
    // every `busy` request: `after` (the same inputs, so no memo) reuses the container
    // and is not answered busy.
    let plan = r#"
plan: busy
mode: mock
policy: {max_parallel: 1}
transitions:
  - {id: busy, ref: testing/faulty@1, inputs: {schema: v1, fault: busy}}
  - {id: after, ref: testing/faulty@1, after: [busy], memo: false, inputs: {schema: v1, fault: busy}}
"#;
    let run = apply_in(&dir, &sweep, plan, &fixtures_registry(), &[]);
    run.exits(0);
    let report = run.json();
    for id in ["busy", "after"] {
        run.check(
            transition(&report, id)["state"] == "succeeded",
            "each transition succeeded",
        );
    }
    run.check(
        run.events("processor.busy").len() == 2,
        "both busy answers were waited out",
    );
    run.check(
        container_of(&run, &report, "after") == container_of(&run, &report, "busy"),
        "a busy answer does not discard the container",
    );
}
