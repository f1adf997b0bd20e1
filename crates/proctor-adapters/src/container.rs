//! The container a run gets: its network, how the adapter reaches it, and its hardening.
//!
//! # How the adapter reaches the processor
//!
//! - **`mock`: no network at all** (`network_mode: none`). A container without a network
//!   cannot publish a port, and Docker does not publish ports for `internal` networks
//!   either, while reaching a container's own bridge address would mean talking to a
//!   private-range address. So the processor listens on a unix socket instead: the adapter
//!   bind-mounts a fresh, private host directory at [`SOCKET_DIR`] and sets
//!   `PROCTOR_SOCKET`; the SDK serves HTTP on that socket and the adapter speaks HTTP to
//!   the socket file. Nothing but that socket leaves the container.
//! - **`real`: the default bridge network** (the provider must be reachable), with the
//!   processor's port published on `127.0.0.1` only, on a port the engine picks.
//! - **`real` with `{"network":"host"}`**: host networking, `PROCTOR_BIND=127.0.0.1` and a
//!   free port, so a processor can reach a server listening on the host's loopback (an
//!   OpenAI-compatible test server, a local model server).
//!
//! # What the processor can write
//!
//! The run's [`Staging`] directories and nothing else: one at the expanded write prefix,
//! one at `/artifacts/execution/{execution_id}/` (the SDK writes `{root}/…` paths with
//! `PROCTOR_ARTIFACTS_ROOT=/artifacts`, creating `outputs/` below the prefix itself). The
//! engine creates both mount points on the read-only root filesystem, where every other
//! write fails; no other part of the World is mounted.
//!
//! What it may read of the World: its run's input artifacts ([`crate::InputFile`]), each
//! bind-mounted read-only at its world path, and nothing else.
//!
//! A warm container ([`crate::warm`]), which serves several runs one after another, gets a
//! private, initially empty directory at `/artifacts` instead; before each run the adapter
//! creates that run's two directories in it, and after the envelope it moves them into the
//! run's [`Staging`] area, out of the container's reach.
//!
//! Every container runs with no new privileges, all capabilities dropped, a read-only root
//! filesystem, memory (no swap), CPU and process-count limits, as an unprivileged user.
//! Secrets and pass-through variables are set in `real` mode only.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, PortBinding};
use proctor_contract::{CanonError, ErrorCode, Mode, RunPayload, WritePrefix};
use serde::Deserialize;

use crate::local::{LABEL_EXECUTION_ID, LABEL_REF, LABEL_WARM};
use crate::{InputFile, Invocation, Staging};

/// Where the socket directory is mounted inside the container.
pub(crate) const SOCKET_DIR: &str = "/run/proctor";
/// The socket's file name inside [`SOCKET_DIR`].
pub(crate) const SOCKET_NAME: &str = "processor.sock";
/// The artifacts root as the processor sees it (`PROCTOR_ARTIFACTS_ROOT`).
pub(crate) const ARTIFACTS_ROOT: &str = "/artifacts";
/// Processes (threads included) a processor may run.
const PIDS_LIMIT: i64 = 256;
/// The engine refuses memory limits below 6 MiB.
const MIN_MEMORY_BYTES: i64 = 6 * 1024 * 1024;

/// The network a run's container gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Network {
    /// No network; the processor answers on a unix socket (`mock`).
    None,
    /// The default bridge, port published on `127.0.0.1` (`real`).
    Bridge,
    /// The host's network, processor bound to `127.0.0.1:<port>` (`real`, on request).
    Host {
        /// The free host port the processor listens on.
        port: u16,
    },
}

/// The network named by `{"network": …}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum NetworkOption {
    /// The default bridge network.
    Bridge,
    /// The host's network.
    Host,
    /// No network at all, the processor answering on a unix socket as in `mock`: a `real`
    /// run kept offline (the conformance kit's canary run).
    None,
}

/// The local adapter's options (`--adapter-opts-json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LocalOptions {
    /// `bridge` (default in `real`), `host` or `none`; `real` mode only.
    #[serde(default)]
    pub(crate) network: Option<NetworkOption>,
    /// Extra container labels, e.g. `proctor.test=<id>`.
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, String>,
}

impl LocalOptions {
    /// Parses the options; `null` means none. Unknown keys are refused.
    pub(crate) fn parse(value: &serde_json::Value) -> Result<LocalOptions, CanonError> {
        if value.is_null() {
            return Ok(LocalOptions::default());
        }
        serde_json::from_value(value.clone()).map_err(|error| {
            CanonError::new(
                ErrorCode::AdapterInvocation,
                format!(
                    "invalid local adapter options: {error}; known: network (bridge|host|none), labels"
                ),
            )
        })
    }

    /// The network kind for a run in `mode`; asking for a network in `mock` is refused,
    /// since `mock` runs have none.
    pub(crate) fn network_option(&self, mode: Mode) -> Result<Option<NetworkOption>, CanonError> {
        match (mode, self.network) {
            (Mode::Mock, Some(_)) => Err(CanonError::new(
                ErrorCode::AdapterInvocation,
                "the network option applies to mode=real only; mock runs have no network",
            )),
            (Mode::Mock, None) => Ok(None),
            (Mode::Real, network) => Ok(Some(network.unwrap_or(NetworkOption::Bridge))),
        }
    }
}

/// A run's two staging directories and where its container sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StagingMounts<'a> {
    /// Host directory mounted at [`StagingMounts::prefix_target`].
    prefix_dir: &'a Path,
    /// The expanded write prefix, without its trailing `/`.
    prefix_target: String,
    /// Host directory mounted at [`StagingMounts::execution_target`].
    execution_dir: &'a Path,
    /// `/artifacts/execution/{execution_id}`.
    execution_target: String,
    /// The run's input artifacts, mounted read-only at their world paths.
    input_files: &'a [InputFile],
}

impl<'a> StagingMounts<'a> {
    /// The mounts of `staging` for `payload`'s run: the staging area must be this
    /// execution's, and the write prefix must neither lie in the execution directory nor
    /// contain it (`ERR_WRITE_PREFIX`).
    pub(crate) fn new(
        staging: &'a Staging,
        payload: &RunPayload,
    ) -> Result<StagingMounts<'a>, CanonError> {
        if staging.execution_id() != payload.execution_id {
            return Err(CanonError::new(
                ErrorCode::AdapterInvocation,
                format!(
                    "the staging area is execution {}'s, not {}'s",
                    staging.execution_id(),
                    payload.execution_id
                ),
            ));
        }
        let prefix = WritePrefix::from_expanded(&payload.write_prefix)?;
        let execution = format!("{ARTIFACTS_ROOT}/execution/{}/", payload.execution_id);
        if prefix.as_str().starts_with(&execution) || execution.starts_with(prefix.as_str()) {
            return Err(CanonError::new(
                ErrorCode::WritePrefix,
                format!(
                    "`{prefix}` overlaps {execution}, where the execution's receipt copy goes; \
                     choose a prefix outside it"
                ),
            ));
        }
        Ok(StagingMounts {
            prefix_dir: staging.prefix_dir(),
            prefix_target: prefix.as_str().trim_end_matches('/').to_owned(),
            execution_dir: staging.execution_dir(),
            execution_target: execution.trim_end_matches('/').to_owned(),
            input_files: staging.input_files(),
        })
    }
}

/// What a container may write.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mounts<'a> {
    /// One run's two staging directories.
    Execution(&'a StagingMounts<'a>),
    /// A warm container's private directory, mounted at [`ARTIFACTS_ROOT`], and the
    /// process key of the process that keeps it (its [`LABEL_WARM`]).
    Warm {
        /// The directory.
        dir: &'a Path,
        /// The keeping process.
        owner: &'a str,
    },
    /// A held container's private directory ([`crate::HeldContainer`]), mounted at
    /// [`ARTIFACTS_ROOT`] as a warm container's is.
    Held {
        /// The directory.
        dir: &'a Path,
    },
}

/// Everything that shapes one run's container.
pub(crate) struct ContainerSettings<'a> {
    /// The run.
    pub(crate) invocation: &'a Invocation,
    /// The parsed adapter options.
    pub(crate) options: &'a LocalOptions,
    /// The image to create the container from (an image ID).
    pub(crate) image_id: &'a str,
    /// The digest the processor reports (`PROCTOR_IMAGE_DIGEST`).
    pub(crate) expected_digest: &'a str,
    /// The network and transport.
    pub(crate) network: Network,
    /// `uid:gid` the processor runs as.
    pub(crate) user: (u32, u32),
    /// The only writable mounts besides the socket directory.
    pub(crate) mounts: Mounts<'a>,
    /// Absolute host path of the socket directory (`Network::None` only).
    pub(crate) socket_dir: Option<&'a Path>,
}

/// The create request for a run's container.
pub(crate) fn create_body(settings: &ContainerSettings<'_>) -> ContainerCreateBody {
    let invocation = settings.invocation;
    let spec = &invocation.spec;
    let port = match settings.network {
        Network::Host { port } => port,
        Network::None | Network::Bridge => spec.build.port,
    };
    let mut env = vec![
        format!("PROCTOR_PORT={port}"),
        format!("PROCTOR_IMAGE_DIGEST={}", settings.expected_digest),
        format!("PROCTOR_ARTIFACTS_ROOT={ARTIFACTS_ROOT}"),
    ];
    env.extend(
        proctor_deploy::runtime_env(&spec.runtime)
            .into_iter()
            .map(|(name, value)| format!("{name}={value}")),
    );
    let mut mounts = match settings.mounts {
        Mounts::Execution(staging) => [
            bind_mount(staging.prefix_dir, &staging.prefix_target),
            bind_mount(staging.execution_dir, &staging.execution_target),
        ]
        .into_iter()
        .chain(staging.input_files.iter().map(read_only_mount))
        .collect(),
        Mounts::Warm { dir, .. } | Mounts::Held { dir } => vec![bind_mount(dir, ARTIFACTS_ROOT)],
    };
    let mut host_config = HostConfig {
        security_opt: Some(vec!["no-new-privileges".to_owned()]),
        cap_drop: Some(vec!["ALL".to_owned()]),
        readonly_rootfs: Some(true),
        memory: Some(memory_bytes(spec.runtime.memory_gb)),
        memory_swap: Some(memory_bytes(spec.runtime.memory_gb)),
        nano_cpus: Some(nano_cpus(spec.runtime.cpu)),
        pids_limit: Some(PIDS_LIMIT),
        ..HostConfig::default()
    };
    let mut exposed_ports = None;
    match settings.network {
        Network::None => {
            host_config.network_mode = Some("none".to_owned());
            env.push(format!("PROCTOR_SOCKET={SOCKET_DIR}/{SOCKET_NAME}"));
            if let Some(socket_dir) = settings.socket_dir {
                mounts.push(bind_mount(socket_dir, SOCKET_DIR));
            }
        }
        Network::Bridge => {
            let container_port = format!("{port}/tcp");
            host_config.network_mode = Some("bridge".to_owned());
            host_config.port_bindings = Some(HashMap::from([(
                container_port.clone(),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".to_owned()),
                    host_port: Some(String::new()),
                }]),
            )]));
            exposed_ports = Some(vec![container_port]);
        }
        Network::Host { .. } => {
            host_config.network_mode = Some("host".to_owned());
            env.push("PROCTOR_BIND=127.0.0.1".to_owned());
        }
    }
    if invocation.payload.mode == Mode::Real {
        env.extend(
            invocation
                .env
                .iter()
                .map(|(name, value)| format!("{name}={value}")),
        );
    }
    host_config.mounts = Some(mounts);
    let mut labels: HashMap<String, String> = settings
        .options
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(
        LABEL_EXECUTION_ID.to_owned(),
        invocation.payload.execution_id.clone(),
    );
    labels.insert(
        LABEL_REF.to_owned(),
        invocation.payload.processor_ref.to_string(),
    );
    if let Mounts::Warm { owner, .. } = settings.mounts {
        labels.insert(LABEL_WARM.to_owned(), owner.to_owned());
    }
    ContainerCreateBody {
        image: Some(settings.image_id.to_owned()),
        user: Some(format!("{}:{}", settings.user.0, settings.user.1)),
        env: Some(env),
        labels: Some(labels),
        exposed_ports,
        host_config: Some(host_config),
        ..ContainerCreateBody::default()
    }
}

fn bind_mount(source: &Path, target: &str) -> Mount {
    Mount {
        source: Some(source.display().to_string()),
        target: Some(target.to_owned()),
        typ: Some(MountType::BIND),
        read_only: Some(false),
        ..Mount::default()
    }
}

/// An input artifact's file, read-only at its world path.
fn read_only_mount(input: &InputFile) -> Mount {
    Mount {
        read_only: Some(true),
        ..bind_mount(&input.source, input.path.as_str())
    }
}

/// `memory_gb` GiB in bytes, at least the engine's minimum.
fn memory_bytes(memory_gb: f64) -> i64 {
    // Float-to-int `as` saturates; the limit is far below i64::MAX anyway.
    ((memory_gb * 1024.0 * 1024.0 * 1024.0) as i64).max(MIN_MEMORY_BYTES)
}

/// `cpu` cores in billionths of a core, at least one millicore.
fn nano_cpus(cpu: f64) -> i64 {
    ((cpu * 1e9) as i64).max(1_000_000)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::invocation;

    fn body(invocation: &Invocation, network: Network) -> ContainerCreateBody {
        let options = LocalOptions::parse(&json!({"labels": {"proctor.test": "t1"}})).unwrap();
        let staging = StagingMounts::new(&invocation.staging, &invocation.payload).unwrap();
        create_body(&ContainerSettings {
            invocation,
            options: &options,
            image_id: "sha256:ab",
            expected_digest: "sha256:ab",
            network,
            user: (65532, 65532),
            mounts: Mounts::Execution(&staging),
            socket_dir: Some(Path::new("/tmp/s")),
        })
    }

    /// `(source, target, read_only)` of each mount.
    fn mounts(body: &ContainerCreateBody) -> Vec<(String, String, bool)> {
        let host = body.host_config.as_ref().unwrap();
        host.mounts
            .iter()
            .flatten()
            .map(|mount| {
                assert_eq!(mount.typ, Some(MountType::BIND));
                (
                    mount.source.clone().unwrap(),
                    mount.target.clone().unwrap(),
                    mount.read_only.unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn every_container_is_hardened_and_labelled() {
        for (mode, network) in [
            (Mode::Mock, Network::None),
            (Mode::Real, Network::Bridge),
            (Mode::Real, Network::Host { port: 4100 }),
        ] {
            let body = body(&invocation(mode), network);
            let host = body.host_config.as_ref().unwrap();
            assert_eq!(
                host.security_opt.as_deref(),
                Some(&["no-new-privileges".to_owned()][..])
            );
            assert_eq!(host.cap_drop.as_deref(), Some(&["ALL".to_owned()][..]));
            assert_eq!(host.readonly_rootfs, Some(true));
            assert_eq!(host.memory, Some(256 * 1024 * 1024));
            assert_eq!(host.memory_swap, host.memory);
            assert_eq!(host.nano_cpus, Some(500_000_000));
            assert_eq!(host.pids_limit, Some(PIDS_LIMIT));
            assert_eq!(body.user.as_deref(), Some("65532:65532"));
            let labels = body.labels.as_ref().unwrap();
            assert_eq!(labels["proctor.execution_id"], "e1");
            assert_eq!(labels["proctor.ref"], "text/stats@1");
            assert_eq!(labels["proctor.test"], "t1");
            let env = body.env.as_ref().unwrap();
            assert!(env.contains(&"PROCTOR_ARTIFACTS_ROOT=/artifacts".to_owned()));
            assert!(env.contains(&"PROCTOR_IMAGE_DIGEST=sha256:ab".to_owned()));
            assert!(env.contains(&"PROCTOR_CPU=0.5".to_owned()));
            assert!(env.contains(&"PROCTOR_MEMORY_GB=0.25".to_owned()));
            assert!(!env.iter().any(|var| var.starts_with("PROCTOR_GPU=")));
        }
    }

    #[test]
    fn a_requested_gpu_is_passed_to_the_container() {
        let mut invocation = invocation(Mode::Mock);
        invocation.spec.runtime.gpu = Some("A100".to_owned());
        let body = body(&invocation, Network::None);
        let env = body.env.as_ref().unwrap();
        assert!(env.contains(&"PROCTOR_GPU=A100".to_owned()), "{env:?}");
    }

    #[test]
    fn only_the_staging_directories_and_the_socket_are_mounted() {
        for (mode, network) in [
            (Mode::Mock, Network::None),
            (Mode::Real, Network::Bridge),
            (Mode::Real, Network::Host { port: 4100 }),
        ] {
            let invocation = invocation(mode);
            let staging = &invocation.staging;
            let mut expected = vec![
                (
                    staging.prefix_dir().display().to_string(),
                    "/artifacts/o/e1".to_owned(),
                    false,
                ),
                (
                    staging.execution_dir().display().to_string(),
                    "/artifacts/execution/e1".to_owned(),
                    false,
                ),
            ];
            if network == Network::None {
                expected.push(("/tmp/s".to_owned(), SOCKET_DIR.to_owned(), false));
            }
            assert_eq!(mounts(&body(&invocation, network)), expected, "{network:?}");
        }
    }

    #[test]
    fn input_artifacts_are_mounted_read_only_at_their_world_paths() {
        let mut invocation = invocation(Mode::Mock);
        let staging = Staging::create(&invocation.payload.execution_id)
            .unwrap()
            .with_input_files(vec![InputFile {
                path: proctor_contract::WorldPath::parse("/artifacts/inputs/b3:00/a.txt").unwrap(),
                source: "/world/inputs/b3:00/a.txt".into(),
            }]);
        invocation.staging = std::sync::Arc::new(staging);
        let mounts = mounts(&body(&invocation, Network::None));
        assert_eq!(mounts.len(), 4, "{mounts:?}");
        assert_eq!(
            mounts[2],
            (
                "/world/inputs/b3:00/a.txt".to_owned(),
                "/artifacts/inputs/b3:00/a.txt".to_owned(),
                true
            )
        );
        assert!(mounts.iter().filter(|(_, _, read_only)| *read_only).count() == 1);
    }

    #[test]
    fn staging_must_be_the_executions_and_apart_from_its_receipt_directory() {
        let mut invocation = invocation(Mode::Mock);
        for prefix in [
            "/artifacts/execution/e1/",
            "/artifacts/execution/e1/deeper/",
            "/artifacts/execution/",
        ] {
            invocation.payload.write_prefix = prefix.to_owned();
            let error = StagingMounts::new(&invocation.staging, &invocation.payload).unwrap_err();
            assert_eq!(error.code(), ErrorCode::WritePrefix, "{prefix}: {error}");
        }
        invocation.payload.write_prefix = "/artifacts/execution/e10/".to_owned();
        assert!(StagingMounts::new(&invocation.staging, &invocation.payload).is_ok());

        invocation.payload.execution_id = "e2".to_owned();
        let error = StagingMounts::new(&invocation.staging, &invocation.payload).unwrap_err();
        assert_eq!(error.code(), ErrorCode::AdapterInvocation);
        assert!(error.message().contains("staging area"), "{error}");
    }

    #[test]
    fn mock_has_no_network_no_port_and_no_secrets() {
        let body = body(&invocation(Mode::Mock), Network::None);
        let host = body.host_config.as_ref().unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert!(host.port_bindings.is_none() && body.exposed_ports.is_none());
        let env = body.env.unwrap();
        assert!(env.contains(&"PROCTOR_SOCKET=/run/proctor/processor.sock".to_owned()));
        assert!(
            !env.iter().any(|entry| entry.contains("sk-test-secret")),
            "{env:?}"
        );
    }

    #[test]
    fn real_publishes_on_loopback_only_and_passes_secrets() {
        let bridge = body(&invocation(Mode::Real), Network::Bridge);
        let host = bridge.host_config.as_ref().unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("bridge"));
        let bindings = host.port_bindings.as_ref().unwrap()["8000/tcp"]
            .as_ref()
            .unwrap();
        assert_eq!(bindings[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(
            bridge.exposed_ports.as_deref(),
            Some(&["8000/tcp".to_owned()][..])
        );
        assert!(
            bridge
                .env
                .as_ref()
                .unwrap()
                .contains(&"OPENAI_API_KEY=sk-test-secret".to_owned())
        );

        let host_network = body(&invocation(Mode::Real), Network::Host { port: 4100 });
        let host = host_network.host_config.as_ref().unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("host"));
        assert!(host.port_bindings.is_none());
        let env = host_network.env.unwrap();
        assert!(env.contains(&"PROCTOR_BIND=127.0.0.1".to_owned()));
        assert!(env.contains(&"PROCTOR_PORT=4100".to_owned()));
    }

    #[test]
    fn options_are_strict_and_mock_has_no_network_choice() {
        assert_eq!(
            LocalOptions::parse(&json!(null)).unwrap(),
            LocalOptions::default()
        );
        let host = LocalOptions::parse(&json!({"network": "host"})).unwrap();
        assert_eq!(
            host.network_option(Mode::Real).unwrap(),
            Some(NetworkOption::Host)
        );
        let err = host.network_option(Mode::Mock).unwrap_err();
        assert_eq!(err.code(), ErrorCode::AdapterInvocation);
        let default = LocalOptions::default();
        assert_eq!(
            default.network_option(Mode::Real).unwrap(),
            Some(NetworkOption::Bridge)
        );
        assert_eq!(default.network_option(Mode::Mock).unwrap(), None);
        let offline = LocalOptions::parse(&json!({"network": "none"})).unwrap();
        assert_eq!(
            offline.network_option(Mode::Real).unwrap(),
            Some(NetworkOption::None)
        );
        for bad in [
            json!({"netwrk": "host"}),
            json!({"network": "loopback"}),
            json!([1]),
        ] {
            let err = LocalOptions::parse(&bad).unwrap_err();
            assert!(
                err.message().contains("invalid local adapter options"),
                "{err}"
            );
        }
    }

    #[test]
    fn limits_have_floors() {
        assert_eq!(memory_bytes(0.0), MIN_MEMORY_BYTES);
        assert_eq!(memory_bytes(1.0), 1 << 30);
        assert_eq!(nano_cpus(2.0), 2_000_000_000);
        assert_eq!(nano_cpus(0.0), 1_000_000);
    }
}
