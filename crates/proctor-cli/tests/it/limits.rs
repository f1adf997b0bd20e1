//! The limits on what a processor sends back: each output's size, the outputs' total size
//! and count, the envelope and the `/healthz` answer. `testing/hostile@1` exceeds each one,
//! lowered by its flag (or variable) so the runs stay small, in a `--build` run on the local
//! adapter and the Docker engine that `scripts/setup.sh` starts.
//!
//! Every refusal is checked the same way: the canonical code and a message naming the limit
//! and the flag that raises it, nothing of the execution in the World, the execution settled
//! as a failure with that code, `ledger verify` passing, the staging area removed and no
//! container left.

use std::path::{Path, PathBuf};

use proctor_contract::ErrorCode;
use serde_json::{Value, json};

use crate::engine::ContainerSweep;
use crate::evidence::ledger_outcome;
use crate::util::{Run, TestDir, fixtures_registry};

/// The write prefix of every run, below the artifacts root `artifacts`.
const WRITE_PREFIX: &str = "/artifacts/outputs/limits/{execution_id}";

/// One test's directory, its private temporary directory (where staging areas are made)
/// and its container label.
struct Limited {
    dir: TestDir,
    tmp: PathBuf,
    sweep: ContainerSweep,
}

impl Limited {
    fn new() -> Limited {
        let dir = TestDir::new();
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        Limited {
            dir,
            tmp,
            sweep: ContainerSweep::new(),
        }
    }

    /// A `--build --json` run of `testing/hostile@1` in `mode` with `inputs`, `extra` flags
    /// and `env`; asserts no container is left after it.
    fn run(&self, mode: &str, inputs: &Value, extra: &[&str], env: &[(&str, &str)]) -> Run {
        let fixtures = fixtures_registry();
        let options = self.sweep.adapter_options();
        let inputs = inputs.to_string();
        let mut args = vec![
            "run",
            "--ref",
            "testing/hostile@1",
            "--adapter",
            "local",
            "--mode",
            mode,
            "--build",
            "--write-prefix",
            WRITE_PREFIX,
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
        let mut proctor = self
            .dir
            .proctor(&args)
            .env("TMPDIR", &self.tmp.display().to_string());
        for (name, value) in env {
            proctor = proctor.env(name, value);
        }
        let run = proctor.run();
        run.check(
            self.sweep.containers().is_empty(),
            "no container may be left after the run",
        );
        run
    }

    /// Asserts `run` was refused with `code` and `detail`, settled as a failure with that
    /// code in a ledger that verifies, left nothing of its execution in the World and
    /// removed its staging area.
    #[track_caller]
    fn refused(&self, run: &Run, code: ErrorCode, detail: &str) {
        run.fails_with(code, detail);
        let id = run.json()["execution_id"].as_str().unwrap().to_owned();
        let (status, error_code, _) = ledger_outcome(&self.dir, &id);
        run.check(
            status == "failure" && error_code.as_deref() == Some(code.as_str()),
            &format!("the ledger must settle a failure, not {status} / {error_code:?}"),
        );
        let left = paths_naming(&self.dir.path().join("artifacts"), &id);
        run.check(
            left.is_empty(),
            &format!("nothing of a refused execution may enter the World: {left:?}"),
        );
        let staging: Vec<String> = std::fs::read_dir(&self.tmp)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("proctor-staging-"))
            .collect();
        run.check(
            staging.is_empty(),
            &format!("the staging area must be removed: {staging:?}"),
        );
        let verify = self.dir.proctor(&["ledger", "verify"]).run();
        verify.exits(0);
    }
}

/// Every path below `root` whose relative path contains `needle`; never follows a link.
fn paths_naming(root: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(root).unwrap().display().to_string();
            if relative.contains(needle) {
                found.push(relative);
            }
            if std::fs::symlink_metadata(&path).unwrap().is_dir() {
                pending.push(path);
            }
        }
    }
    found
}

fn behaviour(name: &str, bytes: u64, count: u64) -> Value {
    json!({"schema": "v1", "behaviour": name, "bytes": bytes, "count": count})
}

#[test]
fn an_output_over_the_per_output_limit_is_refused_and_one_at_it_commits() {
    let limited = Limited::new();
    let flag = ["--max-output-bytes", "4096"];
    let at_limit = limited.run("mock", &behaviour("big_output", 4096, 0), &flag, &[]);
    at_limit.exits(0);
    let over = limited.run("mock", &behaviour("big_output", 4097, 0), &flag, &[]);
    limited.refused(
        &over,
        ErrorCode::Evidence,
        "/outputs/a.txt` is 4097 bytes, over the 4096-byte limit per output; raise \
         --max-output-bytes (PROCTOR_MAX_OUTPUT_BYTES) to allow it",
    );
}

#[test]
fn outputs_over_the_total_limit_are_refused() {
    let limited = Limited::new();
    let run = limited.run(
        "mock",
        &behaviour("many_outputs", 1000, 3),
        &["--max-outputs-total-bytes", "2500"],
        &[],
    );
    limited.refused(
        &run,
        ErrorCode::Evidence,
        "over the 2500-byte limit for all outputs of an execution; raise \
         --max-outputs-total-bytes (PROCTOR_MAX_OUTPUTS_TOTAL_BYTES)",
    );
    run.check(
        run.json()["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("the outputs reach 3000 bytes with `")),
        "the message names the total and the file that passed the limit",
    );
}

#[test]
fn more_outputs_than_the_count_limit_are_refused() {
    let limited = Limited::new();
    let run = limited.run(
        "mock",
        &behaviour("many_outputs", 1, 5),
        &[],
        &[("PROCTOR_MAX_OUTPUTS", "4")],
    );
    limited.refused(
        &run,
        ErrorCode::Evidence,
        "5 outputs were written, more than the limit of 4; raise --max-outputs \
         (PROCTOR_MAX_OUTPUTS)",
    );
}

#[test]
fn an_envelope_over_its_limit_is_refused() {
    let limited = Limited::new();
    let run = limited.run(
        "mock",
        &behaviour("big_envelope", 70_000, 0),
        &["--max-envelope-bytes", "65536"],
        &[],
    );
    limited.refused(
        &run,
        ErrorCode::AdapterInvocation,
        "the answer is larger than the 65536-byte envelope limit; raise --max-envelope-bytes \
         (PROCTOR_MAX_ENVELOPE_BYTES)",
    );
}

#[test]
fn a_healthz_answer_over_its_limit_is_refused() {
    let limited = Limited::new();
    let run = limited.run(
        "real",
        &behaviour("honest", 0, 0),
        &["--max-health-bytes", "4096"],
        &[("HOSTILE_HEALTHZ_BYTES", "5000")],
    );
    limited.refused(
        &run,
        ErrorCode::AdapterInvocation,
        "/healthz: cannot read the answer: the answer is larger than the 4096-byte /healthz \
         limit; raise --max-health-bytes (PROCTOR_MAX_HEALTH_BYTES)",
    );
}
