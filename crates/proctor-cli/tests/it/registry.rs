//! `proctor registry list` and `proctor registry show REF`, on fixture registries and on
//! the workspace's own `processors/`.

use proctor_contract::ErrorCode;
use serde_json::Value;

use crate::util::{FIXTURE_YAML, PINNED, TestDir, fixture_pinned_to, workspace_registry};

/// A temp dir holding the fixture registry unpinned as `text/stats@1`, and pinned for
/// amd64 only as `text/stats@2`.
fn two_versions() -> TestDir {
    let dir = TestDir::new();
    dir.fixture_registry(&fixture_pinned_to("null"));
    let amd64_only = FIXTURE_YAML
        .replace("ref: text/stats@1", "ref: text/stats@2")
        .replace(&format!("arm64: {PINNED}"), "arm64: null");
    dir.write("processors/text/stats/2/registry.yaml", &amd64_only);
    dir
}

#[test]
fn list_prints_a_table_or_one_json_line() {
    let dir = two_versions();
    let run = dir.proctor(&["registry", "list"]).run();
    run.exits(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    run.check(lines.len() == 3, "a header and two rows");
    run.check(
        lines[0].starts_with("REF") && lines[0].contains("DESCRIPTION"),
        "header",
    );
    run.check(
        lines[1].starts_with("text/stats@1") && lines[1].contains(" none "),
        "unpinned",
    );
    run.check(
        lines[2].starts_with("text/stats@2") && lines[2].contains(" amd64 "),
        "pinned",
    );
    run.check(
        lines[1].contains("FIXTURE_API_KEY"),
        "secrets are listed by name",
    );

    let run = dir.proctor(&["registry", "list", "--json"]).run();
    run.exits(0);
    let list = run.json();
    let refs: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["ref"].as_str().unwrap())
        .collect();
    run.check(refs == ["text/stats@1", "text/stats@2"], "sorted refs");
    run.check(
        list[1]["image"]["platforms"]["amd64"] == PINNED,
        "pins are listed",
    );
    run.check(
        list[0]["examples"] == serde_json::json!(["smoke"]),
        "example names",
    );
}

#[test]
fn list_refuses_an_invalid_registry() {
    let dir = TestDir::new();
    dir.fixture_registry(&FIXTURE_YAML.replace("ref: text/stats@1", "ref: text/stats@3"));
    for json in [true, false] {
        let args: &[&str] = if json {
            &["registry", "list", "--json"]
        } else {
            &["registry", "list"]
        };
        let run = dir.proctor(args).run();
        run.exits(ErrorCode::Registry.exit_code());
        run.check(run.stdout.contains("ERR_REGISTRY"), "the code is printed");
        run.check(
            run.stdout.contains("does not match its directory"),
            "the reason is printed",
        );
        if json {
            run.check(
                run.json()["error"]["code"] == "ERR_REGISTRY",
                "a JSON error",
            );
        }
    }
}

#[test]
fn every_registry_command_refuses_a_timeout_out_of_range() {
    for (timeout_s, why) in [
        (
            "604801",
            "runtime.timeout_s 604801 is above the maximum of 604800 s (7 days)",
        ),
        ("0", "runtime.timeout_s must be positive"),
        ("99999999999999999999", "runtime.timeout_s"),
    ] {
        let dir = TestDir::new();
        dir.fixture_registry(
            &FIXTURE_YAML.replace("timeout_s: 30", &format!("timeout_s: {timeout_s}")),
        );
        for args in [
            &["registry", "list", "--json"][..],
            &["registry", "show", "text/stats@1", "--json"],
        ] {
            let run = dir.proctor(args).run();
            run.exits(ErrorCode::Registry.exit_code());
            let error = &run.json()["error"];
            let message = error["message"].as_str().unwrap_or_default();
            run.check(error["code"] == "ERR_REGISTRY", "the code is ERR_REGISTRY");
            run.check(
                message.contains(why) && message.contains("text/stats/1/registry.yaml"),
                "the message names the entry and the field",
            );
        }
    }
}

#[test]
fn show_prints_one_processor_in_full() {
    let dir = two_versions();
    let run = dir.proctor(&["registry", "show", "text/stats@2"]).run();
    run.exits(0);
    for expected in [
        "ref:          text/stats@2",
        &format!("image amd64:  {PINNED}"),
        "image arm64:  not pinned",
        "secrets:      FIXTURE_API_KEY (real mode only)",
        "env:          FIXTURE_BASE_URL (real mode only)",
        "outputs:      stats.json (application/json)\n              text/normalized.txt (text/plain)",
        "examples:     smoke: Empty params.",
        "inputs schema:",
        "\"additionalProperties\": false",
    ] {
        run.check(
            run.stdout.contains(expected),
            &format!("shows {expected:?}"),
        );
    }
    let run = dir
        .proctor(&["registry", "show", "text/stats@1", "--json"])
        .run();
    run.exits(0);
    let spec = run.json();
    let yaml: Value = serde_yaml_ng::from_str(&fixture_pinned_to("null")).unwrap();
    run.check(spec == yaml, "--json prints the registry.yaml as JSON");
}

#[test]
fn show_refuses_unknown_and_malformed_refs() {
    let dir = two_versions();
    let run = dir
        .proctor(&["registry", "show", "text/stats@9", "--json"])
        .run();
    run.exits(ErrorCode::UnknownProcessor.exit_code());
    let error = &run.json()["error"];
    run.check(error["code"] == "ERR_UNKNOWN_PROCESSOR", "unknown ref");
    run.check(
        error["message"]
            .as_str()
            .unwrap()
            .contains("known: text/stats@1, text/stats@2"),
        "lists known refs",
    );
    let run = dir.proctor(&["registry", "show", "stats"]).run();
    run.exits(ErrorCode::ProcessorRef.exit_code());
    run.check(
        run.stdout
            .starts_with("error: ERR_PROCESSOR_REF: invalid processor ref"),
        "human error",
    );
}

#[test]
fn the_workspace_registry_loads_and_lists_every_processor() {
    let root = workspace_registry();
    let files: Vec<_> = walk_registry_files(&root);
    if files.is_empty() {
        // The processors' registry.yaml files are not written yet; nothing to check.
        return;
    }
    let dir = TestDir::new();
    let root = root.display().to_string();
    let run = dir
        .proctor(&["registry", "list", "--json", "--registry-root", &root])
        .run();
    run.exits(0);
    let listed = run.json().as_array().unwrap().len();
    run.check(listed == files.len(), "every registry.yaml is listed");
    for entry in run.json().as_array().unwrap() {
        let processor_ref = entry["ref"].as_str().unwrap();
        let show = dir
            .proctor(&["registry", "show", processor_ref, "--registry-root", &root])
            .run();
        show.exits(0);
    }
}

/// `<root>/<ns>/<name>/<version>/registry.yaml` files.
fn walk_registry_files(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let children = |dir: &std::path::Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut files = Vec::new();
    for namespace in children(root) {
        for name in children(&namespace) {
            for version in children(&name) {
                let file = version.join("registry.yaml");
                if file.is_file() {
                    files.push(file);
                }
            }
        }
    }
    files
}

#[test]
fn a_closed_stdout_is_a_clean_exit() {
    let dir = two_versions();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_proctor"))
        .args(["registry", "list"])
        .current_dir(dir.path())
        .env_clear()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "stderr: {stderr}"
    );
}
