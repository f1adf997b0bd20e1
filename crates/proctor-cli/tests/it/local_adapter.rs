//! `proctor run --adapter local` end to end: real images built from source (`--build`),
//! real containers on the Docker engine that `scripts/setup.sh` starts.
//!
//! Each run carries the container label `proctor.test=<unique>` (through
//! `--adapter-opts-json`); a [`ContainerSweep`] checks none is left after each run and
//! force-removes any that is when dropped, so no container outlives its test.

use proctor_contract::{Envelope, ErrorCode, OutputsIndex, cid};
use serde_json::{Value, json};

use crate::engine::ContainerSweep;
use crate::util::{Run, TestDir, mock_build_run_args, workspace_registry};

/// The `smoke` example inputs of a workspace processor, as `proctor registry show` gives them.
pub(crate) fn smoke_inputs(dir: &TestDir, processor_ref: &str) -> String {
    let root = workspace_registry().display().to_string();
    let run = dir
        .proctor(&[
            "registry",
            "show",
            processor_ref,
            "--json",
            "--registry-root",
            &root,
        ])
        .run();
    run.exits(0);
    run.json()["examples"]["smoke"]["inputs"].to_string()
}

/// A mock `--build` run of a workspace processor with its smoke inputs.
fn mock_run(dir: &TestDir, sweep: &ContainerSweep, processor_ref: &str, extra: &[&str]) -> Run {
    let inputs = smoke_inputs(dir, processor_ref);
    let root = workspace_registry().display().to_string();
    let options = sweep.adapter_options();
    let mut args = mock_build_run_args(
        processor_ref,
        &root,
        "/artifacts/outputs/demo/{execution_id}",
        &inputs,
    );
    args.extend(["--adapter-opts-json", &options]);
    args.extend_from_slice(extra);
    let run = dir.proctor(&args).run();
    run.check(
        sweep.containers().is_empty(),
        "no container may be left after the run",
    );
    run
}

/// `(path below the write prefix, cid)` of each output: what two runs must share.
fn output_cids(envelope: &Value) -> Vec<(String, String)> {
    let id = envelope["execution_id"].as_str().unwrap();
    envelope["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|output| {
            let path = output["path"].as_str().unwrap();
            let below = path.split_once(id).unwrap().1.to_owned();
            (below, output["cid"].as_str().unwrap().to_owned())
        })
        .collect()
}

#[test]
fn mock_runs_of_each_processor_answer_with_one_envelope_line() {
    let sweep = ContainerSweep::new();
    for processor_ref in ["llm/litellm@1", "text/stats@1"] {
        let dir = TestDir::new();
        let mut previous: Option<Vec<(String, String)>> = None;
        for _ in 0..2 {
            let run = mock_run(&dir, &sweep, processor_ref, &["--json"]);
            run.exits(0);
            let envelope = run.json();
            run.check(
                Envelope::validate(&envelope).is_ok(),
                "a valid success envelope",
            );
            let id = envelope["execution_id"].as_str().unwrap();
            let index_path = format!("/artifacts/outputs/demo/{id}/outputs.json");
            run.check(
                envelope["index_path"] == index_path.as_str(),
                "index under the prefix",
            );
            let settle = run.events("execution.settle");
            run.check(
                run.events("execution.start").len() == 1 && settle.len() == 1,
                "lifecycle",
            );
            run.check(run.events("execution.fail").is_empty(), "no execution.fail");
            run.check(
                settle[0]["execution_id"] == id,
                "settle names the execution",
            );
            let index_file = dir
                .path()
                .join(format!("artifacts/outputs/demo/{id}/outputs.json"));
            let index = OutputsIndex::from_bytes(&std::fs::read(&index_file).unwrap()).unwrap();
            run.check(
                json!(index.outputs) == envelope["outputs"],
                "index matches envelope",
            );
            for output in &index.outputs {
                let below = output.path.as_str().strip_prefix("/artifacts/").unwrap();
                let bytes = std::fs::read(dir.path().join("artifacts").join(below)).unwrap();
                run.check(cid(&bytes) == output.cid, "output bytes match their cid");
            }
            let cids = output_cids(&envelope);
            if let Some(previous) = &previous {
                run.check(
                    previous == &cids,
                    "mock outputs are byte-stable across runs",
                );
            }
            previous = Some(cids);
        }
    }
}

#[test]
fn human_runs_summarize_and_save_dir_mirrors_world_paths() {
    let sweep = ContainerSweep::new();
    let dir = TestDir::new();
    let run = mock_run(&dir, &sweep, "text/stats@1", &["--save-dir", "saved"]);
    run.exits(0);
    run.check(
        run.stdout.starts_with("status:       success (mock mode)"),
        "status line",
    );
    let id = run
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("execution id: "))
        .unwrap_or_default()
        .to_owned();
    let index_path = format!("/artifacts/outputs/demo/{id}/outputs.json");
    run.check(
        run.stdout.contains(&format!("index:        {index_path}")),
        "index line",
    );
    run.check(run.stdout.contains("saved to:     saved"), "saved line");
    let saved_index = dir.path().join("saved").join(&index_path[1..]);
    let index = OutputsIndex::from_bytes(&std::fs::read(&saved_index).unwrap()).unwrap();
    run.check(!index.outputs.is_empty(), "outputs are indexed");
    for output in &index.outputs {
        let saved = std::fs::read(dir.path().join("saved").join(output.path.relative())).unwrap();
        run.check(cid(&saved) == output.cid, "saved bytes match their cid");
        run.check(
            run.stdout.contains(output.path.as_str()),
            "each output is listed",
        );
    }
}

#[test]
fn a_processor_error_envelope_is_printed_and_exits_with_its_code() {
    let sweep = ContainerSweep::new();
    let dir = TestDir::new();
    let fixtures = workspace_registry()
        .join("../fixtures/processors")
        .display()
        .to_string();
    let options = sweep.adapter_options();
    let run = dir
        .proctor(&[
            "run",
            "--ref",
            "testing/faulty@1",
            "--adapter",
            "local",
            "--build",
            "--write-prefix",
            "/artifacts/o/{execution_id}",
            "--inputs-json",
            r#"{"schema":"v1","fault":"provider_error"}"#,
            "--adapter-opts-json",
            &options,
            "--registry-root",
            &fixtures,
            "--artifacts-root",
            "artifacts",
            "--json",
        ])
        .run();
    run.fails_with(ErrorCode::Provider, "");
    let fail = run.events("execution.fail");
    run.check(
        fail.len() == 1 && fail[0]["code"] == "ERR_PROVIDER",
        "one execution.fail",
    );
    run.check(run.events("execution.settle").is_empty(), "no settle");
    run.check(
        sweep.containers().is_empty(),
        "no container may be left after the run",
    );
}

/// `proctor run --build` of `testing/faulty@1` with `fault`, `--json`, its container
/// labelled for `sweep`; `extra` arguments and `env` added.
fn faulty_run(
    dir: &TestDir,
    sweep: &ContainerSweep,
    fault: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Run {
    let fixtures = workspace_registry()
        .join("../fixtures/processors")
        .display()
        .to_string();
    let options = sweep.adapter_options();
    let inputs = json!({"schema": "v1", "fault": fault}).to_string();
    let mut args = vec![
        "run",
        "--ref",
        "testing/faulty@1",
        "--adapter",
        "local",
        "--build",
        "--write-prefix",
        "/artifacts/o/{execution_id}",
        "--inputs-json",
        &inputs,
        "--adapter-opts-json",
        &options,
        "--registry-root",
        &fixtures,
        "--artifacts-root",
        "artifacts",
        "--json",
    ];
    args.extend_from_slice(extra);
    let mut command = dir.proctor(&args);
    for (name, value) in env {
        command = command.env(name, value);
    }
    let run = command.run();
    run.check(
        sweep.containers().is_empty(),
        "no container may be left after the run",
    );
    run
}

#[test]
fn a_busy_processor_is_waited_for_and_the_run_succeeds() {
    let sweep = ContainerSweep::new();
    let dir = TestDir::new();
    let run = faulty_run(&dir, &sweep, "busy", &[], &[]);
    run.exits(0);
    run.check(run.json()["status"] == "success", "the run succeeds");
    let busy = run.events("processor.busy");
    run.check(
        busy.len() == 2,
        "both busy answers of the fixture were waited out and posted again",
    );
}

#[test]
fn a_failed_setup_fails_the_run_with_its_redacted_log_tail() {
    let sweep = ContainerSweep::new();
    let dir = TestDir::new();
    let startup = [("FAULTY_STARTUP", "failing_setup")];
    let run = faulty_run(&dir, &sweep, "none", &["--mode", "real"], &startup);
    let message = run.fails_with(
        ErrorCode::AdapterInvocation,
        "testing/faulty@1 reports setup_failed; last log lines:\nloading the model\nset-up failed: upstream",
    );
    for leaked in ["leak-password-5f2c", "leak-user:"] {
        run.check(
            !message.contains(leaked),
            &format!("`{leaked}` in the message"),
        );
        run.check(
            !run.stderr.contains(leaked),
            &format!("`{leaked}` on stderr"),
        );
    }
}
