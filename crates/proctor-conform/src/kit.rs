//! The conformance run: resolve the image, hold a `mock` container for the contract checks,
//! then (when the processor declares secrets or pass-through variables) a `real` one for
//! the canary check; every container is removed before the report is made.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proctor_adapters::{
    DockerfileBuilds, HeldContainer, ImageBuild, ImageSource, Invocation, LocalAdapter,
    ResponseLimits, Staging, host_platform,
};
use proctor_contract::{
    CanonError, ErrorCode, Mode, PAYLOAD_SCHEMA, PinnedReference, ProcessorRef, Receipt,
    RunPayload, SuccessEnvelope, WorldPath, WritePrefix,
};
use proctor_registry::{ProcessorSpec, Registry, pinned_image, validate_inputs};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::checks::{self, MockRun, Verdict};
use crate::{
    BYTE_STABLE, CANARY_NOT_LEAKED, CHECKS, CIDS_MATCH, Check, ConformReport, ENVELOPE_VALID,
    ERRORS_CANONICAL, HEALTHZ, INDEX_SORTED_COMPACT, INDEX_UNDER_PREFIX, NO_NETWORK_IN_MOCK,
    NON_ROOT, RECEIPTS_IDENTICAL, SSE_VALID, STOPS_ON_SIGTERM, Status,
};

/// Where conformance runs write, as a template.
const WRITE_PREFIX: &str = "/artifacts/conform/{execution_id}/";
/// How long a processor may take to exit after SIGTERM.
const SIGTERM_GRACE: Duration = Duration::from_secs(10);

/// Which image [`conform`] checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageChoice {
    /// The digest `registry.yaml` pins for the host platform.
    Pinned,
    /// The image built from source, as `proctor run --build` builds it.
    Build {
        /// The Cargo workspace root.
        workspace_root: PathBuf,
    },
    /// Any image: a pinned reference `REGISTRY/REPO@sha256:…`, or a local image's name,
    /// tag or ID.
    Image(String),
}

/// What [`conform`] checks.
#[derive(Debug, Clone)]
pub struct ConformRequest {
    /// The registry root holding the processor's `registry.yaml`.
    pub registry_root: PathBuf,
    /// The processor, `ns/name@version`.
    pub processor_ref: String,
    /// The image.
    pub image: ImageChoice,
    /// The example whose inputs the runs use.
    pub example: String,
    /// Inputs to use instead of the example's.
    pub inputs: Option<Value>,
    /// Build arguments of a Dockerfile build (`BASE_IMAGE`), for [`ImageChoice::Build`].
    pub build_args: BTreeMap<String, String>,
}

/// Checks the processor `request` names and reports every check. An error is returned
/// only when no check could start: a bad ref, registry entry, example or inputs, an image
/// that cannot be had (`ERR_BUILD`, `ERR_IMAGE_UNPINNED`, …), or `cancel` (every container
/// is removed first).
pub async fn conform(
    request: &ConformRequest,
    cancel: &CancellationToken,
) -> Result<ConformReport, CanonError> {
    let processor_ref: ProcessorRef = request.processor_ref.parse()?;
    let registry = Registry::load(&request.registry_root)?;
    let spec = registry.get(&processor_ref)?.spec().clone();
    let inputs = match &request.inputs {
        Some(inputs) => inputs.clone(),
        None => example_inputs(&spec, &request.example)?,
    };
    validate_inputs(&spec, &inputs)?;
    let adapter = LocalAdapter::connect()?.with_dockerfile_builds(DockerfileBuilds {
        registry_root: request.registry_root.clone(),
        build_args: request.build_args.clone(),
    });
    let image = resolve_image(&adapter, &spec, &request.image).await?;
    let mut findings = Findings::default();
    let digest = check_mock(&adapter, &spec, &image, &inputs, &mut findings, cancel).await?;
    check_canaries(&adapter, &spec, &image, &inputs, &mut findings, cancel).await?;
    Ok(findings.report(&spec.processor_ref, digest))
}

/// The inputs of the example `name`.
fn example_inputs(spec: &ProcessorSpec, name: &str) -> Result<Value, CanonError> {
    match spec.examples.get(name) {
        Some(example) => Ok(example.inputs.clone()),
        None => Err(CanonError::new(
            ErrorCode::Inputs,
            format!(
                "{} has no example `{name}`; its examples: {}",
                spec.processor_ref,
                spec.examples.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// The image source both containers start from: a build is made once, here.
async fn resolve_image(
    adapter: &LocalAdapter,
    spec: &ProcessorSpec,
    choice: &ImageChoice,
) -> Result<ImageSource, CanonError> {
    Ok(match choice {
        ImageChoice::Pinned => ImageSource::Pinned {
            reference: pinned_image(spec, host_platform()?)?,
        },
        ImageChoice::Build { workspace_root } => {
            let built = adapter
                .build_image(&ImageBuild {
                    spec,
                    workspace_root,
                    platform: host_platform()?,
                })
                .await?;
            ImageSource::Local { image_id: built.id }
        }
        ImageChoice::Image(image) => match image.parse::<PinnedReference>() {
            Ok(reference) => ImageSource::Pinned { reference },
            Err(_) => ImageSource::Local {
                image_id: adapter.local_image_id(image).await?,
            },
        },
    })
}

/// One run of the example: its payload and staging area.
struct Run {
    payload: RunPayload,
    prefix: WritePrefix,
    staging: Arc<Staging>,
}

impl Run {
    /// A fresh execution of `inputs` in `mode`.
    fn new(spec: &ProcessorSpec, mode: Mode, inputs: &Value) -> Result<Run, CanonError> {
        let execution_id = format!("conform-{}", uuid::Uuid::new_v4().simple());
        let prefix = WritePrefix::expand(WRITE_PREFIX, &execution_id)?;
        let staging = Arc::new(Staging::create(&execution_id)?);
        Ok(Run {
            payload: RunPayload {
                schema: PAYLOAD_SCHEMA.to_owned(),
                execution_id,
                processor_ref: spec.processor_ref.clone(),
                mode,
                inputs: inputs.clone(),
                write_prefix: prefix.as_str().to_owned(),
                upstream: Vec::new(),
            },
            prefix,
            staging,
        })
    }

    /// The invocation that holds a container for this run's kind.
    fn invocation(
        &self,
        spec: &ProcessorSpec,
        image: &ImageSource,
        env: BTreeMap<String, String>,
    ) -> Invocation {
        Invocation {
            payload: self.payload.clone(),
            spec: spec.clone(),
            image: image.clone(),
            staging: Arc::clone(&self.staging),
            timeout: Duration::from_secs(spec.runtime.timeout_s),
            env,
            options: Value::Null,
            limits: ResponseLimits::default(),
        }
    }

    /// The bytes the processor wrote at `path`, below the write prefix.
    fn staged(&self, path: &WorldPath) -> Result<Vec<u8>, String> {
        let relative = path
            .as_str()
            .strip_prefix(self.prefix.as_str())
            .ok_or_else(|| format!("outside the write prefix {}", self.prefix))?;
        checks::read_regular(&self.staging.prefix_dir().join(relative))
    }

    /// The receipt copy at `/artifacts/execution/{execution_id}/`.
    fn execution_receipt(&self) -> Result<Vec<u8>, String> {
        checks::read_regular(&self.staging.execution_dir().join("receipt.json"))
    }

    /// Posts the payload to `path` on `held`; the envelope when it is a success, else
    /// why not.
    async fn post(
        &self,
        held: &HeldContainer,
        path: &str,
    ) -> Result<proctor_adapters::HttpAnswer, String> {
        held.run(path, &self.payload, &self.staging)
            .await
            .map_err(|error| format!("{path}: {error}"))
    }
}

/// A run's success envelope and receipt, for the byte-stability check.
struct Evidence {
    envelope: SuccessEnvelope,
    receipt: Option<Receipt>,
}

/// Holds a `mock` container and makes every check but the canary's; gives the image
/// digest the processor had to report, when the container got that far.
async fn check_mock(
    adapter: &LocalAdapter,
    spec: &ProcessorSpec,
    image: &ImageSource,
    inputs: &Value,
    findings: &mut Findings,
    cancel: &CancellationToken,
) -> Result<Option<String>, CanonError> {
    let first = Run::new(spec, Mode::Mock, inputs)?;
    let held = match adapter
        .hold(&first.invocation(spec, image, BTreeMap::new()), cancel)
        .await
    {
        Ok(held) => held,
        Err(error) if matches!(error.code(), ErrorCode::Interrupted | ErrorCode::Build) => {
            return Err(error);
        }
        Err(error) => {
            findings.set(HEALTHZ, Err(format!("no healthy container: {error}")));
            findings.fail_unset("not checked: the container never became healthy");
            return Ok(None);
        }
    };
    let digest = held.expected_digest().to_owned();
    let checked = tokio::select! {
        biased;
        () = cancel.cancelled() => Err(CanonError::new(
            ErrorCode::Interrupted,
            format!("conformance of {} was cancelled", spec.processor_ref),
        )),
        checked = contract_checks(&held, spec, inputs, &first, findings) => checked,
    };
    let removed = held.remove().await;
    checked?;
    removed?;
    Ok(Some(digest))
}

/// The checks one `mock` container answers, in order; SIGTERM last.
async fn contract_checks(
    held: &HeldContainer,
    spec: &ProcessorSpec,
    inputs: &Value,
    first: &Run,
    findings: &mut Findings,
) -> Result<(), CanonError> {
    let health = held.get("/healthz").await;
    findings.set(
        HEALTHZ,
        health
            .map_err(|error| error.to_string())
            .and_then(|answer| {
                checks::healthz(
                    answer.status,
                    &answer.body,
                    &spec.processor_ref,
                    held.expected_digest(),
                )
            }),
    );
    let user = held.image_user().await;
    findings.set(
        NON_ROOT,
        user.map_err(|error| error.to_string())
            .and_then(|user| checks::non_root(user.as_deref())),
    );

    let first_evidence = run_checks(held, first, findings).await;
    findings.set(
        NO_NETWORK_IN_MOCK,
        match (&first_evidence, held.network_mode()) {
            (Some(_), "none") => Ok("network mode none; the mock run succeeded".to_owned()),
            (Some(_), other) => Err(format!("the container had network mode {other}")),
            (None, _) => Err(
                "the mock run in a container without network failed (see run.envelope_valid)"
                    .to_owned(),
            ),
        },
    );

    let second = Run::new(spec, Mode::Mock, inputs)?;
    findings.set(
        BYTE_STABLE,
        match first_evidence {
            None => Err("not checked: run.envelope_valid failed".to_owned()),
            Some(first_evidence) => second_run(held, &second).await.and_then(|second_evidence| {
                let (Some(a), Some(b)) = (&first_evidence.receipt, &second_evidence.receipt) else {
                    return Err("not checked: a run left no valid receipt".to_owned());
                };
                checks::byte_stable(
                    &MockRun {
                        prefix: &first.prefix,
                        envelope: &first_evidence.envelope,
                        receipt: a,
                    },
                    &MockRun {
                        prefix: &second.prefix,
                        envelope: &second_evidence.envelope,
                        receipt: b,
                    },
                )
            }),
        },
    );

    findings.set(ERRORS_CANONICAL, refusals(held, &first.payload).await);

    let streamed = Run::new(spec, Mode::Mock, inputs)?;
    findings.set(
        SSE_VALID,
        streamed.post(held, "/run-stream").await.and_then(|answer| {
            checks::stream_valid(
                answer.status,
                &answer.body,
                &streamed.payload,
                held.expected_digest(),
            )
        }),
    );

    let signalled = Instant::now();
    findings.set(
        STOPS_ON_SIGTERM,
        match held.terminate(SIGTERM_GRACE).await {
            Ok(Some(code)) => Ok(format!(
                "exited with code {code} {} ms after SIGTERM",
                signalled.elapsed().as_millis()
            )),
            Ok(None) => Err(format!(
                "still running {} s after SIGTERM",
                SIGTERM_GRACE.as_secs()
            )),
            Err(error) => Err(error.to_string()),
        },
    );
    Ok(())
}

/// The first run and the checks of its answer and files; its evidence when it succeeded.
async fn run_checks(held: &HeldContainer, run: &Run, findings: &mut Findings) -> Option<Evidence> {
    let envelope = run.post(held, "/run").await.and_then(|answer| {
        checks::success_envelope(
            answer.status,
            &answer.body,
            &run.payload,
            held.expected_digest(),
        )
    });
    let envelope = match envelope {
        Ok((envelope, evidence)) => {
            findings.set(ENVELOPE_VALID, Ok(evidence));
            envelope
        }
        Err(why) => {
            findings.set(ENVELOPE_VALID, Err(why));
            for name in [
                INDEX_UNDER_PREFIX,
                INDEX_SORTED_COMPACT,
                CIDS_MATCH,
                RECEIPTS_IDENTICAL,
            ] {
                findings.set(
                    name,
                    Err("not checked: run.envelope_valid failed".to_owned()),
                );
            }
            return None;
        }
    };
    findings.set(
        INDEX_UNDER_PREFIX,
        checks::index_under_prefix(&envelope, &run.prefix),
    );
    findings.set(
        INDEX_SORTED_COMPACT,
        checks::index_sorted_compact(
            &run.prefix.index_path(),
            run.staged(&run.prefix.index_path()),
            &envelope,
        ),
    );
    findings.set(
        CIDS_MATCH,
        checks::cids_match(&envelope, |path| run.staged(path)),
    );
    let receipt = checks::receipts_identical(
        run.staged(&run.prefix.receipt_path()),
        run.execution_receipt(),
        &run.payload,
        &envelope,
    );
    let receipt = match receipt {
        Ok((receipt, evidence)) => {
            findings.set(RECEIPTS_IDENTICAL, Ok(evidence));
            Some(receipt)
        }
        Err(why) => {
            findings.set(RECEIPTS_IDENTICAL, Err(why));
            None
        }
    };
    Some(Evidence { envelope, receipt })
}

/// The second run of the same inputs, for the byte-stability check.
async fn second_run(held: &HeldContainer, run: &Run) -> Result<Evidence, String> {
    let answer = run.post(held, "/run").await?;
    let (envelope, _) = checks::success_envelope(
        answer.status,
        &answer.body,
        &run.payload,
        held.expected_digest(),
    )
    .map_err(|why| format!("the second run: {why}"))?;
    let receipt = checks::receipts_identical(
        run.staged(&run.prefix.receipt_path()),
        run.execution_receipt(),
        &run.payload,
        &envelope,
    )
    .ok()
    .map(|(receipt, _)| receipt);
    Ok(Evidence { envelope, receipt })
}

/// Every bad request, and whether each was refused as the contract says.
async fn refusals(held: &HeldContainer, payload: &RunPayload) -> Verdict {
    let mut passed = Vec::new();
    let mut failed = Vec::new();
    for request in checks::bad_requests(payload) {
        let verdict = match held
            .post("/run", request.content_type, request.body.clone())
            .await
        {
            Ok(answer) => checks::refusal(&request, answer.status, &answer.body),
            Err(error) => Err(format!("{}: {error}", request.case)),
        };
        match verdict {
            Ok(evidence) => passed.push(evidence),
            Err(evidence) => failed.push(evidence),
        }
    }
    if failed.is_empty() {
        Ok(passed.join("; "))
    } else {
        Err(failed.join("; "))
    }
}

/// The canary check: a `real` container with made-up values for every declared secret and
/// pass-through variable, one run of the example, and a search for the values in all it
/// answered, wrote and logged.
async fn check_canaries(
    adapter: &LocalAdapter,
    spec: &ProcessorSpec,
    image: &ImageSource,
    inputs: &Value,
    findings: &mut Findings,
    cancel: &CancellationToken,
) -> Result<(), CanonError> {
    let canaries: BTreeMap<String, String> = spec
        .secrets
        .required
        .iter()
        .chain(&spec.env)
        .map(|name| {
            (
                name.clone(),
                format!("proctor-canary-{}", uuid::Uuid::new_v4().simple()),
            )
        })
        .collect();
    if canaries.is_empty() {
        findings.not_applicable(
            CANARY_NOT_LEAKED,
            "the processor declares no secret and no pass-through variable",
        );
        return Ok(());
    }
    let run = Run::new(spec, Mode::Real, inputs)?;
    // Offline: the made-up values reach no upstream, and the run is as hermetic as a mock
    // one (so the check runs under CI too); a leak is a leak whether the call got out or not.
    let mut invocation = run.invocation(spec, image, canaries.clone());
    invocation.options = serde_json::json!({"network": "none"});
    let held = match adapter.hold(&invocation, cancel).await {
        Ok(held) => held,
        Err(error) if error.code() == ErrorCode::Interrupted => return Err(error),
        Err(error) => {
            findings.set(
                CANARY_NOT_LEAKED,
                Err(format!("no healthy real-mode container: {error}")),
            );
            return Ok(());
        }
    };
    let gathered = tokio::select! {
        biased;
        () = cancel.cancelled() => None,
        places = exposed_places(&held, &run) => Some(places),
    };
    let removed = held.remove().await;
    let Some(places) = gathered else {
        return Err(CanonError::new(
            ErrorCode::Interrupted,
            format!("conformance of {} was cancelled", spec.processor_ref),
        ));
    };
    removed?;
    findings.set(
        CANARY_NOT_LEAKED,
        checks::canaries_found(&canaries, &places),
    );
    Ok(())
}

/// Everything a `real` run exposed: its `/healthz` and `/run` answers, every file it
/// wrote and the container's log.
async fn exposed_places(held: &HeldContainer, run: &Run) -> Vec<(String, Vec<u8>)> {
    let mut places = Vec::new();
    if let Ok(health) = held.get("/healthz").await {
        places.push(("/healthz".to_owned(), health.body));
    }
    match run.post(held, "/run").await {
        Ok(answer) => places.push((
            format!("the /run answer (HTTP {})", answer.status),
            answer.body,
        )),
        Err(why) => places.push(("the /run failure".to_owned(), why.into_bytes())),
    }
    for (root, world) in [
        (run.staging.prefix_dir(), run.prefix.as_str().to_owned()),
        (
            run.staging.execution_dir(),
            format!("/artifacts/execution/{}/", run.payload.execution_id),
        ),
    ] {
        for (relative, bytes) in files_below(root) {
            places.push((format!("{world}{relative}"), bytes));
        }
    }
    places.push((
        "the container log".to_owned(),
        held.logs().await.into_bytes(),
    ));
    places
}

/// Every regular file below `root` (never through a link), by relative path.
fn files_below(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(path),
                Ok(kind) if kind.is_file() => {
                    if let (Ok(bytes), Ok(relative)) =
                        (std::fs::read(&path), path.strip_prefix(root))
                    {
                        found.push((relative.display().to_string(), bytes));
                    }
                }
                _ => {}
            }
        }
    }
    found.sort();
    found
}

/// The checks made so far.
#[derive(Debug, Default)]
struct Findings(BTreeMap<&'static str, Check>);

impl Findings {
    /// Records `name`'s verdict.
    fn set(&mut self, name: &'static str, verdict: Verdict) {
        let (status, evidence) = match verdict {
            Ok(evidence) => (Status::Pass, evidence),
            Err(evidence) => (Status::Fail, evidence),
        };
        self.0.insert(
            name,
            Check {
                name,
                status,
                evidence,
            },
        );
    }

    /// Records `name` as not applicable, saying why.
    fn not_applicable(&mut self, name: &'static str, why: &str) {
        self.0.insert(
            name,
            Check {
                name,
                status: Status::NotApplicable,
                evidence: why.to_owned(),
            },
        );
    }

    /// Fails every check of the `mock` container not recorded yet.
    fn fail_unset(&mut self, why: &str) {
        for name in CHECKS {
            if name != CANARY_NOT_LEAKED && !self.0.contains_key(name) {
                self.set(name, Err(why.to_owned()));
            }
        }
    }

    /// The report, checks in the order of [`CHECKS`].
    fn report(mut self, processor_ref: &ProcessorRef, digest: Option<String>) -> ConformReport {
        let checks: Vec<Check> = CHECKS
            .into_iter()
            .map(|name| {
                self.0.remove(name).unwrap_or(Check {
                    name,
                    status: Status::Fail,
                    evidence: "not checked".to_owned(),
                })
            })
            .collect();
        let failed: Vec<&str> = checks
            .iter()
            .filter(|check| check.status == Status::Fail)
            .map(|check| check.name)
            .collect();
        let error = (!failed.is_empty()).then(|| {
            CanonError::new(
                ErrorCode::Acceptance,
                format!(
                    "{processor_ref} does not conform: {} of {} checks failed: {}",
                    failed.len(),
                    checks.len(),
                    failed.join(", ")
                ),
            )
        });
        ConformReport {
            processor_ref: processor_ref.to_string(),
            image_digest: digest,
            ok: error.is_none(),
            checks,
            error,
        }
    }
}
