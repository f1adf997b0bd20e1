//! Concurrent plans on one ledger: two `proctor plan apply` processes at the same time,
//! each applying its own plan of mock `text/stats@1` transitions in parallel, on one SQLite
//! file and on one PostgreSQL database; both succeed and `proctor ledger verify` passes
//! over both chains. Needs the Docker engine and the PostgreSQL server on 127.0.0.1:55432
//! that `scripts/setup.sh` starts.

use serde_json::Value;

use crate::engine::ContainerSweep;
use crate::ledger::PostgresDatabase;
use crate::plan::apply_command;
use crate::util::{Run, Started, TestDir, workspace_registry};

/// Transitions per plan.
const TRANSITIONS: usize = 6;

/// A plan named `name` of [`TRANSITIONS`] independent transitions, four at a time.
fn plan(name: &str) -> String {
    let mut plan = format!("plan: {name}\nmode: mock\npolicy: {{max_parallel: 4}}\ntransitions:\n");
    for n in 0..TRANSITIONS {
        plan.push_str(&format!(
            "  - {{id: t{n}, ref: text/stats@1, inputs: {{schema: v1, text: \"{name} text {n}\"}}}}\n"
        ));
    }
    plan
}

/// Starts `proctor plan apply` of the plan `name` on `ledger`, in `dir`'s World.
fn start_apply(dir: &TestDir, sweep: &ContainerSweep, name: &str, ledger: &str) -> Started {
    let file = dir.write(&format!("{name}.yaml"), &plan(name));
    let root = workspace_registry().display().to_string();
    apply_command(dir, sweep, &file, &root, ledger).start()
}

/// `proctor ledger ARGS --json --ledger LEDGER`, which must succeed.
fn ledger_json(dir: &TestDir, args: &[&str], ledger: &str) -> Value {
    let mut all = vec!["ledger"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--json", "--ledger", ledger]);
    let run = dir.proctor(&all).run();
    run.exits(0);
    run.json()
}

/// Applies two plans at once on `ledger`, then checks both and verifies the ledger.
fn two_plans_at_once_stay_verifiable(ledger: &str) {
    let dir = TestDir::new();
    let sweep = ContainerSweep::new();
    let plans = ["alpha", "beta"];
    let started: Vec<Started> = plans
        .iter()
        .map(|name| start_apply(&dir, &sweep, name, ledger))
        .collect();
    let runs: Vec<Run> = started.into_iter().map(Started::finish).collect();
    for (name, run) in plans.iter().zip(&runs) {
        run.exits(0);
        let report = run.json();
        let transitions = report["transitions"].as_array().unwrap();
        run.check(
            transitions.len() == TRANSITIONS,
            "every transition reported",
        );
        run.check(
            transitions.iter().all(|t| t["state"] == "succeeded"),
            &format!("every transition of {name} succeeded"),
        );
    }
    assert!(sweep.containers().is_empty(), "no container is left");

    let verified = ledger_json(&dir, &["verify"], ledger);
    assert_eq!(verified["ok"], true, "{verified}");
    for name in plans {
        let show = ledger_json(&dir, &["show", name], ledger);
        let events = show["events"].as_array().unwrap();
        let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, expected, "{name}: seqs gap-free from 1");
        assert_eq!(show["plan"]["head_seq"], seqs.len() as u64, "{show}");
        let settled = events
            .iter()
            .filter(|e| e["kind"] == "execution.settle.success")
            .count();
        assert_eq!(settled, TRANSITIONS, "{name}: every execution settled");
    }
}

#[test]
fn two_plan_applies_at_once_on_one_sqlite_ledger_stay_verifiable() {
    two_plans_at_once_stay_verifiable("sqlite://ledger.db");
}

#[test]
fn two_plan_applies_at_once_on_one_postgres_ledger_stay_verifiable() {
    let database = PostgresDatabase::create();
    two_plans_at_once_stay_verifiable(&database.url());
}
