//! Lanes: the rules `--lane` / `PROCTOR_LANE` put on `run`, `push` and `pin` (fixture
//! registries, no engine), and the chains `proctor lane pr` and `proctor lane main`.
//!
//! The chains run for real (see [`crate::oci`]: loopback registry, Docker engine, cross
//! toolchain) on a copy of the shipped `processors/`, never on the checked-in files. Deploy
//! and Drift meet either no deploy target (the real rule: `ERR_DEPLOY_TARGET`) or a
//! stand-in `modal` client on `PATH` plus `/healthz` endpoints served on 127.0.0.1 by the
//! test, reached through `PROCTOR_MODAL_BASE_URL`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use axum::Json;
use axum::extract::Path as UrlPath;
use axum::routing::get;
use proctor_contract::{ErrorCode, Health};
use serde_json::Value;

use crate::oci::{
    EngineCleanup, copy_processors, digest_of, fails_with_error, json_events, pins_in,
    registry_files, unique_target,
};
use crate::util::{
    FIXTURE_YAML, PINNED, Proctor, Run, TestDir, fixture_pinned_to, workspace_registry,
    workspace_root,
};

/// `proctor run` of the fixture `text/stats@1` with `extra` flags and `env`.
fn run_in_lane(dir: &TestDir, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let mut args = vec![
        "run",
        "--ref",
        "text/stats@1",
        "--adapter",
        "local",
        "--inputs-json",
        r#"{"schema":"v1","params":{}}"#,
        "--registry-root",
        "processors",
        "--artifacts-root",
        "artifacts",
        "--json",
    ];
    args.extend_from_slice(extra);
    if !extra.contains(&"--write-prefix") {
        args.extend(["--write-prefix", "/artifacts/o/{execution_id}"]);
    }
    env.iter()
        .fold(dir.proctor(&args), |command, (name, value)| {
            command.env(name, value)
        })
        .run()
}

/// Asserts a run's error envelope: exit code, code, and `detail` in the message.
#[track_caller]
fn refused(run: &Run, code: ErrorCode, detail: &str) {
    run.fails_with(code, detail);
    run.check(
        json_events(run, "container.started").is_empty(),
        "no container",
    );
}

#[test]
fn lane_rules_hold_for_run_before_any_other_check() {
    let dir = TestDir::new();
    dir.fixture_registry(FIXTURE_YAML);
    let rule = ErrorCode::Lane;

    refused(
        &run_in_lane(&dir, &["--lane", "pr"], &[]),
        rule,
        "pass --build",
    );
    refused(
        &run_in_lane(&dir, &[], &[("PROCTOR_LANE", "pr")]),
        rule,
        "pass --build",
    );
    // Before the secrets check: FIXTURE_API_KEY is not set.
    refused(
        &run_in_lane(&dir, &["--lane", "pr", "--build", "--mode", "real"], &[]),
        rule,
        "mode=mock only",
    );
    refused(
        &run_in_lane(&dir, &["--lane", "main", "--build"], &[]),
        rule,
        "drop --build",
    );
    // The CI guard still comes first.
    refused(
        &run_in_lane(&dir, &["--lane", "pr", "--mode", "real"], &[("CI", "true")]),
        ErrorCode::CiSafety,
        "",
    );

    // Within the rules, the run goes on to its later checks (here a bad write prefix).
    let bad_prefix = ["--write-prefix", "/artifacts/o"];
    for (extra, env) in [
        (&["--lane", "pr", "--build"][..], &[][..]),
        (&[], &[("PROCTOR_LANE", "main")][..]),
    ] {
        let args: Vec<&str> = extra.iter().chain(&bad_prefix).copied().collect();
        let run = run_in_lane(&dir, &args, env);
        run.fails_with(ErrorCode::WritePrefix, "");
        run.check(
            run.json()["meta"]["mode"] == "mock",
            "a lane selects no mode",
        );
    }

    // PROCTOR_LANE names a lane, never a mode.
    for value in ["real", "mock", "Main"] {
        let run = run_in_lane(&dir, &[], &[("PROCTOR_LANE", value)]);
        run.exits(2).check(
            run.json()["error"]["code"] == "ERR_USAGE",
            "a usage error, in the one error shape under --json",
        );
        run.check(run.stderr.contains("--lane"), "names the flag");
    }

    // The main lane runs pinned digests only.
    for pin in ["null", "'registry.example/text-stats@sha256:<64 hex>'"] {
        dir.fixture_registry(&fixture_pinned_to(pin));
        refused(
            &run_in_lane(&dir, &["--lane", "main"], &[]),
            ErrorCode::ImageUnpinned,
            "text/stats@1 for amd64",
        );
    }
}

#[test]
fn the_pr_lane_neither_pushes_nor_pins() {
    let dir = TestDir::new();
    let registry = dir.fixture_registry(FIXTURE_YAML);
    let yaml = registry.join("text/stats/1/registry.yaml");
    let run = dir
        .proctor(&[
            "push",
            "--ref",
            "text/stats@1",
            "--registry",
            &unique_target(),
            "--lane",
            "pr",
            "--json",
        ])
        .run();
    fails_with_error(&run, ErrorCode::Lane, "`proctor push`");
    let run = dir
        .proctor(&[
            "pin",
            "--ref",
            "text/stats@1",
            "--registry",
            &unique_target(),
            "--json",
        ])
        .env("PROCTOR_LANE", "pr")
        .run();
    fails_with_error(&run, ErrorCode::Lane, "`proctor pin`");
    assert_eq!(std::fs::read_to_string(yaml).unwrap(), FIXTURE_YAML);
}

/// `proctor lane …` in `dir` with no Modal profile: `MODAL_CONFIG_PATH` names a file that
/// does not exist, so only what a test sets configures Modal.
fn lane(dir: &TestDir, args: &[&str]) -> Proctor {
    let mut argv = vec!["lane"];
    argv.extend_from_slice(args);
    let profile = dir.path().join("no-modal-profile.toml");
    dir.proctor(&argv)
        .env("MODAL_CONFIG_PATH", profile.to_str().unwrap())
}

/// The `(step, status)` pairs of a lane's JSON report.
fn statuses(report: &Value) -> Vec<(String, String)> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| {
            (
                step["step"].as_str().unwrap().to_owned(),
                step["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(step, status)| (step.to_string(), status.to_string()))
        .collect()
}

/// Asserts the lane logged, per step in `steps`, one `lane.step.start` and then one settle
/// or fail as `outcomes` says (`true`: settle).
#[track_caller]
fn logged_steps(run: &Run, steps: &[&str], outcomes: &[bool]) {
    let lines: Vec<Value> = run
        .stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| {
            line["event"]
                .as_str()
                .is_some_and(|event| event.starts_with("lane.step."))
        })
        .collect();
    let expected: Vec<(String, String)> = steps
        .iter()
        .zip(outcomes)
        .flat_map(|(step, settled)| {
            let end = if *settled {
                "lane.step.settle"
            } else {
                "lane.step.fail"
            };
            [
                ("lane.step.start".to_owned(), step.to_string()),
                (end.to_owned(), step.to_string()),
            ]
        })
        .collect();
    let seen: Vec<(String, String)> = lines
        .iter()
        .map(|line| {
            (
                line["event"].as_str().unwrap().to_owned(),
                line["step"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    run.check(seen == expected, &format!("step events {seen:?}"));
}

#[test]
fn lane_selection_must_agree_and_step_ranges_be_ordered() {
    let dir = TestDir::new();
    dir.fixture_registry(FIXTURE_YAML);
    let before = dir.files();
    let run = lane(&dir, &["main", "--registry-root", "processors", "--json"])
        .env("PROCTOR_LANE", "pr")
        .run();
    run.exits(ErrorCode::Lane.exit_code());
    let report = run.json();
    run.check(report["error"]["code"] == "ERR_LANE", "the code");
    run.check(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("this job is in the pr lane"),
        "says which lane",
    );
    run.check(
        statuses(&report)
            == pairs(&[
                ("build-pin", "not run"),
                ("acceptance", "not run"),
                ("deploy", "not run"),
                ("drift", "not run"),
            ]),
        "no step runs",
    );
    logged_steps(&run, &[], &[]);
    run.check(dir.files() == before, "nothing written");

    let run = lane(
        &dir,
        &[
            "main",
            "--registry-root",
            "processors",
            "--from",
            "deploy",
            "--until",
            "acceptance",
            "--json",
        ],
    )
    .run();
    run.exits(ErrorCode::Lane.exit_code());
    run.check(
        run.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--from deploy comes after --until acceptance"),
        "names the range",
    );
    let run = lane(
        &dir,
        &[
            "pr",
            "--registry-root",
            "processors",
            "--ref",
            "nope/x@1",
            "--json",
        ],
    )
    .run();
    run.exits(ErrorCode::UnknownProcessor.exit_code());
    run.check(
        statuses(&run.json()) == pairs(&[("smoke", "not run")]),
        "no step runs",
    );
}

/// `/healthz` endpoints on 127.0.0.1 at `/<label>/healthz`, each reporting `text/stats@1`
/// running `digest`; stopped when dropped.
struct HealthEndpoints {
    base_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HealthEndpoints {
    fn serve(digest: &str) -> HealthEndpoints {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base_url = format!("http://{}/{{label}}", listener.local_addr().unwrap());
        let health = Health::ready(digest, "text/stats@1".parse().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let app = axum::Router::new().route(
                    "/{label}/healthz",
                    get(move |UrlPath(_label): UrlPath<String>| {
                        let health = health.clone();
                        async move { Json(health) }
                    }),
                );
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        HealthEndpoints {
            base_url,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for HealthEndpoints {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A stand-in `modal` client in `dir/bin` that answers `deploy` like the client does; returns
/// a `PATH` with it first.
fn stand_in_modal(dir: &TestDir) -> String {
    let script = "#!/bin/sh\n\
                  # Stand-in for the modal client.\n\
                  case \"$1\" in deploy) echo 'App deployed' ;; esac\n";
    let path = dir.write("bin/modal", script);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "{}:{}",
        path.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn deploy_needs_a_target_and_drift_compares_with_the_pin() {
    let dir = TestDir::new();
    dir.fixture_registry(FIXTURE_YAML);
    let from_deploy = ["main", "--registry-root", "processors", "--from", "deploy"];

    // No target: the chain stops at Deploy, saying so, in the summary table.
    let run = lane(&dir, &from_deploy).run();
    run.exits(ErrorCode::DeployTarget.exit_code());
    let lines: Vec<&str> = run.stdout.lines().collect();
    run.check(
        lines[0] == "lane main: text/stats@1 (registry 127.0.0.1:5000/proctor/lane)",
        "header",
    );
    run.check(
        lines[1].starts_with("STEP") && lines[1].contains("STATUS"),
        "table header",
    );
    run.check(
        lines[2].starts_with("build-pin") && lines[2].contains("not run"),
        "not run",
    );
    run.check(
        lines[4].starts_with("deploy") && lines[4].contains("failed"),
        "deploy failed",
    );
    run.check(
        lines[5].starts_with("drift") && lines[5].contains("skipped"),
        "drift skipped",
    );
    run.check(
        lines[6].starts_with(
            "error: ERR_DEPLOY_TARGET: no deploy target configured: no Modal workspace",
        ),
        "the clear message",
    );
    logged_steps(&run, &["deploy"], &[false]);
    run.check(
        !dir.path().join(".proctor/deploy").exists(),
        "no app written",
    );

    // A target (stand-in client, endpoints on loopback) whose deployment answers `/healthz`
    // but takes no run: Deploy deploys, its validation run fails, Drift is not reached.
    let path = stand_in_modal(&dir);
    let pinned_digest = digest_of(PINNED);
    let endpoints = HealthEndpoints::serve(&pinned_digest);
    let configured = |run: Proctor, base_url: &str| {
        run.env("PATH", &path)
            .env("MODAL_TOKEN_ID", "ak-fake0token0id")
            .env("MODAL_TOKEN_SECRET", "as-fake0token0secret")
            .env("PROCTOR_MODAL_BASE_URL", base_url)
    };
    let mut json_args = from_deploy.to_vec();
    json_args.push("--json");
    let run = configured(lane(&dir, &json_args), &endpoints.base_url).run();
    run.exits(ErrorCode::DeployValidation.exit_code());
    let report = run.json();
    run.check(
        statuses(&report)
            == pairs(&[
                ("build-pin", "not run"),
                ("acceptance", "not run"),
                ("deploy", "failed"),
                ("drift", "skipped"),
            ]),
        "deploy fails its validation",
    );
    let message = report["error"]["message"].as_str().unwrap();
    run.check(
        message.starts_with("deployment failed validation: text/stats@1, execution ")
            && message.contains("the run check failed: ERR_MODAL_INVOCATION"),
        "names the processor, the execution and the check",
    );
    run.check(
        dir.path()
            .join(".proctor/deploy/modal/proctor-text-stats-v1.py")
            .is_file(),
        "the app is written",
    );
    logged_steps(&run, &["deploy"], &[false]);

    // Drift alone: the deployment runs the pin.
    let from_drift = [
        "main",
        "--registry-root",
        "processors",
        "--from",
        "drift",
        "--json",
    ];
    let run = configured(lane(&dir, &from_drift), &endpoints.base_url).run();
    run.exits(0);
    let report = run.json();
    run.check(
        statuses(&report)[3] == ("drift".to_owned(), "settled".to_owned()),
        "drift settles",
    );
    let drift = &report["steps"][3]["processors"][0];
    run.check(
        drift["status"] == "ok" && drift["deployed"] == pinned_digest,
        "the deployment runs the pin",
    );
    logged_steps(&run, &["drift"], &[true]);
    drop(endpoints);

    // A deployment running another image: Drift fails with its code.
    let other = format!("sha256:{}", "9".repeat(64));
    let endpoints = HealthEndpoints::serve(&other);
    let run = configured(lane(&dir, &from_drift), &endpoints.base_url).run();
    run.exits(ErrorCode::ImageDrift.exit_code());
    let report = run.json();
    run.check(report["error"]["code"] == "ERR_IMAGE_DRIFT", "the code");
    run.check(
        statuses(&report)[3] == ("drift".to_owned(), "failed".to_owned()),
        "drift failed",
    );
}

/// The `registry.yaml` files of the shipped `processors/`, to check they are never touched.
fn shipped_registry_files() -> Vec<(PathBuf, Vec<u8>)> {
    registry_files(&workspace_registry())
}

/// The refs of the processors below `root`, sorted: those Build & Pin builds (with a
/// `build.cargo_package`), then those the container engine builds from their Dockerfile.
fn refs_by_build(root: &Path) -> (Vec<String>, Vec<String>) {
    let mut cargo = Vec::new();
    let mut dockerfile = Vec::new();
    for (_, bytes) in registry_files(root) {
        let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_slice(&bytes).unwrap();
        let processor_ref = yaml["ref"].as_str().unwrap().to_owned();
        if yaml["build"]["cargo_package"].is_string() {
            cargo.push(processor_ref);
        } else {
            dockerfile.push(processor_ref);
        }
    }
    cargo.sort();
    dockerfile.sort();
    (cargo, dockerfile)
}

/// The reason the main lane gives for leaving a Dockerfile processor out.
const NOT_BUILT_BY_BUILD_PIN: &str = "no build.cargo_package: the container engine builds it \
                                      from its Dockerfile (`proctor run --build`), and Build & \
                                      Pin builds and pins Cargo processors only";

/// The refs of a JSON array of `{"ref": …}` records, sorted.
fn sorted_refs(records: &Value) -> Vec<String> {
    let mut refs: Vec<String> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|record| {
            record
                .as_str()
                .unwrap_or_else(|| record["ref"].as_str().unwrap())
                .to_owned()
        })
        .collect();
    refs.sort();
    refs
}

/// The pinned amd64 reference of each processor copy below `root`.
fn amd64_pins(root: &Path) -> Vec<String> {
    registry_files(root)
        .iter()
        .filter_map(|(file, _)| pins_in(file).1.as_str().map(str::to_owned))
        .collect()
}

/// On the shipped processors, before any build: a Dockerfile processor named with `--ref`
/// is refused with `ERR_BUILD`; with no list, the summary says which processors are left
/// out and why, and a warning logs each.
#[test]
fn the_main_lane_refuses_a_named_dockerfile_processor_and_reports_those_it_leaves_out() {
    let dir = TestDir::new();
    let shipped = shipped_registry_files();
    let (cargo, dockerfile) = refs_by_build(&workspace_registry());
    let root = workspace_registry().display().to_string();

    let run = lane(
        &dir,
        &[
            "main",
            "--ref",
            "text/stats@1",
            "--ref",
            "llm/litellm@2",
            "--registry-root",
            &root,
            "--json",
        ],
    )
    .run();
    fails_with_error(
        &run,
        ErrorCode::Build,
        &format!("llm/litellm@2 cannot be in the main lane: {NOT_BUILT_BY_BUILD_PIN}"),
    );
    run.check(
        statuses(&run.json())
            == pairs(&[
                ("build-pin", "not run"),
                ("acceptance", "not run"),
                ("deploy", "not run"),
                ("drift", "not run"),
            ]),
        "no step runs",
    );
    logged_steps(&run, &[], &[]);
    run.check(dir.files().is_empty(), "nothing written");

    // No list, from Deploy with no target: the chain covers the Cargo processors and the
    // summary names each one left out, under the header.
    let run = lane(
        &dir,
        &["main", "--registry-root", &root, "--from", "deploy"],
    )
    .run();
    run.exits(ErrorCode::DeployTarget.exit_code());
    let lines: Vec<&str> = run.stdout.lines().collect();
    run.check(
        lines[0]
            == format!(
                "lane main: {} (registry 127.0.0.1:5000/proctor/lane)",
                cargo.join(", ")
            ),
        "the header lists the Cargo processors",
    );
    for (line, processor_ref) in lines[1..].iter().zip(&dockerfile) {
        run.check(
            line.starts_with(&format!(
                "skipped {processor_ref}: {NOT_BUILT_BY_BUILD_PIN}"
            )),
            "a line per skipped processor, with the reason",
        );
    }
    run.check(
        lines[1 + dockerfile.len()].starts_with("STEP"),
        "then the table",
    );
    let warned: Vec<Value> = json_events(&run, "lane.processor.skipped");
    run.check(
        warned.len() == dockerfile.len()
            && warned
                .iter()
                .all(|line| line["level"] == "warn" && line["reason"].is_string()),
        "a warning per skipped processor",
    );
    run.check(
        shipped_registry_files() == shipped,
        "the checked-in registry.yaml files are untouched",
    );
}

#[test]
fn lane_main_on_a_clean_copy_pins_and_accepts_then_stops_at_deploy() {
    let dir = TestDir::new();
    let cleanup = EngineCleanup::new();
    let processors = copy_processors(&dir);
    let shipped = shipped_registry_files();
    let target = unique_target();
    let options = cleanup.adapter_options();
    let root = processors.display().to_string();
    let workspace = workspace_root().display().to_string();
    let run = lane(
        &dir,
        &[
            "main",
            "--registry",
            &target,
            "--registry-root",
            &root,
            "--workspace-root",
            &workspace,
            "--artifacts-root",
            "artifacts",
            "--adapter-opts-json",
            &options,
            "--json",
        ],
    )
    .run();
    // Whatever happened, the pulled images go.
    for pin in amd64_pins(&processors) {
        cleanup.pulls(&pin);
    }
    run.exits(ErrorCode::DeployTarget.exit_code());
    let report = run.json();
    run.check(
        statuses(&report)
            == pairs(&[
                ("build-pin", "settled"),
                ("acceptance", "settled"),
                ("deploy", "failed"),
                ("drift", "skipped"),
            ]),
        "the chain stops at deploy",
    );
    run.check(report["error"]["code"] == "ERR_DEPLOY_TARGET", "the code");
    run.check(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("no deploy target configured: "),
        "the clear message",
    );
    logged_steps(
        &run,
        &["build-pin", "acceptance", "deploy"],
        &[true, true, false],
    );
    run.check(
        json_events(&run, "lane.start").len() == 1 && json_events(&run, "lane.fail").len() == 1,
        "one lane.start, one lane.fail",
    );

    // Every Cargo processor of the copy is pinned to what was pushed, and acceptance ran
    // those; each Dockerfile processor (llm/litellm@2 among them) is reported as left out,
    // with the reason, logged, and stays unpinned.
    let (cargo, dockerfile) = refs_by_build(&processors);
    run.check(
        dockerfile
            .iter()
            .any(|processor_ref| processor_ref == "llm/litellm@2"),
        "a Dockerfile processor is shipped",
    );
    run.check(
        sorted_refs(&report["processors"]) == cargo,
        "every shipped Cargo processor",
    );
    run.check(
        sorted_refs(&report["skipped"]) == dockerfile,
        "every Dockerfile processor skipped",
    );
    for skipped in report["skipped"].as_array().unwrap() {
        run.check(
            skipped["reason"]
                .as_str()
                .is_some_and(|reason| reason.starts_with(NOT_BUILT_BY_BUILD_PIN)),
            "the reason",
        );
    }
    let warned: Vec<Value> = json_events(&run, "lane.processor.skipped")
        .iter()
        .map(|line| line["ref"].clone())
        .collect();
    run.check(
        sorted_refs(&Value::from(warned)) == dockerfile,
        "a warning per skipped processor",
    );
    for processor_ref in &dockerfile {
        let (ns_name, version) = processor_ref.split_once('@').unwrap();
        let file = processors.join(ns_name).join(version).join("registry.yaml");
        run.check(
            pins_in(&file) == (Value::Null, Value::Null, Value::Null),
            "a skipped processor stays unpinned",
        );
    }
    let refs = report["processors"].as_array().unwrap();
    let pinned = &report["steps"][0]["processors"];
    let accepted = &report["steps"][1]["processors"];
    for (index, processor_ref) in refs.iter().enumerate() {
        let file = Path::new(pinned[index]["file"].as_str().unwrap());
        run.check(file.starts_with(&processors), "the copy is pinned");
        let (index_pin, amd64, arm64) = pins_in(file);
        let pins = &pinned[index]["pins"];
        run.check(
            index_pin == pins["index"] && amd64 == pins["amd64"] && arm64 == pins["arm64"],
            "registry.yaml holds the pins",
        );
        let amd64 = amd64.as_str().unwrap();
        run.check(amd64.starts_with(&target), "pushed to the lane's registry");
        run.check(
            accepted[index]["ref"] == *processor_ref,
            "accepted in order",
        );
        run.check(
            accepted[index]["image_digest"] == digest_of(amd64),
            "acceptance ran the pinned amd64 image",
        );
        run.check(
            accepted[index]["executions"].as_array().unwrap().len() == 2,
            "two runs",
        );
    }
    run.check(
        json_events(&run, "execution.settle").len() == 2 * refs.len(),
        "every smoke run settled",
    );
    run.check(cleanup.containers().is_empty(), "no container is left");
    run.check(
        shipped_registry_files() == shipped,
        "the checked-in registry.yaml files are untouched",
    );
}

#[test]
fn lane_pr_runs_the_smoke_inputs_built_from_source() {
    let dir = TestDir::new();
    let cleanup = EngineCleanup::new();
    let options = cleanup.adapter_options();
    let root = workspace_registry().display().to_string();
    let shipped = shipped_registry_files();
    let run = lane(
        &dir,
        &[
            "pr",
            "--ref",
            "text/stats@1",
            "--registry-root",
            &root,
            "--artifacts-root",
            "artifacts",
            "--adapter-opts-json",
            &options,
            "--json",
        ],
    )
    .env("PROCTOR_LANE", "pr")
    .run();
    run.exits(0);
    let report = run.json();
    run.check(
        statuses(&report) == pairs(&[("smoke", "settled")]),
        "smoke settles",
    );
    run.check(
        report["error"].is_null() && report["registry"].is_null(),
        "no registry",
    );
    let smoke = &report["steps"][0]["processors"][0];
    let executions = smoke["executions"].as_array().unwrap();
    run.check(executions.len() == 2, "two runs");
    for execution in executions {
        let receipt = dir.path().join(format!(
            "artifacts/execution/{}/receipt.json",
            execution.as_str().unwrap()
        ));
        run.check(receipt.is_file(), "each run left its receipt");
    }
    run.check(
        smoke["image_digest"]
            .as_str()
            .is_some_and(|digest| digest.starts_with("sha256:")),
        "the image built from source",
    );
    logged_steps(&run, &["smoke"], &[true]);
    run.check(cleanup.containers().is_empty(), "no container is left");
    run.check(shipped_registry_files() == shipped, "nothing pinned");
}
