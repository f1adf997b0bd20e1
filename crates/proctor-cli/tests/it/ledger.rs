//! `proctor run --plan/--ledger/--reserve-micro-usd` as the ledger records it, and
//! `proctor ledger show|verify|budget`.
//!
//! Most runs use `--adapter modal` with no deploy target configured: it fails in the adapter,
//! without any network, once every check, the budget and the lease have passed; the refusal tests use `--adapter local --build`
//! with a labelled container and check that no container was created. Needs: the Docker
//! engine (label checks) and the PostgreSQL server on 127.0.0.1:55432 that
//! `scripts/setup.sh` starts (one test creates and drops a database). Signal tests are in
//! `signals`.

use std::path::Path;
use std::time::Duration;

use proctor_contract::{ErrorCode, WorldPath};
use proctor_ledger::Ledger;
use serde_json::Value;
use sqlx::{AnyConnection, Connection};

use crate::engine::ContainerSweep;
use crate::local_adapter::smoke_inputs;
use crate::util::{FIXTURE_YAML, Proctor, Run, TestDir, workspace_registry};

/// The default ledger of a test directory, as `--ledger` would name it.
pub(crate) fn sqlite_url(dir: &TestDir) -> String {
    format!("sqlite://{}/.proctor/ledger.db", dir.path().display())
}

/// Runs `future` on a private runtime.
pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// Executes `sql` on the database at `url`, bypassing the ledger.
pub(crate) fn execute_sql(url: &str, sql: &str) {
    block_on(async {
        sqlx::any::install_default_drivers();
        let mut connection = AnyConnection::connect(url).await.unwrap();
        sqlx::query(sql).execute(&mut connection).await.unwrap();
        connection.close().await.unwrap();
    });
}

/// A run of the fixture processor through the modal adapter, recorded in the ledger.
fn modal_run(dir: &TestDir, extra: &[&str]) -> Run {
    modal(dir, extra).run()
}

/// [`modal_run`] before it runs; `extra` may replace the default `--write-prefix`.
fn modal(dir: &TestDir, extra: &[&str]) -> Proctor {
    let mut args = vec![
        "run",
        "--ref",
        "text/stats@1",
        "--adapter",
        "modal",
        "--inputs-json",
        r#"{"schema":"v1","params":{}}"#,
        "--registry-root",
        "processors",
        "--artifacts-root",
        "artifacts",
        "--json",
    ];
    if !extra.contains(&"--write-prefix") {
        args.extend(["--write-prefix", "/artifacts/o/{execution_id}"]);
    }
    args.extend_from_slice(extra);
    dir.proctor(&args)
}

/// Asserts the run passed the ledger's refusals and failed in the adapter: the modal
/// adapter, given no deploy target (the harness clears the environment), refuses without
/// any network; returns the execution id.
#[track_caller]
fn reaches_adapter(run: &Run) -> String {
    let envelope = run.json();
    let code = envelope["error"]["code"].as_str().unwrap_or_default();
    run.check(
        envelope["status"] == "error" && run.code != 0,
        "the unconfigured modal adapter fails",
    );
    run.check(
        !["ERR_BUDGET_EXCEEDED", "ERR_LEASE_CONFLICT", "ERR_LEDGER"].contains(&code),
        "the ledger let the run through to the adapter",
    );
    envelope["execution_id"].as_str().unwrap().to_owned()
}

/// A `--build` run of the workspace's `text/stats@1` on the local adapter, its container
/// labelled by `sweep`.
fn local_build_run(dir: &TestDir, sweep: &ContainerSweep, extra: &[&str]) -> Run {
    let inputs = smoke_inputs(dir, "text/stats@1");
    let root = workspace_registry().display().to_string();
    let options = sweep.adapter_options();
    let mut args = vec![
        "run",
        "--ref",
        "text/stats@1",
        "--adapter",
        "local",
        "--build",
        "--inputs-json",
        &inputs,
        "--adapter-opts-json",
        &options,
        "--registry-root",
        &root,
        "--artifacts-root",
        "artifacts",
        "--json",
    ];
    args.extend_from_slice(extra);
    dir.proctor(&args).run()
}

/// Asserts a canonical error outside a run: its exit code, and `code: fragment: …detail`
/// on stdout (a human line, or `{"error":{…}}` under `--json`).
#[track_caller]
pub(crate) fn fails_plainly(run: &Run, code: ErrorCode, detail: &str) {
    run.exits(code.exit_code());
    run.check(
        run.stdout.contains(code.as_str())
            && run.stdout.contains(code.fragment())
            && run.stdout.contains(detail),
        &format!("stdout must name {code} and {detail:?}"),
    );
}

/// `proctor ledger ARGS --json`, which must succeed; its JSON line.
pub(crate) fn ledger_json(dir: &TestDir, args: &[&str]) -> Value {
    let mut all = vec!["ledger"];
    all.extend_from_slice(args);
    all.push("--json");
    let run = dir.proctor(&all).run();
    run.exits(0);
    run.json()
}

/// The kinds of `execution_id`'s events in a `ledger show --json` answer, in seq order.
pub(crate) fn kinds_of(show: &Value, execution_id: &str) -> Vec<String> {
    events_of(show, execution_id)
        .iter()
        .map(|event| event["kind"].as_str().unwrap().to_owned())
        .collect()
}

/// `execution_id`'s events in a `ledger show --json` answer.
pub(crate) fn events_of(show: &Value, execution_id: &str) -> Vec<Value> {
    show["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["execution_id"] == execution_id)
        .cloned()
        .collect()
}

#[test]
fn runs_are_recorded_and_ledger_commands_show_and_verify_them() {
    let dir = TestDir::new();
    dir.fixture_registry(FIXTURE_YAML);
    let run = dir.proctor(&["ledger", "verify"]).run();
    fails_plainly(&run, ErrorCode::Ledger, "no ledger at");
    run.check(
        !dir.path().join(".proctor").exists(),
        "reading commands never create a ledger",
    );

    let run = modal_run(&dir, &[]);
    let first = reaches_adapter(&run);
    let adapter_code = run.json()["error"]["code"].clone();
    let second = reaches_adapter(&modal_run(&dir, &["--plan", "team-a"]));
    let show = ledger_json(&dir, &["show", "default"]);
    let expected = [
        "execution.start",
        "budget.reserve",
        "lease.acquire",
        "lease.release",
        "budget.settle",
        "execution.settle.failure",
    ];
    assert_eq!(kinds_of(&show, &first), expected, "{show:#}");
    assert!(
        events_of(&show, &second).is_empty(),
        "other plans stay apart"
    );
    let events = show["events"].as_array().unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=6).collect::<Vec<u64>>());
    assert_eq!(
        events[0]["payload"]["write_prefix"],
        format!("/artifacts/o/{first}/")
    );
    assert_eq!(
        events[5]["payload"]["error"]["code"], adapter_code,
        "the failure is recorded with its code"
    );
    assert_eq!(show["plan"]["head_seq"], 6);
    assert_eq!(show["plan"]["budget_micro_usd"], Value::Null);
    let team = ledger_json(&dir, &["show", "team-a"]);
    assert_eq!(kinds_of(&team, &second), expected);

    let run = dir.proctor(&["ledger", "show", "default"]).run();
    run.exits(0);
    run.check(
        run.stdout
            .starts_with("plan:   default\nbudget: none (reserved 0, spent 0)\n"),
        "plan and budget lines",
    );
    let lease_row = run
        .stdout
        .lines()
        .find(|line| line.starts_with("3 "))
        .unwrap_or_default();
    run.check(
        lease_row.contains("lease.acquire") && lease_row.contains(&first),
        "one row per event: seq, kind, execution, hash prefix",
    );

    let verified = ledger_json(&dir, &["verify"]);
    assert_eq!(verified["ok"], true, "{verified}");
    let plans: Vec<&str> = verified["plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|report| report["plan"].as_str().unwrap())
        .collect();
    assert_eq!(plans, ["default", "team-a"]);
    let run = dir.proctor(&["ledger", "verify", "team-a"]).run();
    run.exits(0);
    run.check(
        run.stdout
            == "✓ team-a  6 events verified, head seq 6\n\
                checkpoint: not checked (no --public-key)\n",
        "one line per plan, and whether a checkpoint was checked",
    );
    let run = dir.proctor(&["ledger", "show", "nope", "--json"]).run();
    fails_plainly(&run, ErrorCode::Ledger, "unknown plan `nope`");
    run.json();
    let run = dir.proctor(&["ledger", "verify", "nope"]).run();
    fails_plainly(&run, ErrorCode::Ledger, "unknown plan `nope`");
    modal_run(&dir, &["--plan", "no spaces"]).fails_with(ErrorCode::Ledger, "invalid plan key");
}

#[test]
fn ledger_verify_reports_an_edited_payload_at_its_seq() {
    let dir = TestDir::new();
    dir.fixture_registry(FIXTURE_YAML);
    reaches_adapter(&modal_run(&dir, &[]));
    let second = reaches_adapter(&modal_run(&dir, &[]));
    reaches_adapter(&modal_run(&dir, &["--plan", "other"]));
    let show = ledger_json(&dir, &["show", "default"]);
    let acquire = events_of(&show, &second)
        .into_iter()
        .find(|event| event["kind"] == "lease.acquire")
        .unwrap();
    let seq = acquire["seq"].as_u64().unwrap();
    assert_eq!(seq, 9, "the second run's lease.acquire");
    execute_sql(
        &sqlite_url(&dir),
        &format!(
            "UPDATE events SET payload = replace(payload, '\"renewed\":false', '\"renewed\":true') \
             WHERE plan = 'default' AND seq = {seq}"
        ),
    );

    let run = dir.proctor(&["ledger", "verify", "--json"]).run();
    run.exits(ErrorCode::LedgerChain.exit_code());
    let report = run.json();
    assert_eq!(report["ok"], false);
    assert_eq!(report["plans"][0]["plan"], "default");
    assert_eq!(report["plans"][0]["broken"]["seq"], seq);
    assert_eq!(report["plans"][0]["verified"], seq - 1);
    assert_eq!(
        report["plans"][0]["broken"]["reason"]["reason"],
        "payload_hash_mismatch"
    );
    assert_eq!(
        report["plans"][1]["broken"],
        Value::Null,
        "plan other is intact"
    );
    assert_eq!(report["error"]["code"], "ERR_LEDGER_CHAIN");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("ledger chain broken: plan `default` at seq 9: payload hashes to"),
        "{message}"
    );

    let run = dir.proctor(&["ledger", "verify", "default"]).run();
    run.exits(ErrorCode::LedgerChain.exit_code());
    run.check(
        run.stdout
            .starts_with("✗ default  broken at seq 9: payload hashes to"),
        "the human report names the seq",
    );
    dir.proctor(&["ledger", "verify", "other"]).run().exits(0);
}

#[test]
fn ledger_verify_reports_an_execution_row_that_disagrees_with_the_chain() {
    let dir = TestDir::new();
    dir.fixture_registry(FIXTURE_YAML);
    let failed = reaches_adapter(&modal_run(&dir, &[]));
    execute_sql(
        &sqlite_url(&dir),
        &format!(
            "UPDATE executions SET status = 'success', error_code = NULL \
             WHERE execution_id = '{failed}'"
        ),
    );

    let run = dir.proctor(&["ledger", "verify", "--json"]).run();
    run.exits(ErrorCode::LedgerChain.exit_code());
    let report = run.json();
    assert_eq!(report["ok"], false);
    let plan = &report["plans"][0];
    assert_eq!(plan["broken"], Value::Null, "{report}");
    assert_eq!(
        plan["mismatches"][0],
        serde_json::json!({
            "table": "executions",
            "key": failed,
            "column": "status",
            "expected": "failure",
            "found": "success",
        }),
        "{report}"
    );
    assert_eq!(report["error"]["code"], "ERR_LEDGER_CHAIN");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "plan `default`: table `executions` row `{failed}`: status is `success` but the \
             chain says `failure`"
        )),
        "{message}"
    );

    let run = dir.proctor(&["ledger", "verify", "default"]).run();
    run.exits(ErrorCode::LedgerChain.exit_code());
    run.check(
        run.stdout.starts_with(
            "✗ default  6 events verified, but the tables disagree with them:\n    table \
             `executions`",
        ),
        "the human report names the table",
    );
}

#[test]
fn budgets_refuse_runs_before_any_container() {
    let sweep = ContainerSweep::new();
    let dir = TestDir::new();
    let budget = ledger_json(&dir, &["budget", "capped", "--set", "5"]);
    assert_eq!(budget["plan"]["budget_micro_usd"], 5);

    let run = local_build_run(
        &dir,
        &sweep,
        &[
            "--plan",
            "capped",
            "--reserve-micro-usd",
            "6",
            "--write-prefix",
            "/artifacts/outputs/capped/{execution_id}",
        ],
    );
    run.fails_with(ErrorCode::BudgetExceeded, "would pass its budget of 5");
    run.check(
        sweep.containers().is_empty(),
        "no container may be created for a refused run",
    );
    run.check(
        !dir.path().join("artifacts").exists(),
        "nothing is written for a refused run",
    );
    let id = run.json()["execution_id"].as_str().unwrap().to_owned();
    let show = ledger_json(&dir, &["show", "capped"]);
    assert_eq!(
        kinds_of(&show, &id),
        [
            "execution.start",
            "budget.settle",
            "execution.settle.failure"
        ],
        "refused before the lease and the adapter: {show:#}"
    );
    let settle = events_of(&show, &id).pop().unwrap();
    assert_eq!(settle["payload"]["error"]["code"], "ERR_BUDGET_EXCEEDED");
    assert_eq!(show["plan"]["reserved_micro_usd"], 0);
    assert_eq!(show["plan"]["spent_micro_usd"], 0);

    // Within the budget the run goes on; a mock run spends nothing of it.
    dir.fixture_registry(FIXTURE_YAML);
    reaches_adapter(&modal_run(
        &dir,
        &["--plan", "capped", "--reserve-micro-usd", "5"],
    ));
    let plan = &ledger_json(&dir, &["show", "capped"])["plan"];
    assert_eq!(
        (&plan["reserved_micro_usd"], &plan["spent_micro_usd"]),
        (&0.into(), &0.into())
    );
    // A real run that reached the adapter spends its reservation.
    reaches_adapter(
        &modal(
            &dir,
            &[
                "--plan",
                "capped",
                "--reserve-micro-usd",
                "3",
                "--mode",
                "real",
            ],
        )
        .env("FIXTURE_API_KEY", "k")
        .run(),
    );
    let plan = &ledger_json(&dir, &["show", "capped"])["plan"];
    assert_eq!(plan["spent_micro_usd"], 3);
    let run = dir
        .proctor(&["ledger", "budget", "capped", "--set", "2"])
        .run();
    run.exits(ErrorCode::BudgetExceeded.exit_code());
    run.check(
        run.stdout
            .contains("below the 3 already reserved and spent"),
        "a budget below what is spent is refused",
    );
    let run = dir
        .proctor(&["ledger", "budget", "capped", "--unset"])
        .run();
    run.exits(0);
    run.check(
        run.stdout.contains("budget: none (reserved 0, spent 3)"),
        "removed",
    );
}

#[test]
fn lease_conflicts_refuse_runs_before_any_container() {
    let sweep = ContainerSweep::new();
    let dir = TestDir::new();
    let url = sqlite_url(&dir);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ledger = runtime.block_on(Ledger::open(&url)).unwrap();
    let shared = WorldPath::parse("/artifacts/outputs/shared/").unwrap();
    let held = runtime
        .block_on(ledger.acquire_lease(
            "default",
            &shared,
            "holder-from-the-test",
            Duration::from_secs(600),
        ))
        .unwrap();

    let run = local_build_run(
        &dir,
        &sweep,
        &["--write-prefix", "/artifacts/outputs/shared/{execution_id}"],
    );
    let id = run.json()["execution_id"].as_str().unwrap().to_owned();
    run.fails_with(
        ErrorCode::LeaseConflict,
        &format!(
            "`/artifacts/outputs/shared/{id}/` overlaps `/artifacts/outputs/shared/` held by \
             execution `holder-from-the-test`"
        ),
    );
    run.check(
        sweep.containers().is_empty(),
        "no container may be created for a refused run",
    );
    let show = ledger_json(&dir, &["show", "default"]);
    assert_eq!(
        kinds_of(&show, &id),
        [
            "execution.start",
            "budget.reserve",
            "budget.settle",
            "execution.settle.failure"
        ],
        "refused before the adapter: {show:#}"
    );
    assert_eq!(
        events_of(&show, &id).pop().unwrap()["payload"]["error"]["code"],
        "ERR_LEASE_CONFLICT"
    );

    // Prefixes that do not overlap the held one are free; once released, so is it.
    dir.fixture_registry(FIXTURE_YAML);
    reaches_adapter(&modal_run(
        &dir,
        &[
            "--write-prefix",
            "/artifacts/outputs/sharedx/{execution_id}",
        ],
    ));
    assert!(runtime.block_on(held.release()).unwrap());
    let id = reaches_adapter(&modal_run(
        &dir,
        &["--write-prefix", "/artifacts/outputs/shared/{execution_id}"],
    ));
    let show = ledger_json(&dir, &["show", "default"]);
    let release = events_of(&show, &id)
        .into_iter()
        .find(|event| event["kind"] == "lease.release")
        .unwrap();
    assert_eq!(
        release["payload"]["selector"],
        format!("/artifacts/outputs/shared/{id}/")
    );
    assert!(runtime.block_on(ledger.leases()).unwrap().is_empty());
    runtime.block_on(ledger.close());
}

/// A fresh database on the test PostgreSQL server, dropped with the value (also when a
/// test panics).
pub(crate) struct PostgresDatabase {
    admin_url: String,
    name: String,
}

/// The server `scripts/setup.sh` starts (override with `PROCTOR_TEST_POSTGRES_URL`).
const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:55432/postgres";

impl PostgresDatabase {
    pub(crate) fn create() -> PostgresDatabase {
        let admin_url = std::env::var("PROCTOR_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| POSTGRES_ADMIN_URL.to_owned());
        let name = format!("proctor_cli_{}", uuid::Uuid::new_v4().simple());
        execute_sql(&admin_url, &format!("CREATE DATABASE {name}"));
        PostgresDatabase { admin_url, name }
    }

    pub(crate) fn url(&self) -> String {
        let base = self.admin_url.rsplit_once('/').unwrap().0;
        format!("{base}/{}", self.name)
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        execute_sql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

#[test]
fn a_postgres_ledger_records_runs_from_the_cli() {
    let database = PostgresDatabase::create();
    let url = database.url();
    let dir = TestDir::new();
    dir.fixture_registry(FIXTURE_YAML);
    let budget = dir
        .proctor(&["ledger", "budget", "pg", "--set", "10", "--json"])
        .env("PROCTOR_LEDGER_URL", &url)
        .run();
    budget.exits(0);
    let id = reaches_adapter(&modal_run(
        &dir,
        &[
            "--plan",
            "pg",
            "--ledger",
            &url,
            "--reserve-micro-usd",
            "10",
        ],
    ));
    let refused = modal_run(
        &dir,
        &[
            "--plan",
            "pg",
            "--ledger",
            &url,
            "--reserve-micro-usd",
            "11",
        ],
    );
    refused.fails_with(ErrorCode::BudgetExceeded, "plan `pg`");
    let show = ledger_json(&dir, &["show", "pg", "--ledger", &url]);
    assert_eq!(show["plan"]["head_seq"], 1 + 6 + 3);
    assert_eq!(kinds_of(&show, &id).len(), 6);
    let verified = ledger_json(&dir, &["verify", "--ledger", &url]);
    assert_eq!(verified["ok"], true, "{verified}");
    assert!(
        !Path::new(&dir.path().join(".proctor")).exists(),
        "nothing went to the default SQLite ledger"
    );
}

#[test]
fn signed_checkpoints_catch_a_chain_truncated_behind_the_ledgers_back() {
    use std::os::unix::fs::PermissionsExt;

    let dir = TestDir::new();
    let keygen = ledger_json(&dir, &["keygen", "--out", "signing.pem"]);
    assert_eq!(keygen["ok"], true);
    let key_id = keygen["key_id"].as_str().unwrap().to_owned();
    assert_eq!(keygen["public_key_path"], "signing.pem.pub");
    let public_pem = keygen["public_key"].as_str().unwrap().to_owned();
    assert!(
        public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"),
        "{public_pem}"
    );
    let private = dir.path().join("signing.pem");
    let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let written = std::fs::read(&private).unwrap();
    let run = dir
        .proctor(&["ledger", "keygen", "--out", "signing.pem", "--json"])
        .run();
    fails_plainly(
        &run,
        ErrorCode::Ledger,
        "cannot write signing.pem: File exists",
    );
    assert_eq!(
        std::fs::read(&private).unwrap(),
        written,
        "never overwritten"
    );

    for (plan, budget) in [("p", "100"), ("p", "200"), ("q", "5")] {
        ledger_json(&dir, &["budget", plan, "--set", budget]);
    }
    let signed = ledger_json(&dir, &["checkpoint", "--key", "signing.pem"]);
    let checkpoint = &signed["checkpoint"];
    assert_eq!(checkpoint["seq"], 1);
    assert_eq!(checkpoint["statement"]["key_id"], key_id.as_str());
    assert_eq!(
        checkpoint["statement"]["format"],
        "proctor.ledger.checkpoint/v1"
    );
    let heads: Vec<(&str, u64)> = checkpoint["statement"]["heads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|head| {
            (
                head["plan"].as_str().unwrap(),
                head["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(heads, [("p", 2), ("q", 1)]);
    assert_eq!(checkpoint["signature"].as_str().unwrap().len(), 128);

    // The chain grows after the checkpoint: still verified, by file or by PEM in the env.
    ledger_json(&dir, &["budget", "p", "--set", "300"]);
    let verified = ledger_json(&dir, &["verify", "--public-key", "signing.pem.pub"]);
    assert_eq!(verified["ok"], true);
    assert_eq!(verified["checkpoint"]["seq"], 1);
    assert_eq!(verified["checkpoint"]["problem"], Value::Null);
    assert_eq!(verified["checkpoint"]["heads"][0]["mismatch"], Value::Null);
    let run = dir
        .proctor(&["ledger", "verify", "p"])
        .env("PROCTOR_LEDGER_PUBLIC_KEY", &public_pem)
        .run();
    run.exits(0);
    run.check(
        run.stdout
            .contains("✓ p  still holds its checkpointed head seq 2"),
        "the human report names the checkpointed head",
    );
    let run = dir.proctor(&["ledger", "verify"]).run();
    run.exits(0);
    run.check(
        run.stdout
            .contains("checkpoint: not checked (no --public-key)"),
        "verify says when it checked no checkpoint",
    );
    assert_eq!(ledger_json(&dir, &["verify"])["checkpoint"], Value::Null);

    // `p` cut back to its first event, its head moved along: the chain alone still verifies.
    let url = sqlite_url(&dir);
    execute_sql(&url, "DELETE FROM events WHERE plan = 'p' AND seq > 1");
    execute_sql(
        &url,
        "UPDATE plans SET head_seq = 1, budget_micro_usd = 100, head_hash = \
         (SELECT this_hash FROM events WHERE plan = 'p' AND seq = 1) WHERE key = 'p'",
    );
    ledger_json(&dir, &["verify"]);
    let run = dir
        .proctor(&[
            "ledger",
            "verify",
            "--public-key",
            "signing.pem.pub",
            "--json",
        ])
        .run();
    run.exits(ErrorCode::LedgerChain.exit_code());
    let report = run.json();
    assert_eq!(report["ok"], false);
    assert_eq!(
        report["checkpoint"]["heads"][0]["mismatch"],
        serde_json::json!({"mismatch": "truncated", "head_seq": 1})
    );
    let message = report["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("ledger chain broken: plan `p` at seq 2: the chain now ends at seq 1"),
        "{message}"
    );
    dir.proctor(&["ledger", "verify", "q", "--public-key", "signing.pem.pub"])
        .run()
        .exits(0);

    // Another key, and a signing key others may read, are refused.
    ledger_json(&dir, &["keygen", "--out", "other.pem"]);
    let run = dir
        .proctor(&["ledger", "verify", "q", "--public-key", "other.pem.pub"])
        .run();
    run.exits(ErrorCode::LedgerChain.exit_code());
    run.check(
        run.stdout.contains("not by the public key given"),
        "a wrong key is named as such",
    );
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = dir
        .proctor(&["ledger", "checkpoint", "--key", "signing.pem", "--json"])
        .run();
    fails_plainly(&run, ErrorCode::Ledger, "has mode 0644");
    let run = dir.proctor(&["ledger", "checkpoint", "--json"]).run();
    run.exits(2);
}
