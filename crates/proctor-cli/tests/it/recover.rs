//! Recovery of a run whose `proctor` process was killed (SIGKILL: nothing is cleaned up):
//! `proctor ledger recover` removes its container, releases its lease and reservation and
//! settles it as `ERR_ABANDONED`; a new `proctor run` on the same plan does the same first.
//! The killed run hangs in `testing/faulty@1`'s `/run`, so its container is running.
//!
//! Needs the Docker engine of `scripts/setup.sh`.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::engine::ContainerSweep;
use crate::ledger::{events_of, ledger_json};
use crate::util::{TestDir, workspace_registry};

/// The label carrying the execution id on every run's container
/// (`proctor_adapters::LABEL_EXECUTION_ID`).
const LABEL_EXECUTION_ID: &str = "proctor.execution_id";
/// The plan's budget, and what each run reserves: two reservations do not fit.
const BUDGET: &str = "1000";
const RESERVE: &str = "800";
/// The longest wait for the killed run's container to reach `/run` (a cold build first).
const RUN_WAIT: Duration = Duration::from_secs(900);

/// `proctor run` of `processor` from source in `registry_root` with `inputs`, reserving
/// [`RESERVE`] on the default plan, its container labelled for `sweep`.
fn run_from_source(
    dir: &TestDir,
    sweep: &ContainerSweep,
    registry_root: &Path,
    processor: &str,
    inputs: &str,
) -> crate::util::Proctor {
    let options = sweep.adapter_options();
    dir.proctor(&[
        "run",
        "--ref",
        processor,
        "--adapter",
        "local",
        "--build",
        "--write-prefix",
        "/artifacts/o/{execution_id}",
        "--adapter-opts-json",
        &options,
        "--registry-root",
        &registry_root.display().to_string(),
        "--artifacts-root",
        "artifacts",
        "--reserve-micro-usd",
        RESERVE,
        "--inputs-json",
        inputs,
        "--json",
    ])
}

/// A well-behaved `text/stats@1` run on the plan.
fn stats_run(dir: &TestDir, sweep: &ContainerSweep) -> crate::util::Run {
    let inputs = r#"{"schema":"v1","text":"after recovery"}"#;
    run_from_source(dir, sweep, &workspace_registry(), "text/stats@1", inputs).run()
}

/// Starts a run whose processor hangs in `/run`, waits until it is there, and kills
/// `proctor` with SIGKILL; gives the execution id its container carries.
fn killed_run(dir: &TestDir, sweep: &ContainerSweep) -> String {
    let fixtures = workspace_registry().join("../fixtures/processors");
    let inputs = r#"{"schema":"v1","fault":"hang"}"#;
    let started = run_from_source(dir, sweep, &fixtures, "testing/faulty@1", inputs).start();
    let mut waited = Duration::ZERO;
    let container = loop {
        let running = sweep.containers().into_iter().find(|id| {
            docker(&["logs", id], |logs| {
                String::from_utf8_lossy(&logs.stderr).contains("processor-testing-faulty: run ")
            })
        });
        if let Some(container) = running {
            break container;
        }
        assert!(waited < RUN_WAIT, "the run never reached /run");
        std::thread::sleep(Duration::from_millis(50));
        waited += Duration::from_millis(50);
    };
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &started.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    started.finish();
    let label = format!("{{{{index .Config.Labels \"{LABEL_EXECUTION_ID}\"}}}}");
    docker(&["inspect", "--format", &label, &container], |inspected| {
        String::from_utf8_lossy(&inspected.stdout).trim().to_owned()
    })
}

/// Runs the docker CLI with `args` and reads its output.
fn docker<T>(args: &[&str], read: impl FnOnce(&std::process::Output) -> T) -> T {
    let output = std::process::Command::new("docker")
        .args(args)
        .output()
        .unwrap();
    read(&output)
}

/// Asserts that `execution_id` was settled by recovery: its lease released (reason
/// `recovered`), its reservation released, `ERR_ABANDONED`, a verifying ledger.
fn assert_recovered(dir: &TestDir, execution_id: &str) -> Value {
    let show = ledger_json(dir, &["show", "default"]);
    let events = events_of(&show, execution_id);
    let kinds: Vec<&str> = events
        .iter()
        .map(|event| event["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "execution.start",
            "budget.reserve",
            "lease.acquire",
            "lease.release",
            "budget.settle",
            "execution.settle.failure"
        ],
        "{show:#}"
    );
    assert!(events[0]["payload"]["owner"]["pid"].is_u64(), "{show:#}");
    assert_eq!(events[3]["payload"]["reason"], "recovered");
    assert_eq!(events[4]["payload"]["released_micro_usd"], 800);
    assert_eq!(events[5]["payload"]["error"]["code"], "ERR_ABANDONED");
    ledger_json(dir, &["verify"]);
    show
}

#[test]
fn ledger_recover_cleans_up_after_a_killed_run() {
    let (dir, sweep) = (TestDir::new(), ContainerSweep::new());
    ledger_json(&dir, &["budget", "default", "--set", BUDGET]);
    let execution_id = killed_run(&dir, &sweep);
    assert_eq!(
        sweep.containers().len(),
        1,
        "the killed run's container runs on"
    );

    let report = ledger_json(&dir, &["recover"]);
    let recovered = report["executions"].as_array().unwrap();
    assert_eq!(recovered.len(), 1, "{report:#}");
    assert_eq!(recovered[0]["execution_id"], execution_id.as_str());
    assert_eq!(recovered[0]["error"]["code"], "ERR_ABANDONED");
    assert_eq!(recovered[0]["released_micro_usd"], 800);
    assert_eq!(
        recovered[0]["released_leases"],
        serde_json::json!([format!("/artifacts/o/{execution_id}/")])
    );
    assert_eq!(
        recovered[0]["containers_removed"].as_array().unwrap().len(),
        1
    );
    assert!(sweep.containers().is_empty(), "the container is removed");
    let show = assert_recovered(&dir, &execution_id);
    assert_eq!(show["plan"]["reserved_micro_usd"], 0);

    let again = ledger_json(&dir, &["recover", "default"]);
    assert_eq!(again["executions"], serde_json::json!([]));
    let next = stats_run(&dir, &sweep);
    next.exits(0);
    ledger_json(&dir, &["verify"]);
}

#[test]
fn a_new_run_recovers_its_plan_before_reserving() {
    let (dir, sweep) = (TestDir::new(), ContainerSweep::new());
    ledger_json(&dir, &["budget", "default", "--set", BUDGET]);
    let execution_id = killed_run(&dir, &sweep);

    // Without recovery, its reservation would leave too little for this one.
    let next = stats_run(&dir, &sweep);
    next.exits(0);
    next.check(
        next.events("execution.recovered").len() == 1,
        "the run logs the execution it recovered",
    );
    assert!(sweep.containers().is_empty(), "the container is removed");
    assert_recovered(&dir, &execution_id);
}
