//! Stage, check, commit: what a processor wrote becomes part of the World only after every
//! file checks against the run and the envelope.
//!
//! The container wrote into a private staging area: one directory it saw at its expanded
//! write prefix, one it saw at `/artifacts/execution/{execution_id}/`. The container is gone
//! when [`check`] reads them, so nothing changes under it. The rules:
//!
//! - **Layout.** The prefix directory holds exactly `outputs.json`, `receipt.json` and the
//!   indexed files under `outputs/`; the execution directory exactly `receipt.json`. Every
//!   entry is a real directory or a regular file (found with `lstat`, never through a link);
//!   a link, FIFO, socket, device or any other entry is refused.
//! - **Outputs.** Each indexed output is a regular file under `{prefix}outputs/` whose size
//!   and content id match; two files that are one world path after canonicalization are
//!   `ERR_OUTPUT_DUPLICATE`. Their count, each one's size and their total size are within
//!   the run's [`Limits`], checked from the file sizes before any output is read.
//! - **Index.** Its bytes are the canonical index (compact, sorted, no duplicates) and list
//!   exactly the envelope's outputs.
//! - **Receipts.** Both copies exist, are byte-identical, parse as a receipt, and agree with
//!   the run: execution id, processor ref, image digest, mode, inputs hash, outputs index,
//!   environment fingerprint and the upstream outputs the inputs were resolved from.
//! - **Envelope.** Its mode is the requested one.
//!
//! Every read is bounded: outputs by the per-output limit, the index and receipts by
//! [`MAX_RECORD_FILE_BYTES`]. The check hashes outputs as it streams them. [`commit`] then
//! writes the evidence into the World's store (outputs, then the index, then the receipts,
//! so a half-committed execution never looks complete), refusing to replace anything
//! already there, and removes what it wrote if a write fails or the run is cancelled
//! meanwhile. It reads each output again, a few at a time ([`COMMIT_CONCURRENCY`]), and
//! puts it only if it still has the checked bytes, so memory holds a few outputs, never
//! all of them.
//!
//! A run on a remote adapter (Modal) has no staging area here: its processor wrote its
//! evidence into the World's object store itself. [`check_in_store`] applies the same rules
//! to what the store holds below the write prefix — layout (only the indexed outputs, the
//! index and the receipt), the canonical index listing the envelope's outputs, each output's
//! size (from the listing, within the limits, before any is read) and content id (hashed as
//! it streams), both receipts byte-identical and agreeing with the run — and commits
//! nothing: the evidence is already where it belongs. A missing or altered object is
//! `ERR_EVIDENCE`, as it would be in a staging area.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::StreamExt as _;
use proctor_contract::{
    ArtifactRead, ArtifactRef, CanonError, CidHasher, ErrorCode, HASH_SCHEMA, OutputEntry,
    OutputsIndex, Receipt, RunPayload, SuccessEnvelope, WorldPath, WritePrefix, cid,
    input_artifacts, inputs_hash,
};
use proctor_store::ArtifactStore;
use tokio_util::sync::CancellationToken;

use crate::run::Limits;

/// The largest index or receipt the check reads; a larger one is refused.
const MAX_RECORD_FILE_BYTES: u64 = 256 * 1024 * 1024;
/// Entries (files and directories) the check walks in one staging area besides twice the
/// output count limit; more is refused before the walk goes on.
const STAGED_ENTRIES_MARGIN: u64 = 100_000;

/// How many outputs [`commit`] reads and writes at once.
const COMMIT_CONCURRENCY: usize = 4;
/// The chunk the check hashes outputs by.
const HASH_CHUNK_BYTES: usize = 64 * 1024;

const INDEX_FILE: &str = "outputs.json";
const RECEIPT_FILE: &str = "receipt.json";

/// Where the container's two writable directories are on the host.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StagedDirs<'a> {
    /// Seen by the container at its expanded write prefix.
    pub(crate) prefix: &'a Path,
    /// Seen by the container at `/artifacts/execution/{execution_id}/`.
    pub(crate) execution: &'a Path,
}

/// Evidence that passed every check: the outputs' staged files, and the bytes of the index
/// and receipts, by world path.
#[derive(Debug)]
pub(crate) struct CheckedEvidence {
    outputs: Vec<CheckedOutput>,
    index: (WorldPath, Bytes),
    receipts: [(WorldPath, Bytes); 2],
}

/// An output that passed the check: the staged file it is committed from, and the size and
/// content id the check found.
#[derive(Debug)]
struct CheckedOutput {
    path: WorldPath,
    host: PathBuf,
    size_bytes: u64,
    cid: String,
}

impl CheckedOutput {
    /// The staged bytes, read again for the commit; they must still be the checked ones.
    fn read(&self) -> Result<Bytes, CanonError> {
        let bytes = read_regular(&self.host, &self.path, self.size_bytes)?;
        if cid(&bytes) != self.cid {
            return Err(refused(format!("`{}` changed after its check", self.path)));
        }
        Ok(bytes)
    }
}

impl CheckedEvidence {
    /// The content id of the committed `outputs.json`.
    pub(crate) fn index_cid(&self) -> String {
        cid(&self.index.1)
    }

    /// The content id of the committed receipt (both copies are the same bytes).
    pub(crate) fn receipt_cid(&self) -> String {
        cid(&self.receipts[0].1)
    }

    /// Every world path it commits, in commit order.
    fn paths(&self) -> impl Iterator<Item = &WorldPath> {
        self.outputs
            .iter()
            .map(|output| &output.path)
            .chain(std::iter::once(&self.index.0))
            .chain(self.receipts.iter().map(|(path, _)| path))
    }
}

fn refused(detail: impl Into<String>) -> CanonError {
    CanonError::new(ErrorCode::Evidence, detail)
}

/// The content ids a store check found: the index's and the receipt's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredEvidence {
    /// The content id of `outputs.json`.
    pub(crate) index_cid: String,
    /// The content id of the receipt (both copies are the same bytes).
    pub(crate) receipt_cid: String,
}

/// Checks the evidence a remote processor wrote into `store` against the payload and the
/// envelope, within `limits` (see the module docs).
pub(crate) async fn check_in_store(
    store: &dyn ArtifactStore,
    payload: &RunPayload,
    envelope: &SuccessEnvelope,
    limits: &Limits,
) -> Result<StoredEvidence, CanonError> {
    if envelope.meta.mode != payload.mode {
        return Err(refused(format!(
            "the envelope claims mode={}, the run was mode={}",
            envelope.meta.mode, payload.mode
        )));
    }
    check_declared_outputs(&envelope.outputs, limits)?;
    let prefix = WritePrefix::from_expanded(&payload.write_prefix)?;
    let unreadable = |path: &WorldPath, error| stored_unreadable(store, path, error);
    let below = WorldPath::parse(prefix.as_str())?;
    let listed = store
        .list(&below)
        .await
        .map_err(|error| unreadable(&below, error))?;
    let mut sizes: BTreeMap<WorldPath, u64> = BTreeMap::new();
    for object in listed {
        let path = object.path;
        if path != prefix.index_path() && path != prefix.receipt_path() {
            let name = path
                .as_str()
                .strip_prefix(prefix.as_str())
                .unwrap_or_default();
            if !name.starts_with("outputs/") {
                return Err(refused(format!(
                    "`{path}` is outside the declared layout (outputs/, outputs.json, receipt.json)"
                )));
            }
        }
        sizes.insert(path, object.size_bytes);
    }

    let index_path = prefix.index_path();
    let index_bytes = read_stored(store, &index_path, &sizes).await?;
    let index = OutputsIndex::from_bytes(&index_bytes)?;
    if index.to_bytes() != index_bytes.as_ref() {
        return Err(refused(format!(
            "`{index_path}` is not the canonical index (compact JSON, sorted by path)"
        )));
    }
    if index.outputs != envelope.outputs {
        return Err(refused(format!(
            "`{index_path}` does not list the envelope's outputs"
        )));
    }
    for entry in &index.outputs {
        match sizes.get(&entry.path) {
            Some(size) if *size == entry.size_bytes => {}
            Some(_) => {
                return Err(refused(format!(
                    "`{}` does not match its size and content id in the index",
                    entry.path
                )));
            }
            None => {
                return Err(refused(format!(
                    "`{}` is indexed but was not written to {}",
                    entry.path,
                    store.location()
                )));
            }
        }
    }
    let indexed: BTreeSet<&WorldPath> = index.outputs.iter().map(|entry| &entry.path).collect();
    if let Some(unlisted) = sizes.keys().find(|path| {
        **path != index_path && **path != prefix.receipt_path() && !indexed.contains(path)
    }) {
        return Err(refused(format!("`{unlisted}` was written but not indexed")));
    }
    for entry in &index.outputs {
        let found = stored_cid(store, &entry.path, entry.size_bytes)
            .await
            .map_err(|error| unreadable(&entry.path, error))?;
        if found.as_deref() != Some(entry.cid.as_str()) {
            return Err(refused(format!(
                "`{}` does not match its size and content id in the index",
                entry.path
            )));
        }
    }

    let receipt_path = prefix.receipt_path();
    let execution_receipt = WorldPath::execution_receipt(&payload.execution_id)?;
    let receipt_bytes = read_stored(store, &receipt_path, &sizes).await?;
    let receipt_copy = store
        .get(&execution_receipt)
        .await
        .map_err(|error| unreadable(&execution_receipt, error))?;
    if receipt_bytes != receipt_copy {
        return Err(refused(format!(
            "`{receipt_path}` and `{execution_receipt}` differ"
        )));
    }
    check_receipt(&receipt_bytes, &prefix, payload, envelope)?;
    Ok(StoredEvidence {
        index_cid: cid(&index_bytes),
        receipt_cid: cid(&receipt_bytes),
    })
}

/// The refusal for an object of `store` that cannot be read: missing, or a failed read.
fn stored_unreadable(
    store: &dyn ArtifactStore,
    path: &WorldPath,
    error: proctor_store::StoreError,
) -> CanonError {
    if error.is_not_found() {
        refused(format!("`{path}` was not written to {}", store.location()))
    } else {
        refused(format!(
            "cannot read `{path}` in {}: {error}",
            store.location()
        ))
    }
}

/// The bytes of a record (index, receipt) at `path`, refused unread when the listing gave
/// it more than [`MAX_RECORD_FILE_BYTES`]; missing from the listing is not written.
async fn read_stored(
    store: &dyn ArtifactStore,
    path: &WorldPath,
    sizes: &BTreeMap<WorldPath, u64>,
) -> Result<Bytes, CanonError> {
    match sizes.get(path) {
        None => Err(refused(format!(
            "`{path}` was not written to {}",
            store.location()
        ))),
        Some(size) if *size > MAX_RECORD_FILE_BYTES => Err(refused(format!(
            "`{path}` is {size} bytes, over the {MAX_RECORD_FILE_BYTES}-byte limit of a record"
        ))),
        Some(_) => store
            .get(path)
            .await
            .map_err(|error| stored_unreadable(store, path, error)),
    }
}

/// The content id of the object at `path`, hashed as it streams; `None` when it holds more
/// than `size_bytes` bytes (it changed since it was listed).
async fn stored_cid(
    store: &dyn ArtifactStore,
    path: &WorldPath,
    size_bytes: u64,
) -> Result<Option<String>, proctor_store::StoreError> {
    let mut stream = store.get_stream(path).await?;
    let mut hasher = CidHasher::default();
    while let Some(chunk) = stream.next().await {
        hasher.update(&chunk?);
        if hasher.len() > size_bytes {
            return Ok(None);
        }
    }
    Ok((hasher.len() == size_bytes).then(|| hasher.finish()))
}

/// Checks the staged evidence of a success against the payload and the envelope, within
/// `limits`.
pub(crate) fn check(
    staged: StagedDirs<'_>,
    payload: &RunPayload,
    envelope: &SuccessEnvelope,
    limits: &Limits,
) -> Result<CheckedEvidence, CanonError> {
    if envelope.meta.mode != payload.mode {
        return Err(refused(format!(
            "the envelope claims mode={}, the run was mode={}",
            envelope.meta.mode, payload.mode
        )));
    }
    let prefix = WritePrefix::from_expanded(&payload.write_prefix)?;
    let max_entries = limits
        .max_outputs
        .saturating_mul(2)
        .saturating_add(STAGED_ENTRIES_MARGIN);
    let prefix_files = walk(staged.prefix, max_entries)?;
    let execution_files = walk(staged.execution, max_entries)?;

    if let Some(stray) = execution_files.keys().find(|name| *name != RECEIPT_FILE) {
        return Err(refused(format!(
            "`/artifacts/execution/{}/{stray}` is not part of an execution's evidence",
            payload.execution_id
        )));
    }
    let staged_outputs = staged_outputs(&prefix, &prefix_files)?;
    check_output_limits(&staged_outputs, limits)?;

    let index_bytes = read_required(&prefix_files, INDEX_FILE, &prefix.index_path())?;
    let index = OutputsIndex::from_bytes(&index_bytes)?;
    if index.to_bytes() != index_bytes.as_ref() {
        return Err(refused(format!(
            "`{}` is not the canonical index (compact JSON, sorted by path)",
            prefix.index_path()
        )));
    }
    if index.outputs != envelope.outputs {
        return Err(refused(format!(
            "`{}` does not list the envelope's outputs",
            prefix.index_path()
        )));
    }
    let outputs = check_outputs(&index, staged_outputs, limits.max_output_bytes)?;

    let receipt_path = prefix.receipt_path();
    let execution_receipt = WorldPath::execution_receipt(&payload.execution_id)?;
    let receipt_bytes = read_required(&prefix_files, RECEIPT_FILE, &receipt_path)?;
    let receipt_copy = read_required(&execution_files, RECEIPT_FILE, &execution_receipt)?;
    if receipt_bytes != receipt_copy {
        return Err(refused(format!(
            "`{receipt_path}` and `{execution_receipt}` differ"
        )));
    }
    check_receipt(&receipt_bytes, &prefix, payload, envelope)?;

    Ok(CheckedEvidence {
        outputs,
        index: (prefix.index_path(), index_bytes),
        receipts: [
            (receipt_path, receipt_bytes),
            (execution_receipt, receipt_copy),
        ],
    })
}

/// The receipt parses and agrees with the run on every field the run determines.
fn check_receipt(
    bytes: &[u8],
    prefix: &WritePrefix,
    payload: &RunPayload,
    envelope: &SuccessEnvelope,
) -> Result<(), CanonError> {
    let receipt: Receipt = serde_json::from_slice(bytes).map_err(|error| {
        refused(format!(
            "`{}` is not a receipt: {error}",
            prefix.receipt_path()
        ))
    })?;
    let expected_hash = inputs_hash(&payload.inputs).value;
    let expected_index = prefix.index_path();
    let disagreements = [
        ("execution_id", receipt.execution_id == payload.execution_id),
        (
            "processor_ref",
            receipt.processor_ref == payload.processor_ref,
        ),
        (
            "image_digest",
            receipt.image_digest == envelope.meta.image_digest,
        ),
        ("mode", receipt.mode == payload.mode),
        ("inputs_hash", receipt.inputs_hash == expected_hash),
        ("hash_schema", receipt.hash_schema == HASH_SCHEMA),
        ("outputs_index", receipt.outputs_index == expected_index),
        (
            "env_fingerprint",
            receipt.env_fingerprint == envelope.meta.env_fingerprint,
        ),
        ("upstream", receipt.upstream == payload.upstream),
        (
            "artifacts_read",
            reads_are_inputs(&receipt.artifacts_read, payload),
        ),
    ];
    let wrong: Vec<&str> = disagreements
        .iter()
        .filter(|(_, agrees)| !agrees)
        .map(|(field, _)| *field)
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(refused(format!(
            "the receipt disagrees with the run on {}",
            wrong.join(", ")
        )))
    }
}

/// The receipt's `artifacts_read` are input artifacts of the payload, sorted by path, each
/// once: a processor cannot claim to have read what it was not given.
fn reads_are_inputs(reads: &[ArtifactRead], payload: &RunPayload) -> bool {
    let inputs: Vec<ArtifactRead> = input_artifacts(&payload.inputs)
        .unwrap_or_default()
        .iter()
        .map(ArtifactRef::read)
        .collect();
    reads.windows(2).all(|pair| pair[0].path < pair[1].path)
        && reads.iter().all(|read| inputs.contains(read))
}

/// The staged files under `outputs/`, by canonical world path; anything else in the prefix
/// directory besides the index and the receipt is refused, and so are two files that are
/// one world path after canonicalization.
fn staged_outputs(
    prefix: &WritePrefix,
    files: &BTreeMap<String, PathBuf>,
) -> Result<BTreeMap<WorldPath, PathBuf>, CanonError> {
    let mut outputs: BTreeMap<WorldPath, (String, PathBuf)> = BTreeMap::new();
    for (name, host) in files {
        if name == INDEX_FILE || name == RECEIPT_FILE {
            continue;
        }
        let Some(below) = name.strip_prefix("outputs/") else {
            return Err(refused(format!(
                "`{prefix}{name}` is outside the declared layout (outputs/, outputs.json, receipt.json)"
            )));
        };
        let path = prefix.output_path(below)?;
        let raw = format!("{prefix}{name}");
        if let Some((twin, _)) = outputs.insert(path.clone(), (raw.clone(), host.clone())) {
            return Err(CanonError::new(
                ErrorCode::OutputDuplicate,
                format!("`{twin}` and `{raw}` are both `{path}`"),
            ));
        }
    }
    outputs
        .into_iter()
        .map(|(path, (raw, host))| {
            if path.as_str() == raw {
                Ok((path, host))
            } else {
                Err(refused(format!(
                    "`{raw}` is not a canonical world path (`{path}`)"
                )))
            }
        })
        .collect()
}

/// The staged outputs are within `limits`: their count, each one's size and their sum, all
/// known from the file sizes before any is read. A refusal names the file, its size, the
/// limit and the flag that raises it.
fn check_output_limits(
    staged: &BTreeMap<WorldPath, PathBuf>,
    limits: &Limits,
) -> Result<(), CanonError> {
    check_output_count(staged.len(), limits)?;
    let sizes = staged.iter().map(|(world, host)| {
        let metadata = fs::symlink_metadata(host).map_err(|error| unreadable(host, &error))?;
        Ok((world, metadata.len()))
    });
    check_output_sizes(sizes, limits)
}

/// The outputs a remote adapter's envelope declares are within `limits`, by their declared
/// sizes, before any of them is read from the store.
fn check_declared_outputs(outputs: &[OutputEntry], limits: &Limits) -> Result<(), CanonError> {
    check_output_count(outputs.len(), limits)?;
    check_output_sizes(
        outputs
            .iter()
            .map(|output| Ok((&output.path, output.size_bytes))),
        limits,
    )
}

fn check_output_count(count: usize, limits: &Limits) -> Result<(), CanonError> {
    let count = u64::try_from(count).unwrap_or(u64::MAX);
    if count > limits.max_outputs {
        return Err(refused(format!(
            "{count} outputs were written, more than the limit of {}; raise --max-outputs \
             (PROCTOR_MAX_OUTPUTS) to allow them",
            limits.max_outputs
        )));
    }
    Ok(())
}

fn check_output_sizes<'a>(
    sizes: impl Iterator<Item = Result<(&'a WorldPath, u64), CanonError>>,
    limits: &Limits,
) -> Result<(), CanonError> {
    let mut total = 0u64;
    for sized in sizes {
        let (world, size) = sized?;
        if size > limits.max_output_bytes {
            return Err(refused(format!(
                "`{world}` is {size} bytes, over the {}-byte limit per output; raise \
                 --max-output-bytes (PROCTOR_MAX_OUTPUT_BYTES) to allow it",
                limits.max_output_bytes
            )));
        }
        total = total.saturating_add(size);
        if total > limits.max_outputs_total_bytes {
            return Err(refused(format!(
                "the outputs reach {total} bytes with `{world}` ({size} bytes), over the \
                 {}-byte limit for all outputs of an execution; raise \
                 --max-outputs-total-bytes (PROCTOR_MAX_OUTPUTS_TOTAL_BYTES) to allow them",
                limits.max_outputs_total_bytes
            )));
        }
    }
    Ok(())
}

/// Every indexed output is a staged file of its size and content id, hashed up to
/// `max_output_bytes`, and every staged file is indexed.
fn check_outputs(
    index: &OutputsIndex,
    mut staged: BTreeMap<WorldPath, PathBuf>,
    max_output_bytes: u64,
) -> Result<Vec<CheckedOutput>, CanonError> {
    let mut outputs = Vec::with_capacity(index.outputs.len());
    for entry in &index.outputs {
        let Some(host) = staged.remove(&entry.path) else {
            return Err(refused(format!(
                "`{}` is indexed but was not written",
                entry.path
            )));
        };
        let (size_bytes, content_id) = hash_regular(&host, &entry.path, max_output_bytes)?;
        if size_bytes != entry.size_bytes || content_id != entry.cid {
            return Err(refused(format!(
                "`{}` does not match its size and content id in the index",
                entry.path
            )));
        }
        outputs.push(CheckedOutput {
            path: entry.path.clone(),
            host,
            size_bytes,
            cid: content_id,
        });
    }
    if let Some(unlisted) = staged.keys().next() {
        return Err(refused(format!("`{unlisted}` was written but not indexed")));
    }
    Ok(outputs)
}

/// The bytes of a required evidence file of the walk.
fn read_required(
    files: &BTreeMap<String, PathBuf>,
    name: &str,
    world: &WorldPath,
) -> Result<Bytes, CanonError> {
    match files.get(name) {
        Some(host) => read_regular(host, world, MAX_RECORD_FILE_BYTES),
        None => Err(refused(format!("`{world}` was not written"))),
    }
}

/// Every regular file below `root`, by its path relative to `root` (`/`-separated). The
/// walk never follows a link: each entry is typed with `lstat`, and only real directories
/// are entered. Links, FIFOs, sockets, devices and names that are not UTF-8 are refused;
/// directories hold no evidence of their own. More than `max_entries` entries are refused.
fn walk(root: &Path, max_entries: u64) -> Result<BTreeMap<String, PathBuf>, CanonError> {
    let mut files = BTreeMap::new();
    let mut pending = vec![(root.to_path_buf(), String::new())];
    let mut seen = 0u64;
    while let Some((dir, relative)) = pending.pop() {
        let entries = fs::read_dir(&dir).map_err(|error| unreadable(&dir, &error))?;
        for entry in entries {
            seen += 1;
            if seen > max_entries {
                return Err(refused(format!(
                    "more than {max_entries} files and directories were written; raise \
                     --max-outputs (PROCTOR_MAX_OUTPUTS) to allow them"
                )));
            }
            let entry = entry.map_err(|error| unreadable(&dir, &error))?;
            let host = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                return Err(refused(format!(
                    "`{}` has a name that is not UTF-8",
                    host.display()
                )));
            };
            let name = format!("{relative}{name}");
            let kind = fs::symlink_metadata(&host)
                .map_err(|error| unreadable(&host, &error))?
                .file_type();
            if kind.is_dir() {
                pending.push((host, format!("{name}/")));
            } else if kind.is_file() {
                files.insert(name, host);
            } else {
                return Err(refused(format!(
                    "`{name}` is a {}, not a regular file",
                    describe(kind)
                )));
            }
        }
    }
    Ok(files)
}

/// What a non-regular, non-directory entry is, for messages.
fn describe(kind: fs::FileType) -> &'static str {
    if kind.is_symlink() {
        "symbolic link"
    } else if kind.is_fifo() {
        "FIFO"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "device"
    } else {
        "special file"
    }
}

/// Reads a regular file without following a link or blocking on a special file, at most
/// `max_bytes`.
fn read_regular(host: &Path, world: &WorldPath, max_bytes: u64) -> Result<Bytes, CanonError> {
    let file = open_regular(host, world, max_bytes)?;
    read_bounded(file, world, max_bytes)
}

/// The size and content id of a regular file, opened as [`read_regular`] does and hashed
/// chunk by chunk, at most `max_bytes`.
fn hash_regular(
    host: &Path,
    world: &WorldPath,
    max_bytes: u64,
) -> Result<(u64, String), CanonError> {
    let mut reader = open_regular(host, world, max_bytes)?.take(max_bytes.saturating_add(1));
    let mut hasher = CidHasher::default();
    let mut chunk = vec![0; HASH_CHUNK_BYTES];
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(read) => hasher.update(chunk.get(..read).unwrap_or_default()),
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(refused(format!("cannot read `{world}`: {error}"))),
        }
    }
    if hasher.len() > max_bytes {
        return Err(refused(format!(
            "`{world}` grew over the {max_bytes}-byte limit"
        )));
    }
    Ok((hasher.len(), hasher.finish()))
}

/// Opens a regular file of at most `max_bytes` without following a link or blocking on a
/// special file.
fn open_regular(host: &Path, world: &WorldPath, max_bytes: u64) -> Result<File, CanonError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(host)
        .map_err(|error| refused(format!("cannot open `{world}`: {error}")))?;
    let metadata = file
        .metadata()
        .map_err(|error| refused(format!("cannot stat `{world}`: {error}")))?;
    if !metadata.is_file() {
        return Err(refused(format!("`{world}` is not a regular file")));
    }
    if metadata.len() > max_bytes {
        return Err(refused(format!(
            "`{world}` is {} bytes, over the {max_bytes}-byte limit",
            metadata.len()
        )));
    }
    Ok(file)
}

fn read_bounded(file: File, world: &WorldPath, max_bytes: u64) -> Result<Bytes, CanonError> {
    let mut bytes = Vec::new();
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|error| refused(format!("cannot read `{world}`: {error}")))?;
    if u64::try_from(bytes.len()).map_or(true, |len| len > max_bytes) {
        return Err(refused(format!(
            "`{world}` grew over the {max_bytes}-byte limit"
        )));
    }
    Ok(Bytes::from(bytes))
}

fn unreadable(path: &Path, error: &std::io::Error) -> CanonError {
    refused(format!(
        "cannot read the staging area at `{}`: {error}",
        path.display()
    ))
}

/// Writes checked evidence into the World's store, refusing to replace anything; on a
/// failed write, removes what this commit wrote.
pub(crate) async fn commit(
    store: &dyn ArtifactStore,
    evidence: &CheckedEvidence,
    cancel: &CancellationToken,
) -> Result<(), CanonError> {
    let commit_failed = |path: &WorldPath, error: proctor_store::StoreError| {
        CanonError::new(
            ErrorCode::OutputWrite,
            format!("cannot commit `{path}` to {}: {error}", store.location()),
        )
    };
    let targets: BTreeSet<&WorldPath> = evidence.paths().collect();
    for path in &targets {
        match store.head(path).await {
            Ok(_) => {
                return Err(CanonError::new(
                    ErrorCode::OutputWrite,
                    format!(
                        "`{path}` is already in the World; an execution never replaces another's evidence"
                    ),
                ));
            }
            Err(error) if error.is_not_found() => {}
            Err(error) => return Err(commit_failed(path, error)),
        }
    }
    // The outputs are written a few at a time, each read from staging just before its put;
    // the index follows them, and the receipts come last, so an interrupted commit never
    // leaves evidence that looks complete.
    let mut written: Vec<&WorldPath> = Vec::new();
    // Collected first: a stream mapping through a closure would make the commit's future
    // (and so `Engine::run`'s) not `Send`, a known limit of the compiler's lifetime checks.
    let puts: Vec<_> = evidence
        .outputs
        .iter()
        .map(|output| async move {
            if cancel.is_cancelled() {
                return (&output.path, Err(interrupted()));
            }
            let put = match output.read() {
                Ok(bytes) => store
                    .put(&output.path, bytes)
                    .await
                    .map_err(|error| commit_failed(&output.path, error)),
                Err(error) => Err(error),
            };
            (&output.path, put)
        })
        .collect();
    let outputs = futures_util::stream::iter(puts)
        .buffer_unordered(COMMIT_CONCURRENCY)
        .collect()
        .await;
    settle_stage(store, outputs, &mut written).await?;
    let records: [Vec<&(WorldPath, Bytes)>; 2] =
        [vec![&evidence.index], evidence.receipts.iter().collect()];
    for stage in records {
        if cancel.is_cancelled() {
            roll_back(store, &written).await;
            return Err(interrupted());
        }
        let puts = stage.into_iter().map(|(path, bytes)| async move {
            let put = store.put(path, bytes.clone()).await;
            (path, put.map_err(|error| commit_failed(path, error)))
        });
        let results = futures_util::future::join_all(puts).await;
        settle_stage(store, results, &mut written).await?;
    }
    Ok(())
}

/// A commit stopped by cancellation; what it wrote is removed.
fn interrupted() -> CanonError {
    CanonError::new(
        ErrorCode::Interrupted,
        "interrupted while committing the evidence; nothing of it was kept",
    )
}

/// Adds a stage's successful writes to `written`; if any write failed, removes everything
/// written so far and returns the first failure.
async fn settle_stage<'a>(
    store: &dyn ArtifactStore,
    stage: Vec<(&'a WorldPath, Result<(), CanonError>)>,
    written: &mut Vec<&'a WorldPath>,
) -> Result<(), CanonError> {
    let mut failure = None;
    for (path, put) in stage {
        match put {
            Ok(()) => written.push(path),
            Err(error) => failure = failure.or(Some(error)),
        }
    }
    match failure {
        None => Ok(()),
        Some(error) => {
            roll_back(store, written).await;
            Err(error)
        }
    }
}

/// Removes what a commit wrote, best effort: the reason it stopped is the error to report.
async fn roll_back(store: &dyn ArtifactStore, written: &[&WorldPath]) {
    for done in written {
        let _ = store.delete(done).await;
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use proctor_contract::{Mode, OutputEntry, PAYLOAD_SCHEMA, SuccessMeta, UpstreamOutput};
    use proctor_store::{ByteStream, FsStore, ObjectInfo, StoreError};
    use serde_json::json;

    use super::*;

    const ID: &str = "0b9c1e52-58f1-4a8e-8f0e-9d2b7f6f9c11";

    struct Fixture {
        _dir: tempfile::TempDir,
        prefix: PathBuf,
        execution: PathBuf,
        payload: RunPayload,
        envelope: SuccessEnvelope,
    }

    impl Fixture {
        fn staged(&self) -> StagedDirs<'_> {
            StagedDirs {
                prefix: &self.prefix,
                execution: &self.execution,
            }
        }

        fn write(&self, name: &str, bytes: &[u8]) {
            let path = self.prefix.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, bytes).unwrap();
        }

        fn check(&self) -> Result<CheckedEvidence, CanonError> {
            self.check_within(&Limits::default())
        }

        fn check_within(&self, limits: &Limits) -> Result<CheckedEvidence, CanonError> {
            check(self.staged(), &self.payload, &self.envelope, limits)
        }
    }

    /// A well-behaved execution's staged evidence with one output, `a.txt`.
    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("prefix");
        let execution = dir.path().join("execution");
        fs::create_dir_all(&prefix).unwrap();
        fs::create_dir_all(&execution).unwrap();
        let write_prefix = WritePrefix::expand("/artifacts/o/{execution_id}/", ID).unwrap();
        let payload = RunPayload {
            schema: PAYLOAD_SCHEMA.to_owned(),
            execution_id: ID.to_owned(),
            processor_ref: "text/stats@1".parse().unwrap(),
            mode: Mode::Mock,
            inputs: json!({"schema": "v1"}),
            write_prefix: write_prefix.as_str().to_owned(),
            upstream: Vec::new(),
        };
        let output = b"hello";
        let index = OutputsIndex {
            outputs: vec![OutputEntry {
                path: write_prefix.output_path("a.txt").unwrap(),
                cid: cid(output),
                size_bytes: output.len() as u64,
                mime: "text/plain".to_owned(),
            }],
        };
        let meta = SuccessMeta {
            image_digest: format!("sha256:{}", "ab".repeat(32)),
            env_fingerprint: "mode=mock".to_owned(),
            duration_ms: 1,
            mode: Mode::Mock,
        };
        let receipt = Receipt {
            execution_id: ID.to_owned(),
            processor_ref: payload.processor_ref.clone(),
            image_digest: meta.image_digest.clone(),
            env_fingerprint: meta.env_fingerprint.clone(),
            inputs_hash: inputs_hash(&payload.inputs).value,
            hash_schema: HASH_SCHEMA.to_owned(),
            outputs_index: write_prefix.index_path(),
            processor_info: "test".to_owned(),
            usage: Default::default(),
            timestamp_utc: "2026-01-01T00:00:00Z".to_owned(),
            duration_ms: 1,
            mode: Mode::Mock,
            upstream: Vec::new(),
            artifacts_read: Vec::new(),
        };
        let envelope = match proctor_contract::Envelope::success(
            ID,
            index.outputs.clone(),
            write_prefix.index_path(),
            meta,
        ) {
            proctor_contract::Envelope::Success(success) => success,
            proctor_contract::Envelope::Error(_) => unreachable!(),
        };
        let fixture = Fixture {
            _dir: dir,
            prefix,
            execution,
            payload,
            envelope,
        };
        fixture.write("outputs/a.txt", output);
        fixture.write(INDEX_FILE, &index.to_bytes());
        fixture.write(RECEIPT_FILE, &receipt.to_bytes());
        fs::write(fixture.execution.join(RECEIPT_FILE), receipt.to_bytes()).unwrap();
        fixture
    }

    fn refused_with(fixture: &Fixture, code: ErrorCode, fragment: &str) {
        let error = fixture.check().unwrap_err();
        assert_eq!(error.code(), code, "{error}");
        assert!(error.message().contains(fragment), "{error}");
    }

    #[test]
    fn well_behaved_evidence_checks() {
        let checked = fixture().check().unwrap();
        assert_eq!(checked.paths().count(), 4);
        assert!(checked.index_cid().starts_with("b3:"));
    }

    /// The fixture's evidence committed to a fresh filesystem store, as a remote processor
    /// would have written it there.
    async fn stored(fixture: &Fixture) -> (tempfile::TempDir, FsStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::new(dir.path());
        let checked = fixture.check().unwrap();
        commit(&store, &checked, &CancellationToken::new())
            .await
            .unwrap();
        (dir, store)
    }

    async fn check_stored(
        fixture: &Fixture,
        store: &FsStore,
    ) -> Result<StoredEvidence, CanonError> {
        check_in_store(
            store,
            &fixture.payload,
            &fixture.envelope,
            &Limits::default(),
        )
        .await
    }

    #[tokio::test]
    async fn evidence_in_the_store_is_checked_like_staged_evidence() {
        let fixture = fixture();
        let checked = fixture.check().unwrap();
        let (_dir, store) = stored(&fixture).await;
        let found = check_stored(&fixture, &store).await.unwrap();
        assert_eq!(found.index_cid, checked.index_cid());
        assert_eq!(found.receipt_cid, checked.receipt_cid());

        let prefix = WritePrefix::from_expanded(&fixture.payload.write_prefix).unwrap();
        let output = prefix.output_path("a.txt").unwrap();
        let cases: [(&str, WorldPath, Option<&[u8]>); 5] = [
            ("size and content id", output.clone(), Some(b"HELLO")),
            ("was not written to file://", output, None),
            (
                "was not written to file://",
                WorldPath::execution_receipt(ID).unwrap(),
                None,
            ),
            (
                "is outside the declared layout",
                WorldPath::parse(&format!("{prefix}extra.txt")).unwrap(),
                Some(b"x"),
            ),
            (
                "was written but not indexed",
                prefix.output_path("b.txt").unwrap(),
                Some(b"x"),
            ),
        ];
        for (fragment, path, bytes) in cases {
            let (_dir, store) = stored(&fixture).await;
            match bytes {
                Some(bytes) => store.put(&path, Bytes::from_static(bytes)).await.unwrap(),
                None => store.delete(&path).await.unwrap(),
            }
            let error = check_stored(&fixture, &store).await.unwrap_err();
            assert_eq!(error.code(), ErrorCode::Evidence, "{error}");
            assert!(error.message().contains(fragment), "{fragment}: {error}");
        }
    }

    #[test]
    fn bogus_successes_are_refused() {
        let absent = fixture();
        fs::remove_file(absent.prefix.join("outputs/a.txt")).unwrap();
        refused_with(&absent, ErrorCode::Evidence, "indexed but was not written");

        let altered = fixture();
        altered.write("outputs/a.txt", b"HELLO");
        refused_with(&altered, ErrorCode::Evidence, "size and content id");

        let not_a_receipt = fixture();
        not_a_receipt.write(RECEIPT_FILE, b"{}");
        fs::write(not_a_receipt.execution.join(RECEIPT_FILE), b"{}").unwrap();
        refused_with(&not_a_receipt, ErrorCode::Evidence, "is not a receipt");

        let copies_differ = fixture();
        fs::write(copies_differ.execution.join(RECEIPT_FILE), b"{}").unwrap();
        refused_with(&copies_differ, ErrorCode::Evidence, "differ");

        let mut claims_real = fixture();
        claims_real.envelope.meta.mode = Mode::Real;
        refused_with(&claims_real, ErrorCode::Evidence, "claims mode=real");

        let mut other_inputs = fixture();
        other_inputs.payload.inputs = json!({"schema": "v1", "text": "x"});
        refused_with(&other_inputs, ErrorCode::Evidence, "inputs_hash");

        let mut other_upstream = fixture();
        other_upstream.payload.upstream = vec![UpstreamOutput {
            execution_id: "e0".to_owned(),
            path: WorldPath::parse("/artifacts/o/e0/outputs/a.txt").unwrap(),
            cid: cid(b"upstream"),
        }];
        refused_with(
            &other_upstream,
            ErrorCode::Evidence,
            "disagrees with the run on upstream",
        );

        let unlisted = fixture();
        unlisted.write("outputs/b.txt", b"extra");
        refused_with(&unlisted, ErrorCode::Evidence, "not indexed");

        // A receipt may only say it read the run's own input artifacts.
        let given = proctor_contract::ArtifactRef {
            path: WorldPath::parse("/artifacts/inputs/b3:00/a.txt").unwrap(),
            cid: cid(b"given"),
            mime: "text/plain".to_owned(),
        };
        let claimed = |read: ArtifactRead| {
            let mut fixture = fixture();
            fixture.payload.inputs = json!({"schema": "v1", "text": given.to_value()});
            let mut receipt: Receipt =
                serde_json::from_slice(&fs::read(fixture.prefix.join(RECEIPT_FILE)).unwrap())
                    .unwrap();
            receipt.inputs_hash = inputs_hash(&fixture.payload.inputs).value;
            receipt.artifacts_read = vec![read];
            fixture.write(RECEIPT_FILE, &receipt.to_bytes());
            fs::write(fixture.execution.join(RECEIPT_FILE), receipt.to_bytes()).unwrap();
            fixture
        };
        assert!(claimed(given.read()).check().is_ok());
        let forged = ArtifactRead {
            cid: cid(b"other"),
            ..given.read()
        };
        refused_with(
            &claimed(forged),
            ErrorCode::Evidence,
            "disagrees with the run on artifacts_read",
        );

        let outside = fixture();
        outside.write("elsewhere.txt", b"x");
        refused_with(&outside, ErrorCode::Evidence, "outside the declared layout");

        let stray_execution_file = fixture();
        fs::write(stray_execution_file.execution.join("x"), b"x").unwrap();
        refused_with(&stray_execution_file, ErrorCode::Evidence, "not part of");

        let pretty_index = fixture();
        let index = fs::read(pretty_index.prefix.join(INDEX_FILE)).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&index).unwrap();
        pretty_index.write(
            INDEX_FILE,
            serde_json::to_string_pretty(&value).unwrap().as_bytes(),
        );
        refused_with(&pretty_index, ErrorCode::Evidence, "canonical index");
    }

    #[test]
    fn outputs_over_a_limit_are_refused_naming_the_file_the_limit_and_the_flag() {
        let limits = |max_output_bytes, max_outputs_total_bytes, max_outputs| Limits {
            max_output_bytes,
            max_outputs_total_bytes,
            max_outputs,
            ..Limits::default()
        };
        assert!(fixture().check_within(&limits(5, 5, 1)).is_ok());

        // `b.txt` is not indexed: the limits are checked before the index is read.
        let two = fixture();
        two.write("outputs/b.txt", b"world!");
        let refusal = |limits: Limits| {
            let error = two.check_within(&limits).unwrap_err();
            assert_eq!(error.code(), ErrorCode::Evidence, "{error}");
            error.message()
        };
        let file = refusal(limits(5, 100, 10));
        assert!(
            file.contains(&format!(
                "`/artifacts/o/{ID}/outputs/b.txt` is 6 bytes, over the 5-byte limit per \
                 output; raise --max-output-bytes (PROCTOR_MAX_OUTPUT_BYTES)"
            )),
            "{file}"
        );
        let total = refusal(limits(100, 10, 10));
        assert!(
            total.contains(&format!(
                "the outputs reach 11 bytes with `/artifacts/o/{ID}/outputs/b.txt` (6 bytes), \
                 over the 10-byte limit for all outputs of an execution; raise \
                 --max-outputs-total-bytes (PROCTOR_MAX_OUTPUTS_TOTAL_BYTES)"
            )),
            "{total}"
        );
        let count = refusal(limits(100, 100, 1));
        assert!(
            count.contains(
                "2 outputs were written, more than the limit of 1; raise --max-outputs \
                 (PROCTOR_MAX_OUTPUTS)"
            ),
            "{count}"
        );
    }

    #[test]
    fn the_walk_stops_past_its_entry_limit() {
        let fixture = fixture();
        // `outputs/`, `outputs/a.txt`, `outputs.json` and `receipt.json`.
        assert_eq!(walk(&fixture.prefix, 4).unwrap().len(), 3);
        let error = walk(&fixture.prefix, 3).unwrap_err();
        assert_eq!(error.code(), ErrorCode::Evidence);
        assert!(
            error
                .message()
                .contains("more than 3 files and directories were written; raise --max-outputs"),
            "{error}"
        );
    }

    #[test]
    fn links_fifos_and_devices_are_refused() {
        let link = fixture();
        fs::remove_file(link.prefix.join("outputs/a.txt")).unwrap();
        symlink("/etc/hostname", link.prefix.join("outputs/a.txt")).unwrap();
        refused_with(&link, ErrorCode::Evidence, "symbolic link");

        let linked_dir = fixture();
        fs::remove_dir_all(linked_dir.prefix.join("outputs")).unwrap();
        symlink("/etc", linked_dir.prefix.join("outputs")).unwrap();
        refused_with(&linked_dir, ErrorCode::Evidence, "symbolic link");

        let fifo = fixture();
        let path = fifo.prefix.join("outputs/a.txt");
        fs::remove_file(&path).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        refused_with(&fifo, ErrorCode::Evidence, "FIFO");
    }

    #[test]
    fn normalization_twins_are_duplicates() {
        let twins = fixture();
        twins.write("outputs/caf\u{e9}.txt", b"1");
        twins.write("outputs/cafe\u{301}.txt", b"2");
        refused_with(
            &twins,
            ErrorCode::OutputDuplicate,
            "duplicate output after canonicalization",
        );
    }

    #[tokio::test]
    async fn commit_writes_everything_and_never_replaces() {
        let fixture = fixture();
        let checked = fixture.check().unwrap();
        let world = tempfile::tempdir().unwrap();
        let store = FsStore::new(world.path());
        commit(&store, &checked, &CancellationToken::new())
            .await
            .unwrap();
        let staged = |name: &str| Bytes::from(fs::read(fixture.prefix.join(name)).unwrap());
        let expected = [
            (&checked.outputs[0].path, staged("outputs/a.txt")),
            (&checked.index.0, staged(INDEX_FILE)),
            (&checked.receipts[0].0, staged(RECEIPT_FILE)),
            (&checked.receipts[1].0, staged(RECEIPT_FILE)),
        ];
        for (path, bytes) in expected {
            assert_eq!(store.get(path).await.unwrap(), bytes, "{path}");
        }
        let again = commit(&store, &checked, &CancellationToken::new())
            .await
            .unwrap_err();
        assert_eq!(again.code(), ErrorCode::OutputWrite);
        assert!(again.message().contains("already in the World"), "{again}");
    }

    #[tokio::test]
    async fn an_output_changed_after_its_check_is_not_committed() {
        for replacement in [&b"HELLO"[..], b"hello, grown"] {
            let fixture = fixture();
            let checked = fixture.check().unwrap();
            fixture.write("outputs/a.txt", replacement);
            let world = tempfile::tempdir().unwrap();
            let store = FsStore::new(world.path());
            let error = commit(&store, &checked, &CancellationToken::new())
                .await
                .unwrap_err();
            assert_eq!(error.code(), ErrorCode::Evidence, "{error}");
            assert!(error.message().contains("outputs/a.txt`"), "{error}");
            assert!(
                walk(world.path(), 100).unwrap().is_empty(),
                "nothing committed"
            );
        }
    }

    /// A store that cancels its run's token once the first write is done.
    #[derive(Debug)]
    struct CancelAfterFirstPut {
        inner: FsStore,
        cancel: CancellationToken,
    }

    #[async_trait::async_trait]
    impl ArtifactStore for CancelAfterFirstPut {
        fn location(&self) -> String {
            self.inner.location()
        }
        async fn put(&self, path: &WorldPath, bytes: Bytes) -> Result<(), StoreError> {
            let put = self.inner.put(path, bytes).await;
            self.cancel.cancel();
            put
        }
        async fn put_stream(&self, path: &WorldPath, stream: ByteStream) -> Result<(), StoreError> {
            let put = self.inner.put_stream(path, stream).await;
            self.cancel.cancel();
            put
        }
        async fn get(&self, path: &WorldPath) -> Result<Bytes, StoreError> {
            self.inner.get(path).await
        }
        async fn get_stream(&self, path: &WorldPath) -> Result<ByteStream, StoreError> {
            self.inner.get_stream(path).await
        }
        async fn head(&self, path: &WorldPath) -> Result<ObjectInfo, StoreError> {
            self.inner.head(path).await
        }
        async fn list(&self, prefix: &WorldPath) -> Result<Vec<ObjectInfo>, StoreError> {
            self.inner.list(prefix).await
        }
        async fn delete(&self, path: &WorldPath) -> Result<(), StoreError> {
            self.inner.delete(path).await
        }
    }

    #[tokio::test]
    async fn a_commit_cancelled_halfway_removes_what_it_wrote() {
        let fixture = fixture();
        let checked = fixture.check().unwrap();
        let world = tempfile::tempdir().unwrap();
        let cancel = CancellationToken::new();
        let store = CancelAfterFirstPut {
            inner: FsStore::new(world.path()),
            cancel: cancel.clone(),
        };
        let error = commit(&store, &checked, &cancel).await.unwrap_err();
        assert_eq!(error.code(), ErrorCode::Interrupted, "{error}");
        assert!(
            walk(world.path(), 100).unwrap().is_empty(),
            "the output written before the cancellation is removed"
        );
    }

    #[test]
    fn declared_outputs_are_held_to_the_limits() {
        let output = |name: &str, size_bytes: u64| OutputEntry {
            path: WorldPath::parse(&format!("/artifacts/o/{name}")).unwrap(),
            cid: cid(b""),
            size_bytes,
            mime: "text/plain".to_owned(),
        };
        let outputs = [output("a", 3), output("b", 3)];
        let limits = |max_outputs, max_output_bytes, max_outputs_total_bytes| Limits {
            max_outputs,
            max_output_bytes,
            max_outputs_total_bytes,
            ..Limits::default()
        };
        assert!(check_declared_outputs(&outputs, &limits(2, 3, 6)).is_ok());
        for (tight, flag) in [
            (limits(1, 3, 6), "--max-outputs"),
            (limits(2, 2, 6), "--max-output-bytes"),
            (limits(2, 3, 5), "--max-outputs-total-bytes"),
        ] {
            let error = check_declared_outputs(&outputs, &tight).unwrap_err();
            assert_eq!(error.code(), ErrorCode::Evidence);
            assert!(error.message().contains(flag), "{error}");
        }
    }
}
