//! The short first run: `proctor run REF --build` from a subdirectory of a project, with the
//! adapter, the write prefix and the inputs left to their defaults, or the inputs taken from
//! an example, stdin or `-i key=value`; the summary says where the outputs are and what to
//! run next, and those commands work as printed.
//!
//! Each test's directory is a project (`.proctor/` at its top) run from `sub/dir`, with the
//! workspace's registry (`PROCTOR_REGISTRY_ROOT`), so its builds reuse the workspace's
//! compiled processors. Containers carry a [`ContainerSweep`] label.

use std::path::PathBuf;

use proctor_contract::{ErrorCode, OutputsIndex, cid};
use serde_json::Value;

use crate::engine::{ContainerSweep, EXECUTION_LABEL, containers_labelled};
use crate::util::{
    Run, TestDir, clean_command, successful_output, workspace_registry, workspace_root,
};

/// A project directory and the subdirectory its commands run in.
struct Project {
    dir: TestDir,
    sweep: ContainerSweep,
}

impl Project {
    fn new() -> Project {
        let dir = TestDir::new();
        std::fs::create_dir_all(dir.path().join(".proctor")).unwrap();
        std::fs::create_dir_all(dir.path().join("sub/dir")).unwrap();
        Project {
            dir,
            sweep: ContainerSweep::new(),
        }
    }

    /// `proctor args…` in `sub/dir`, on the workspace's registry.
    fn proctor(&self, args: &[&str]) -> crate::util::Proctor {
        self.dir
            .proctor(args)
            .current_dir(&self.dir.path().join("sub/dir"))
            .env(
                "PROCTOR_REGISTRY_ROOT",
                &workspace_registry().display().to_string(),
            )
    }

    /// `proctor run REF --build args…`, its container labelled; none may be left.
    fn run(&self, processor_ref: &str, args: &[&str], stdin: Option<&[u8]>) -> Run {
        let options = self.sweep.adapter_options();
        let mut all = vec![
            "run",
            processor_ref,
            "--build",
            "--adapter-opts-json",
            &options,
        ];
        all.extend_from_slice(args);
        let command = self.proctor(&all);
        let run = match stdin {
            Some(bytes) => command.stdin(bytes).run(),
            None => command.run(),
        };
        run.check(
            self.sweep.containers().is_empty(),
            "no container may be left after the run",
        );
        run
    }

    /// Where the project keeps the World: `.proctor/artifacts`.
    fn artifacts(&self) -> PathBuf {
        self.dir.path().join(".proctor/artifacts")
    }

    /// The bytes of the output `name` of a successful `--json` run, read on the host.
    fn output(&self, envelope: &Value, name: &str) -> String {
        let path = envelope["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|output| output["path"].as_str().unwrap())
            .find(|path| path.ends_with(&format!("/outputs/{name}")))
            .unwrap_or_else(|| panic!("no output {name}: {envelope}"));
        let host = self
            .artifacts()
            .join(path.strip_prefix("/artifacts/").unwrap());
        std::fs::read_to_string(host).unwrap()
    }
}

/// The execution id of a successful human-output run.
fn execution_id(run: &Run) -> String {
    run.stdout
        .lines()
        .find_map(|line| line.strip_prefix("execution id: "))
        .unwrap_or_else(|| panic!("no execution id\n{}", run.report()))
        .to_owned()
}

#[test]
fn a_short_run_from_a_subdirectory_lands_in_the_project_and_says_where() {
    let project = Project::new();
    let run = project.run("text/stats@1", &[], None);
    run.exits(0);
    run.check(
        run.stdout.starts_with("status:       success (mock mode)"),
        "a human summary",
    );
    let id = execution_id(&run);
    let prefix = format!("/artifacts/outputs/text/stats/1/{id}/");
    let index_file = project
        .artifacts()
        .join(format!("outputs/text/stats/1/{id}/outputs.json"));
    let index = OutputsIndex::from_bytes(&std::fs::read(&index_file).unwrap()).unwrap();
    run.check(
        index.outputs.len() == 3,
        "the smoke example's three outputs",
    );
    for output in &index.outputs {
        let world = output.path.as_str();
        run.check(world.starts_with(&prefix), "under the default prefix");
        let host = project
            .artifacts()
            .join(output.path.relative().strip_prefix("artifacts/").unwrap());
        let bytes = std::fs::read(&host).unwrap();
        run.check(cid(&bytes) == output.cid, "the host file holds the output");
        let lines: Vec<&str> = run.stdout.lines().collect();
        let at = lines.iter().position(|line| line.contains(world));
        run.check(
            at.is_some_and(|at| {
                lines.get(at + 1) == Some(&format!("    on this host: {}", host.display()).as_str())
            }),
            "each output's world path, then its host path",
        );
    }
    let first = index.outputs[0].path.as_str();
    // The registry is not the project's own, so `verify` is told where it is.
    let registry = workspace_registry().display().to_string();
    let next = format!(
        "next:         proctor verify {id} --registry-root {registry}\n              \
         proctor world cat {first}\n"
    );
    run.check(
        run.stdout.ends_with(&next),
        "the next commands end the summary",
    );

    // The next commands work as printed, from the same directory.
    project.proctor(&["verify", &id]).run().exits(0);
    let cat = project.proctor(&["world", "cat", first]).run();
    cat.exits(0);
    cat.check(
        cat.stdout_bytes
            == std::fs::read(project.artifacts().join(&first["/artifacts/".len()..])).unwrap(),
        "world cat prints the output's bytes",
    );
}

#[test]
fn inputs_come_from_an_example_or_stdin() {
    let project = Project::new();
    let run = project.run("text/stats@1", &["--example", "top_three", "--json"], None);
    run.exits(0);
    let envelope = run.json();
    let stats: Value = serde_json::from_str(&project.output(&envelope, "stats.json")).unwrap();
    run.check(
        stats["words"] == 10 && stats["top_words"].as_array().map(Vec::len) == Some(3),
        "the top_three example's inputs were the payload",
    );
    let id = envelope["execution_id"].as_str().unwrap();
    run.check(
        envelope["index_path"] == format!("/artifacts/outputs/text/stats/1/{id}/outputs.json"),
        "the default write prefix",
    );

    let piped = br#"{"schema":"v1","text":"piped in"}"#;
    let run = project.run(
        "text/stats@1",
        &["--inputs-file", "-", "--json"],
        Some(piped),
    );
    run.exits(0);
    run.check(
        project.output(&run.json(), "normalized.txt").trim() == "piped in",
        "stdin was the payload",
    );

    let run = project.run(
        "text/stats@1",
        &["--inputs-file", "-", "--json", "--max-inputs-bytes", "8"],
        Some(piped),
    );
    run.fails_with(
        ErrorCode::Inputs,
        "--inputs-file - (stdin) is larger than 8 bytes",
    );
}

#[test]
fn an_unknown_example_names_the_examples_there_are() {
    let project = Project::new();
    let run = project.run("text/stats@1", &["--example", "nope", "--json"], None);
    run.fails_with(
        ErrorCode::Inputs,
        "text/stats@1 has no example `nope`; its examples: smoke, top_three",
    );
    run.check(
        !project.artifacts().join("outputs").exists(),
        "nothing was written",
    );
}

#[test]
fn params_set_with_i_go_on_top_of_the_smoke_example() {
    let project = Project::new();
    let run = project.run(
        "llm/litellm@1",
        &[
            "-i",
            "model=first",
            "--input",
            "model=chosen-model",
            "-i",
            r#"messages=[{"role":"user","content":"Quote me from -i"}]"#,
            "-i",
            "max_tokens=5",
            "--json",
        ],
        None,
    );
    run.exits(0);
    let envelope = run.json();
    let id = envelope["execution_id"].as_str().unwrap();
    run.check(
        envelope["index_path"] == format!("/artifacts/outputs/llm/litellm/1/{id}/outputs.json"),
        "the default write prefix",
    );
    let response = project.output(&envelope, "text/response.txt");
    run.check(
        response.contains("Quote me from -i"),
        "the messages array reached the processor",
    );
    let metadata: Value =
        serde_json::from_str(&project.output(&envelope, "metadata.json")).unwrap();
    run.check(
        metadata["model"] == "chosen-model",
        "the last -i of a key wins",
    );
}

#[test]
fn build_runs_compile_in_the_workspace_root_given() {
    // A project of its own, no Cargo workspace above it: its registry is a copy.
    let project = Project::new();
    let yaml =
        std::fs::read_to_string(workspace_registry().join("text/stats/1/registry.yaml")).unwrap();
    project
        .dir
        .write("processors/text/stats/1/registry.yaml", &yaml);
    let registry = project.dir.path().join("processors").display().to_string();
    let ledger = format!(
        "sqlite://{}/.proctor/ledger.db",
        project.dir.path().display()
    );
    let artifacts = project.artifacts().display().to_string();
    let workspace = workspace_root().display().to_string();
    let flags = [
        "--registry-root",
        &registry,
        "--artifacts-root",
        &artifacts,
        "--ledger",
        &ledger,
        "--json",
    ];

    let run = project.run("text/stats@1", &flags, None);
    run.fails_with(ErrorCode::Build, "could not find `Cargo.toml`");

    let with_workspace: Vec<&str> = flags
        .iter()
        .copied()
        .chain(["--workspace-root", &workspace])
        .collect();
    let run = project.run("text/stats@1", &with_workspace, None);
    run.exits(0);
    run.check(
        project
            .output(&run.json(), "normalized.txt")
            .starts_with("the quick brown fox"),
        "built in the workspace given, run on the project's World",
    );
}

/// README's first command, `scripts/quickstart.sh`, end to end: it builds proctor and the
/// example processor in release, runs `llm/litellm@1` in mock mode in a container, prints
/// the run's summary on stdout and each step's time on stderr, compiles no crate twice,
/// and the run it made verifies and left no container. Its World is the test's directory;
/// its cargo target directory is its own (kept under the workspace's), so the suite's
/// processor builds never wait on its lock.
#[test]
fn the_quick_start_ends_with_a_verified_mock_run_and_each_steps_time() {
    let dir = TestDir::new();
    let workspace = workspace_root();
    let artifacts = dir.path().join("artifacts").display().to_string();
    let ledger = format!("sqlite://{}/ledger.db", dir.path().display());
    let mut command = clean_command("bash");
    command
        .arg(workspace.join("scripts/quickstart.sh"))
        .env("CARGO_TARGET_DIR", workspace.join("target/quickstart"))
        .env("PROCTOR_ARTIFACTS_ROOT", &artifacts)
        .env("PROCTOR_LEDGER_URL", &ledger)
        .env("PROCTOR_OCI_ROOT", dir.path().join("oci"));
    let (stdout, stderr) = successful_output(command);
    assert!(
        stdout.contains("status:       success (mock mode)"),
        "{stdout}"
    );
    let mut compiled: Vec<&str> = stderr
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("Compiling "))
        .collect();
    compiled.sort_unstable();
    let compiles = compiled.len();
    compiled.dedup();
    assert_eq!(
        compiled.len(),
        compiles,
        "a crate compiled twice:\n{stderr}"
    );
    let steps = stderr.rsplit("\nquick start: ").next().unwrap();
    for step in [
        "set-up (container engine)",
        "build proctor and the llm/litellm@1 processor",
        "build the llm/litellm@1 image",
        "run llm/litellm@1 (mock)",
    ] {
        assert!(
            steps
                .lines()
                .any(|line| line.contains(step) && line.ends_with(" s")),
            "no time for {step:?}:\n{steps}"
        );
    }
    let id = stdout
        .lines()
        .find_map(|line| line.strip_prefix("execution id: "))
        .unwrap_or_else(|| panic!("{stdout}"))
        .trim();
    dir.proctor(&[
        "verify",
        id,
        "--artifacts-root",
        &artifacts,
        "--ledger",
        &ledger,
    ])
    .run()
    .exits(0);
    assert!(containers_labelled(format!("{EXECUTION_LABEL}={id}")).is_empty());
}
