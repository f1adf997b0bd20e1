//! What a hostile processor cannot do to the World: `testing/hostile@1` (a fixture that forges
//! or attacks one piece of evidence per `behaviour`) run with `--build` on the local adapter,
//! on the Docker engine that `scripts/setup.sh` starts, recorded in each test's SQLite ledger.
//!
//! Every refusal is checked three ways: the error envelope (code and fragment), the ledger
//! (a failure for that execution) and the artifacts root (nothing of that execution). Every
//! run's container carries a unique label, and none may be left after it. `--build` compiles
//! the fixture once (cargo's cache) and loads its image once (the engine keeps it by its
//! config digest), so later runs only start containers.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _, symlink};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::query_parameters::EventsOptionsBuilder;
use futures_util::StreamExt as _;
use proctor_contract::ErrorCode;
use serde_json::{Value, json};
use sqlx::{AnyConnection, Connection as _};

use crate::engine::ContainerSweep;
use crate::ledger::{block_on, sqlite_url};
use crate::util::{Run, TestDir, fixtures_registry};

/// The write prefix of every run, below the artifacts root `artifacts`.
const WRITE_PREFIX: &str = "/artifacts/outputs/hostile/{execution_id}";

/// One test's directory and container label, for runs of `testing/hostile@1`.
struct Hostile {
    dir: TestDir,
    sweep: ContainerSweep,
}

impl Hostile {
    fn new() -> Hostile {
        Hostile {
            dir: TestDir::new(),
            sweep: ContainerSweep::new(),
        }
    }

    /// A mock `--build` run with `inputs` and `--json`, the artifacts root `artifacts`;
    /// asserts no container is left after it.
    fn run(&self, inputs: &Value, extra: &[&str]) -> Run {
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
            "mock",
            "--build",
            "--write-prefix",
            WRITE_PREFIX,
            "--inputs-json",
            &inputs,
            "--adapter-opts-json",
            &options,
            "--registry-root",
            &fixtures,
            "--json",
        ];
        if !extra.contains(&"--artifacts-root") {
            args.extend(["--artifacts-root", "artifacts"]);
        }
        args.extend_from_slice(extra);
        let run = self.dir.proctor(&args).run();
        run.check(
            self.sweep.containers().is_empty(),
            "no container may be left after the run",
        );
        run
    }

    /// [`Hostile::run`] of `behaviour` with no other inputs.
    fn behave(&self, behaviour: &str) -> Run {
        self.run(&json!({"schema": "v1", "behaviour": behaviour}), &[])
    }

    /// Asserts `run` was refused with `code` and `detail`, recorded as a failure with that
    /// code, and left nothing of its execution in the artifacts root; returns its id.
    #[track_caller]
    fn refused(&self, run: &Run, code: ErrorCode, detail: &str) -> String {
        run.fails_with(code, detail);
        let id = run.json()["execution_id"].as_str().unwrap().to_owned();
        let (status, error_code, last_event) = ledger_outcome(&self.dir, &id);
        run.check(
            status == "failure"
                && error_code.as_deref() == Some(code.as_str())
                && last_event == "execution.settle.failure",
            &format!(
                "the ledger must record the failure, not {status} / {error_code:?} / {last_event}"
            ),
        );
        let left: Vec<String> = world_files(&self.dir.path().join("artifacts"))
            .into_keys()
            .filter(|path| path.contains(&id))
            .collect();
        run.check(
            left.is_empty(),
            &format!("nothing of a refused execution may enter the World: {left:?}"),
        );
        id
    }
}

/// `execution_id`'s status and error code in the test's SQLite ledger, and the kind of its
/// last event.
pub(crate) fn ledger_outcome(
    dir: &TestDir,
    execution_id: &str,
) -> (String, Option<String>, String) {
    block_on(async {
        sqlx::any::install_default_drivers();
        let mut connection = AnyConnection::connect(&sqlite_url(dir)).await.unwrap();
        let (status, error_code): (String, Option<String>) =
            sqlx::query_as("SELECT status, error_code FROM executions WHERE execution_id = ?")
                .bind(execution_id)
                .fetch_one(&mut connection)
                .await
                .unwrap();
        let (last_event,): (String,) = sqlx::query_as(
            "SELECT kind FROM events WHERE execution_id = ? ORDER BY seq DESC LIMIT 1",
        )
        .bind(execution_id)
        .fetch_one(&mut connection)
        .await
        .unwrap();
        connection.close().await.unwrap();
        (status, error_code, last_event)
    })
}

/// Every entry below `root` that is not a directory, by relative path: a file's bytes, or
/// a description of anything else. Never follows a link.
fn world_files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let kind = std::fs::symlink_metadata(&path).unwrap().file_type();
            let relative = path.strip_prefix(root).unwrap().display().to_string();
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                files.insert(relative, std::fs::read(&path).unwrap());
            } else {
                files.insert(relative, format!("not a file: {kind:?}").into_bytes());
            }
        }
    }
    files
}

/// The actions of container events on the engine carrying `sweep`'s label since `since`.
fn container_events(sweep: &ContainerSweep, since: SystemTime) -> Vec<String> {
    let options: Value = serde_json::from_str(&sweep.adapter_options()).unwrap();
    let label = options["labels"]["proctor.test"]
        .as_str()
        .unwrap()
        .to_owned();
    let timestamp = |at: SystemTime| {
        let at = at.duration_since(UNIX_EPOCH).unwrap();
        format!("{}.{:09}", at.as_secs(), at.subsec_nanos())
    };
    let filters = HashMap::from([
        ("label", vec![format!("proctor.test={label}")]),
        ("type", vec!["container".to_owned()]),
    ]);
    let options = EventsOptionsBuilder::default()
        .since(&timestamp(since))
        .until(&timestamp(SystemTime::now()))
        .filters(&filters)
        .build();
    block_on(async {
        let docker = Docker::connect_with_local_defaults().unwrap();
        let docker = docker.negotiate_version().await.unwrap();
        docker
            .events(Some(options))
            .map(|event| event.unwrap().action.unwrap_or_default())
            .collect()
            .await
    })
}

#[test]
fn no_execution_can_change_what_another_committed() {
    let hostile = Hostile::new();
    let first = hostile.behave("honest");
    first.exits(0);
    let first_id = first.json()["execution_id"].as_str().unwrap().to_owned();
    let (status, _, _) = ledger_outcome(&hostile.dir, &first_id);
    first.check(
        status == "success",
        "the honest run is recorded as a success",
    );
    let world = hostile.dir.path().join("artifacts");
    let committed = |world: &Path| {
        world_files(world)
            .into_iter()
            .filter(|(path, _)| path.contains(&first_id))
            .collect::<BTreeMap<_, _>>()
    };
    let before = committed(&world);
    let output = format!("outputs/hostile/{first_id}/outputs/a.txt");
    let receipt = format!("execution/{first_id}/receipt.json");
    first.check(
        before.contains_key(&output) && before.contains_key(&receipt),
        "the first execution's output and receipt are committed",
    );

    for target in [&output, &receipt] {
        let inputs = json!({
            "schema": "v1",
            "behaviour": "overwrite",
            "target": format!("/artifacts/{target}"),
        });
        let attack = hostile.run(&inputs, &[]);
        attack.exits(0);
        attack.check(
            committed(&world) == before,
            &format!("`{target}` and everything beside it must be unchanged"),
        );
    }

    let verify = hostile
        .dir
        .proctor(&[
            "verify",
            &first_id,
            "--json",
            "--artifacts-root",
            "artifacts",
            "--registry-root",
            &fixtures_registry(),
        ])
        .run();
    verify.exits(0);
    verify.check(verify.json()["ok"] == true, "the first execution verifies");
}

#[test]
fn writes_outside_the_prefix_never_reach_the_world() {
    let hostile = Hostile::new();
    let run = hostile.behave("outside_prefix");
    hostile.refused(&run, ErrorCode::Evidence, "extra.txt");
    run.check(
        !hostile.dir.path().join("artifacts/stray.txt").exists(),
        "a write to /artifacts/stray.txt never reaches the artifacts root",
    );
}

#[test]
fn forged_evidence_is_refused_and_recorded_as_a_failure() {
    let hostile = Hostile::new();
    for (behaviour, detail) in [
        ("absent_output", "missing.txt"),
        ("wrong_cid", "a.txt"),
        ("unlisted_output", "unlisted.txt"),
        ("bad_receipt", "receipt"),
        ("receipts_differ", "receipt"),
        ("claims_real", "mode"),
        ("wrong_inputs_hash", "inputs_hash"),
    ] {
        let run = hostile.behave(behaviour);
        hostile.refused(&run, ErrorCode::Evidence, detail);
    }
}

#[test]
fn links_and_fifos_among_outputs_are_refused() {
    let hostile = Hostile::new();
    for behaviour in ["symlink_output", "symlink_dir", "fifo_output"] {
        let run = hostile.behave(behaviour);
        hostile.refused(&run, ErrorCode::Evidence, "not a regular file");
    }
}

#[test]
fn unicode_twins_are_duplicate_outputs() {
    let hostile = Hostile::new();
    let run = hostile.behave("unicode_twins");
    hostile.refused(&run, ErrorCode::OutputDuplicate, "caf\u{e9}.txt");
}

#[test]
fn save_dir_never_writes_through_a_link() {
    let hostile = Hostile::new();
    let elsewhere = hostile.dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::create_dir_all(hostile.dir.path().join("saved")).unwrap();
    symlink(&elsewhere, hostile.dir.path().join("saved/artifacts")).unwrap();
    let run = hostile.run(
        &json!({"schema": "v1", "behaviour": "honest"}),
        &["--save-dir", "saved"],
    );
    run.fails_with(ErrorCode::OutputWrite, "saved/artifacts");
    let id = run.json()["execution_id"].as_str().unwrap().to_owned();
    let (status, error_code, _) = ledger_outcome(&hostile.dir, &id);
    run.check(
        status == "failure" && error_code.as_deref() == Some(ErrorCode::OutputWrite.as_str()),
        "the ledger tells the outcome the CLI printed",
    );
    run.check(
        world_files(&elsewhere).is_empty(),
        "nothing is written through the link",
    );
}

#[test]
fn save_dir_inside_the_artifacts_root_is_refused_before_any_container() {
    let hostile = Hostile::new();
    let root = hostile.dir.path();
    std::fs::create_dir_all(root.join("artifacts")).unwrap();
    symlink(root.join("artifacts"), root.join("disguised")).unwrap();
    let since = SystemTime::now();
    for save_dir in ["artifacts/saved", "disguised/saved"] {
        let run = hostile.run(
            &json!({"schema": "v1", "behaviour": "honest"}),
            &["--save-dir", save_dir],
        );
        run.fails_with(ErrorCode::OutputWrite, "inside the artifacts root");
        run.check(
            world_files(&root.join("artifacts")).is_empty(),
            "nothing is written to the artifacts root",
        );
    }
    let events = container_events(&hostile.sweep, since);
    assert!(events.is_empty(), "no container may be created: {events:?}");
}

#[test]
fn an_existing_artifacts_root_keeps_its_owner_and_mode() {
    const MODE: u32 = 0o750;
    let hostile = Hostile::new();
    let world = hostile.dir.path().join("world");
    let outputs = world.join("outputs");
    std::fs::create_dir_all(&outputs).unwrap();
    let created = std::fs::metadata(&world).unwrap();
    // Root may give the directories someone else; anyone else keeps them.
    let owner = if created.uid() == 0 {
        (4321, 4322)
    } else {
        (created.uid(), created.gid())
    };
    for dir in [&world, &outputs] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(MODE)).unwrap();
        std::os::unix::fs::chown(dir, Some(owner.0), Some(owner.1)).unwrap();
    }
    let run = hostile.run(
        &json!({"schema": "v1", "behaviour": "honest"}),
        &["--artifacts-root", "world"],
    );
    run.exits(0);
    for dir in [&world, &outputs] {
        let metadata = std::fs::metadata(dir).unwrap();
        run.check(
            (metadata.uid(), metadata.gid()) == owner
                && metadata.permissions().mode() & 0o7777 == MODE,
            &format!("{} must keep its owner and mode", dir.display()),
        );
    }
    let id = run.json()["execution_id"].as_str().unwrap().to_owned();
    let committed = world.join(format!("outputs/hostile/{id}/outputs/a.txt"));
    let mode = std::fs::metadata(&committed).unwrap().permissions().mode();
    run.check(mode & 0o222 == 0, "committed files are read-only");
}
