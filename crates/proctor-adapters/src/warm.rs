//! Warm containers: one container serves several runs of the same kind.
//!
//! Within a long-lived caller (`plan apply`, a server), a container started for a run is
//! kept after its envelope and serves later runs with the same [`WarmKey`] — image and
//! expected digest, processor ref, mode, environment, adapter options and answer limits —
//! up to a per-kind number of containers, each serving as many runs at once as its
//! `/healthz` says. A run that finds every container of its kind busy and the kind at its
//! limit waits for one (bounded by its own timeout and cancellation).
//!
//! Each run keeps its own execution id, write prefix and staging area. A warm container
//! sees only its own private directory at `/artifacts`, which starts empty: before a run,
//! [`WarmRoot::prepare`] creates the run's two directories there (its expanded write prefix
//! and `execution/{execution_id}`), walking the directory without ever following a link,
//! since the container owns everything in it; after the envelope, [`WarmRoot::move_out`]
//! renames both into the run's [`Staging`] area, which the container cannot reach, where
//! they are checked like a cold run's. Files a run left anywhere else never leave the
//! container's directory, which is removed with the container.
//!
//! A container whose run failed in the adapter — health, timeout, cancellation, a broken
//! connection, an early exit, an envelope that does not check — is discarded: removed once
//! its last run ends, never given another. [`WarmPool::close`] discards every container; a
//! container still serving a run is removed when that run ends. A container whose handle is
//! dropped without either (a panic) is removed in the background by its guard.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_util::future::join_all;
use proctor_contract::{CanonError, ErrorCode, RunPayload, WritePrefix, canonical_json};
use rustix::fs::{AtFlags, Gid, Mode, OFlags, Uid};
use rustix::io::Errno;
use tempfile::TempDir;
use tokio::sync::Notify;

use crate::cleanup::ContainerGuard;
use crate::container::ARTIFACTS_ROOT;
use crate::engine::Removal;
use crate::staging::{PRIVATE_MODE, hand_over, remove_private_dir};
use crate::transport::ProcessorClient;
use crate::{Invocation, Staging};

/// What makes two runs interchangeable for one container.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct WarmKey {
    image_id: String,
    expected_digest: String,
    processor_ref: String,
    mode: String,
    env: BTreeMap<String, String>,
    options: String,
    limits: (u64, u64),
}

impl WarmKey {
    /// The key of `invocation` run on `image_id`, expecting `expected_digest`.
    pub(crate) fn new(invocation: &Invocation, image_id: &str, expected_digest: &str) -> WarmKey {
        WarmKey {
            image_id: image_id.to_owned(),
            expected_digest: expected_digest.to_owned(),
            processor_ref: invocation.payload.processor_ref.to_string(),
            mode: invocation.payload.mode.to_string(),
            env: invocation.env.clone(),
            options: canonical_json(&invocation.options),
            limits: (
                invocation.limits.max_envelope_bytes,
                invocation.limits.max_health_bytes,
            ),
        }
    }
}

/// The warm containers of one adapter.
pub(crate) struct WarmPool {
    per_kind: usize,
    owner: String,
    state: Mutex<PoolState>,
    /// Signalled whenever a slot frees up, a start ends or the pool closes.
    changed: Notify,
}

#[derive(Default)]
struct PoolState {
    kinds: HashMap<WarmKey, Kind>,
    closed: bool,
    next_id: u64,
}

#[derive(Default)]
struct Kind {
    entries: Vec<Entry>,
    /// Containers being started for this kind, counted against the limit.
    starting: usize,
}

struct Entry {
    container: Arc<WarmContainer>,
    in_flight: usize,
    discarded: bool,
    parts: Option<Parts>,
}

/// What removing a container takes: its guard, then its socket directory.
struct Parts {
    guard: ContainerGuard,
    socket_dir: Option<TempDir>,
}

/// A started, healthy container that serves runs.
pub(crate) struct WarmContainer {
    id: u64,
    name: String,
    client: ProcessorClient,
    root: WarmRoot,
    capacity: usize,
}

impl WarmContainer {
    /// The container's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The HTTP client bound to the container.
    pub(crate) fn client(&self) -> &ProcessorClient {
        &self.client
    }

    /// The container's private `/artifacts` directory.
    pub(crate) fn root(&self) -> &WarmRoot {
        &self.root
    }
}

/// What [`WarmPool::acquire`] gives a run.
pub(crate) enum Lease {
    /// A slot on a running container.
    Warm(Slot),
    /// No free slot, but room for one more container of the kind: start it, then
    /// [`StartTicket::admit`] it.
    Start(StartTicket),
    /// The pool is closed: run in a container of the run's own.
    Cold,
}

/// One run's place on a warm container; give it back with [`Slot::release`].
pub(crate) struct Slot {
    pool: Arc<WarmPool>,
    key: WarmKey,
    container: Arc<WarmContainer>,
    released: bool,
}

/// The right to start one container of a kind.
pub(crate) struct StartTicket {
    pool: Arc<WarmPool>,
    key: WarmKey,
    used: bool,
}

impl std::fmt::Debug for WarmPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmPool")
            .field("per_kind", &self.per_kind)
            .finish_non_exhaustive()
    }
}

impl WarmPool {
    /// A pool of at most `per_kind` containers (at least one) per [`WarmKey`], kept by the
    /// process whose process key is `owner`.
    pub(crate) fn new(per_kind: usize, owner: String) -> WarmPool {
        WarmPool {
            per_kind: per_kind.max(1),
            owner,
            state: Mutex::default(),
            changed: Notify::new(),
        }
    }

    /// The process key of the process that keeps the pool.
    pub(crate) fn owner(&self) -> &str {
        &self.owner
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A free slot of kind `key`, the right to start a container, or — when neither is
    /// available — waits for one until `stopped` resolves with the reason to give up.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        key: &WarmKey,
        stopped: impl Future<Output = CanonError>,
    ) -> Result<Lease, CanonError> {
        let mut stopped = std::pin::pin!(stopped);
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            {
                let mut state = self.lock();
                if state.closed {
                    return Ok(Lease::Cold);
                }
                let kind = state.kinds.entry(key.clone()).or_default();
                if let Some(entry) = kind
                    .entries
                    .iter_mut()
                    .find(|entry| !entry.discarded && entry.in_flight < entry.container.capacity)
                {
                    entry.in_flight += 1;
                    return Ok(Lease::Warm(Slot {
                        pool: Arc::clone(self),
                        key: key.clone(),
                        container: Arc::clone(&entry.container),
                        released: false,
                    }));
                }
                if kind.entries.len() + kind.starting < self.per_kind {
                    kind.starting += 1;
                    return Ok(Lease::Start(StartTicket {
                        pool: Arc::clone(self),
                        key: key.clone(),
                        used: false,
                    }));
                }
            }
            tokio::select! {
                biased;
                reason = &mut stopped => return Err(reason),
                () = &mut changed => {}
            }
        }
    }

    /// Discards every container: idle ones are removed now, busy ones when their run
    /// ends. Later runs get [`Lease::Cold`].
    pub(crate) async fn close(&self) {
        let idle: Vec<Parts> = {
            let mut state = self.lock();
            state.closed = true;
            let mut idle = Vec::new();
            for kind in state.kinds.values_mut() {
                for entry in &mut kind.entries {
                    entry.discarded = true;
                }
                kind.entries.retain_mut(|entry| {
                    if entry.in_flight > 0 {
                        return true;
                    }
                    idle.extend(entry.parts.take());
                    false
                });
            }
            idle
        };
        self.changed.notify_waiters();
        join_all(idle.into_iter().map(remove_parts)).await;
    }

    /// Counts `slot`'s run as ended; a container discarded by it (or before) whose last run
    /// this was leaves the pool, and its parts are returned for removal.
    fn end_run(&self, key: &WarmKey, id: u64, reusable: bool) -> Option<Parts> {
        let parts = {
            let mut state = self.lock();
            let closed = state.closed;
            let kind = state.kinds.get_mut(key)?;
            let position = kind
                .entries
                .iter()
                .position(|entry| entry.container.id == id)?;
            let entry = &mut kind.entries[position];
            entry.in_flight -= 1;
            if !reusable || closed {
                entry.discarded = true;
            }
            if entry.discarded && entry.in_flight == 0 {
                kind.entries.remove(position).parts
            } else {
                None
            }
        };
        self.changed.notify_waiters();
        parts
    }
}

impl Slot {
    /// The container this slot is on.
    pub(crate) fn container(&self) -> &WarmContainer {
        &self.container
    }

    /// Ends the run on this slot; a run that failed in the adapter passes
    /// `reusable: false`, which discards the container. The container's removal, when this
    /// run was its last, is awaited and returned with the container's name.
    pub(crate) async fn release(
        mut self,
        reusable: bool,
    ) -> Option<(String, Result<Removal, CanonError>)> {
        self.released = true;
        let parts = self.pool.end_run(&self.key, self.container.id, reusable)?;
        let name = parts.guard.name().to_owned();
        Some((name, remove_parts(parts).await))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.released {
            // A run dropped half-way: its container cannot be trusted with another. The
            // guard, dropped with the parts, removes it in the background.
            drop(self.pool.end_run(&self.key, self.container.id, false));
        }
    }
}

impl StartTicket {
    /// Adds a started, healthy container, serving `capacity` runs at once, to the pool,
    /// and gives its first slot to the run that started it.
    pub(crate) fn admit(
        mut self,
        guard: ContainerGuard,
        socket_dir: Option<TempDir>,
        client: ProcessorClient,
        root: WarmRoot,
        capacity: usize,
    ) -> Slot {
        self.used = true;
        let container = {
            let mut state = self.pool.lock();
            state.next_id += 1;
            let container = Arc::new(WarmContainer {
                id: state.next_id,
                name: guard.name().to_owned(),
                client,
                root,
                capacity: capacity.max(1),
            });
            let closed = state.closed;
            let kind = state.kinds.entry(self.key.clone()).or_default();
            kind.starting -= 1;
            kind.entries.push(Entry {
                container: Arc::clone(&container),
                in_flight: 1,
                discarded: closed,
                parts: Some(Parts { guard, socket_dir }),
            });
            container
        };
        self.pool.changed.notify_waiters();
        Slot {
            pool: Arc::clone(&self.pool),
            key: self.key.clone(),
            container,
            released: false,
        }
    }
}

impl Drop for StartTicket {
    fn drop(&mut self) {
        if self.used {
            return;
        }
        if let Some(kind) = self.pool.lock().kinds.get_mut(&self.key) {
            kind.starting -= 1;
        }
        self.pool.changed.notify_waiters();
    }
}

/// Removes a container, then its socket directory.
async fn remove_parts(parts: Parts) -> Result<Removal, CanonError> {
    let removal = parts.guard.remove().await;
    drop(parts.socket_dir);
    removal
}

/// A warm container's private directory on the host, mounted at `/artifacts`; removed on
/// drop.
#[derive(Debug)]
pub(crate) struct WarmRoot {
    /// The private directory (proctor's own, mode 0700).
    dir: PathBuf,
    /// `dir/artifacts`, the container user's: what the container sees at `/artifacts`.
    artifacts: PathBuf,
    /// The container user.
    user: (u32, u32),
}

impl WarmRoot {
    /// A fresh root in the system's temporary directory, where [`Staging::create`] puts
    /// staging areas, so a run's directories move into its staging area by a rename.
    pub(crate) fn create(user: (u32, u32)) -> Result<WarmRoot, CanonError> {
        let failed = |error: std::io::Error| {
            CanonError::new(
                ErrorCode::AdapterInvocation,
                format!("cannot create a warm container's directory: {error}"),
            )
        };
        let dir = tempfile::Builder::new()
            .prefix("proctor-warm-")
            .permissions(std::fs::Permissions::from_mode(PRIVATE_MODE))
            .tempdir()
            .map_err(failed)?
            .keep();
        let root = WarmRoot {
            artifacts: dir.join("artifacts"),
            dir,
            user,
        };
        std::fs::create_dir(&root.artifacts)
            .and_then(|()| {
                std::fs::set_permissions(
                    &root.artifacts,
                    std::fs::Permissions::from_mode(PRIVATE_MODE),
                )
            })
            .and_then(|()| hand_over(&root.artifacts, user))
            .map_err(failed)?;
        Ok(root)
    }

    /// The host directory mounted at `/artifacts`.
    pub(crate) fn artifacts(&self) -> &Path {
        &self.artifacts
    }

    /// Creates `payload`'s write prefix and execution directory, fresh, for the container
    /// user. Either already existing (left by the container) is an error.
    pub(crate) fn prepare(&self, payload: &RunPayload) -> Result<(), CanonError> {
        let paths = RunPaths::of(payload).ok_or_else(|| not_warm(payload))?;
        for path in [&paths.prefix, &paths.execution] {
            self.make_fresh(path)
                .map_err(|error| self.error(payload, "cannot prepare", path, error))?;
        }
        Ok(())
    }

    /// Moves `payload`'s two directories into `staging`, replacing its empty ones.
    pub(crate) fn move_out(
        &self,
        payload: &RunPayload,
        staging: &Staging,
    ) -> Result<(), CanonError> {
        let paths = RunPaths::of(payload).ok_or_else(|| not_warm(payload))?;
        for (path, target) in [
            (&paths.prefix, staging.prefix_dir()),
            (&paths.execution, staging.execution_dir()),
        ] {
            self.rename_into(path, target)
                .map_err(|error| self.error(payload, "cannot stage", path, error))?;
        }
        Ok(())
    }

    /// Creates every missing directory of `path` below the root, never through a link;
    /// the last must not exist yet.
    fn make_fresh(&self, path: &[String]) -> std::io::Result<()> {
        let mut dir = open_dir(rustix::fs::CWD, &self.artifacts)?;
        for (index, name) in path.iter().enumerate() {
            let last = index + 1 == path.len();
            match rustix::fs::mkdirat(&dir, name.as_str(), Mode::from_raw_mode(PRIVATE_MODE)) {
                Ok(()) => rustix::fs::chownat(
                    &dir,
                    name.as_str(),
                    Some(Uid::from_raw(self.user.0)),
                    Some(Gid::from_raw(self.user.1)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?,
                Err(Errno::EXIST) if !last => {}
                Err(error) => return Err(error.into()),
            }
            dir = open_dir(&dir, name.as_str())?;
        }
        Ok(())
    }

    /// Renames `path` (below the root, reached without following a link) over the empty
    /// directory `target`, and checks that what arrived is a directory.
    fn rename_into(&self, path: &[String], target: &Path) -> std::io::Result<()> {
        let (name, parents) = path.split_last().ok_or(Errno::INVAL)?;
        let mut dir = open_dir(rustix::fs::CWD, &self.artifacts)?;
        for parent in parents {
            dir = open_dir(&dir, parent.as_str())?;
        }
        let target_parent = target.parent().ok_or(Errno::INVAL)?;
        let target_name = target.file_name().ok_or(Errno::INVAL)?;
        let staging = open_dir(rustix::fs::CWD, target_parent)?;
        rustix::fs::renameat(&dir, name.as_str(), &staging, target_name)?;
        let arrived = std::fs::symlink_metadata(target)?;
        if !arrived.is_dir() {
            return Err(Errno::NOTDIR.into());
        }
        Ok(())
    }

    fn error(
        &self,
        payload: &RunPayload,
        doing: &str,
        path: &[String],
        error: std::io::Error,
    ) -> CanonError {
        CanonError::new(
            ErrorCode::AdapterInvocation,
            format!(
                "{doing} {ARTIFACTS_ROOT}/{} of execution {} in its warm container: {error}",
                path.join("/"),
                payload.execution_id
            ),
        )
    }
}

impl Drop for WarmRoot {
    fn drop(&mut self) {
        remove_private_dir(&self.dir);
    }
}

/// A run's two directories, as path segments below `/artifacts`.
struct RunPaths {
    prefix: Vec<String>,
    execution: Vec<String>,
}

impl RunPaths {
    /// The paths of `payload`'s run, or `None` when it cannot run warm: a write prefix
    /// that is not below `/artifacts/` or lies in `/artifacts/execution/`.
    fn of(payload: &RunPayload) -> Option<RunPaths> {
        let prefix = WritePrefix::from_expanded(&payload.write_prefix).ok()?;
        let below_root = prefix
            .as_str()
            .strip_prefix(ARTIFACTS_ROOT)?
            .strip_prefix('/')?;
        let prefix: Vec<String> = below_root
            .split('/')
            .filter(|segment| !segment.is_empty())
            .map(str::to_owned)
            .collect();
        let plain = |segment: &String| !matches!(segment.as_str(), "." | "..");
        if prefix.is_empty() || prefix[0] == "execution" || !prefix.iter().all(plain) {
            return None;
        }
        let execution = vec!["execution".to_owned(), payload.execution_id.clone()];
        if !plain(&execution[1]) || execution[1].contains('/') {
            return None;
        }
        Some(RunPaths { prefix, execution })
    }
}

/// Whether `payload`'s run can take a warm container.
pub(crate) fn can_run_warm(payload: &RunPayload) -> bool {
    RunPaths::of(payload).is_some()
}

fn not_warm(payload: &RunPayload) -> CanonError {
    CanonError::new(
        ErrorCode::AdapterInvocation,
        format!(
            "write prefix `{}` cannot be staged in a warm container",
            payload.write_prefix
        ),
    )
}

/// Opens the directory `name` in `dir`, refusing a link.
fn open_dir(dir: impl std::os::fd::AsFd, name: impl rustix::path::Arg) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

#[cfg(test)]
mod tests {
    use proctor_contract::Mode;

    use super::*;
    use crate::staging::container_user;
    use crate::testing::invocation;

    #[test]
    fn a_runs_directories_are_made_fresh_and_moved_into_its_staging_area() {
        let root = WarmRoot::create(container_user().unwrap()).unwrap();
        let invocation = invocation(Mode::Mock);
        let payload = &invocation.payload;
        root.prepare(payload).unwrap();
        std::fs::write(root.artifacts().join("o/e1/outputs.json"), b"{}").unwrap();
        let again = root.prepare(payload).unwrap_err();
        assert_eq!(again.code(), ErrorCode::AdapterInvocation);
        assert!(again.message().contains("/artifacts/o/e1"), "{again}");
        root.move_out(payload, &invocation.staging).unwrap();
        let staged = invocation.staging.prefix_dir().join("outputs.json");
        assert_eq!(std::fs::read(staged).unwrap(), b"{}");
        assert!(invocation.staging.execution_dir().is_dir());
        assert!(!root.artifacts().join("o/e1").exists());
        assert!(!root.artifacts().join("execution/e1").exists());
    }

    #[test]
    fn a_link_the_container_planted_is_never_followed() {
        let outside = tempfile::tempdir().unwrap();
        let root = WarmRoot::create(container_user().unwrap()).unwrap();
        let invocation = invocation(Mode::Mock);
        let payload = &invocation.payload;
        let planted = root.artifacts().join("o");
        std::os::unix::fs::symlink(outside.path(), &planted).unwrap();
        let error = root.prepare(payload).unwrap_err();
        assert_eq!(error.code(), ErrorCode::AdapterInvocation);
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);

        // A run's directory swapped for a link stays where it is.
        std::fs::remove_file(&planted).unwrap();
        root.prepare(payload).unwrap();
        std::fs::remove_dir(planted.join("e1")).unwrap();
        std::os::unix::fs::symlink(outside.path(), planted.join("e1")).unwrap();
        let error = root.move_out(payload, &invocation.staging).unwrap_err();
        assert_eq!(error.code(), ErrorCode::AdapterInvocation);
        let staged = std::fs::symlink_metadata(invocation.staging.prefix_dir()).unwrap();
        assert!(staged.is_dir());
        assert_eq!(
            std::fs::read_dir(invocation.staging.prefix_dir())
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn only_prefixes_below_the_artifacts_root_and_outside_execution_run_warm() {
        let mut invocation = invocation(Mode::Mock);
        assert!(can_run_warm(&invocation.payload));
        invocation.payload.write_prefix = "/artifacts/execution/other/".into();
        assert!(!can_run_warm(&invocation.payload));
    }
}
