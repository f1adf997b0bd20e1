"""Input artifacts: files a run reads, named in its inputs by content as
`{"$artifact": "<world path>", "cid": "b3:…", "mime": "…"}` (the contract's `ArtifactRef`).

The SDK checks every such object of the inputs before the provider runs, and hands a
provider an artifact's bytes only once they match the content id the inputs name — never
through a symbolic link, never a file that is not a regular file — remembering what it
handed over for the receipt's `artifacts_read`.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import blake3

from ._errors import CanonError, ErrorCode
from ._evidence import fs_path
from ._serde import SerdeError, read_artifact_ref

#: The key that makes an object an input artifact.
ARTIFACT_KEY = "$artifact"
_HEX_DIGITS = "0123456789abcdef"
_READ_CHUNK_BYTES = 64 * 1024

#: An artifact as (canonical world path, content id, media type).
Artifact = tuple[str, str, str]


def _invalid(detail: str) -> CanonError:
    return CanonError(ErrorCode.INPUTS, detail)


def input_artifacts(inputs: Any) -> list[Artifact]:
    """Every input artifact `inputs` names, sorted by path, each once: each object holding
    `$artifact` must be exactly an artifact reference, and one path must not carry two
    content ids. Anything else is `ERR_INPUTS`."""
    found: dict[str, Artifact] = {}
    pending = [inputs]
    while pending:
        value = pending.pop()
        if isinstance(value, dict) and ARTIFACT_KEY in value:
            try:
                artifact = read_artifact_ref(value)
            except SerdeError as error:
                raise _invalid(
                    'a `$artifact` object must be exactly {"$artifact": "/artifacts/…", '
                    f'"cid": "b3:…", "mime": "…"}}: {error}'
                ) from None
            _check_artifact(artifact)
            path, cid, _ = artifact
            seen = found.get(path)
            if seen is None:
                found[path] = artifact
            elif seen[1] != cid:
                raise _invalid(f"input artifact `{path}` is named with two content ids")
        elif isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return [found[path] for path in sorted(found)]


def _check_artifact(artifact: Artifact) -> None:
    path, cid, mime = artifact
    if not path.startswith("/artifacts/") or path.endswith("/"):
        raise _invalid(f"input artifact `{path}` must be an exact path under /artifacts/")
    digits = cid.removeprefix("b3:") if cid.startswith("b3:") else ""
    if len(digits) != 64 or any(c not in _HEX_DIGITS for c in digits):
        raise _invalid(
            f"input artifact `{path}`: content id `{cid}` is not `b3:` and 64 lowercase hex digits"
        )
    kind, slash, sub = mime.split(";", 1)[0].partition("/")
    if not (slash and kind and sub) or not all("!" <= c <= "~" or c == " " for c in mime):
        raise _invalid(f"input artifact `{path}`: media type `{mime}` is not `type/subtype`")


class ArtifactReader:
    """One run's input artifacts, and what of them was read."""

    def __init__(self, root: Path, artifacts: list[Artifact]) -> None:
        self._root = root
        self._artifacts = set(artifacts)
        self._reads: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def read(self, reference: Mapping[str, Any]) -> bytes:
        """The bytes of the artifact `reference` (a `$artifact` object of the inputs),
        checked against its content id: `ERR_INPUTS` for one the inputs do not name,
        `ERR_NOT_FOUND` for a missing or unreadable file (a link, not a regular file),
        `ERR_ARTIFACT_MISMATCH` for other bytes."""
        try:
            artifact = read_artifact_ref(dict(reference))
        except (SerdeError, TypeError, ValueError):
            raise _invalid(f"`{reference!r}` is not an input artifact of this run") from None
        path, cid, _ = artifact
        if artifact not in self._artifacts:
            raise _invalid(f"`{path}` is not an input artifact of this run")
        data, found = self._read_hashed(path)
        if found != cid:
            raise CanonError(
                ErrorCode.ARTIFACT_MISMATCH,
                f"`{path}` is {found} ({len(data)} bytes); the inputs name {cid}",
            )
        with self._lock:
            self._reads.add((path, cid))
        return data

    def _read_hashed(self, path: str) -> tuple[bytes, str]:
        def unreadable(why: str) -> CanonError:
            return CanonError(ErrorCode.NOT_FOUND, f"input artifact `{path}`: {why}")

        try:
            fd = os.open(
                fs_path(self._root, path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
            )
        except OSError as error:
            raise unreadable(f"{error.strerror} (os error {error.errno})") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise unreadable("not a regular file")
        with os.fdopen(fd, "rb") as file:
            hasher = blake3.blake3()
            chunks = []
            try:
                while chunk := file.read(_READ_CHUNK_BYTES):
                    hasher.update(chunk)
                    chunks.append(chunk)
            except OSError as error:
                raise unreadable(f"{error.strerror} (os error {error.errno})") from None
        return b"".join(chunks), "b3:" + hasher.hexdigest()

    def reads(self) -> list[dict[str, str]]:
        """What was read so far, sorted by path, each once: the receipt's
        `artifacts_read`."""
        with self._lock:
            return [{"path": path, "cid": cid} for path, cid in sorted(self._reads)]
