"""Content ids, inputs hashes and env fingerprints, as `proctor-contract` computes them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import blake3
import rfc8785

#: The schema of an inputs hash: JCS bytes hashed with BLAKE3.
HASH_SCHEMA = "jcs-blake3-v1"

#: Integers beyond this magnitude are written by JCS as the nearest double (RFC 8785
#: numbers are IEEE 754 doubles), as the Rust side writes every number.
_EXACT_INT = 2**53 - 1


def cid(data: bytes) -> str:
    """The content id of `data`: `b3:` and the lowercase hex BLAKE3 digest."""
    return "b3:" + blake3.blake3(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    """`value` as RFC 8785 canonical JSON (JCS) bytes."""
    return rfc8785.dumps(_as_doubles(value))


def _as_doubles(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, (str, float)):
        return value
    if isinstance(value, int):
        return value if -_EXACT_INT <= value <= _EXACT_INT else float(value)
    if isinstance(value, dict):
        return {key: _as_doubles(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_doubles(item) for item in value]
    return value


def inputs_hash(inputs: Any) -> str:
    """The lowercase hex `BLAKE3(JCS(inputs))`, independent of key order and format."""
    return blake3.blake3(canonical_json(inputs)).hexdigest()


def env_fingerprint(pairs: Iterable[tuple[str, str]]) -> str:
    """`k=v` pairs sorted by key (then value), joined by `;`. Secret names only, never
    values."""
    return ";".join(f"{key}={value}" for key, value in sorted(pairs))
