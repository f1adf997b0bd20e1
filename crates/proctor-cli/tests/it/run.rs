//! `proctor run`: each canonical error the CLI raises (code, fragment, exit code), with a
//! passing case beside each failing one, the order of the checks, and the output contract.
//!
//! Runs that pass every check use `--adapter modal`, which, with no deploy target
//! configured, ends deterministically in `ERR_DEPLOY_TARGET` without any network: reaching
//! it proves every earlier check passed.

use proctor_contract::ErrorCode;
use serde_json::Value;
use sqlx::{AnyConnection, Connection as _};

use crate::ledger::{block_on, sqlite_url};
use crate::util::{FIXTURE_YAML, Run, TestDir, fixture_pinned_to};

/// Marks a default flag to leave out.
const DROP: &str = "\u{0}drop";

/// `run` with the fixture defaults (`--json`, modal adapter, mock mode, `./processors`,
/// `./artifacts`), each default replaced by an override with the same flag; an empty value
/// is a bare flag.
fn run_args(overrides: &[(&str, &str)]) -> Vec<String> {
    let mut flags: Vec<(String, String)> = [
        ("--ref", "text/stats@1"),
        ("--adapter", "modal"),
        ("--mode", "mock"),
        ("--write-prefix", "/artifacts/o/{execution_id}"),
        ("--inputs-json", r#"{"schema":"v1","params":{}}"#),
        ("--registry-root", "processors"),
        ("--artifacts-root", "artifacts"),
        ("--json", ""),
    ]
    .iter()
    .map(|(flag, value)| (flag.to_string(), value.to_string()))
    .collect();
    for (flag, value) in overrides {
        match flags.iter_mut().find(|(name, _)| name == flag) {
            Some(slot) => slot.1 = value.to_string(),
            None => flags.push((flag.to_string(), value.to_string())),
        }
    }
    let mut args = vec!["run".to_owned()];
    for (flag, value) in flags.into_iter().filter(|(_, value)| value != DROP) {
        args.push(flag);
        if !value.is_empty() {
            args.push(value);
        }
    }
    args
}

/// Runs `proctor run` in `dir` with `overrides` and extra environment variables.
fn proctor_run(dir: &TestDir, overrides: &[(&str, &str)], env: &[(&str, &str)]) -> Run {
    let args = run_args(overrides);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.iter()
        .fold(dir.proctor(&args), |command, (name, value)| {
            command.env(name, value)
        })
        .run()
}

/// Asserts the run passed every check and reached the modal adapter, which refuses without
/// any network because the harness clears the environment: no deploy target is configured.
#[track_caller]
fn reaches_adapter(run: &Run) {
    run.fails_with(ErrorCode::DeployTarget, "no deploy target configured");
}

#[test]
fn ci_guard_refuses_real_mode_before_any_work() {
    let dir = TestDir::new();
    let run = proctor_run(
        &dir,
        &[("--mode", "real"), ("--registry-root", "absent")],
        &[("CI", "true")],
    );
    let message = run.fails_with(ErrorCode::CiSafety, "Refusing to run mode=real in CI");
    run.check(!message.contains("absent"), "the registry must not be read");
    run.check(dir.files().is_empty(), "no file may be left behind");
    run.check(
        !dir.path().join("artifacts").exists(),
        "the artifacts root must not be created",
    );
    let fail = run.events("execution.fail");
    run.check(
        fail.len() == 1 && fail[0]["code"] == "ERR_CI_SAFETY",
        "one execution.fail",
    );
    run.check(
        run.events("execution.start").len() == 1,
        "one execution.start",
    );

    for ci in ["1", "yes", "true"] {
        let run = proctor_run(
            &dir,
            &[("--mode", "real"), ("--registry-root", "absent")],
            &[("CI", ci)],
        );
        run.fails_with(ErrorCode::CiSafety, "Refusing to run mode=real in CI");
    }

    let registry = dir.fixture_registry(FIXTURE_YAML);
    let before = dir.files();
    let run = proctor_run(
        &dir,
        &[("--mode", "real"), ("--json", DROP)],
        &[("CI", "TRUE")],
    );
    run.exits(ErrorCode::CiSafety.exit_code());
    run.check(
        run.stdout.contains("ERR_CI_SAFETY"),
        "the human summary names the code",
    );
    run.check(dir.files() == before, "no file may be left behind");
    run.check(
        registry.exists() && !dir.path().join("artifacts").exists(),
        "nothing created",
    );
}

#[test]
fn ci_guard_allows_mock_in_ci_and_real_outside_ci() {
    let dir = TestDir::new();
    dir.fixture_registry(FIXTURE_YAML);
    reaches_adapter(&proctor_run(&dir, &[], &[("CI", "true")]));
    for ci in ["false", "0", ""] {
        reaches_adapter(&proctor_run(
            &dir,
            &[("--mode", "real")],
            &[("CI", ci), ("FIXTURE_API_KEY", "k")],
        ));
    }
    reaches_adapter(&proctor_run(
        &dir,
        &[("--mode", "real")],
        &[("FIXTURE_API_KEY", "k")],
    ));
}

#[test]
fn json_output_is_one_envelope_line_and_logs_are_json_lines() {
    let dir = TestDir::new();
    dir.fixture_registry(FIXTURE_YAML);
    let run = proctor_run(&dir, &[], &[]);
    let envelope = run.json();
    reaches_adapter(&run);
    let logs = run.logs();
    run.check(!logs.is_empty(), "lifecycle events are logged on stderr");
    let start = run.events("execution.start");
    let fail = run.events("execution.fail");
    run.check(start.len() == 1 && fail.len() == 1, "one start, one fail");
    run.check(
        run.events("execution.settle").is_empty(),
        "no settle after a failure",
    );
    for event in [&start[0], &fail[0]] {
        run.check(
            event["execution_id"] == envelope["execution_id"],
            "same execution id",
        );
        run.check(event["ref"] == "text/stats@1", "the ref is logged");
        run.check(
            event["mode"] == "mock" && event["adapter"] == "modal",
            "mode and adapter",
        );
    }
    let id = envelope["execution_id"].as_str().unwrap();
    run.check(
        uuid::Uuid::parse_str(id).is_ok_and(|u| u.get_version_num() == 4),
        "uuid v4 id",
    );
}

#[test]
fn human_output_summarizes_the_error() {
    let dir = TestDir::new();
    dir.fixture_registry(FIXTURE_YAML);
    let run = proctor_run(&dir, &[("--json", DROP), ("--ref", "text/stats@9")], &[]);
    run.exits(ErrorCode::UnknownProcessor.exit_code());
    run.check(
        serde_json::from_str::<Value>(run.stdout.trim()).is_err(),
        "not JSON",
    );
    run.check(run.stdout.contains("status:       error"), "status line");
    run.check(
        run.stdout
            .contains("ERR_UNKNOWN_PROCESSOR: processor not found in registry"),
        "code",
    );
    run.check(run.stdout.contains("execution id: "), "execution id");
    run.logs();
}

#[test]
fn mode_comes_from_the_flag_only_and_bad_values_are_usage_errors() {
    let dir = TestDir::new();
    dir.fixture_registry(FIXTURE_YAML);
    for mode in ["dry", "REAL", ""] {
        let run = proctor_run(&dir, &[("--mode", mode)], &[]);
        run.exits(2).check(
            run.json()["error"]["code"] == "ERR_USAGE",
            "under --json a usage error is the one error shape on stdout",
        );
        run.check(
            run.stderr.contains("--mode"),
            "the usage error names the flag",
        );
    }
    let run = proctor_run(
        &dir,
        &[("--mode", DROP)],
        &[("PROCTOR_MODE", "real"), ("MODE", "real")],
    );
    reaches_adapter(&run);
    run.check(
        run.json()["meta"]["mode"] == "mock",
        "mock by default, whatever the environment",
    );
    let run = proctor_run(&dir, &[("--adapter", "lambda")], &[]);
    run.exits(2);
    // With no inputs flag, the registry's smoke example is the payload.
    reaches_adapter(&proctor_run(&dir, &[("--inputs-json", DROP)], &[]));
}

#[test]
fn processor_refs_are_parsed_then_looked_up() {
    let dir = TestDir::new();
    dir.fixture_registry(FIXTURE_YAML);
    proctor_run(&dir, &[("--ref", "Text/stats")], &[])
        .fails_with(ErrorCode::ProcessorRef, "`Text/stats` has no @version");
    proctor_run(&dir, &[("--ref", "nope/missing@1")], &[])
        .fails_with(ErrorCode::UnknownProcessor, "`nope/missing@1`");
    reaches_adapter(&proctor_run(&dir, &[("--ref", "text/stats@1")], &[]));
}

#[test]
fn invalid_registries_are_refused_naming_the_file() {
    let dir = TestDir::new();
    dir.fixture_registry(&FIXTURE_YAML.replace("env: [", "labels: {}\nenv: ["));
    proctor_run(&dir, &[], &[]).fails_with(ErrorCode::Registry, "text/stats/1/registry.yaml");
    dir.fixture_registry(&FIXTURE_YAML.replace("minimum: 0", "minimum: zero"));
    proctor_run(&dir, &[], &[]).fails_with(ErrorCode::Registry, "inputs is not a JSON Schema");
    proctor_run(&dir, &[("--registry-root", "absent")], &[])
        .fails_with(ErrorCode::Registry, "cannot read");
    dir.fixture_registry(FIXTURE_YAML);
    reaches_adapter(&proctor_run(&dir, &[], &[]));
}

#[test]
fn inputs_must_be_json_matching_the_schema() {
    let dir = TestDir::new();
    dir.fixture_registry(FIXTURE_YAML);
    proctor_run(&dir, &[("--inputs-json", "{not json")], &[])
        .fails_with(ErrorCode::Inputs, "--inputs-json: not JSON");
    proctor_run(
        &dir,
        &[("--inputs-json", r#"{"schema":"v1","params":{"n":1,"n":2}}"#)],
        &[],
    )
    .fails_with(ErrorCode::Inputs, "duplicate key at `/params/n`");
    let message = proctor_run(
        &dir,
        &[(
            "--inputs-json",
            r#"{"schema":"v1","params":{"n":"x-secretish"}}"#,
        )],
        &[],
    )
    .fails_with(ErrorCode::Inputs, "at `/params/n`");
    assert!(
        !message.contains("x-secretish"),
        "input values are not echoed: {message}"
    );
    proctor_run(&dir, &[("--inputs-json", "[]")], &[])
        .fails_with(ErrorCode::Inputs, "must be a JSON object, not an array");
    let started = std::time::Instant::now();
    proctor_run(
        &dir,
        &[("--inputs-json", DROP), ("--inputs-file", "/dev/zero")],
        &[],
    )
    .fails_with(
        ErrorCode::Inputs,
        "--inputs-file `/dev/zero` is larger than 8388608 bytes",
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "/dev/zero is read up to the limit only"
    );
    proctor_run(&dir, &[("--max-inputs-bytes", "8")], &[])
        .fails_with(ErrorCode::Inputs, "--inputs-json is larger than 8 bytes");
    proctor_run(&dir, &[], &[("PROCTOR_MAX_INPUTS_BYTES", "8")])
        .fails_with(ErrorCode::Inputs, "--inputs-json is larger than 8 bytes");
    proctor_run(
        &dir,
        &[("--inputs-json", DROP), ("--inputs-file", "absent.json")],
        &[],
    )
    .fails_with(ErrorCode::Inputs, "cannot read --inputs-file `absent.json`");
    dir.write("bad.json", r#"{"schema":"v2","params":{}}"#);
    proctor_run(
        &dir,
        &[("--inputs-json", DROP), ("--inputs-file", "bad.json")],
        &[],
    )
    .fails_with(ErrorCode::Inputs, "at `/schema`");
    dir.write("good.json", r#"{"schema":"v1","params":{"n":3}}"#);
    reaches_adapter(&proctor_run(
        &dir,
        &[("--inputs-json", DROP), ("--inputs-file", "good.json")],
        &[],
    ));
    reaches_adapter(&proctor_run(
        &dir,
        &[("--inputs-json", r#"{"params":{"n":0},"schema":"v1"}"#)],
        &[],
    ));
}

#[test]
fn timeouts_above_seven_days_are_refused_before_the_ledger() {
    let dir = TestDir::new();
    dir.fixture_registry(FIXTURE_YAML);
    reaches_adapter(&proctor_run(&dir, &[("--timeout", "604800")], &[]));
    let executions_before = executions_by_status(&dir);
    for huge in ["604801", "18446744073709551615"] {
        proctor_run(&dir, &[("--timeout", huge)], &[])
            .fails_with(ErrorCode::Inputs, "is above the maximum of 604800 s");
    }
    dir.fixture_registry(&FIXTURE_YAML.replace("timeout_s: 30", "timeout_s: 18446744073709551615"));
    proctor_run(&dir, &[], &[]).fails_with(
        ErrorCode::Registry,
        "runtime.timeout_s 18446744073709551615 is above the maximum",
    );
    let executions_after = executions_by_status(&dir);
    assert_eq!(
        executions_after, executions_before,
        "refused runs record nothing"
    );
    assert!(
        !executions_after
            .iter()
            .any(|(status, _)| status == "running"),
        "no execution is left running: {executions_after:?}"
    );
}

/// How many executions the test's SQLite ledger holds in each status.
fn executions_by_status(dir: &TestDir) -> Vec<(String, i64)> {
    block_on(async {
        sqlx::any::install_default_drivers();
        let mut connection = AnyConnection::connect(&sqlite_url(dir)).await.unwrap();
        let rows = sqlx::query_as(
            "SELECT status, COUNT(*) FROM executions GROUP BY status ORDER BY status",
        )
        .fetch_all(&mut connection)
        .await
        .unwrap();
        connection.close().await.unwrap();
        rows
    })
}

#[test]
fn real_mode_requires_the_secrets_and_never_prints_them() {
    let dir = TestDir::new();
    dir.fixture_registry(FIXTURE_YAML);
    proctor_run(&dir, &[("--mode", "real")], &[])
        .fails_with(ErrorCode::MissingSecret, "FIXTURE_API_KEY");
    proctor_run(&dir, &[("--mode", "real")], &[("FIXTURE_API_KEY", "")])
        .fails_with(ErrorCode::MissingSecret, "FIXTURE_API_KEY");
    reaches_adapter(&proctor_run(&dir, &[("--mode", "mock")], &[]));
    let secret = "fixture-secret-value-0123456789";
    let run = proctor_run(&dir, &[("--mode", "real")], &[("FIXTURE_API_KEY", secret)]);
    reaches_adapter(&run);
    run.check(
        !run.stdout.contains(secret) && !run.stderr.contains(secret),
        "secret printed",
    );
}

#[test]
fn write_prefixes_are_expanded_and_checked() {
    let dir = TestDir::new();
    dir.fixture_registry(FIXTURE_YAML);
    let prefix = |p: &str| proctor_run(&dir, &[("--write-prefix", p)], &[]);
    prefix("/artifacts/o/demo").fails_with(ErrorCode::WritePrefix, "must contain {execution_id}");
    prefix("/streams/{execution_id}")
        .fails_with(ErrorCode::WritePrefix, "must lie under /artifacts/");
    prefix("/artifacts/../{execution_id}").fails_with(ErrorCode::DotSegments, "");
    prefix("/artifacts/a%2F{execution_id}").fails_with(ErrorCode::DecodedSlash, "");
    prefix("/etc/{execution_id}").fails_with(ErrorCode::BadFacet, "");
    prefix("artifacts/{execution_id}").fails_with(ErrorCode::BadPath, "");
    reaches_adapter(&prefix("/artifacts/outputs/demo/{execution_id}"));
    reaches_adapter(&prefix("/artifacts//outputs/{execution_id}/"));
}

#[test]
fn without_build_the_host_platform_must_be_pinned() {
    let dir = TestDir::new();
    dir.fixture_registry(&fixture_pinned_to("null"));
    proctor_run(&dir, &[], &[]).fails_with(ErrorCode::ImageUnpinned, "no digest");
    // With --build the CLI needs no pin: the run reaches the adapter, and the modal adapter
    // refuses builds for itself.
    proctor_run(&dir, &[("--build", "")], &[])
        .fails_with(ErrorCode::AdapterInvocation, "--build is local-only");
    let placeholder = "'registry.example/text-stats@sha256:<64 hex>'";
    let tagged = "127.0.0.1:5000/text-stats:latest";
    for (pin, why) in [(placeholder, "is not REGISTRY/REPO"), (tagged, "is a tag")] {
        dir.fixture_registry(&fixture_pinned_to(pin));
        proctor_run(&dir, &[], &[]).fails_with(ErrorCode::ImageUnpinned, why);
    }
    dir.fixture_registry(FIXTURE_YAML);
    reaches_adapter(&proctor_run(&dir, &[], &[]));
}

#[test]
fn checks_run_in_their_documented_order() {
    let dir = TestDir::new();
    dir.fixture_registry(FIXTURE_YAML);
    // Each case breaks two checks; the earlier one must answer.
    let bad_inputs = ("--inputs-json", "{");
    let cases: &[(&[(&str, &str)], ErrorCode)] = &[
        (
            &[("--ref", "bad"), ("--registry-root", "absent")],
            ErrorCode::ProcessorRef,
        ),
        (
            &[("--registry-root", "absent"), bad_inputs],
            ErrorCode::Registry,
        ),
        (
            &[("--ref", "text/stats@2"), bad_inputs],
            ErrorCode::UnknownProcessor,
        ),
        (&[bad_inputs, ("--mode", "real")], ErrorCode::Inputs),
        (
            &[("--mode", "real"), ("--write-prefix", "/artifacts/x")],
            ErrorCode::MissingSecret,
        ),
        (
            &[("--write-prefix", "/artifacts/x")],
            ErrorCode::WritePrefix,
        ),
    ];
    for (overrides, code) in cases {
        proctor_run(&dir, overrides, &[]).fails_with(*code, "");
    }
}

#[test]
fn the_adapters_answer_for_themselves() {
    let dir = TestDir::new();
    dir.fixture_registry(FIXTURE_YAML);
    let run = proctor_run(&dir, &[("--adapter", "modal"), ("--build", "")], &[]);
    run.fails_with(ErrorCode::AdapterInvocation, "--build is local-only");
    run.check(
        !dir.path().join("artifacts").exists(),
        "a failed invocation leaves nothing",
    );
}
