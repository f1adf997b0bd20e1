"""A run's evidence: the outputs index, the receipt, and writing them with the outputs
onto the directory that backs `/artifacts/` — each file atomically, all of them or none.

World path `/artifacts/x/y` is the file `{root}/x/y`, its canonical text taken verbatim.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import CanonError, ErrorCode
from ._json import dumps
from ._paths import parse_world_path

#: The prefix of every temporary file (the one the Rust side's atomic writes use, which
#: store listings skip).
TEMP_FILE_PREFIX = ".proctor-tmp-"

_temp_counter = itertools.count()


@dataclass(frozen=True)
class OutputEntry:
    """One output as the index and the envelope list it."""

    path: str
    cid: str
    size_bytes: int
    mime: str

    def to_json(self) -> dict[str, Any]:
        """The entry's fields in their wire order."""
        return {"path": self.path, "cid": self.cid, "size_bytes": self.size_bytes, "mime": self.mime}


def build_index(entries: Iterable[OutputEntry]) -> list[OutputEntry]:
    """Entries canonicalized and sorted by path; two that collide are
    `ERR_OUTPUT_DUPLICATE`."""
    by_path: dict[str, OutputEntry] = {}
    for entry in entries:
        path = parse_world_path(entry.path)
        if path in by_path:
            raise CanonError(ErrorCode.OUTPUT_DUPLICATE, f"`{entry.path}` is `{path}` again")
        by_path[path] = OutputEntry(path, entry.cid, entry.size_bytes, entry.mime)
    return [by_path[path] for path in sorted(by_path)]


def index_bytes(index: list[OutputEntry]) -> bytes:
    """`{write_prefix}outputs.json`: compact UTF-8 JSON."""
    return dumps({"outputs": [entry.to_json() for entry in index]}).encode("utf-8")


@dataclass
class Receipt:
    """`receipt.json`, written under the write prefix and under
    `/artifacts/execution/{execution_id}/`, byte-identical."""

    execution_id: str
    processor_ref: str
    image_digest: str
    env_fingerprint: str
    inputs_hash: str
    hash_schema: str
    outputs_index: str
    processor_info: str
    usage: dict[str, int]
    timestamp_utc: str
    duration_ms: int
    mode: str
    upstream: list[dict[str, str]]
    artifacts_read: list[dict[str, str]]

    def to_json(self) -> dict[str, Any]:
        """The receipt's fields in their wire order; `upstream` and `artifacts_read` only
        when not empty."""
        value: dict[str, Any] = {
            "execution_id": self.execution_id,
            "processor_ref": self.processor_ref,
            "image_digest": self.image_digest,
            "env_fingerprint": self.env_fingerprint,
            "inputs_hash": self.inputs_hash,
            "hash_schema": self.hash_schema,
            "outputs_index": self.outputs_index,
            "processor_info": self.processor_info,
            "usage": dict(sorted(self.usage.items())),
            "timestamp_utc": self.timestamp_utc,
            "duration_ms": self.duration_ms,
            "mode": self.mode,
        }
        if self.upstream:
            value["upstream"] = self.upstream
        if self.artifacts_read:
            value["artifacts_read"] = self.artifacts_read
        return value

    def to_bytes(self) -> bytes:
        """The exact bytes written to both receipt locations."""
        return dumps(self.to_json()).encode("utf-8")


def stable_part(receipt: dict[str, Any]) -> dict[str, Any]:
    """What two runs of the same inputs share: the receipt less `timestamp_utc`,
    `duration_ms`, `usage` and `execution_id`, whose value becomes `{execution_id}` in
    `outputs_index`."""
    stable = {
        key: value
        for key, value in receipt.items()
        if key not in ("timestamp_utc", "duration_ms", "usage", "execution_id")
    }
    stable["outputs_index"] = receipt["outputs_index"].replace(
        receipt["execution_id"], "{execution_id}"
    )
    return stable


@dataclass(frozen=True)
class PlannedFile:
    """A file to write: its world path and its bytes."""

    path: str
    data: bytes


@dataclass(frozen=True)
class Layout:
    """A run's files checked to fit side by side, and where its receipt goes."""

    files: list[PlannedFile]
    receipt_paths: list[str]


def fs_path(root: Path, path: str) -> Path:
    """The file backing an `/artifacts/` world path."""
    relative = path[1:]
    return root / relative.removeprefix("artifacts/")


def check_layout(files: list[PlannedFile], receipt_paths: list[str]) -> Layout:
    """Checks that `files` and a receipt at each of `receipt_paths` can be written side by
    side: each under `/artifacts/`, no path written twice with different bytes, no path
    both a file and a directory. Exact repeats are dropped."""
    receipts = sorted(set(receipt_paths))
    for path in [file.path for file in files] + receipts:
        if not path.startswith("/artifacts/"):
            raise CanonError(ErrorCode.BAD_PATH, f"`{path}` is not under /artifacts/")
    by_path: dict[str, bytes] = {}
    for file in files:
        if file.path in receipts or by_path.get(file.path, file.data) != file.data:
            raise CanonError(
                ErrorCode.BAD_PATH, f"`{file.path}` would be written twice with different bytes"
            )
        by_path[file.path] = file.data
    names = set(by_path) | set(receipts)
    for name in sorted(names):
        ancestor = name
        while "/" in ancestor:
            ancestor = ancestor.rsplit("/", 1)[0]
            if ancestor in names:
                raise CanonError(
                    ErrorCode.BAD_PATH,
                    f"`{ancestor}` would be both a file and the directory of `{name}`",
                )
    return Layout([PlannedFile(path, by_path[path]) for path in sorted(by_path)], receipts)


class _Journal:
    """What one `write_evidence` call has changed so far, to undo on failure."""

    def __init__(self) -> None:
        self.created_dirs: list[Path] = []
        self.written_files: list[Path] = []

    def roll_back(self, warn: Callable[[Path, OSError], None]) -> None:
        for file in reversed(self.written_files):
            try:
                file.unlink()
            except OSError as error:
                warn(file, error)
        for directory in reversed(self.created_dirs):
            try:
                directory.rmdir()
            except OSError as error:
                warn(directory, error)


def write_evidence(
    root: Path,
    layout: Layout,
    receipt: Callable[[], bytes],
    warn: Callable[[Path, OSError], None],
) -> None:
    """Writes the layout's files under `root`, then calls `receipt` — once they are all
    on disk — for the receipt's bytes and writes them at each receipt path. On the first
    failure removes what this call wrote and the directories it created (reporting what
    it could not undo to `warn`); a failed write is `ERR_OUTPUT_WRITE`."""
    journal = _Journal()
    try:
        _write_each(root, layout.files, journal)
        data = receipt()
        _write_each(root, [PlannedFile(path, data) for path in layout.receipt_paths], journal)
    except BaseException:
        journal.roll_back(warn)
        raise


def _write_each(root: Path, files: list[PlannedFile], journal: _Journal) -> None:
    for file in files:
        try:
            _write_one(root, file, journal)
        except OSError as error:
            raise CanonError(ErrorCode.OUTPUT_WRITE, f"`{file.path}`: {_os_error(error)}") from None


def _os_error(error: OSError) -> str:
    return f"{error.strerror or error} (os error {error.errno})" if error.errno else str(error)


def _write_one(root: Path, file: PlannedFile, journal: _Journal) -> None:
    target = fs_path(root, file.path)
    _create_dirs(target.parent, journal)
    existed = os.path.lexists(target)
    try:
        write_atomically(target, file.data)
    except OSError:
        # A failure after the rename (syncing the directory) leaves the new file in place.
        if not existed and os.path.lexists(target):
            journal.written_files.append(target)
        raise
    journal.written_files.append(target)


def _create_dirs(directory: Path, journal: _Journal) -> None:
    missing = []
    for ancestor in [directory, *directory.parents]:
        if ancestor.exists():
            break
        missing.append(ancestor)
    for ancestor in reversed(missing):
        try:
            ancestor.mkdir()
        except FileExistsError:
            continue
        journal.created_dirs.append(ancestor)


def write_atomically(path: Path, data: bytes) -> None:
    """Writes `data` to `path` atomically: a new temporary file beside it (never opened
    through a link), fsync, rename over `path`, fsync of the directory."""
    directory = path.parent
    while True:
        temp = directory / f"{TEMP_FILE_PREFIX}{os.getpid()}-{next(_temp_counter)}"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
