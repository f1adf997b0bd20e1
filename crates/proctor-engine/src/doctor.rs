//! `proctor doctor`: whether this machine can run proctor, one named check at a time — the
//! container engine, the OCI registry, the ledger, the artifacts root, each processor's pins
//! and secrets, and Modal — each with what to do about it when it is not ok.
//!
//! Checks only look: the ledger is opened only when it exists, the artifacts root is written
//! one probe file that is removed again (with any directory made for it), and secrets are
//! reported by name, their values never read into a report.

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use proctor_adapters::engine_version;
use proctor_contract::{CanonError, ErrorCode, ImageRepository, Platform, Redactor, WorldPath};
use proctor_deploy::{ModalCli, ModalTarget, ProxyAuth};
use proctor_ledger::{ChainReport, CheckpointPublicKey, CheckpointReport, Ledger, LedgerError};
use proctor_oci::RegistryTarget;
use proctor_registry::{ProcessorSpec, Registry, pinned_image};
use proctor_store::{ArtifactStore, FsStore};
use serde::Serialize;
use tokio::process::Command;

/// How long the engine and the registry get to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long opening and verifying the ledger may take.
const LEDGER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `python3 -c "import modal"` may take.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(60);

/// What [`doctor`] looks at.
#[derive(Debug, Clone)]
pub struct DoctorRequest {
    /// The registry root holding `<ns>/<name>/<version>/registry.yaml`.
    pub registry_root: PathBuf,
    /// The host directory backing `/artifacts/`.
    pub artifacts_root: PathBuf,
    /// The ledger URL, as `proctor run` takes it.
    pub ledger_url: String,
    /// The Ed25519 public key (a PEM file or its text) the ledger's checkpoints are signed
    /// with; without it checkpoints are not checked.
    pub ledger_public_key: Option<String>,
    /// The OCI registry images are pushed to and pinned from.
    pub oci_registry: RegistryTarget,
    /// The environment: secrets are looked up by name here, Modal's settings read, and
    /// `python3` found on its `PATH`.
    pub env: BTreeMap<String, String>,
}

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Nothing to do.
    Ok,
    /// Works, or is only needed by some commands, but something is missing.
    Warn,
    /// Broken: the commands that need it fail.
    Fail,
}

/// One named check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DoctorCheck {
    /// What was checked, e.g. `engine` or `pins llm/litellm@1`.
    pub name: String,
    /// How it came out.
    pub status: CheckStatus,
    /// What was found.
    pub detail: String,
    /// What to do about it, a concrete command where there is one; `None` when ok.
    pub fix: Option<String>,
}

impl DoctorCheck {
    fn ok(name: impl Into<String>, detail: impl Into<String>) -> DoctorCheck {
        DoctorCheck {
            name: name.into(),
            status: CheckStatus::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn warn(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        DoctorCheck {
            status: CheckStatus::Warn,
            fix: Some(fix.into()),
            ..DoctorCheck::ok(name, detail)
        }
    }

    fn fail(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        DoctorCheck {
            status: CheckStatus::Fail,
            ..DoctorCheck::warn(name, detail, fix)
        }
    }
}

/// Every check, in a fixed order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DoctorReport {
    /// The checks.
    pub checks: Vec<DoctorCheck>,
}

impl DoctorReport {
    /// `ERR_DOCTOR` naming the checks that failed, or `None` when none did (warnings
    /// allowed).
    pub fn to_error(&self) -> Option<CanonError> {
        let failed: Vec<&str> = self
            .checks
            .iter()
            .filter(|check| check.status == CheckStatus::Fail)
            .map(|check| check.name.as_str())
            .collect();
        (!failed.is_empty()).then(|| {
            CanonError::new(
                ErrorCode::Doctor,
                format!("{}; the fix is beside each", failed.join(", ")),
            )
        })
    }
}

/// Runs every check; the slow ones (engine, registry, ledger, `python3`) at once.
pub async fn doctor(request: &DoctorRequest) -> DoctorReport {
    let (engine, registry, ledger, artifacts, modal_python) = tokio::join!(
        engine_check(),
        oci_registry_check(&request.oci_registry),
        ledger_check(&request.ledger_url, request.ledger_public_key.as_deref()),
        artifacts_check(&request.artifacts_root),
        modal_python_check(&request.env),
    );
    let mut checks = vec![engine, registry, ledger, artifacts];
    checks.extend(processor_checks(&request.registry_root, &request.env));
    checks.push(modal_client_check(&request.env));
    checks.push(modal_target_check(&request.env));
    checks.push(modal_python);
    DoctorReport { checks }
}

/// The Docker engine the local adapter uses, reached as it reaches it.
async fn engine_check() -> DoctorCheck {
    const NAME: &str = "engine";
    const FIX: &str = "start the Docker engine (`bash scripts/setup.sh --engine`), or point \
                       DOCKER_HOST at a running one";
    match tokio::time::timeout(ANSWER_TIMEOUT, engine_version()).await {
        Ok(Ok(engine)) => DoctorCheck::ok(
            NAME,
            format!(
                "Docker {} (API {}, {}) at {}",
                engine.version, engine.api_version, engine.platform, engine.address
            ),
        ),
        Ok(Err(error)) => DoctorCheck::fail(NAME, error.message(), FIX),
        Err(_) => DoctorCheck::fail(
            NAME,
            format!("the Docker engine gave no answer within {ANSWER_TIMEOUT:?}"),
            FIX,
        ),
    }
}

/// The registry answers the distribution API's `/v2/` (200, or 401 asking for credentials).
async fn oci_registry_check(target: &RegistryTarget) -> DoctorCheck {
    const NAME: &str = "oci registry";
    let host = target.host();
    let fix = format!(
        "start it (`bash scripts/setup.sh` starts one on 127.0.0.1:5000), or name a reachable \
         one with --registry HOST/OWNER/REPO or PROCTOR_LANE_REGISTRY (now {host}/{})",
        target.namespace()
    );
    let url = format!("{}://{host}/v2/", registry_scheme(target));
    let client = match proctor_tls::http_client_builder()
        .connect_timeout(ANSWER_TIMEOUT)
        .timeout(ANSWER_TIMEOUT)
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            return DoctorCheck::fail(NAME, format!("no HTTP client: {}", chain(&error)), fix);
        }
    };
    match client.get(&url).send().await {
        Ok(answer) if answer.status().is_success() => {
            DoctorCheck::ok(NAME, format!("{url} answers"))
        }
        Ok(answer) if answer.status().as_u16() == 401 => DoctorCheck::ok(
            NAME,
            format!(
                "{url} answers and asks for credentials ({} / {}, else the docker config)",
                proctor_oci::USERNAME_ENV,
                proctor_oci::PASSWORD_ENV
            ),
        ),
        Ok(answer) => DoctorCheck::fail(
            NAME,
            format!(
                "{url} answered HTTP {}: not a distribution registry",
                answer.status().as_u16()
            ),
            fix,
        ),
        Err(error) => {
            DoctorCheck::fail(NAME, format!("cannot reach {url}: {}", chain(&error)), fix)
        }
    }
}

/// `http` for a registry on this machine, `https` elsewhere, as pushes and pins speak to it.
fn registry_scheme(target: &RegistryTarget) -> &'static str {
    let repository = format!("{}/{}", target.host(), target.namespace());
    match repository.parse::<ImageRepository>() {
        Ok(repository) if repository.is_loopback() => "http",
        _ => "https",
    }
}

/// An error and its causes, one after the other.
fn chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text = format!("{text}: {inner}");
        cause = inner.source();
    }
    text
}

/// The ledger opens and every plan's chain verifies, and with `public_key` every chain still
/// holds the head its latest signed checkpoint names; an SQLite ledger that does not exist yet
/// is a warning, not created.
async fn ledger_check(url: &str, public_key: Option<&str>) -> DoctorCheck {
    const NAME: &str = "ledger";
    let shown = Redactor::default().redact(url).into_owned();
    if let Some(file) = sqlite_file(url).filter(|file| !file.exists()) {
        return DoctorCheck::warn(
            NAME,
            format!("no ledger yet at {}", file.display()),
            "the first `proctor run` creates it; or name one with --ledger URL or \
             PROCTOR_LEDGER_URL",
        );
    }
    let verified = tokio::time::timeout(LEDGER_TIMEOUT, async {
        let ledger = Ledger::open(url).await?;
        let verified = verify_ledger(&ledger, public_key).await;
        ledger.close().await;
        verified
    })
    .await;
    let (reports, checkpoint) = match verified {
        Ok(Ok(verified)) => verified,
        Err(_) => {
            return DoctorCheck::fail(
                NAME,
                format!("{shown} gave no answer within {LEDGER_TIMEOUT:?}"),
                "check that the database behind --ledger / PROCTOR_LEDGER_URL is up",
            );
        }
        Ok(Err(error)) => {
            return DoctorCheck::fail(
                NAME,
                CanonError::from(error).message(),
                "check --ledger / PROCTOR_LEDGER_URL (sqlite://PATH or \
                 postgres://USER@HOST:PORT/DB), --public-key, and that the database is up",
            );
        }
    };
    let broken = reports
        .iter()
        .find_map(ChainReport::to_error)
        .or_else(|| checkpoint.as_ref()?.to_error());
    if let Some(error) = broken {
        let key = if public_key.is_some() {
            " --public-key KEY"
        } else {
            ""
        };
        return DoctorCheck::fail(
            NAME,
            error.message(),
            format!(
                "`proctor ledger verify --ledger {shown}{key}` shows every break; restore the \
                 ledger from a backup"
            ),
        );
    }
    let mut detail = format!(
        "{shown}: {} plans, {} events verified",
        reports.len(),
        reports.iter().map(|report| report.verified).sum::<u64>()
    );
    if let Some(seq) = checkpoint.and_then(|checkpoint| checkpoint.seq) {
        detail.push_str(&format!(", checkpoint {seq} holds"));
    }
    DoctorCheck::ok(NAME, detail)
}

/// Every plan's chain report, and with `public_key` the latest checkpoint's.
async fn verify_ledger(
    ledger: &Ledger,
    public_key: Option<&str>,
) -> Result<(Vec<ChainReport>, Option<CheckpointReport>), LedgerError> {
    let reports = ledger.verify_all().await?;
    let checkpoint = match public_key {
        Some(key) => Some(
            ledger
                .verify_checkpoint(&CheckpointPublicKey::parse(key)?, None)
                .await?,
        ),
        None => None,
    };
    Ok((reports, checkpoint))
}

/// The file of an `sqlite://PATH` ledger URL.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
}

/// The artifacts root takes a file through the store's own atomic write, which is then
/// removed, with every directory made for it.
async fn artifacts_check(root: &Path) -> DoctorCheck {
    const NAME: &str = "artifacts root";
    let fix = format!(
        "make {} a directory you can write (`mkdir -p {0}`), or choose another with \
         --artifacts-root or PROCTOR_ARTIFACTS_ROOT",
        root.display()
    );
    let missing: Vec<PathBuf> = root
        .ancestors()
        .take_while(|dir| !dir.exists())
        .map(Path::to_path_buf)
        .collect();
    let probed = probe_store(root).await;
    // Deepest first; one that something else filled meanwhile stays.
    for dir in &missing {
        let _ = std::fs::remove_dir(dir);
    }
    match probed {
        Ok(()) if missing.is_empty() => {
            DoctorCheck::ok(NAME, format!("{} is writable", root.display()))
        }
        Ok(()) => DoctorCheck::ok(
            NAME,
            format!(
                "{} does not exist yet and can be made; the first run makes it",
                root.display()
            ),
        ),
        Err(why) => DoctorCheck::fail(
            NAME,
            format!("cannot write to {}: {why}", root.display()),
            fix,
        ),
    }
}

/// Writes and removes one probe through [`FsStore`]. Its name starts like an unfinished
/// atomic write, so a listing skips it should the process die in between.
async fn probe_store(root: &Path) -> Result<(), String> {
    let store = FsStore::new(root);
    let probe = WorldPath::parse(&format!(
        "/artifacts/{}doctor-{}",
        proctor_fs::TEMP_FILE_PREFIX,
        uuid::Uuid::new_v4().simple()
    ))
    .map_err(|error| error.message())?;
    store
        .put(&probe, Bytes::from_static(b"proctor doctor\n"))
        .await
        .map_err(|error| CanonError::from(error).message())?;
    store
        .delete(&probe)
        .await
        .map_err(|error| CanonError::from(error).message())
}

/// The registry loads, and each processor's pins and secrets.
fn processor_checks(registry_root: &Path, env: &BTreeMap<String, String>) -> Vec<DoctorCheck> {
    const NAME: &str = "processors";
    let registry = match Registry::load(registry_root) {
        Ok(registry) => registry,
        Err(error) => {
            return vec![DoctorCheck::fail(
                NAME,
                error.message(),
                "correct the registry.yaml the message names (`proctor registry list` reads \
                 the same files), or pass --registry-root DIR",
            )];
        }
    };
    if registry.is_empty() {
        return vec![DoctorCheck::warn(
            NAME,
            format!("no processor under {}", registry_root.display()),
            "`proctor new ns/name@1 --lang rust` writes one, or pass --registry-root DIR",
        )];
    }
    let mut checks = vec![DoctorCheck::ok(
        NAME,
        format!(
            "{} processor versions under {}",
            registry.len(),
            registry_root.display()
        ),
    )];
    for processor in registry.iter() {
        checks.push(pins_check(processor.spec()));
        checks.push(secrets_check(processor.spec(), env));
    }
    checks
}

/// Whether both platforms carry a pinned digest.
fn pins_check(spec: &ProcessorSpec) -> DoctorCheck {
    let name = format!("pins {}", spec.processor_ref);
    let mut found = Vec::new();
    let mut unpinned = Vec::new();
    for platform in Platform::ALL {
        match pinned_image(spec, platform) {
            Ok(pin) => found.push(format!("{} {}", platform.as_str(), pin.digest())),
            Err(_) => unpinned.push(platform.as_str()),
        }
    }
    if unpinned.is_empty() {
        return DoctorCheck::ok(name, found.join(", "));
    }
    let fix = match spec.build.cargo_package {
        Some(_) => format!(
            "`proctor lane main --ref {0}` builds, pushes and pins both platforms; until then \
             `proctor run --ref {0} --build` runs it from source",
            spec.processor_ref
        ),
        None => format!(
            "write the digests of its pushed image into image.platforms of its registry.yaml; \
             until then `proctor run --ref {} --build` builds it from its Dockerfile",
            spec.processor_ref
        ),
    };
    let mut detail = format!("not pinned for {}", unpinned.join(", "));
    if !found.is_empty() {
        detail = format!("{detail} (pinned: {})", found.join(", "));
    }
    DoctorCheck::warn(name, detail, fix)
}

/// Whether the secrets a real-mode run needs are set, by name only.
fn secrets_check(spec: &ProcessorSpec, env: &BTreeMap<String, String>) -> DoctorCheck {
    let name = format!("secrets {}", spec.processor_ref);
    let required = &spec.secrets.required;
    if required.is_empty() {
        return DoctorCheck::ok(name, "needs none");
    }
    // Empty counts as unset, as for a run.
    let missing: Vec<&str> = required
        .iter()
        .filter(|secret| env.get(*secret).is_none_or(|value| value.is_empty()))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return DoctorCheck::ok(name, format!("set: {}", required.join(", ")));
    }
    DoctorCheck::warn(
        name,
        format!("not set: {} (needed in real mode only)", missing.join(", ")),
        format!(
            "{} before a real-mode run",
            missing
                .iter()
                .map(|secret| format!("export {secret}=…"))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    )
}

/// The fix shared by the Modal checks that find something missing.
const MODAL_ONLY: &str = "needed only for `--adapter modal`, `deploy` and `drift`";

/// The `modal` client on `PATH` with credentials, as `proctor deploy` needs it.
fn modal_client_check(env: &BTreeMap<String, String>) -> DoctorCheck {
    const NAME: &str = "modal client";
    match ModalCli::discover(env) {
        Ok(_) => DoctorCheck::ok(NAME, "`modal` is on PATH and has credentials"),
        Err(error) => DoctorCheck::warn(
            NAME,
            error.detail().to_owned(),
            format!(
                "`python3 -m pip install modal`, then `modal token set` (or export \
                 MODAL_TOKEN_ID and MODAL_TOKEN_SECRET); {MODAL_ONLY}"
            ),
        ),
    }
}

/// Where Modal endpoints are (`PROCTOR_MODAL_*`) and the proxy-auth pair they ask for.
fn modal_target_check(env: &BTreeMap<String, String>) -> DoctorCheck {
    const NAME: &str = "modal target";
    let target = ModalTarget::from_env(env);
    let auth = ProxyAuth::from_env(env);
    let (target, auth) = match (target, auth) {
        (Ok(target), Ok(auth)) => (target, auth),
        (Err(error), _) | (_, Err(error)) => {
            return DoctorCheck::fail(
                NAME,
                error.message(),
                "correct or unset the variable the message names",
            );
        }
    };
    let mut missing = Vec::new();
    if target.workspace.is_none() && target.base_url.is_none() {
        missing.push(ModalTarget::ENV_WORKSPACE);
    }
    if auth.is_none() {
        missing.extend([ProxyAuth::ENV_TOKEN_ID, ProxyAuth::ENV_TOKEN_SECRET]);
    }
    if missing.is_empty() {
        let place = match (&target.base_url, &target.workspace) {
            (Some(base_url), _) => base_url.clone(),
            (None, Some(workspace)) => format!("workspace {workspace}"),
            (None, None) => String::new(),
        };
        return DoctorCheck::ok(NAME, format!("{place}, proxy auth set"));
    }
    DoctorCheck::warn(
        NAME,
        format!("not set: {}", missing.join(", ")),
        format!(
            "{}; {MODAL_ONLY}",
            missing
                .iter()
                .map(|variable| format!("export {variable}=…"))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    )
}

/// `python3` on `PATH` imports `modal`, as the generated apps do.
async fn modal_python_check(env: &BTreeMap<String, String>) -> DoctorCheck {
    const NAME: &str = "modal python";
    let fix = format!("`python3 -m pip install modal`; {MODAL_ONLY}");
    let imported = Command::new("python3")
        .args(["-c", "import modal; print(modal.__version__)"])
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(IMPORT_TIMEOUT, imported).await {
        Err(_) => DoctorCheck::warn(
            NAME,
            format!("`import modal` took longer than {IMPORT_TIMEOUT:?}"),
            fix,
        ),
        Ok(Err(error)) => DoctorCheck::warn(NAME, format!("cannot run python3: {error}"), fix),
        Ok(Ok(output)) if output.status.success() => DoctorCheck::ok(
            NAME,
            format!(
                "python3 imports modal {}",
                String::from_utf8_lossy(&output.stdout).trim()
            ),
        ),
        Ok(Ok(output)) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = stderr.lines().last().unwrap_or_default().trim();
            DoctorCheck::warn(NAME, format!("python3 cannot import modal: {last}"), fix)
        }
    }
}

#[cfg(test)]
mod tests {
    use proctor_ledger::CheckpointSigningKey;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn shipped(processor_ref: &str) -> ProcessorSpec {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../processors");
        let registry = Registry::load(&root).unwrap();
        registry
            .get(&processor_ref.parse().unwrap())
            .unwrap()
            .spec()
            .clone()
    }

    fn pin(platform: &str) -> Option<String> {
        Some(format!(
            "127.0.0.1:5000/proctor/lane/llm-litellm-{platform}@sha256:{}",
            "ab".repeat(32)
        ))
    }

    #[test]
    fn only_failed_checks_make_the_error() {
        let mut report = DoctorReport {
            checks: vec![
                DoctorCheck::ok("engine", "up"),
                DoctorCheck::warn("pins a/b@1", "not pinned", "pin it"),
            ],
        };
        assert_eq!(report.to_error(), None);
        report
            .checks
            .push(DoctorCheck::fail("ledger", "broken", "restore"));
        report
            .checks
            .push(DoctorCheck::fail("engine 2", "down", "start"));
        let error = report.to_error().unwrap();
        assert_eq!(error.code(), ErrorCode::Doctor);
        assert_eq!(
            error.message(),
            "doctor check failed: ledger, engine 2; the fix is beside each"
        );
        let json = serde_json::to_value(&report.checks[1]).unwrap();
        assert_eq!(json["status"], "warn");
        assert_eq!(json["fix"], "pin it");
    }

    #[test]
    fn pins_are_ok_once_both_platforms_carry_a_digest() {
        let mut spec = shipped("llm/litellm@1");
        let check = pins_check(&spec);
        assert_eq!(check.name, "pins llm/litellm@1");
        assert_eq!(check.status, CheckStatus::Warn);
        assert_eq!(check.detail, "not pinned for amd64, arm64");
        assert!(
            check
                .fix
                .unwrap()
                .starts_with("`proctor lane main --ref llm/litellm@1` builds, pushes and pins")
        );
        spec.image.platforms.amd64 = pin("amd64");
        let check = pins_check(&spec);
        assert_eq!(check.status, CheckStatus::Warn);
        assert!(
            check
                .detail
                .starts_with("not pinned for arm64 (pinned: amd64 sha256:ab"),
            "{}",
            check.detail
        );
        spec.image.platforms.arm64 = pin("arm64");
        let check = pins_check(&spec);
        assert_eq!(check.status, CheckStatus::Ok, "{check:?}");
        assert_eq!(check.fix, None);
        // A tag is no pin.
        spec.image.platforms.arm64 = Some("127.0.0.1:5000/proctor/lane/x:1".to_owned());
        assert_eq!(pins_check(&spec).status, CheckStatus::Warn);
        let dockerfile = pins_check(&shipped("llm/litellm@2"));
        assert!(
            dockerfile
                .fix
                .unwrap()
                .contains("builds it from its Dockerfile"),
            "a processor without a Cargo package is not built by the main lane"
        );
    }

    #[test]
    fn secrets_are_reported_by_name_never_by_value() {
        let spec = shipped("llm/litellm@1");
        let value = "sk-doctor-must-never-print-this";
        let check = secrets_check(&spec, &env(&[("OPENAI_API_KEY", value)]));
        assert_eq!(check.status, CheckStatus::Ok);
        assert_eq!(check.detail, "set: OPENAI_API_KEY");
        assert!(!serde_json::to_string(&check).unwrap().contains(value));
        for unset in [env(&[]), env(&[("OPENAI_API_KEY", "")])] {
            let check = secrets_check(&spec, &unset);
            assert_eq!(check.status, CheckStatus::Warn);
            assert_eq!(
                check.detail,
                "not set: OPENAI_API_KEY (needed in real mode only)"
            );
            assert_eq!(
                check.fix.as_deref(),
                Some("export OPENAI_API_KEY=… before a real-mode run")
            );
        }
        let check = secrets_check(&shipped("text/stats@1"), &env(&[]));
        assert_eq!(
            (check.status, check.detail.as_str()),
            (CheckStatus::Ok, "needs none")
        );
    }

    #[test]
    fn a_registry_that_does_not_load_fails_and_an_empty_one_warns() {
        let dir = tempfile::tempdir().unwrap();
        let checks = processor_checks(dir.path(), &env(&[]));
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].status, CheckStatus::Warn, "{checks:?}");
        let checks = processor_checks(&dir.path().join("absent"), &env(&[]));
        assert_eq!(checks[0].name, "processors");
        assert_eq!(checks[0].status, CheckStatus::Fail, "{checks:?}");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../processors");
        let checks = processor_checks(&root, &env(&[]));
        assert_eq!(checks[0].status, CheckStatus::Ok);
        assert!(
            checks
                .iter()
                .any(|check| check.name == "secrets llm/litellm@1")
        );
        assert!(checks.iter().any(|check| check.name == "pins text/stats@1"));
    }

    #[test]
    fn modal_settings_are_optional_but_never_wrong() {
        let check = modal_target_check(&env(&[]));
        assert_eq!(check.status, CheckStatus::Warn);
        assert_eq!(
            check.detail,
            "not set: PROCTOR_MODAL_WORKSPACE, MODAL_PROXY_TOKEN_ID, MODAL_PROXY_TOKEN_SECRET"
        );
        let secret = "as-proxy-secret-value";
        let complete = env(&[
            ("PROCTOR_MODAL_WORKSPACE", "acme"),
            ("MODAL_PROXY_TOKEN_ID", "ak-proxy-id"),
            ("MODAL_PROXY_TOKEN_SECRET", secret),
        ]);
        let check = modal_target_check(&complete);
        assert_eq!(check.status, CheckStatus::Ok, "{check:?}");
        assert_eq!(check.detail, "workspace acme, proxy auth set");
        let mut half = complete.clone();
        half.remove("MODAL_PROXY_TOKEN_ID");
        let check = modal_target_check(&half);
        assert_eq!(check.status, CheckStatus::Fail);
        assert!(!check.detail.contains(secret), "{}", check.detail);
        let mut wrong = complete;
        wrong.insert("PROCTOR_MODAL_SUFFIX_ENV".into(), "maybe".into());
        assert_eq!(modal_target_check(&wrong).status, CheckStatus::Fail);

        let empty_path = tempfile::tempdir().unwrap();
        let check = modal_client_check(&env(&[("PATH", empty_path.path().to_str().unwrap())]));
        assert_eq!(check.status, CheckStatus::Warn);
        assert!(check.detail.contains("not on PATH"), "{}", check.detail);
    }

    #[tokio::test]
    async fn python_without_modal_is_a_warning() {
        let empty_path = tempfile::tempdir().unwrap();
        let check =
            modal_python_check(&env(&[("PATH", empty_path.path().to_str().unwrap())])).await;
        assert_eq!(check.status, CheckStatus::Warn);
        assert!(
            check.detail.starts_with("cannot run python3"),
            "{}",
            check.detail
        );
    }

    #[tokio::test]
    async fn the_artifacts_probe_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a/b/artifacts");
        let check = artifacts_check(&root).await;
        assert_eq!(check.status, CheckStatus::Ok, "{check:?}");
        assert!(
            check.detail.contains("does not exist yet"),
            "{}",
            check.detail
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        std::fs::create_dir(dir.path().join("root")).unwrap();
        let check = artifacts_check(&dir.path().join("root")).await;
        assert_eq!(check.status, CheckStatus::Ok, "{check:?}");
        assert_eq!(
            std::fs::read_dir(dir.path().join("root")).unwrap().count(),
            0
        );

        std::fs::write(dir.path().join("file"), b"x").unwrap();
        let check = artifacts_check(&dir.path().join("file")).await;
        assert_eq!(check.status, CheckStatus::Fail, "{check:?}");
        assert!(check.fix.unwrap().contains("--artifacts-root"));
    }

    #[tokio::test]
    async fn a_missing_ledger_is_not_created_and_a_good_one_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ledger.db");
        let url = format!("sqlite://{}", file.display());
        let check = ledger_check(&url, None).await;
        assert_eq!(check.status, CheckStatus::Warn, "{check:?}");
        assert!(!file.exists());

        let ledger = Ledger::open(&url).await.unwrap();
        ledger.set_budget("default", Some(5)).await.unwrap();
        ledger.close().await;
        let check = ledger_check(&url, None).await;
        assert_eq!(check.status, CheckStatus::Ok, "{check:?}");
        assert!(
            check.detail.ends_with(": 1 plans, 1 events verified"),
            "{}",
            check.detail
        );

        let check = ledger_check("mysql://nobody@127.0.0.1/x", None).await;
        assert_eq!(check.status, CheckStatus::Fail, "{check:?}");
    }

    #[tokio::test]
    async fn with_a_public_key_the_checkpoint_must_hold() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
        let signer = CheckpointSigningKey::generate(&dir.path().join("key")).unwrap();
        let public_key = signer.public_key().to_pem();
        let ledger = Ledger::open(&url).await.unwrap();
        ledger.set_budget("default", Some(5)).await.unwrap();

        let check = ledger_check(&url, Some(&public_key)).await;
        assert_eq!(
            check.status,
            CheckStatus::Fail,
            "no checkpoint yet: {check:?}"
        );
        assert!(
            check.fix.unwrap().contains("--public-key KEY"),
            "the fix checks the checkpoint too"
        );

        ledger.checkpoint(&signer).await.unwrap();
        ledger.close().await;
        let check = ledger_check(&url, Some(&public_key)).await;
        assert_eq!(check.status, CheckStatus::Ok, "{check:?}");
        assert!(
            check.detail.ends_with(", checkpoint 1 holds"),
            "{}",
            check.detail
        );

        let other = CheckpointSigningKey::generate(&dir.path().join("other")).unwrap();
        let check = ledger_check(&url, Some(&other.public_key().to_pem())).await;
        assert_eq!(check.status, CheckStatus::Fail, "{check:?}");
        assert!(
            check.detail.starts_with("ledger chain broken: "),
            "{}",
            check.detail
        );
    }

    #[test]
    fn loopback_registries_are_spoken_to_over_http() {
        let scheme = |raw: &str| registry_scheme(&raw.parse().unwrap());
        assert_eq!(scheme("127.0.0.1:5000/proctor/lane"), "http");
        assert_eq!(scheme("localhost:5000/a/b"), "http");
        assert_eq!(scheme("ghcr.io/acme/proctor"), "https");
        assert_eq!(
            sqlite_file("sqlite://.proctor/ledger.db"),
            Some(".proctor/ledger.db".into())
        );
        assert_eq!(sqlite_file("sqlite:///abs.db"), Some("/abs.db".into()));
        assert_eq!(sqlite_file("postgres://u@h/db"), None);
    }
}
