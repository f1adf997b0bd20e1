"""Redaction of secrets from text, as the contract's `Redactor` does it.

A `Redactor` knows the values a run was given (its secrets and pass-through variables)
and masks them wherever they appear: verbatim, percent-encoded (wholly or in part),
JSON-escaped, and, for a URL with credentials, its userinfo and password alone. It then
masks whatever has the shape of a credential: `Authorization`/`Cookie` values, bearer
tokens, `api_key=`/`password:` pairs, URL userinfo, `sk-…`/`ghp_…`-style keys, JWTs, and
long hex and base64 runs. Text is redacted before it is cut (`truncate_redacted`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from ._json import dumps

#: What replaces a secret.
MASK = "[REDACTED]"
#: What ends a text that `truncate_redacted` cut.
_ELLIPSIS = "…"
#: Values shorter than this, in bytes, are not masked verbatim.
_MIN_SECRET_LEN = 6

_CREDENTIAL_KEY = (
    r"(?:[a-z0-9]+[_-])*(?:api[_-]?key|access[_-]?token|refresh[_-]?token|token|secret"
    r"|password|passwd|modal[_-]key)"
)
_CREDENTIAL_HEADER = r"(?:proxy-)?authorization|(?:set-)?cookie"
_URL_USERINFO = re.compile(r"""\b([a-z][a-z0-9+.-]*://)([^/\s?#"'<>\\]+)@""", re.IGNORECASE)

_Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]


def _is_variable_name(text: str) -> bool:
    return (
        text[:1].isascii()
        and text[:1].isupper()
        and all(c.isascii() and (c.isupper() or c.isdigit() or c == "_") for c in text)
    )


def _credential_pair(match: re.Match[str]) -> str:
    if _is_variable_name(match[2]):
        return match[0]
    return match[1] + MASK


def _mixed_run(match: re.Match[str]) -> str:
    text = match[0]
    mixed = (
        any(c.isdigit() for c in text)
        and any("A" <= c <= "Z" for c in text)
        and any("a" <= c <= "z" for c in text)
    )
    return MASK if mixed else text


_CREDENTIAL_RULES: list[_Rule] = [
    (
        re.compile(
            rf"""\b((?:{_CREDENTIAL_HEADER})["']?\s*[:=]\s*["']?)[^\r\n"']+""", re.IGNORECASE
        ),
        lambda m: m[1] + MASK,
    ),
    (re.compile(r"\b(bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE), lambda m: m[1] + MASK),
    (
        re.compile(rf"""\b({_CREDENTIAL_KEY}["']?\s*[=:]\s*["']?)([^\s"'&,;}}]+)""", re.IGNORECASE),
        _credential_pair,
    ),
    (_URL_USERINFO, lambda m: m[1] + MASK + "@"),
    (
        re.compile(
            r"\b(?:(?:sk|pk|rk|ak)-[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{30,}"
            r"|github_pat_[A-Za-z0-9_]{30,}|xox[abprs]-[A-Za-z0-9-]{10,}"
            r"|(?:AKIA|ASIA)[0-9A-Z]{16}\b"
            r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*)"
        ),
        lambda m: MASK,
    ),
]

_ENTROPY_RULES: list[_Rule] = [
    (
        re.compile(r"(\b[a-z0-9]+:)?\b[0-9a-f]{40,}\b", re.IGNORECASE),
        lambda m: m[0] if m[1] is not None else MASK,
    ),
    (re.compile(r"\b[A-Za-z0-9+_-]{40,}={0,2}"), _mixed_run),
]


class Redactor:
    """Masks the values it was given, in every form they may take, and every shape of
    credential. Its `repr` never shows a value."""

    def __init__(self, secret_values: Iterable[str] = ()) -> None:
        literal: set[bytes] = set()
        decoded_forms: set[bytes] = set()
        for value in secret_values:
            for form in _forms_of(value):
                form_bytes = form.encode("utf-8", "surrogatepass")
                decoded, _ = _percent_decode(form_bytes)
                if len(decoded) >= _MIN_SECRET_LEN:
                    if decoded != form_bytes:
                        literal.add(decoded)
                    decoded_forms.add(decoded)
                literal.add(form_bytes)
        self._literal = _longest_first(literal)
        self._decoded = _longest_first(decoded_forms)

    def __repr__(self) -> str:
        return f"Redactor(forms={len(self._literal)})"

    def merged(self, other: Redactor) -> Redactor:
        """A redactor masking what this one and `other` mask."""
        merged = Redactor()
        merged._literal = _longest_first({*self._literal, *other._literal})
        merged._decoded = _longest_first({*self._decoded, *other._decoded})
        return merged

    def redact(self, text: str) -> str:
        """`text` with every known value and every shape of credential masked."""
        out = self._mask_values(text)
        for pattern, replace in _CREDENTIAL_RULES + _ENTROPY_RULES:
            out = pattern.sub(replace, out)
        return out

    def truncate_redacted(self, text: str, max_bytes: int) -> str:
        """`text` redacted, then cut to at most `max_bytes` UTF-8 bytes — on a character
        boundary, never inside a mask, ending in `…` — when it is longer."""
        redacted = self.redact(text).encode("utf-8", "surrogatepass")
        if len(redacted) <= max_bytes:
            return redacted.decode("utf-8", "surrogatepass")
        budget = max_bytes - len(_ELLIPSIS.encode())
        if budget < 0:
            return ""
        cut = _floor_boundary(redacted, budget)
        window = _floor_boundary(redacted, max(cut - (len(MASK) - 1), 0))
        at = redacted.find(MASK.encode(), window)
        if at != -1 and at < cut:
            cut = at
        return redacted[:cut].decode("utf-8", "surrogatepass") + _ELLIPSIS

    def _mask_values(self, text: str) -> str:
        if not self._literal:
            return text
        data = text.encode("utf-8", "surrogatepass")
        spans = _find_all(data, self._literal)
        if spans:
            data = _mask(data, spans)
        if self._decoded and b"%" in data:
            decoded, starts = _percent_decode(data)
            encoded = [(starts[a], starts[b]) for a, b in _find_all(decoded, self._decoded)]
            if encoded:
                data = _mask(data, encoded)
        return data.decode("utf-8", "surrogatepass")


def _forms_of(value: str) -> list[str]:
    forms = [value, dumps(value)[1:-1]]
    for url in _URL_USERINFO.finditer(value):
        userinfo = url[2]
        forms.append(userinfo)
        user, colon, password = userinfo.partition(":")
        if colon:
            forms.append(password)
    return [form for form in forms if len(form.encode("utf-8", "surrogatepass")) >= _MIN_SECRET_LEN]


def _longest_first(forms: set[bytes]) -> list[bytes]:
    return sorted(forms, key=lambda form: (-len(form), form))


def _find_all(haystack: bytes, needles: list[bytes]) -> list[tuple[int, int]]:
    first_bytes = {needle[0] for needle in needles}
    found = []
    at = 0
    while at < len(haystack):
        needle = None
        if haystack[at] in first_bytes:
            needle = next((n for n in needles if haystack.startswith(n, at)), None)
        if needle is not None:
            found.append((at, at + len(needle)))
            at += len(needle)
        else:
            at += 1
    return found


def _is_boundary(data: bytes, index: int) -> bool:
    return index >= len(data) or (data[index] & 0xC0) != 0x80


def _floor_boundary(data: bytes, index: int) -> int:
    index = min(index, len(data))
    while index > 0 and not _is_boundary(data, index):
        index -= 1
    return index


def _ceil_boundary(data: bytes, index: int) -> int:
    while index < len(data) and not _is_boundary(data, index):
        index += 1
    return index


def _mask(data: bytes, spans: list[tuple[int, int]]) -> bytes:
    merged: list[list[int]] = []
    for start, end in spans:
        start, end = _floor_boundary(data, start), _ceil_boundary(data, end)
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out = bytearray()
    copied = 0
    for start, end in merged:
        out += data[copied:start]
        out += MASK.encode()
        copied = end
    out += data[copied:]
    return bytes(out)


def _percent_decode(data: bytes) -> tuple[bytes, list[int]]:
    decoded = bytearray()
    starts = []
    at = 0
    while at < len(data):
        starts.append(at)
        escape = data[at : at + 3]
        if len(escape) == 3 and escape[0] == ord("%") and _is_hex(escape[1]) and _is_hex(escape[2]):
            decoded.append(int(escape[1:], 16))
            at += 3
        else:
            decoded.append(data[at])
            at += 1
    starts.append(len(data))
    return bytes(decoded), starts


def _is_hex(byte: int) -> bool:
    return chr(byte) in "0123456789abcdefABCDEF"


def redactor_from_env(environment: dict[str, str], extra_names: Iterable[str]) -> Redactor:
    """A redactor for the values of secret-looking variables (names ending in `_KEY`,
    `_TOKEN`, `_TOKEN_ID`, `_SECRET`, `_PASSWORD`, or containing `SECRET`) and of
    `extra_names`, as the processor's log lines use."""
    extra = set(extra_names)

    def looks_secret(name: str) -> bool:
        upper = name.upper()
        return (
            upper.endswith(("_KEY", "_TOKEN", "_TOKEN_ID", "_SECRET", "_PASSWORD"))
            or "SECRET" in upper
            or name in extra
        )

    return Redactor(value for name, value in environment.items() if looks_secret(name))
