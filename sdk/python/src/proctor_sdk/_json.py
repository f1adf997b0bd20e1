"""JSON as the Rust side writes and reads it (serde_json): compact and pretty text with
the same escapes and number formats, and a parser that accepts what serde_json accepts.

Every byte the SDK writes (index, receipt, envelope, `Output.json`) goes through
`dumps`, so the two SDKs write the same bytes for the same values.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

#: Largest and smallest integers serde_json reads as integers (u64 and i64); any other
#: integer literal is read as a float.
_U64_MAX = 2**64 - 1
_I64_MIN = -(2**63)
#: serde_json refuses input nested deeper than this many arrays and objects.
_MAX_DEPTH = 127


class JsonError(ValueError):
    """A value that serde_json would not read or write."""


def format_f64(value: float) -> str:
    """`value` as serde_json writes a float: the shortest digits that read back, in
    decimal from 1e-5 to below 1e16 (`1.0`, `0.00001`), else `1e+16`, `1.5e-7`;
    non-finite values as `null`."""
    if not math.isfinite(value):
        return "null"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return f"{sign}0.0"
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    all_digits = whole + fraction
    digits = all_digits.lstrip("0")
    # The value is 0.{digits} × 10^kk.
    kk = len(whole) + (int(exponent) if exponent else 0) - (len(all_digits) - len(digits))
    digits = digits.rstrip("0")
    length = len(digits)
    k = kk - length
    if 0 <= k and kk <= 16:
        text = digits + "0" * k + ".0"
    elif 0 < kk <= 16:
        text = f"{digits[:kk]}.{digits[kk:]}"
    elif -5 < kk <= 0:
        text = "0." + "0" * -kk + digits
    elif length == 1:
        text = f"{digits}e{kk - 1:+d}"
    else:
        text = f"{digits[0]}.{digits[1:]}e{kk - 1:+d}"
    return sign + text


def _string(text: str) -> str:
    # Python's escapes are serde_json's: `"`, `\`, \b \f \n \r \t, other controls as
    # \u00xx (lowercase), everything else as is.
    return json.dumps(text, ensure_ascii=False)


def _key(key: object) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool) or not isinstance(key, int):
        raise JsonError(f"key must be a string, not {type(key).__name__}")
    return str(key)


def _scalar(value: object) -> str | None:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int):
        if not _I64_MIN <= value <= _U64_MAX:
            raise JsonError(f"integer {value} does not fit in 64 bits")
        return str(value)
    if isinstance(value, float):
        return format_f64(value)
    return None


def dumps(value: Any, *, pretty: bool = False) -> str:
    """`value` as serde_json writes it: compact (`to_string`) or pretty with two-space
    indents (`to_string_pretty`). Dict order is kept. Raises `JsonError` for values JSON
    cannot hold."""
    parts: list[str] = []
    _write(value, parts, "\n" if pretty else None)
    return "".join(parts)


def _write(value: Any, out: list[str], newline: str | None) -> None:
    scalar = _scalar(value)
    if scalar is not None:
        out.append(scalar)
        return
    items: list[tuple[str | None, Any]]
    if isinstance(value, Mapping):
        items = [(_key(key), item) for key, item in value.items()]
        open_, close = "{", "}"
    elif isinstance(value, (list, tuple)):
        items = [(None, item) for item in value]
        open_, close = "[", "]"
    else:
        raise JsonError(f"{type(value).__name__} is not JSON")
    out.append(open_)
    if not items:
        out.append(close)
        return
    inner = None if newline is None else newline + "  "
    for index, (key, item) in enumerate(items):
        if index:
            out.append(",")
        if inner is not None:
            out.append(inner)
        if key is not None:
            out.append(_string(key))
            out.append(": " if inner is not None else ":")
        _write(item, out, inner)
    if newline is not None:
        out.append(newline)
    out.append(close)


def _integer(text: str) -> int | float:
    if text == "-0":
        return -0.0
    number = int(text)
    if _I64_MIN <= number <= _U64_MAX:
        return number
    return float(text)


def _float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise JsonError(f"number out of range: {text}")
    return number


def _constant(text: str) -> None:
    raise JsonError(f"expected value, found {text}")


def loads(data: bytes) -> Any:
    """Parses JSON as serde_json reads it into a `Value`: UTF-8 only, no `NaN`, integers
    beyond 64 bits and numbers with a fraction or exponent as floats, a repeated key
    keeping its first place and its last value, at most 127 levels deep, no lone
    surrogates. Raises `JsonError` saying why."""
    try:
        text = data.decode("utf-8")
        value = json.loads(
            text, parse_int=_integer, parse_float=_float, parse_constant=_constant
        )
    except JsonError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise JsonError(str(error)) from None
    _check(value, 0)
    return value


def _check(value: Any, depth: int) -> None:
    if isinstance(value, str):
        _check_text(value)
    elif isinstance(value, (list, dict)):
        if depth >= _MAX_DEPTH:
            raise JsonError("recursion limit exceeded")
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key)
                _check(item, depth + 1)
        else:
            for item in value:
                _check(item, depth + 1)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise JsonError("lone surrogate in a string") from None
