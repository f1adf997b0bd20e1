"""The contract's typed documents read from parsed JSON as the Rust side's serde reads
them — fields in the order they appear, the first unknown or mistyped one refused, then
missing ones in declaration order — with serde's words, so both SDKs refuse the same
document with the same message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from ._errors import CanonError
from ._json import dumps
from ._paths import parse_processor_ref, parse_world_path

PAYLOAD_FIELDS = ("schema", "execution_id", "ref", "mode", "inputs", "write_prefix", "upstream")
UPSTREAM_FIELDS = ("execution_id", "path", "cid")
ARTIFACT_FIELDS = ("$artifact", "cid", "mime")


class SerdeError(Exception):
    """Why a JSON value is not the document it should be."""


def _unexpected(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{dumps(value)}`"
    if isinstance(value, str):
        return f"string {dumps(value)}"
    if isinstance(value, list):
        return "sequence"
    return "map"


def _invalid_type(value: Any, expected: str) -> SerdeError:
    return SerdeError(f"invalid type: {_unexpected(value)}, expected {expected}")


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise _invalid_type(value, "a string")
    return value


def _custom(read: Callable[[str], str], value: Any) -> str:
    try:
        return read(_string(value))
    except CanonError as error:
        raise SerdeError(str(error)) from None


def _fields(value: Any, name: str, known: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid_type(value, f"struct {name}")
    for key in value:
        if key not in known:
            expected = ", ".join(f"`{field}`" for field in known)
            raise SerdeError(f"unknown field `{key}`, expected one of {expected}")
    return value


def _require(read: dict[str, Any], known: tuple[str, ...]) -> None:
    for key in known:
        if key not in read:
            raise SerdeError(f"missing field `{key}`")


def read_payload(value: Any) -> dict[str, Any]:
    """A `RunPayload`: `schema`, `execution_id`, `ref`, `mode`, `inputs`, `write_prefix`
    and `upstream` (empty when absent, its paths canonical)."""
    payload: dict[str, Any] = {}
    for key, item in _fields(value, "RunPayload", PAYLOAD_FIELDS).items():
        if key in ("schema", "execution_id", "write_prefix"):
            payload[key] = _string(item)
        elif key == "ref":
            payload[key] = _custom(parse_processor_ref, item)
        elif key == "mode":
            payload[key] = _read_mode(item)
        elif key == "inputs":
            payload[key] = item
        else:
            payload[key] = _read_upstream(item)
    _require(payload, PAYLOAD_FIELDS[:-1])
    payload.setdefault("upstream", [])
    return payload


def _read_mode(value: Any) -> Literal["mock", "real"]:
    if not isinstance(value, str):
        raise _invalid_type(value, "string or map")
    if value == "mock":
        return "mock"
    if value == "real":
        return "real"
    raise SerdeError(f"unknown variant `{value}`, expected `mock` or `real`")


def _read_upstream(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise _invalid_type(value, "a sequence")
    upstream = []
    for item in value:
        entry: dict[str, str] = {}
        for key, field in _fields(item, "UpstreamOutput", UPSTREAM_FIELDS).items():
            entry[key] = _custom(parse_world_path, field) if key == "path" else _string(field)
        _require(entry, UPSTREAM_FIELDS)
        upstream.append({key: entry[key] for key in UPSTREAM_FIELDS})
    return upstream


def read_artifact_ref(value: Any) -> tuple[str, str, str]:
    """An `ArtifactRef` object `{"$artifact": path, "cid": …, "mime": …}` as (canonical
    path, cid, mime)."""
    read: dict[str, str] = {}
    for key, field in _fields(value, "ArtifactRef", ARTIFACT_FIELDS).items():
        read[key] = _custom(parse_world_path, field) if key == "$artifact" else _string(field)
    _require(read, ARTIFACT_FIELDS)
    return read["$artifact"], read["cid"], read["mime"]
