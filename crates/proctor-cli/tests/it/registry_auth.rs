//! Registry credentials from Docker credential helpers, for `push`, `pin` and the local
//! adapter's pull of a pinned image.
//!
//! A second `docker-registry` (the one `scripts/setup.sh` installs), started by the test on a
//! loopback port, demands HTTP Basic auth from an htpasswd file; the credentials reach proctor
//! only through a real helper protocol: a `docker-credential-proctortest` script on `PATH`
//! that reads `get`'s registry host on stdin, logs it, and answers `{"Username", "Secret"}`,
//! named by the docker config's `credsStore` or `credHelpers`. Needs the Docker engine, the
//! arm64 cross toolchain (see [`crate::oci`]) and `docker-registry`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proctor_contract::ErrorCode;
use serde_json::json;

use crate::oci::{EngineCleanup, copy_processors, fails_with_error, json_events, pins_in};
use crate::util::{Proctor, TestDir, workspace_root};

/// The one account the registry knows.
const USERNAME: &str = "proctor";
/// Its password; never printed by proctor.
const PASSWORD: &str = "proctor-registry-test-password";
/// `USERNAME:bcrypt(PASSWORD)` at the lowest cost bcrypt allows, so each request checks fast.
const HTPASSWD: &str = "proctor:$2b$04$u97dkWrv5jPHx9Aa.NNZA.Iw1UTZ96QvEBrh9P3qlpfYuaCdrrt4S";
/// The helper's name: the program is `docker-credential-proctortest`.
const HELPER: &str = "proctortest";

/// A `docker-registry` on 127.0.0.1 demanding Basic auth, storing under the test's directory;
/// killed on drop.
struct AuthRegistry {
    child: Child,
    /// `127.0.0.1:PORT`.
    host: String,
}

impl AuthRegistry {
    fn start(dir: &TestDir) -> AuthRegistry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let htpasswd = dir.write("registry/htpasswd", &format!("{HTPASSWD}\n"));
        let storage = dir.path().join("registry/storage");
        let config = dir.write(
            "registry/config.yml",
            &format!(
                "version: 0.1\nlog: {{level: warn}}\n\
                 storage: {{filesystem: {{rootdirectory: {}}}}}\n\
                 auth: {{htpasswd: {{realm: proctor-test, path: {}}}}}\n\
                 http: {{addr: 127.0.0.1:{port}}}\n",
                storage.display(),
                htpasswd.display()
            ),
        );
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (scripts/setup.sh installs it)");
        let registry = AuthRegistry {
            child,
            host: format!("127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }
}

impl Drop for AuthRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The helper script in `dir/bin`, answering for `host` only and logging every host it is
/// asked about to `dir/helper.log`; returns `PATH` with it first, and the log.
fn helper_on_path(dir: &TestDir, host: &str) -> (String, PathBuf) {
    let log = dir.path().join("helper.log");
    let script = format!(
        "#!/bin/sh\n\
         # A Docker credential helper: `get` reads a registry host on stdin.\n\
         [ \"$1\" = get ] || exit 1\n\
         read -r server\n\
         echo \"$server\" >> '{log}'\n\
         if [ \"$server\" = '{host}' ]; then\n\
         printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USERNAME}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n\
         else echo 'credentials not found in native keychain'; exit 1; fi\n",
        log = log.display(),
    );
    let path = dir.write(&format!("bin/docker-credential-{HELPER}"), &script);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let search = format!(
        "{}:{}",
        path.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (search, log)
}

/// A docker config directory under `dir` holding `config` as `config.json`.
fn docker_config(dir: &TestDir, name: &str, config: &serde_json::Value) -> PathBuf {
    let path = dir.write(&format!("{name}/config.json"), &config.to_string());
    path.parent().unwrap().to_path_buf()
}

/// `proctor` with `DOCKER_CONFIG` at `config_dir`, `PATH` as given, and the credential
/// variables empty (unset, for proctor).
fn with_config(proctor: Proctor, config_dir: &Path, path: &str) -> Proctor {
    proctor
        .env("DOCKER_CONFIG", config_dir.to_str().unwrap())
        .env("PATH", path)
        .env("PROCTOR_REGISTRY_USERNAME", "")
        .env("PROCTOR_REGISTRY_PASSWORD", "")
}

/// The hosts the helper was asked about, in order.
fn asked(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn push_pin_and_pull_take_credentials_from_docker_credential_helpers() {
    let dir = TestDir::new();
    let cleanup = EngineCleanup::new();
    let registry = AuthRegistry::start(&dir);
    let host = registry.host.as_str();
    let (path, log) = helper_on_path(&dir, host);
    let processors = copy_processors(&dir);
    let root = processors.display().to_string();
    let workspace = workspace_root().display().to_string();
    dir.proctor(&[
        "build",
        "--ref",
        "text/stats@1",
        "--registry-root",
        &root,
        "--workspace-root",
        &workspace,
        "--json",
    ])
    .run()
    .exits(0);
    let target = format!("{host}/acme/proctor");
    let push = [
        "push",
        "--ref",
        "text/stats@1",
        "--registry",
        &target,
        "--json",
    ];

    // No credentials: the registry refuses the push.
    let anonymous = docker_config(&dir, "anonymous", &json!({}));
    let run = with_config(dir.proctor(&push), &anonymous, &path).run();
    fails_with_error(&run, ErrorCode::Push, host);
    run.check(asked(&log).is_empty(), "no helper is configured");

    // credsStore: the helper is asked for this host, and the push goes through.
    let store = docker_config(&dir, "store", &json!({"credsStore": HELPER}));
    let run = with_config(dir.proctor(&push), &store, &path).run();
    run.exits(0);
    run.check(asked(&log) == [host], "the helper was asked for the host");
    run.check(
        !format!("{}{}", run.stdout, run.stderr).contains(PASSWORD),
        "the secret is never printed",
    );

    // credHelpers: the host's own helper; pin reads the index back through it.
    let helpers = docker_config(&dir, "helpers", &json!({"credHelpers": {host: HELPER}}));
    let run = with_config(
        dir.proctor(&[
            "pin",
            "--ref",
            "text/stats@1",
            "--registry",
            &target,
            "--registry-root",
            &root,
            "--json",
        ]),
        &helpers,
        &path,
    )
    .run();
    run.exits(0);
    run.check(
        asked(&log) == [host, host],
        "asked again, through credHelpers",
    );
    let (_, amd64, arm64) = pins_in(&processors.join("text/stats/1/registry.yaml"));
    let pinned = match std::env::consts::ARCH {
        "aarch64" => arm64,
        _ => amd64,
    };
    let pinned = pinned.as_str().unwrap().to_owned();

    // The local adapter pulls the pin from the same registry with the same credentials.
    cleanup.pulls(&pinned);
    let options = cleanup.adapter_options();
    let run_args = [
        "run",
        "--lane",
        "main",
        "--ref",
        "text/stats@1",
        "--adapter",
        "local",
        "--write-prefix",
        "/artifacts/o/{execution_id}",
        "--example",
        "smoke",
        "--adapter-opts-json",
        &options,
        "--registry-root",
        &root,
        "--artifacts-root",
        "artifacts",
        "--json",
    ];
    let run = with_config(dir.proctor(&run_args), &anonymous, &path).run();
    fails_with_error(&run, ErrorCode::AdapterInvocation, &pinned);
    let run = with_config(dir.proctor(&run_args), &helpers, &path).run();
    run.exits(0);
    let pulls = json_events(&run, "image.pull");
    run.check(
        pulls.len() == 1 && pulls[0]["credentials"] == "docker-config",
        "pulled once, with the helper's credentials",
    );
    run.check(asked(&log).len() == 3, "the pull asked the helper");
    run.check(cleanup.containers().is_empty(), "no container is left");
}
