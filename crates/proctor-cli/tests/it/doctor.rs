//! `proctor doctor`: against the real engine, the OCI registry on 127.0.0.1:5000 and a
//! project of the test's own, every check that should pass passes; an engine or a registry
//! that cannot be reached and a tampered ledger fail with their fixes; secret values never
//! show.

use proctor_contract::ErrorCode;
use serde_json::Value;

use crate::ledger::{execute_sql, sqlite_url};
use crate::util::{FIXTURE_YAML, Run, TestDir};

/// The value of the fixture's required secret, which must never be printed.
const SECRET_VALUE: &str = "fixture-secret-value-7c1e";

/// A project with the fixture registry (pinned `text/stats@1`) and a ledger of one plan
/// with two events.
fn project() -> TestDir {
    let dir = TestDir::new();
    dir.fixture_registry(FIXTURE_YAML);
    for budget in ["100", "200"] {
        dir.proctor(&["ledger", "budget", "default", "--set", budget])
            .run()
            .exits(0);
    }
    dir
}

/// The check named `name` of a JSON report.
fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["name"] == name)
        .unwrap_or_else(|| panic!("no check `{name}` in {report}"))
}

/// Asserts a failed doctor under `--json`: `ERR_DOCTOR`'s exit code, and one line
/// `{"status":"error","error":{"code","message"},"checks"}` whose message names `failed`.
/// Returns the report.
fn fails_checks(run: &Run, failed: &str) -> Value {
    run.exits(ErrorCode::Doctor.exit_code());
    let report = run.json();
    assert_eq!(report["status"], "error", "{report}");
    assert_eq!(report["error"]["code"], "ERR_DOCTOR", "{report}");
    assert_eq!(
        report["error"]["message"],
        format!("doctor check failed: {failed}; the fix is beside each")
    );
    report
}

/// Asserts that the secret's value is in neither stdout nor stderr.
fn keeps_the_secret(run: &Run) {
    run.check(
        !run.stdout.contains(SECRET_VALUE) && !run.stderr.contains(SECRET_VALUE),
        "the secret's value must never be printed",
    );
}

#[test]
fn a_working_machine_passes_and_secrets_show_by_name_only() {
    let dir = project();
    let before = dir.files();
    let run = dir
        .proctor(&["doctor", "--json"])
        .env("FIXTURE_API_KEY", SECRET_VALUE)
        .run();
    run.exits(0);
    keeps_the_secret(&run);
    let report = run.json();
    assert_eq!(report["status"], "ok", "{report}");
    assert!(report.get("error").is_none());
    for name in [
        "engine",
        "oci registry",
        "ledger",
        "artifacts root",
        "processors",
        "pins text/stats@1",
        "secrets text/stats@1",
    ] {
        let check = check(&report, name);
        assert_eq!(check["status"], "ok", "{check}");
        assert_eq!(check["fix"], Value::Null, "{check}");
    }
    let engine = check(&report, "engine")["detail"].as_str().unwrap();
    assert!(engine.starts_with("Docker "), "{engine}");
    assert_eq!(
        check(&report, "oci registry")["detail"],
        "http://127.0.0.1:5000/v2/ answers"
    );
    assert!(
        check(&report, "ledger")["detail"]
            .as_str()
            .unwrap()
            .ends_with(": 1 plans, 2 events verified")
    );
    assert_eq!(
        check(&report, "secrets text/stats@1")["detail"],
        "set: FIXTURE_API_KEY"
    );
    for check in report["checks"].as_array().unwrap() {
        assert!(
            ["ok", "warn"].contains(&check["status"].as_str().unwrap()),
            "{check}"
        );
    }
    assert_eq!(
        dir.files(),
        before,
        "the probe and its directories are gone"
    );

    let run = dir
        .proctor(&["doctor"])
        .env("FIXTURE_API_KEY", SECRET_VALUE)
        .run();
    run.exits(0);
    keeps_the_secret(&run);
    let lines: Vec<&str> = run.stdout.lines().collect();
    run.check(
        lines[0].starts_with("✓ engine "),
        "one marked line per check",
    );
    run.check(
        lines[..lines.len() - 1]
            .iter()
            .all(|line| ["✓ ", "! "].iter().any(|mark| line.starts_with(mark))),
        "every check is marked ok or warn",
    );
    run.check(
        lines.last().unwrap().starts_with("no check failed ("),
        "a verdict",
    );

    // Unset, the secret is a warning with the command that sets it.
    let run = dir.proctor(&["doctor", "--json"]).run();
    run.exits(0);
    let secrets = check(&run.json(), "secrets text/stats@1").clone();
    assert_eq!(secrets["status"], "warn");
    assert_eq!(
        secrets["fix"],
        "export FIXTURE_API_KEY=… before a real-mode run"
    );
}

#[test]
fn an_unreachable_engine_and_registry_fail_with_their_fixes() {
    let dir = project();
    let run = dir
        .proctor(&["doctor", "--json", "--registry", "127.0.0.1:1/proctor/lane"])
        .env("DOCKER_HOST", "unix:///nonexistent")
        .run();
    let report = fails_checks(&run, "engine, oci registry");
    let engine = check(&report, "engine");
    assert_eq!(engine["status"], "fail");
    assert!(
        engine["detail"]
            .as_str()
            .unwrap()
            .contains("cannot reach the Docker engine at DOCKER_HOST `unix:///nonexistent`"),
        "{engine}"
    );
    assert_eq!(
        engine["fix"],
        "start the Docker engine (`bash scripts/setup.sh --engine`), or point DOCKER_HOST at \
         a running one"
    );
    let registry = check(&report, "oci registry");
    assert_eq!(registry["status"], "fail");
    assert!(
        registry["detail"]
            .as_str()
            .unwrap()
            .starts_with("cannot reach http://127.0.0.1:1/v2/: "),
        "{registry}"
    );
    let fix = registry["fix"].as_str().unwrap();
    assert!(
        fix.contains(
            "--registry HOST/OWNER/REPO or PROCTOR_LANE_REGISTRY (now 127.0.0.1:1/proctor/lane)"
        ),
        "{fix}"
    );
    assert_eq!(check(&report, "ledger")["status"], "ok");

    let run = dir
        .proctor(&["doctor"])
        .env("DOCKER_HOST", "unix:///nonexistent")
        .run();
    run.exits(ErrorCode::Doctor.exit_code());
    run.check(
        run.stdout.lines().any(|line| {
            line.starts_with("✗ engine ") && line.contains(" — fix: start the Docker engine")
        }),
        "the failed check and its fix on one line",
    );
    run.check(
        run.stdout
            .ends_with("error: ERR_DOCTOR: doctor check failed: engine; the fix is beside each\n"),
        "the verdict names the failed check",
    );
}

#[test]
fn a_tampered_ledger_fails_the_ledger_check() {
    let dir = project();
    execute_sql(
        &sqlite_url(&dir),
        "UPDATE events SET payload = replace(payload, '200', '900') \
         WHERE plan = 'default' AND seq = 2",
    );
    let run = dir.proctor(&["doctor", "--json"]).run();
    let report = fails_checks(&run, "ledger");
    let ledger = check(&report, "ledger");
    assert_eq!(ledger["status"], "fail");
    assert!(
        ledger["detail"]
            .as_str()
            .unwrap()
            .starts_with("ledger chain broken: plan `default` at seq 2"),
        "{ledger}"
    );
    assert!(
        ledger["fix"]
            .as_str()
            .unwrap()
            .starts_with("`proctor ledger verify --ledger sqlite://"),
        "{ledger}"
    );
    assert_eq!(check(&report, "engine")["status"], "ok");
}

#[test]
fn with_a_public_key_the_ledger_checkpoint_is_checked() {
    let dir = project();
    dir.proctor(&["ledger", "keygen", "--out", "key"])
        .run()
        .exits(0);
    dir.proctor(&["ledger", "checkpoint", "--key", "key"])
        .run()
        .exits(0);
    let run = dir
        .proctor(&["doctor", "--json", "--public-key", "key.pub"])
        .run();
    run.exits(0);
    let report = run.json();
    let ledger = check(&report, "ledger");
    assert_eq!(ledger["status"], "ok", "{ledger}");
    assert!(
        ledger["detail"]
            .as_str()
            .unwrap()
            .ends_with(", checkpoint 1 holds"),
        "{ledger}"
    );
    execute_sql(&sqlite_url(&dir), "DELETE FROM checkpoints");
    let run = dir
        .proctor(&["doctor", "--json"])
        .env("PROCTOR_LEDGER_PUBLIC_KEY", "key.pub")
        .run();
    let report = fails_checks(&run, "ledger");
    let ledger = check(&report, "ledger");
    assert!(
        ledger["detail"]
            .as_str()
            .unwrap()
            .starts_with("ledger chain broken: "),
        "{ledger}"
    );
}
