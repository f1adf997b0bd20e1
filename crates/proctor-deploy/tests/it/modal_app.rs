//! Generated apps are imported by the real `modal` package (no token, no network: Modal
//! objects are lazy), and what Modal would deploy is read back and compared with the pin and
//! the registry entry. Needs `python3` with `modal` (scripts/setup.sh).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use proctor_deploy::{
    ADD_PYTHON, FUNCTION_NAME, GeneratedApp, ModalNames, ModalTarget, generate_app,
};
use proctor_registry::{Build, ProcessorSpec, REGISTRY_FILE, Registry};
use serde_json::{Value, json};

use crate::support::{DIGEST, pinned, spec};

/// The Python side: imports an app file and prints a JSON summary.
const INTROSPECT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/introspect_modal_app.py"
);

/// The workspace root, which holds the shipped `processors/`.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shipped registry entries (`processors/<ns>/<name>/<version>/registry.yaml`).
fn shipped_specs() -> Vec<ProcessorSpec> {
    let mut specs = Vec::new();
    let processors = workspace_root().join("processors");
    for ns in std::fs::read_dir(&processors).unwrap() {
        for name in std::fs::read_dir(ns.unwrap().path()).unwrap() {
            for version in std::fs::read_dir(name.unwrap().path()).unwrap() {
                let file = version.unwrap().path().join(REGISTRY_FILE);
                if file.is_file() {
                    let text = std::fs::read_to_string(&file).unwrap();
                    specs.push(serde_yaml_ng::from_str(&text).unwrap());
                }
            }
        }
    }
    specs
}

/// Writes `specs` into a registry root under `dir`, pinned to fake digests, and loads it back
/// with the real loader.
fn pinned_registry(dir: &Path, specs: Vec<ProcessorSpec>) -> Registry {
    for mut spec in specs {
        let image_name = spec.processor_ref.image_name();
        spec.image.index = Some(pinned(&image_name, DIGEST));
        spec.image.platforms.amd64 = Some(pinned(&image_name, DIGEST));
        spec.image.platforms.arm64 = Some(pinned(&image_name, DIGEST));
        let processor_ref = &spec.processor_ref;
        let version_dir = dir
            .join(processor_ref.namespace())
            .join(processor_ref.name())
            .join(processor_ref.version());
        std::fs::create_dir_all(&version_dir).unwrap();
        std::fs::write(
            version_dir.join(REGISTRY_FILE),
            serde_yaml_ng::to_string(&spec).unwrap(),
        )
        .unwrap();
        if spec.build.python.is_some() {
            // A Python processor's entry loads only beside the pinned requirements in its
            // build context: the shipped ones.
            let requirements = Path::new(&spec.build.context).join(Build::PYTHON_REQUIREMENTS);
            let shipped = workspace_root()
                .join("processors")
                .join(processor_ref.namespace())
                .join(processor_ref.name())
                .join(processor_ref.version())
                .join(&requirements);
            let copy = version_dir.join(&requirements);
            std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
            std::fs::copy(shipped, copy).unwrap();
        }
    }
    Registry::load(dir).unwrap()
}

/// Imports the app at `file` with `modal` and returns the summary the Python side prints.
fn introspect(file: &Path, home: &Path) -> Result<Value, String> {
    let output = Command::new("python3")
        .arg(INTROSPECT)
        .arg(file)
        .arg(FUNCTION_NAME)
        // No Modal credentials or profile: the import must not need them.
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .current_dir(home)
        .output()
        .map_err(|error| format!("cannot run python3 (run scripts/setup.sh): {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "importing {} failed ({}); is `modal` installed (scripts/setup.sh)?\n{}",
            file.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|error| format!("{error}: {}", String::from_utf8_lossy(&output.stdout)))
}

/// Asserts that what Modal would deploy equals the pin and the registry entry.
fn assert_app_matches(
    summary: &Value,
    spec: &ProcessorSpec,
    app: &GeneratedApp,
    target: &ModalTarget,
) {
    let names = ModalNames::derive(&spec.processor_ref, target);
    let pinned = spec.image.platforms.amd64.clone().unwrap();
    let runtime = &spec.runtime;
    let context = format!("{}: {summary:#}", spec.processor_ref);
    assert_eq!(summary["app_name"], names.app, "{context}");
    assert_eq!(summary["function"], FUNCTION_NAME, "{context}");
    assert_eq!(
        summary["image"]["repr"],
        format!("Image.from_registry('{pinned}')"),
        "{context}"
    );
    assert_eq!(summary["image"]["add_python"], ADD_PYTHON, "{context}");
    // What Modal would build, per image builder version: the pin first, and no shell step.
    let dockerfiles = summary["image"]["dockerfiles"].as_object().unwrap();
    assert_eq!(dockerfiles.len(), 2, "{context}");
    for commands in dockerfiles.values() {
        let commands: Vec<&str> = commands
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(commands[0], format!("FROM {pinned}"), "{context}");
        assert!(!commands.iter().any(|c| c.starts_with("RUN")), "{context}");
    }
    assert_eq!(
        summary["image"]["registry_secret"],
        json!(target.registry_secret),
        "{context}"
    );
    assert_eq!(summary["cpu"].as_f64(), Some(runtime.cpu), "{context}");
    assert_eq!(
        summary["memory_mib"].as_u64(),
        Some((runtime.memory_gb * 1024.0).ceil() as u64),
        "{context}"
    );
    assert_eq!(
        summary["timeout"].as_u64(),
        Some(runtime.timeout_s),
        "{context}"
    );
    assert_eq!(summary["gpu"], json!(runtime.gpu), "{context}");
    let store_secret = target
        .world_store
        .as_ref()
        .map(|_| target.store_secret_name().to_owned());
    let secrets: Vec<String> = spec
        .secrets
        .required
        .iter()
        .cloned()
        .chain(store_secret)
        .collect();
    assert_eq!(summary["secrets"], json!(secrets), "{context}");
    let env = &summary["env"];
    assert_eq!(
        env["PROCTOR_IMAGE_DIGEST"],
        format!("sha256:{DIGEST}"),
        "{context}"
    );
    assert_eq!(
        env["PROCTOR_IMAGE_DIGEST"],
        app.image_digest.to_string(),
        "{context}"
    );
    assert_eq!(
        env["PROCTOR_PORT"],
        spec.build.port.to_string(),
        "{context}"
    );
    for (name, value) in proctor_deploy::runtime_env(runtime) {
        assert_eq!(env[name], value, "{context}");
    }
    assert_eq!(
        env.get("PROCTOR_GPU").is_some(),
        runtime.gpu.is_some(),
        "{context}"
    );
    let web = &summary["web"];
    assert_eq!(web["kind"], "WEBHOOK_TYPE_WEB_SERVER", "{context}");
    assert_eq!(web["label"], names.label, "{context}");
    assert_eq!(
        web["port"].as_u64(),
        Some(u64::from(spec.build.port)),
        "{context}"
    );
    assert_eq!(
        web["startup_timeout"].as_f64(),
        Some(runtime.timeout_s as f64),
        "{context}"
    );
    assert_eq!(web["requires_proxy_auth"], true, "{context}");
    assert_eq!(web["unauthenticated"], false, "{context}");
}

#[test]
fn generated_apps_of_the_shipped_processors_import_with_modal() {
    let dir = tempfile::tempdir().unwrap();
    let mut specs = shipped_specs();
    if !specs
        .iter()
        .any(|spec| spec.processor_ref.to_string() == "llm/litellm@1")
    {
        // Not shipped yet: an entry shaped like it, with a required secret.
        specs.push(spec("llm/litellm@1", None));
    }
    let registry = pinned_registry(&dir.path().join("registry"), specs);
    let target = ModalTarget {
        workspace: Some("acme".into()),
        ..ModalTarget::default()
    };
    let project = dir.path().join("project");
    assert!(
        registry.len() >= 2,
        "text/stats@1 and llm/litellm@1 at least"
    );
    for processor in registry.iter() {
        let spec = processor.spec();
        let app = generate_app(spec, &target, &BTreeMap::new()).unwrap();
        let file = app.write(&project).unwrap();
        assert!(file.ends_with(format!(".proctor/deploy/modal/{}.py", app.names.app)));
        let summary = introspect(&file, dir.path()).unwrap();
        assert_app_matches(&summary, spec, &app, &target);
        assert_eq!(summary["env"]["PROCTOR_ARTIFACTS_ROOT"], "/tmp/artifacts");
        assert_eq!(summary["volumes"], json!({}));
        assert_eq!(
            summary["modal_version"], "1.6.4",
            "the version scripts/setup.sh pins"
        );
    }
}

#[test]
fn registry_secret_volume_gpu_and_pass_through_env_survive_the_import() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec("llm/litellm@1", Some(DIGEST));
    spec.runtime.gpu = Some("A100".into());
    spec.runtime.cpu = 2.5;
    spec.runtime.memory_gb = 3.0;
    spec.runtime.timeout_s = 900;
    spec.build.port = 9000;
    spec.secrets.required.push("ANOTHER_TOKEN".into());
    let target = ModalTarget {
        workspace: Some("acme".into()),
        environment: Some("staging".into()),
        suffix_env: true,
        registry_secret: Some("ghcr-pull".into()),
        artifacts_volume: Some("proctor-artifacts".into()),
        ..ModalTarget::default()
    };
    let pass_env = BTreeMap::from([(
        "OPENAI_BASE_URL".to_owned(),
        "http://llm.internal/v1".to_owned(),
    )]);
    let app = generate_app(&spec, &target, &pass_env).unwrap();
    let file = app.write(dir.path()).unwrap();
    let summary = introspect(&file, dir.path()).unwrap();
    assert_app_matches(&summary, &spec, &app, &target);
    assert_eq!(summary["image"]["registry_secret"], "ghcr-pull");
    assert_eq!(
        summary["volumes"],
        json!({"/artifacts": "proctor-artifacts"})
    );
    assert_eq!(summary["env"]["PROCTOR_ARTIFACTS_ROOT"], "/artifacts");
    assert_eq!(summary["env"]["OPENAI_BASE_URL"], "http://llm.internal/v1");
    assert_eq!(
        summary["secrets"],
        json!(["OPENAI_API_KEY", "ANOTHER_TOKEN"])
    );
}

#[test]
fn the_world_store_and_its_secret_survive_the_import() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec("text/stats@1", Some(DIGEST));
    let store = "s3://proctor-world/team/runs?endpoint=https://s3.eu-west-1.amazonaws.com";
    for (store_secret, expected_secret) in [
        (None, "proctor-world-store"),
        (Some("team-store"), "team-store"),
    ] {
        let target = ModalTarget {
            workspace: Some("acme".into()),
            world_store: Some(store.into()),
            store_secret: store_secret.map(str::to_owned),
            ..ModalTarget::default()
        };
        let app = generate_app(&spec, &target, &BTreeMap::new()).unwrap();
        let file = app.write(dir.path()).unwrap();
        let summary = introspect(&file, dir.path()).unwrap();
        assert_app_matches(&summary, &spec, &app, &target);
        assert_eq!(summary["env"]["PROCTOR_STORE_URL"], store);
        let secrets = summary["secrets"].as_array().unwrap();
        assert_eq!(
            secrets.last(),
            Some(&json!(expected_secret)),
            "attached last"
        );
    }
}

#[test]
fn the_import_is_a_real_check() {
    // Modal validates arguments when the module is imported, so a broken app fails here.
    let dir = tempfile::tempdir().unwrap();
    let app = generate_app(
        &spec("llm/litellm@1", Some(DIGEST)),
        &ModalTarget::default(),
        &BTreeMap::new(),
    )
    .unwrap();
    let file = dir.path().join("broken.py");
    std::fs::write(&file, app.source.replace("timeout=60,", "timeout=None,")).unwrap();
    let why = introspect(&file, dir.path()).unwrap_err();
    assert!(why.contains("timeout"), "{why}");
}
