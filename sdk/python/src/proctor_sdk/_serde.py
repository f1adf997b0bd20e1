"""The contract's typed documents read from parsed JSON as the Rust side's serde reads
them — fields in the order they appear, the first unknown or mistyped one refused, then
missing ones in declaration order — with serde's words, so both SDKs refuse the same
document with the same message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Optional

from ._errors import CanonError
from ._json import dumps
from ._paths import parse_processor_ref, parse_world_path

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


#: A field of a struct: its name, how its value is read, and what it is when absent
#: (`None`: required).
_Field = tuple[str, Callable[[Any], Any], Optional[Callable[[], Any]]]


def _read_struct(value: Any, name: str, fields: list[_Field]) -> dict[str, Any]:
    """A struct from a JSON object (by name) or array (by position), as serde derives it."""
    read: dict[str, Any] = {}
    readers = {field: reader for field, reader, _ in fields}
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in readers:
                expected = ", ".join(f"`{field}`" for field, _, _ in fields)
                raise SerdeError(f"unknown field `{key}`, expected one of {expected}")
            read[key] = readers[key](item)
        for field, _, default in fields:
            if field not in read:
                if default is None:
                    raise SerdeError(f"missing field `{field}`")
                read[field] = default()
    elif isinstance(value, list):
        for index, (field, reader, default) in enumerate(fields):
            if index < len(value):
                read[field] = reader(value[index])
            elif default is None:
                plural = "" if len(fields) == 1 else "s"
                raise SerdeError(
                    f"invalid length {len(value)}, expected struct {name} with "
                    f"{len(fields)} element{plural}"
                )
            else:
                read[field] = default()
        if len(value) > len(fields):
            raise SerdeError(f"invalid length {len(value)}, expected fewer elements in array")
    else:
        raise _invalid_type(value, f"struct {name}")
    return {field: read[field] for field, _, _ in fields}


def _any(value: Any) -> Any:
    return value


def read_payload(value: Any) -> dict[str, Any]:
    """A `RunPayload`: `schema`, `execution_id`, `ref`, `mode`, `inputs`, `write_prefix`
    and `upstream` (empty when absent, its paths canonical)."""
    return _read_struct(
        value,
        "RunPayload",
        [
            ("schema", _string, None),
            ("execution_id", _string, None),
            ("ref", lambda item: _custom(parse_processor_ref, item), None),
            ("mode", _read_mode, None),
            ("inputs", _any, None),
            ("write_prefix", _string, None),
            ("upstream", _read_upstream, list),
        ],
    )


def _read_mode(value: Any) -> Literal["mock", "real"]:
    if not isinstance(value, str):
        raise _invalid_type(value, "string or map")
    if value == "mock":
        return "mock"
    if value == "real":
        return "real"
    raise SerdeError(f"unknown variant `{value}`, expected `mock` or `real`")


def _world_path(value: Any) -> str:
    return _custom(parse_world_path, value)


def _read_upstream(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise _invalid_type(value, "a sequence")
    fields: list[_Field] = [
        ("execution_id", _string, None),
        ("path", _world_path, None),
        ("cid", _string, None),
    ]
    return [_read_struct(item, "UpstreamOutput", fields) for item in value]


def read_artifact_ref(value: Any) -> tuple[str, str, str]:
    """An `ArtifactRef` object `{"$artifact": path, "cid": …, "mime": …}` as (canonical
    path, cid, mime)."""
    fields: list[_Field] = [
        ("$artifact", _world_path, None),
        ("cid", _string, None),
        ("mime", _string, None),
    ]
    read = _read_struct(value, "ArtifactRef", fields)
    return read["$artifact"], read["cid"], read["mime"]
