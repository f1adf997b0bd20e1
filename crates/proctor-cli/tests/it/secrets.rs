//! Secrets never leak: `testing/faulty@1`'s `leak_secrets` fault answers an `ERR_PROVIDER`
//! envelope whose message — and its stderr — quote the value of its pass-through variable
//! `FAULTY_PASSTHROUGH` (a name that does not look secret), a URL with credentials and an
//! `Authorization: Bearer` token. None of them may appear on stdout (human or `--json`), on
//! stderr, in the ledger's events, or in any file the run leaves.
//!
//! Needs the Docker engine: a `real`-mode `--build` run of the fixture on the local adapter,
//! its container labelled and swept.

use proctor_contract::ErrorCode;
use sqlx::{AnyConnection, Connection, Row};

use crate::engine::ContainerSweep;
use crate::ledger::{block_on, sqlite_url};
use crate::util::{Run, TestDir, workspace_registry};

/// The value the run gives `FAULTY_PASSTHROUGH`.
const PASSTHROUGH_VALUE: &str = "pt-value-7Q4xW2";

/// Every piece the fault leaks: the pass-through value, then the URL credentials and the
/// bearer token it quotes (see `fixtures/processors/testing/faulty/1/src/main.rs`).
const LEAKED: [&str; 4] = [
    PASSTHROUGH_VALUE,
    "leak-user:leak-password-5f2c",
    "leak-password-5f2c",
    "leaktoken-9c1e77ab2d",
];

/// A `real`-mode run of the fault through the CLI, with `FAULTY_PASSTHROUGH` set.
fn leak_run(dir: &TestDir, sweep: &ContainerSweep, extra: &[&str]) -> Run {
    let fixtures = workspace_registry()
        .join("../fixtures/processors")
        .display()
        .to_string();
    let options = sweep.adapter_options();
    let mut args = vec![
        "run",
        "--ref",
        "testing/faulty@1",
        "--adapter",
        "local",
        "--mode",
        "real",
        "--build",
        "--write-prefix",
        "/artifacts/o/{execution_id}",
        "--inputs-json",
        r#"{"schema":"v1","fault":"leak_secrets"}"#,
        "--adapter-opts-json",
        &options,
        "--registry-root",
        &fixtures,
        "--artifacts-root",
        "artifacts",
    ];
    args.extend_from_slice(extra);
    let run = dir
        .proctor(&args)
        .env("FAULTY_PASSTHROUGH", PASSTHROUGH_VALUE)
        .run();
    run.check(
        sweep.containers().is_empty(),
        "no container may be left after the run",
    );
    run
}

/// Asserts none of [`LEAKED`] is in `text`.
#[track_caller]
fn holds_nothing_leaked(run: &Run, what: &str, text: &str) {
    for leaked in LEAKED {
        run.check(!text.contains(leaked), &format!("{what} holds `{leaked}`"));
    }
}

/// The payload of every event in the ledger, in chain order.
fn ledger_payloads(dir: &TestDir) -> Vec<String> {
    block_on(async {
        sqlx::any::install_default_drivers();
        let mut connection = AnyConnection::connect(&sqlite_url(dir)).await.unwrap();
        let rows = sqlx::query("SELECT payload FROM events ORDER BY plan, seq")
            .fetch_all(&mut connection)
            .await
            .unwrap();
        connection.close().await.unwrap();
        rows.iter()
            .map(|row| row.get::<String, _>("payload"))
            .collect()
    })
}

#[test]
fn what_a_processor_leaks_is_printed_and_recorded_redacted() {
    let sweep = ContainerSweep::new();
    let dir = TestDir::new();

    let json = leak_run(&dir, &sweep, &["--json"]);
    let message = json.fails_with(ErrorCode::Provider, "upstream refused");
    json.check(
        message.contains("FAULTY_PASSTHROUGH="),
        "the fault's own message came back",
    );
    holds_nothing_leaked(&json, "stdout (--json)", &json.stdout);
    holds_nothing_leaked(&json, "stderr (--json)", &json.stderr);

    let human = leak_run(&dir, &sweep, &[]);
    human.exits(ErrorCode::Provider.exit_code());
    human.check(
        human.stdout.contains("ERR_PROVIDER") && human.stdout.contains("upstream refused"),
        "the human summary quotes the error",
    );
    holds_nothing_leaked(&human, "stdout", &human.stdout);
    holds_nothing_leaked(&human, "stderr", &human.stderr);

    let payloads = ledger_payloads(&dir);
    let failures: Vec<&String> = payloads
        .iter()
        .filter(|payload| {
            payload.contains("execution.settle.failure") && payload.contains("upstream refused")
        })
        .collect();
    human.check(
        failures.len() == 2,
        &format!("both failures are recorded with their message: {payloads:#?}"),
    );
    for payload in &payloads {
        holds_nothing_leaked(&human, "a ledger event", payload);
    }

    for file in dir.files() {
        let bytes = std::fs::read(dir.path().join(&file)).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        holds_nothing_leaked(&human, &file, &text);
    }
}
