//! What the command line shows: short status lines on a terminal, JSON log lines on a pipe,
//! and under `--json` exactly one line of JSON on stdout from every command, its failures,
//! usage errors and internal errors included.

use std::process::Command;

use proctor_contract::ErrorCode;
use serde_json::Value;

use crate::util::{TestDir, workspace_registry};

/// `proctor` with `args` under a pseudo-terminal (util-linux `script`), in `dir` with a
/// clean environment plus `env`; answers the exit code and what the terminal showed
/// (stdout and stderr together).
fn on_a_terminal(dir: &TestDir, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let line = std::iter::once(env!("CARGO_BIN_EXE_proctor"))
        .chain(args.iter().copied())
        .map(shell_quote)
        .collect::<Vec<_>>()
        .join(" ");
    let mut command = Command::new("script");
    command
        .args(["-qefc", &line, "/dev/null"])
        .current_dir(dir.path())
        .env_clear();
    for name in ["PATH", "HOME", "DOCKER_HOST", "CARGO_HOME", "RUSTUP_HOME"] {
        if let Ok(value) = std::env::var(name) {
            command.env(name, value);
        }
    }
    command.envs(env.iter().copied());
    let output = command.output().expect("util-linux `script` runs");
    let shown = String::from_utf8_lossy(&output.stdout).replace("\r\n", "\n");
    (output.status.code().unwrap_or(-1), shown)
}

fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Whether `text` holds a JSON log line.
fn has_json_log_line(text: &str) -> bool {
    text.lines()
        .any(|line| line.starts_with("{\"ts\":") && line.contains("\"level\":"))
}

#[test]
fn a_terminal_shows_status_lines_and_a_pipe_json_lines() {
    let dir = TestDir::new();
    let keygen = ["ledger", "keygen", "--out", "k.pem"];

    let (code, shown) = on_a_terminal(&dir, &keygen, &[]);
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("wrote a new signing key"), "{shown}");
    assert!(!has_json_log_line(&shown), "{shown}");

    let piped = dir.proctor(&["ledger", "keygen", "--out", "p.pem"]).run();
    piped.exits(0);
    piped.check(
        piped.events("ledger.keygen").len() == 1,
        "a pipe gets JSON log lines",
    );

    for (args, env) in [
        (&["-q", "ledger", "keygen", "--out", "q.pem"][..], &[][..]),
        (
            &["ledger", "keygen", "--out", "e.pem"],
            &[("PROCTOR_LOG", "error")],
        ),
    ] {
        let (code, shown) = on_a_terminal(&dir, args, env);
        assert_eq!(code, 0, "{shown}");
        assert!(!shown.contains("signing key"), "quiet: {args:?} {shown}");
    }

    let (code, shown) = on_a_terminal(
        &dir,
        &["--log-format", "json", "ledger", "keygen", "--out", "j.pem"],
        &[],
    );
    assert_eq!(code, 0, "{shown}");
    assert!(has_json_log_line(&shown), "--log-format json: {shown}");
}

#[test]
fn a_bad_log_filter_is_a_usage_error() {
    let dir = TestDir::new();
    let run = dir
        .proctor(&["--json", "registry", "list"])
        .env("PROCTOR_LOG", "proctor=loudest")
        .run();
    run.exits(2);
    let body = run.json();
    run.check(body["error"]["code"] == "ERR_USAGE", "ERR_USAGE");
}

#[test]
fn a_run_on_a_terminal_says_what_it_does() {
    let dir = TestDir::new();
    let registry = workspace_registry().display().to_string();
    let args = [
        "run",
        "--ref",
        "text/stats@1",
        "--adapter",
        "local",
        "--build",
        "--registry-root",
        &registry,
        "--inputs-json",
        r#"{"schema":"v1","text":"a b"}"#,
        "--write-prefix",
        "/artifacts/outputs/tty/{execution_id}/",
    ];
    let (code, shown) = on_a_terminal(&dir, &args, &[]);
    assert_eq!(code, 0, "{shown}");
    assert!(
        shown.contains("Running text/stats@1 (mock mode, local adapter)"),
        "{shown}"
    );
    assert!(shown.contains("Finished text/stats@1 in "), "{shown}");
    assert!(!has_json_log_line(&shown), "{shown}");
}

/// One command's expected answer under `--json`.
enum Expect {
    Success,
    Fails(ErrorCode),
    /// Depends on the machine (`doctor`): one JSON line either way, the error shape when
    /// it fails.
    Either,
}

#[test]
fn every_command_prints_one_json_line_and_one_error_shape() {
    let dir = TestDir::new();
    dir.write(
        "plan.yaml",
        "plan: json-shape\nmode: mock\ntransitions:\n  - id: stats\n    ref: text/stats@1\n    inputs: {schema: v1, text: hi}\n",
    );
    let registry = workspace_registry().display().to_string();
    let registry = registry.as_str();
    let cases: Vec<(Vec<&str>, Expect)> = vec![
        (
            vec!["registry", "list", "--registry-root", registry],
            Expect::Success,
        ),
        (
            vec![
                "registry",
                "show",
                "text/stats@1",
                "--registry-root",
                registry,
            ],
            Expect::Success,
        ),
        (
            vec![
                "registry",
                "show",
                "nope/none@1",
                "--registry-root",
                registry,
            ],
            Expect::Fails(ErrorCode::UnknownProcessor),
        ),
        (vec!["world", "ls", "/artifacts/"], Expect::Success),
        (
            vec!["world", "cat", "/artifacts/none.txt"],
            Expect::Fails(ErrorCode::NotFound),
        ),
        (
            vec!["world", "cat", "/artifacts/../etc/passwd"],
            Expect::Fails(ErrorCode::DotSegments),
        ),
        (vec!["ledger", "keygen", "--out", "k.pem"], Expect::Success),
        (
            vec!["ledger", "budget", "p1", "--set", "5"],
            Expect::Success,
        ),
        (vec!["ledger", "show", "p1"], Expect::Success),
        (vec!["ledger", "verify"], Expect::Success),
        (
            vec!["ledger", "checkpoint", "--key", "k.pem"],
            Expect::Success,
        ),
        (
            vec![
                "plan",
                "apply",
                "plan.yaml",
                "--dry-run",
                "--registry-root",
                registry,
            ],
            Expect::Success,
        ),
        (
            vec!["plan", "status", "none"],
            Expect::Fails(ErrorCode::Plan),
        ),
        (
            vec!["plan", "graph", "none"],
            Expect::Fails(ErrorCode::Plan),
        ),
        (
            vec!["verify", "no-such-execution", "--registry-root", registry],
            Expect::Fails(ErrorCode::Verify),
        ),
        (
            vec![
                "secrets",
                "plan",
                "--target",
                "modal",
                "--registry-root",
                registry,
            ],
            Expect::Fails(ErrorCode::DeployTarget),
        ),
        (
            vec!["build", "--ref", "nope/none@1", "--registry-root", registry],
            Expect::Fails(ErrorCode::UnknownProcessor),
        ),
        (
            vec![
                "push",
                "--ref",
                "nope/none@1",
                "--registry",
                "127.0.0.1:5000/a/b",
            ],
            Expect::Fails(ErrorCode::Push),
        ),
        (
            vec!["pin", "--ref", "nope/none@1", "--registry-root", registry],
            Expect::Fails(ErrorCode::UnknownProcessor),
        ),
        (
            vec![
                "lane",
                "pr",
                "--ref",
                "nope/none@1",
                "--registry-root",
                registry,
            ],
            Expect::Fails(ErrorCode::UnknownProcessor),
        ),
        (
            vec!["conform", "nope/none@1", "--registry-root", registry],
            Expect::Fails(ErrorCode::UnknownProcessor),
        ),
        (
            vec!["drift", "--ref", "nope/none@1", "--registry-root", registry],
            Expect::Fails(ErrorCode::UnknownProcessor),
        ),
        (
            vec![
                "run",
                "--ref",
                "nope/none@1",
                "--adapter",
                "local",
                "--inputs-json",
                "{}",
                "--write-prefix",
                "/artifacts/o/{execution_id}/",
                "--registry-root",
                registry,
            ],
            Expect::Fails(ErrorCode::UnknownProcessor),
        ),
        (vec!["completions", "bash"], Expect::Success),
        (vec!["man"], Expect::Success),
        (vec!["doctor", "--registry-root", registry], Expect::Either),
        (
            vec!["run", "--no-such-flag"],
            Expect::Fails(ErrorCode::Usage),
        ),
        (vec!["no-such-command"], Expect::Fails(ErrorCode::Usage)),
    ];
    let mut failures = Vec::new();
    for (args, expect) in &cases {
        let args: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
        let run = dir.proctor(&args).run();
        let lines: Vec<&str> = run.stdout.lines().collect();
        let body: Option<Value> = match lines.as_slice() {
            [line] => serde_json::from_str(line).ok(),
            _ => None,
        };
        let Some(body) = body else {
            failures.push(format!("not one JSON line:\n{}", run.report()));
            continue;
        };
        match expect {
            Expect::Success if run.code != 0 || body["status"] == "error" => {
                failures.push(format!("expected success:\n{}", run.report()));
            }
            Expect::Fails(code)
                if run.code != code.exit_code()
                    || body["status"] != "error"
                    || body["error"]["code"] != code.as_str()
                    || !body["error"]["message"]
                        .as_str()
                        .is_some_and(|message| message.contains(code.fragment())) =>
            {
                failures.push(format!("expected {code}:\n{}", run.report()));
            }
            Expect::Either
                if (run.code == 0) != (body["status"] == "ok")
                    || (run.code != 0 && !body["error"]["code"].is_string()) =>
            {
                failures.push(format!("a success or the error shape:\n{}", run.report()));
            }
            _ => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A failure outside the canon (here: the working directory is gone, so no path can be
/// made absolute) is still one line of the error shape under `--json`, exit 1.
#[test]
fn an_internal_error_has_the_same_shape() {
    let dir = TestDir::new();
    let gone = dir.path().join("gone");
    std::fs::create_dir(&gone).unwrap();
    let output = Command::new("sh")
        .args([
            "-c",
            r#"cd "$1" && rmdir "$1" && exec "$2" --json registry list"#,
            "sh",
        ])
        .arg(&gone)
        .arg(env!("CARGO_BIN_EXE_proctor"))
        .env_clear()
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}\n{stderr}");
    let body: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(body["status"], "error");
    assert_eq!(body["error"]["code"], "ERR_INTERNAL");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("internal error: "),
        "{body}"
    );
}
