//! `proctor deploy`, `proctor drift` and `proctor secrets plan` for the Modal target, on
//! fixture registries copied from the shipped `processors/` with fake (well-formed) pins.
//!
//! Modal itself cannot be reached from here, so:
//! - endpoints are a real HTTP server on 127.0.0.1 (axum, in the test) answering `/healthz`
//!   the way a processor does, reached through `PROCTOR_MODAL_BASE_URL`; it stops when the
//!   test drops it;
//! - where a test needs the `modal` client to answer, a stand-in script named `modal` is put
//!   first on `PATH`: it records its arguments and answers like the client. Without it (and
//!   without credentials) the real rule applies: no deploy, `ERR_DEPLOY_TARGET`;
//! - a deploy's validation run meets a real `text/stats@1` container standing in for the new
//!   deployment (the image `proctor run --build` loads, on a loopback port with host
//!   networking; needs the Docker engine), or the axum endpoints answering a wrong envelope.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use proctor_contract::ErrorCode;
use serde_json::{Value, json};

use crate::util::{Proctor, Run, TestDir, successful_output, workspace_registry};

/// A fake but well-formed image digest (64 hex, not a placeholder).
const DIGEST: &str = "3f1c9e0b7a2d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6";
/// Another one, for a deployment that drifted.
const OTHER_DIGEST: &str = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d";
/// Endpoint labels of the convention (`<ns>-<name>-v<version>`).
const STATS_LABEL: &str = "text-stats-v1";
const LITELLM_LABEL: &str = "llm-litellm-v1";
/// Proxy-auth tokens for the endpoint tests; they must never be printed.
const PROXY_ID: &str = "wk-proxy0id0for0cli0tests";
const PROXY_SECRET: &str = "ws-proxy0secret0for0cli0tests";

/// The pinned reference of `digest` for the processor image `image`.
fn pin(image: &str, digest: &str) -> String {
    format!("127.0.0.1:5000/acme/proctor/{image}@sha256:{digest}")
}

/// Copies the shipped `processors/<relative>/registry.yaml` into `dir`'s `processors/`,
/// with `pin` for the index and both platforms (`None`: unpinned).
fn copy_shipped(dir: &TestDir, relative: &str, pin: Option<&str>) {
    let text =
        std::fs::read_to_string(workspace_registry().join(relative).join("registry.yaml")).unwrap();
    let mut yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let image = json!({"index": pin, "platforms": {"amd64": pin, "arm64": pin}});
    yaml.as_mapping_mut()
        .unwrap()
        .insert("image".into(), serde_yaml_ng::to_value(image).unwrap());
    dir.write(
        &format!("processors/{relative}/registry.yaml"),
        &serde_yaml_ng::to_string(&yaml).unwrap(),
    );
}

/// A registry of `text/stats@1` and `llm/litellm@1`, both pinned to [`DIGEST`].
fn pinned_registry() -> (TestDir, String, String) {
    let dir = TestDir::new();
    let stats_pin = pin("text-stats", DIGEST);
    let litellm_pin = pin("llm-litellm", DIGEST);
    copy_shipped(&dir, "text/stats/1", Some(&stats_pin));
    copy_shipped(&dir, "llm/litellm/1", Some(&litellm_pin));
    (dir, stats_pin, litellm_pin)
}

/// `proctor` with an empty home, so no Modal profile of the machine is found.
fn without_profile(dir: &TestDir, args: &[&str]) -> Proctor {
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    dir.proctor(args).env("HOME", home.to_str().unwrap())
}

/// The line `PINNED_IMAGE = "…"` of a generated app, unquoted.
fn pinned_image(source: &str) -> &str {
    source
        .lines()
        .find_map(|line| line.strip_prefix("PINNED_IMAGE = "))
        .expect("the app names its pinned image")
        .trim_matches('"')
}

#[test]
fn deploy_dry_run_writes_and_prints_the_app_of_the_pin() {
    let (dir, stats_pin, litellm_pin) = pinned_registry();
    let run = without_profile(
        &dir,
        &[
            "deploy",
            "--target",
            "modal",
            "--ref",
            "text/stats@1",
            "--dry-run",
        ],
    )
    .run();
    run.exits(0);
    let file = dir
        .path()
        .join(".proctor/deploy/modal/proctor-text-stats-v1.py");
    let header = format!("# {}\n", file.display());
    run.check(run.stdout.starts_with(&header), "a comment naming the file");
    let source = std::fs::read_to_string(&file).unwrap();
    run.check(
        run.stdout[header.len()..] == source,
        "prints exactly what it wrote",
    );
    run.check(pinned_image(&source) == stats_pin, "the image is the pin");
    for expected in [
        "modal.Image.from_registry(PINNED_IMAGE, add_python=",
        "APP_NAME = \"proctor-text-stats-v1\"",
        "requires_proxy_auth=True, label=\"text-stats-v1\"",
        "cpu=0.5,",
        "memory=256,",
        "timeout=30,",
        &format!("\"PROCTOR_IMAGE_DIGEST\": \"sha256:{DIGEST}\""),
    ] {
        run.check(
            source.contains(expected),
            &format!("the app has {expected:?}"),
        );
    }
    run.check(
        run.events("deploy.generate").len() == 1,
        "one deploy.generate log line",
    );

    // Without --ref: every processor, one line of JSON under --json.
    let run = without_profile(
        &dir,
        &["deploy", "--target", "modal", "--dry-run", "--json"],
    )
    .run();
    run.exits(0);
    let report = run.json();
    run.check(
        report["error"].is_null() && report["dry_run"] == true,
        "a clean dry run",
    );
    let apps = report["apps"].as_array().unwrap();
    run.check(apps.len() == 2, "both processors");
    for (app, expected_ref, expected_pin) in [
        (&apps[0], "llm/litellm@1", &litellm_pin),
        (&apps[1], "text/stats@1", &stats_pin),
    ] {
        run.check(app["ref"] == expected_ref, "registry order");
        run.check(app["pinned_reference"] == expected_pin.as_str(), "the pin");
        run.check(
            app["image_digest"] == format!("sha256:{DIGEST}"),
            "the digest",
        );
        run.check(app["tag"] == "sha256-3f1c9e0b7a2d", "the deploy tag");
        run.check(app["deployed"] == false, "not deployed");
        let source = app["source"].as_str().unwrap();
        let written = std::fs::read_to_string(app["file"].as_str().unwrap()).unwrap();
        run.check(source == written, "the source is the written file");
        run.check(pinned_image(source) == expected_pin, "the image is the pin");
    }
    run.check(
        apps[0]["source"]
            .as_str()
            .unwrap()
            .contains("secrets=[modal.Secret.from_name(\"OPENAI_API_KEY\")],"),
        "one Modal secret per required secret",
    );
}

#[test]
fn deploy_refuses_an_unpinned_processor_before_writing_anything() {
    let dir = TestDir::new();
    copy_shipped(&dir, "text/stats/1", Some(&pin("text-stats", DIGEST)));
    copy_shipped(&dir, "llm/litellm/1", None);
    let run = without_profile(
        &dir,
        &["deploy", "--target", "modal", "--dry-run", "--json"],
    )
    .run();
    run.exits(ErrorCode::ImageUnpinned.exit_code());
    let report = run.json();
    run.check(report["error"]["code"] == "ERR_IMAGE_UNPINNED", "the code");
    run.check(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("llm/litellm@1 for amd64"),
        "names the processor",
    );
    run.check(report["apps"] == json!([]), "no app");
    run.check(!dir.path().join(".proctor").exists(), "nothing written");

    let run = without_profile(&dir, &["deploy", "--target", "modal", "--ref", "x/y@1"]).run();
    run.exits(ErrorCode::UnknownProcessor.exit_code());
    run.check(
        run.stdout.starts_with("error: ERR_UNKNOWN_PROCESSOR"),
        "a human error",
    );
}

#[test]
fn deploy_without_modal_credentials_is_refused_after_writing_the_app() {
    let (dir, _, _) = pinned_registry();
    let args = ["deploy", "--target", "modal", "--ref", "text/stats@1"];
    let run = without_profile(&dir, &args).run();
    run.exits(ErrorCode::DeployTarget.exit_code());
    let lines: Vec<&str> = run.stdout.lines().collect();
    run.check(
        lines[0].starts_with("apps written under "),
        "where the app is",
    );
    run.check(
        lines[2]
            .starts_with("text/stats@1  proctor-text-stats-v1  sha256-3f1c9e0b7a2d  not deployed"),
        "the app is not deployed",
    );
    run.check(
        lines[3].starts_with(
            "error: ERR_DEPLOY_TARGET: no deploy target configured: modal is not configured",
        ),
        "says why",
    );
    run.check(
        dir.path()
            .join(".proctor/deploy/modal/proctor-text-stats-v1.py")
            .is_file(),
        "the app is written",
    );

    let mut json_args = args.to_vec();
    json_args.push("--json");
    let run = without_profile(&dir, &json_args).run();
    run.exits(ErrorCode::DeployTarget.exit_code());
    let report = run.json();
    run.check(report["error"]["code"] == "ERR_DEPLOY_TARGET", "the code");
    run.check(
        report["apps"][0]["deployed"] == false,
        "never a fake success",
    );

    // Credentials without the `modal` command are refused the same way.
    let empty_bin = dir.path().join("empty-bin");
    std::fs::create_dir_all(&empty_bin).unwrap();
    let run = without_profile(&dir, &json_args)
        .env("PATH", empty_bin.to_str().unwrap())
        .env("MODAL_TOKEN_ID", "ak-fake")
        .env("MODAL_TOKEN_SECRET", "as-fake")
        .run();
    run.exits(ErrorCode::DeployTarget.exit_code());
    run.check(
        run.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the `modal` command is not on PATH"),
        "names the missing command",
    );
}

/// A stand-in `modal` client in `dir/bin`: appends its arguments to `dir/modal-args.txt`,
/// answers `secret list` with `secrets_json`, and `deploy` with `deploy_exit`.
fn stand_in_modal(dir: &TestDir, secrets_json: &str, deploy_exit: i32) -> (PathBuf, PathBuf) {
    let bin = dir.path().join("bin");
    let log = dir.path().join("modal-args.txt");
    let secrets = dir.write("modal-secrets.json", secrets_json);
    let script = format!(
        "#!/bin/sh\n\
         # Stand-in for the modal client: records its arguments, answers like the client.\n\
         printf '%s\\n' \"$@\" >> '{log}'\n\
         case \"$1\" in\n\
         deploy) if [ {deploy_exit} -eq 0 ]; then echo 'App deployed'; else \
         echo 'Could not connect to the Modal server' >&2; fi; exit {deploy_exit} ;;\n\
         secret) cat '{secrets}' ;;\n\
         esac\n",
        log = log.display(),
        secrets = secrets.display(),
    );
    let path = dir.write("bin/modal", &script);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    (bin, log)
}

/// `proctor` with the stand-in first on `PATH` and fake Modal credentials.
fn with_stand_in(dir: &TestDir, bin: &Path, args: &[&str]) -> Proctor {
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    without_profile(dir, args)
        .env("PATH", &path)
        .env("MODAL_TOKEN_ID", "ak-fake0token0id")
        .env("MODAL_TOKEN_SECRET", "as-fake0token0secret")
}

#[test]
fn deploy_hands_the_written_app_to_the_modal_client() {
    let (dir, _, _) = pinned_registry();
    let (bin, log) = stand_in_modal(&dir, "[]", 0);
    let args = [
        "deploy",
        "--target",
        "modal",
        "--ref",
        "text/stats@1",
        "--json",
    ];
    // The endpoint is Modal's own; a proxy nobody listens on keeps the validation run on
    // this host, where it fails.
    let run = with_stand_in(&dir, &bin, &args)
        .env("PROCTOR_MODAL_WORKSPACE", "acme")
        .env("PROCTOR_MODAL_ENVIRONMENT", "staging")
        .env(
            "HTTPS_PROXY",
            &format!("http://127.0.0.1:{}", closed_port()),
        )
        .run();
    run.exits(ErrorCode::DeployValidation.exit_code());
    let report = run.json();
    let app = &report["apps"][0];
    run.check(app["deployed"] == true, "deployed");
    run.check(
        app["validation"]["status"] == "failed"
            && app["validation"]["check"] == "run"
            && app["validation"]["execution_id"].is_string(),
        "its validation run failed",
    );
    run.check(
        report["error"]["code"] == "ERR_DEPLOY_VALIDATION",
        "never reported deployed and working",
    );
    run.check(
        app["endpoint"] == "https://acme-staging--text-stats-v1.modal.run",
        "the convention's endpoint",
    );
    let file = dir
        .path()
        .join(".proctor/deploy/modal/proctor-text-stats-v1.py");
    let recorded = std::fs::read_to_string(&log).unwrap();
    let expected = format!(
        "deploy\n-e\nstaging\n--tag\nsha256-3f1c9e0b7a2d\n{}\n",
        file.display()
    );
    run.check(recorded == expected, &format!("modal got {recorded:?}"));

    // A failing client is ERR_DEPLOY with its (redacted) words, never a success.
    let (bin, _) = stand_in_modal(&dir, "[]", 1);
    let run = with_stand_in(&dir, &bin, &args).run();
    run.exits(ErrorCode::Deploy.exit_code());
    let report = run.json();
    let message = report["error"]["message"].as_str().unwrap();
    run.check(
        message.starts_with("deploy failed: `modal deploy` of proctor-text-stats-v1 failed: ")
            && message.contains("Could not connect to the Modal server"),
        "says what the client said",
    );
    run.check(report["apps"][0]["deployed"] == false, "not deployed");
}

/// A loopback port nobody listens on right now.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `text/stats@1` container standing in for its new Modal deployment: the image
/// `proctor run --build` loads, serving on a loopback port with host networking as the
/// deployment serves behind its endpoint, reporting `digest` as Modal's start would, and
/// writing its evidence into `dir`'s World (`artifacts/`). Removed on drop.
struct ProcessorStandIn {
    container: String,
    /// `PROCTOR_MODAL_BASE_URL` reaching it.
    base_url: String,
}

impl ProcessorStandIn {
    fn start(dir: &TestDir, digest: &str) -> ProcessorStandIn {
        let registry = workspace_registry();
        let built = dir
            .proctor(&[
                "run",
                "--ref",
                "text/stats@1",
                "--adapter",
                "local",
                "--mode",
                "mock",
                "--build",
                "--registry-root",
                registry.to_str().unwrap(),
                "--artifacts-root",
                "built",
                "--json",
            ])
            .run();
        built.exits(0);
        let artifacts = dir.path().join("artifacts");
        std::fs::create_dir_all(&artifacts).unwrap();
        // Root in the test runs the processor as its image's non-root user, which owns the
        // World's directory then; anyone else runs it as themselves.
        let me = std::fs::metadata("/proc/self").unwrap();
        let user = if me.uid() == 0 {
            std::os::unix::fs::chown(&artifacts, Some(65532), Some(65532)).unwrap();
            "65532:65532".to_owned()
        } else {
            format!("{}:{}", me.uid(), me.gid())
        };
        let port = closed_port();
        let mut docker_run = Command::new("docker");
        docker_run
            .args([
                "run",
                "--detach",
                "--rm",
                "--network",
                "host",
                "--read-only",
            ])
            .args(["--cap-drop", "ALL", "--security-opt", "no-new-privileges"])
            .args(["--user", &user, "--label", "proctor.test=deploy-validation"])
            .arg("--volume")
            .arg(format!("{}:/artifacts", artifacts.display()))
            .args(["--env", "PROCTOR_BIND=127.0.0.1"])
            .args(["--env", &format!("PROCTOR_PORT={port}")])
            .args(["--env", &format!("PROCTOR_IMAGE_DIGEST=sha256:{digest}")])
            .args(["--env", "PROCTOR_ARTIFACTS_ROOT=/artifacts"])
            .arg("proctor/text-stats:1");
        let (container, _) = successful_output(docker_run);
        let stand_in = ProcessorStandIn {
            container: container.trim().to_owned(),
            base_url: format!("http://127.0.0.1:{port}"),
        };
        // Listening before the deploy, as a deployment is once `modal deploy` returns.
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the stand-in never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        stand_in
    }
}

impl Drop for ProcessorStandIn {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "--force", &self.container])
            .output();
    }
}

#[test]
fn deploy_validates_the_new_deployment_with_a_mock_smoke_run() {
    let (dir, _, _) = pinned_registry();
    let (bin, log) = stand_in_modal(&dir, "[]", 0);
    let stand_in = ProcessorStandIn::start(&dir, DIGEST);
    let deploy = |dir: &TestDir, extra: &[&str]| {
        let mut args = vec!["deploy", "--target", "modal", "--ref", "text/stats@1"];
        if !extra.contains(&"--artifacts-root") {
            args.extend(["--artifacts-root", "artifacts"]);
        }
        args.extend_from_slice(extra);
        with_stand_in(dir, &bin, &args)
            .env("PROCTOR_MODAL_BASE_URL", &stand_in.base_url)
            .run()
    };

    // A healthy deployment of the pin: its smoke run succeeds and is recorded.
    let run = deploy(&dir, &["--json"]);
    run.exits(0);
    let report = run.json();
    let app = &report["apps"][0];
    let validation = &app["validation"];
    run.check(
        app["deployed"] == true && report["error"].is_null(),
        "deployed",
    );
    run.check(
        validation["status"] == "ok"
            && validation["check"].is_null()
            && validation["why"].is_null(),
        "validated",
    );
    let execution_id = validation["execution_id"].as_str().unwrap();
    run.check(
        std::fs::read_to_string(&log).unwrap().starts_with(
            "deploy
",
        ),
        "deployed before it was validated",
    );
    let settled = run.events("execution.settle");
    run.check(
        settled.len() == 1
            && settled[0]["execution_id"] == execution_id
            && settled[0]["adapter"] == "modal"
            && settled[0]["mode"] == "mock",
        "one mock run through the Modal adapter",
    );
    run.check(
        settled[0]["index_path"]
            == format!("/artifacts/deploy/modal/text-stats-1/{execution_id}/outputs.json"),
        "under the deploy's write prefix",
    );
    run.check(
        dir.path()
            .join(format!(
                "artifacts/deploy/modal/text-stats-1/{execution_id}/receipt.json"
            ))
            .is_file(),
        "the stand-in wrote the run's evidence",
    );
    let validated = run.events("deploy.validate");
    run.check(
        validated.len() == 1 && validated[0]["ok"] == true,
        "one deploy.validate log line",
    );

    // People see the validation in the table.
    let run = deploy(&dir, &[]);
    run.exits(0);
    let row: Vec<&str> = run
        .stdout
        .lines()
        .nth(2)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    run.check(
        row.len() == 7 && row[3] == "deployed" && row[4] == "ok" && row[5].len() == 36,
        "deployed, validation ok with its execution",
    );

    // Evidence the deployment wrote outside this World fails the evidence check.
    let run = deploy(&dir, &["--artifacts-root", "elsewhere", "--json"]);
    run.exits(ErrorCode::DeployValidation.exit_code());
    let validation = &run.json()["apps"][0]["validation"];
    run.check(
        validation["check"] == "evidence"
            && validation["why"]
                .as_str()
                .unwrap()
                .starts_with("ERR_EVIDENCE: evidence does not match the run"),
        "the evidence check failed",
    );

    // A deployment that reports another digest than the pin fails the digest check.
    let drifted = TestDir::new();
    copy_shipped(
        &drifted,
        "text/stats/1",
        Some(&pin("text-stats", OTHER_DIGEST)),
    );
    let run = deploy(&drifted, &[]);
    run.exits(ErrorCode::DeployValidation.exit_code());
    run.check(
        run.stdout.contains(" (digest) "),
        "the failed check in the table",
    );
    let error = run
        .stdout
        .lines()
        .find(|line| line.starts_with("error: "))
        .unwrap_or_default();
    run.check(
        error.starts_with(
            "error: ERR_DEPLOY_VALIDATION: deployment failed validation: text/stats@1, execution ",
        ) && error.contains(": the digest check failed: ERR_IMAGE_DRIFT: image digest mismatch"),
        "names the processor, the check and the canonical error",
    );

    // --dry-run validates nothing.
    let run = deploy(&dir, &["--dry-run", "--json"]);
    run.exits(0);
    run.check(
        run.json()["apps"][0]["validation"].is_null() && run.events("execution.start").is_empty(),
        "no run",
    );
}

/// A run endpoint answering every payload with a success envelope whose index is outside
/// the run's write prefix.
async fn misplaced_index(axum::Json(payload): axum::Json<Value>) -> Response {
    axum::Json(json!({
        "status": "success",
        "execution_id": payload["execution_id"],
        "outputs": [],
        "index_path": "/artifacts/elsewhere/outputs.json",
        "meta": {
            "image_digest": format!("sha256:{DIGEST}"),
            "env_fingerprint": "",
            "duration_ms": 1,
            "mode": "mock",
        },
    }))
    .into_response()
}

#[test]
fn deploy_fails_a_deployment_that_answers_a_wrong_envelope() {
    let (dir, _, _) = pinned_registry();
    let (bin, _) = stand_in_modal(&dir, "[]", 0);
    let endpoints = Endpoints::serve(Answers::from([(STATS_LABEL, ("text/stats@1", DIGEST))]));
    let run = with_stand_in(
        &dir,
        &bin,
        &[
            "deploy",
            "--target",
            "modal",
            "--ref",
            "text/stats@1",
            "--json",
        ],
    )
    .env("PROCTOR_MODAL_BASE_URL", &endpoints.base_url)
    .run();
    run.exits(ErrorCode::DeployValidation.exit_code());
    let report = run.json();
    let validation = &report["apps"][0]["validation"];
    run.check(
        report["apps"][0]["deployed"] == true
            && validation["status"] == "failed"
            && validation["check"] == "run",
        "the run check failed",
    );
    // The adapter refuses the envelope with its own code, as for any run.
    let why = validation["why"].as_str().unwrap();
    run.check(
        why.starts_with("ERR_MODAL_INVOCATION: modal invocation failed: POST ")
            && why.contains("invalid index_path root: /artifacts/elsewhere/outputs.json"),
        "says what was wrong",
    );
    run.check(
        report["error"]["code"] == "ERR_DEPLOY_VALIDATION"
            && report["error"]["message"]
                .as_str()
                .unwrap()
                .contains("the run check failed: ERR_MODAL_INVOCATION"),
        "the named error",
    );
}

/// How the endpoint server answers `/healthz` for one label: `(ref, digest hex)`.
type Answers = BTreeMap<&'static str, (&'static str, &'static str)>;
/// `(Modal-Key, Modal-Secret)` of each request.
type Seen = Arc<Mutex<Vec<(Option<String>, Option<String>)>>>;

/// Deployed endpoints standing in on 127.0.0.1: `GET /{label}/healthz` answers like a
/// processor started from the label's digest; unknown labels get 404; `POST /{label}/run`
/// answers a wrong envelope ([`misplaced_index`]). Stops on drop.
struct Endpoints {
    /// `PROCTOR_MODAL_BASE_URL` routing each processor to its label.
    base_url: String,
    seen: Seen,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Clone)]
struct ServerState {
    answers: Arc<Answers>,
    seen: Seen,
}

async fn healthz(
    State(state): State<ServerState>,
    UrlPath(label): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    state
        .seen
        .lock()
        .unwrap()
        .push((header("modal-key"), header("modal-secret")));
    match state.answers.get(label.as_str()) {
        Some((processor_ref, digest)) => axum::Json(json!({
            "ok": true,
            "image_digest": format!("sha256:{digest}"),
            "ref": processor_ref,
        }))
        .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

impl Endpoints {
    fn serve(answers: Answers) -> Endpoints {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Seen::default();
        let state = ServerState {
            answers: Arc::new(answers),
            seen: seen.clone(),
        };
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new()
                    .route("/{label}/healthz", get(healthz))
                    .route("/{label}/run", post(misplaced_index))
                    .with_state(state);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stop.await;
                    })
                    .await
                    .unwrap();
            });
        });
        Endpoints {
            base_url: format!("http://127.0.0.1:{port}/{{label}}"),
            seen,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }
}

impl Drop for Endpoints {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `proctor drift` against `base_url` with `args`.
fn drift(dir: &TestDir, base_url: &str, args: &[&str]) -> Run {
    let mut all = vec!["drift"];
    all.extend_from_slice(args);
    without_profile(dir, &all)
        .env("PROCTOR_MODAL_BASE_URL", base_url)
        .run()
}

#[test]
fn drift_compares_each_deployed_digest_with_its_pin() {
    let (dir, _, _) = pinned_registry();
    let endpoints = Endpoints::serve(Answers::from([
        (STATS_LABEL, ("text/stats@1", DIGEST)),
        (LITELLM_LABEL, ("llm/litellm@1", OTHER_DIGEST)),
    ]));

    let run = drift(&dir, &endpoints.base_url, &["--ref", "text/stats@1"]);
    run.exits(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    run.check(
        lines.len() == 2
            && lines[0].starts_with("REF")
            && lines[0].contains("PINNED")
            && lines[0].contains("DEPLOYED")
            && lines[0].contains("STATUS"),
        "a header and one row",
    );
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    let digest = format!("sha256:{DIGEST}");
    run.check(
        cells == ["text/stats@1", &digest, &digest, "ok", "-"],
        "pinned equals deployed",
    );
    run.check(
        run.events("drift.check").len() == 1,
        "one drift.check log line",
    );

    let run = drift(&dir, &endpoints.base_url, &["--json"]);
    run.exits(ErrorCode::ImageDrift.exit_code());
    let report = run.json();
    let rows = report["rows"].as_array().unwrap();
    run.check(rows.len() == 2, "every processor");
    run.check(
        rows[0]["ref"] == "llm/litellm@1"
            && rows[0]["status"] == "drift"
            && rows[0]["pinned"] == digest
            && rows[0]["deployed"] == format!("sha256:{OTHER_DIGEST}"),
        "litellm drifted",
    );
    run.check(rows[1]["status"] == "ok", "stats did not");
    run.check(
        report["error"]
            == json!({
                "code": "ERR_IMAGE_DRIFT",
                "message": "image digest mismatch: deployed image differs from the pin for llm/litellm@1"
            }),
        "the verdict",
    );

    let run = drift(&dir, &endpoints.base_url, &["--ref", "llm/litellm@1"]);
    run.exits(ErrorCode::ImageDrift.exit_code());
    run.check(
        run.stdout.contains(" drift ") && run.stdout.contains("error: ERR_IMAGE_DRIFT"),
        "a drift row, then the error",
    );

    // Proxy-auth headers reach the endpoint and are never printed or logged.
    endpoints.seen.lock().unwrap().clear();
    let run = without_profile(&dir, &["drift", "--ref", "text/stats@1"])
        .env("PROCTOR_MODAL_BASE_URL", &endpoints.base_url)
        .env("MODAL_PROXY_TOKEN_ID", PROXY_ID)
        .env("MODAL_PROXY_TOKEN_SECRET", PROXY_SECRET)
        .run();
    run.exits(0);
    let seen = endpoints.seen.lock().unwrap().clone();
    run.check(
        seen == [(Some(PROXY_ID.to_owned()), Some(PROXY_SECRET.to_owned()))],
        "both headers arrive",
    );
    run.check(
        !format!("{}{}", run.stdout, run.stderr).contains("0for0cli0tests"),
        "tokens are never printed",
    );
}

#[test]
fn drift_fails_on_unreachable_and_unpinned_deployments() {
    let (dir, _, _) = pinned_registry();
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let run = drift(
        &dir,
        &format!("http://127.0.0.1:{closed}/{{label}}"),
        &["--ref", "text/stats@1", "--json"],
    );
    run.exits(ErrorCode::ModalInvocation.exit_code());
    let report = run.json();
    run.check(
        report["rows"][0]["status"] == "unreachable" && report["rows"][0]["deployed"].is_null(),
        "unreachable",
    );
    run.check(
        report["error"]["code"] == "ERR_MODAL_INVOCATION",
        "the code",
    );

    // An endpoint that answers 404 (nothing deployed under that label) is unreachable too.
    let endpoints = Endpoints::serve(Answers::new());
    let run = drift(&dir, &endpoints.base_url, &["--ref", "text/stats@1"]);
    run.exits(ErrorCode::ModalInvocation.exit_code());
    run.check(run.stdout.contains("unreachable  HTTP 404"), "says why");

    // Nothing to compare without a pin; no target at all is ERR_DEPLOY_TARGET.
    let unpinned = TestDir::new();
    copy_shipped(&unpinned, "text/stats/1", None);
    let run = drift(&unpinned, &endpoints.base_url, &["--json"]);
    run.exits(ErrorCode::ImageUnpinned.exit_code());
    run.check(run.json()["rows"][0]["status"] == "unpinned", "unpinned");
    let run = without_profile(&dir, &["drift", "--json"]).run();
    run.exits(ErrorCode::DeployTarget.exit_code());
    run.check(
        run.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("PROCTOR_MODAL_WORKSPACE"),
        "names the variable to set",
    );
}

#[test]
fn secrets_plan_lists_needed_secrets_and_the_missing_ones() {
    let (dir, _, _) = pinned_registry();
    let secret_value = "sk-should0never0be0printed0anywhere";

    // Without Modal configured: the plan, and presence unknown is an error.
    let run = without_profile(&dir, &["secrets", "plan", "--target", "modal"])
        .env("OPENAI_API_KEY", secret_value)
        .run();
    run.exits(ErrorCode::DeployTarget.exit_code());
    let lines: Vec<&str> = run.stdout.lines().collect();
    run.check(
        lines[0].split_whitespace().collect::<Vec<_>>() == ["REF", "SECRET", "PURPOSE", "PRESENCE"],
        "header",
    );
    run.check(
        lines[1].split_whitespace().collect::<Vec<_>>()
            == ["llm/litellm@1", "OPENAI_API_KEY", "required", "unknown"],
        "the one needed secret",
    );
    run.check(
        lines[2].starts_with(
            "error: ERR_DEPLOY_TARGET: no deploy target configured: modal is not configured",
        ),
        "why presence is unknown",
    );
    run.check(!run.stdout.contains(secret_value), "names only");

    let run = without_profile(&dir, &["secrets", "plan", "--target", "modal", "--json"]).run();
    run.exits(ErrorCode::DeployTarget.exit_code());
    let report = run.json();
    run.check(
        report["rows"]
            == json!([{"ref": "llm/litellm@1", "secret": "OPENAI_API_KEY", "purpose": "required", "presence": "unknown"}]),
        "rows",
    );
    run.check(report["missing"] == json!([]), "none known missing");
    run.check(report["unknown_because"].is_string(), "why unknown");
    run.check(report["error"]["code"] == "ERR_DEPLOY_TARGET", "the code");

    // A processor without secrets needs nothing, whatever the target knows.
    let run = without_profile(
        &dir,
        &[
            "secrets",
            "plan",
            "--target",
            "modal",
            "--ref",
            "text/stats@1",
        ],
    )
    .run();
    run.exits(0);
    run.check(run.stdout == "(no secrets needed)\n", "nothing needed");

    // With the client answering: missing secrets by name, then all present.
    let (bin, log) = stand_in_modal(&dir, r#"[{"name":"unrelated","created_at":"x"}]"#, 0);
    let run = with_stand_in(
        &dir,
        &bin,
        &["secrets", "plan", "--target", "modal", "--json"],
    )
    .env("PROCTOR_MODAL_ENVIRONMENT", "staging")
    .env("PROCTOR_MODAL_REGISTRY_SECRET", "ghcr-pull")
    .run();
    run.exits(ErrorCode::MissingSecret.exit_code());
    let report = run.json();
    run.check(
        report["missing"] == json!(["OPENAI_API_KEY", "ghcr-pull"]),
        "missing names, sorted",
    );
    let presences: Vec<(&str, &str, &str)> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["ref"].as_str().unwrap(),
                row["secret"].as_str().unwrap(),
                row["presence"].as_str().unwrap(),
            )
        })
        .collect();
    run.check(
        presences
            == [
                ("llm/litellm@1", "OPENAI_API_KEY", "missing"),
                ("llm/litellm@1", "ghcr-pull", "missing"),
                ("text/stats@1", "ghcr-pull", "missing"),
            ],
        "one row per processor and secret",
    );
    run.check(
        report["error"]["message"]
            == "missing required secret: OPENAI_API_KEY, ghcr-pull (create them in the target)",
        "the error names them",
    );
    run.check(
        std::fs::read_to_string(&log).unwrap() == "secret\nlist\n-e\nstaging\n--json\n",
        "the client was asked for the environment's secrets",
    );

    let (bin, _) = stand_in_modal(
        &dir,
        r#"[{"name":"OPENAI_API_KEY"},{"name":"ghcr-pull"}]"#,
        0,
    );
    let run = with_stand_in(&dir, &bin, &["secrets", "plan", "--target", "modal"])
        .env("PROCTOR_MODAL_REGISTRY_SECRET", "ghcr-pull")
        .run();
    run.exits(0);
    run.check(
        run.stdout.lines().count() == 4 && !run.stdout.contains("missing"),
        "every secret present",
    );
    run.check(
        run.stdout.contains("registry pull  present"),
        "the pull secret",
    );
}
