"""World paths and write prefixes, canonicalized exactly as `proctor-contract` does.

Canonicalization, in order: a leading `/` is required; an encoded slash (`%2F`) is
refused; percent-escapes are decoded exactly once (the result must be UTF-8); the text is
NFC-normalized; control characters are refused; `//` collapses to `/`; `.` and `..`
segments are refused; the first segment must be a facet (`artifacts` or `streams`);
lengths are bounded; a literal `%` is re-encoded as `%25`. A trailing `/` marks a prefix.
"""

from __future__ import annotations

import unicodedata

from ._errors import CanonError, ErrorCode

#: Longest canonical world path, in bytes.
MAX_PATH_BYTES = 1024
#: Longest single segment of a canonical world path, in bytes.
MAX_SEGMENT_BYTES = 255
#: The placeholder a write prefix template holds.
EXECUTION_ID_PLACEHOLDER = "{execution_id}"

_HEX = b"0123456789abcdefABCDEF"


def parse_world_path(raw: str) -> str:
    """The canonical text of world path `raw`, or a `CanonError` saying why it is none."""

    def refuse(code: ErrorCode, why: str) -> CanonError:
        return CanonError(code, f"{why}: `{raw}`")

    if not raw.startswith("/"):
        raise refuse(ErrorCode.BAD_PATH, "must start with /")
    raw_bytes = raw.encode("utf-8", "surrogatepass")
    if len(raw_bytes) > MAX_PATH_BYTES * 3:
        raise refuse(ErrorCode.PATH_TOO_LONG, "input too long")
    try:
        decoded = _percent_decode_once(raw_bytes)
    except _DecodeError as error:
        raise refuse(error.code, "cannot decode") from None
    normalized = unicodedata.normalize("NFC", decoded)
    if any(unicodedata.category(c) == "Cc" for c in normalized):
        raise refuse(ErrorCode.BAD_PATH, "control character")
    is_prefix = normalized.endswith("/")
    segments = [segment for segment in normalized.split("/") if segment]
    if any(segment in (".", "..") for segment in segments):
        raise refuse(ErrorCode.DOT_SEGMENTS, "`.` or `..` segment")
    if not segments or segments[0] not in ("artifacts", "streams"):
        raise refuse(ErrorCode.BAD_FACET, "unknown facet")
    canonical = ""
    for segment in segments:
        encoded = segment.replace("%", "%25")
        if len(encoded.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise refuse(ErrorCode.PATH_TOO_LONG, "segment longer than 255 bytes")
        canonical += "/" + encoded
    if is_prefix or len(segments) == 1:
        canonical += "/"
    if len(canonical.encode("utf-8")) > MAX_PATH_BYTES:
        raise refuse(ErrorCode.PATH_TOO_LONG, "longer than 1024 bytes")
    return canonical


def parse_exact_path(raw: str) -> str:
    """`raw` canonicalized, required to name one artifact (no trailing `/`)."""
    path = parse_world_path(raw)
    if path.endswith("/"):
        raise CanonError(
            ErrorCode.SELECTOR_KIND_MISMATCH,
            f"expected an exact path (no trailing /): `{raw}`",
        )
    return path


class _DecodeError(Exception):
    def __init__(self, code: ErrorCode) -> None:
        super().__init__(code.wire)
        self.code = code


def _percent_decode_once(raw: bytes) -> str:
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == ord("%"):
            hex_digits = raw[i + 1 : i + 3]
            if len(hex_digits) < 2 or any(b not in _HEX for b in hex_digits):
                raise _DecodeError(ErrorCode.PERCENT_DECODE)
            byte = int(hex_digits, 16)
            if byte in (ord("/"), ord("\\")):
                raise _DecodeError(ErrorCode.DECODED_SLASH)
            out.append(byte)
            i += 3
        else:
            out.append(raw[i])
            i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise _DecodeError(ErrorCode.PERCENT_DECODE) from None


def execution_receipt_path(execution_id: str) -> str:
    """`/artifacts/execution/{execution_id}/receipt.json`."""
    return parse_exact_path(f"/artifacts/execution/{execution_id}/receipt.json")


class WritePrefix:
    """An expanded write prefix: a canonical prefix under `/artifacts/` naming where one
    execution writes its outputs, index and receipt."""

    def __init__(self, path: str) -> None:
        self.path = path

    @staticmethod
    def receive(raw: str, execution_id: str) -> WritePrefix:
        """The write prefix a processor receives in its payload: a template holding
        `{execution_id}` is expanded as the orchestrator expands it; an expanded one is
        validated. Either way any other `{…}` placeholder is refused."""
        if EXECUTION_ID_PLACEHOLDER in raw:
            return WritePrefix.expand(raw, execution_id)
        _refuse_other_placeholders(raw)
        return WritePrefix.from_expanded(raw)

    @staticmethod
    def expand(template: str, execution_id: str) -> WritePrefix:
        """Expands `{execution_id}` in `template` and validates the result."""
        if EXECUTION_ID_PLACEHOLDER not in template:
            raise CanonError(
                ErrorCode.WRITE_PREFIX,
                f"`{template}` must contain {EXECUTION_ID_PLACEHOLDER}",
            )
        _refuse_other_placeholders(template)
        return WritePrefix.from_expanded(
            template.replace(EXECUTION_ID_PLACEHOLDER, execution_id)
        )

    @staticmethod
    def from_expanded(expanded: str) -> WritePrefix:
        """Validates an expanded prefix: under `/artifacts/`, a trailing `/` added."""
        with_slash = expanded if expanded.endswith("/") else expanded + "/"
        path = parse_world_path(with_slash)
        if not path.startswith("/artifacts/") or path == "/artifacts/":
            raise CanonError(
                ErrorCode.WRITE_PREFIX, f"`{expanded}` must lie under /artifacts/"
            )
        return WritePrefix(path)

    @property
    def index_path(self) -> str:
        """`{prefix}outputs.json`."""
        return f"{self.path}outputs.json"

    @property
    def receipt_path(self) -> str:
        """`{prefix}receipt.json`."""
        return f"{self.path}receipt.json"

    @property
    def outputs_dir(self) -> str:
        """`{prefix}outputs/`."""
        return f"{self.path}outputs/"

    def output_path(self, relative: str) -> str:
        """The world path of an output named relative to `{prefix}outputs/`; nothing
        escapes the prefix."""
        if not relative or relative.startswith("/"):
            raise CanonError(
                ErrorCode.BAD_PATH,
                f"output path must be relative and non-empty: `{relative}`",
            )
        return parse_exact_path(self.outputs_dir + relative)


def _refuse_other_placeholders(template: str) -> None:
    rest = template.replace(EXECUTION_ID_PLACEHOLDER, "")
    start = 0
    while (open_at := rest.find("{", start)) != -1:
        segment_end = rest.find("/", open_at)
        if segment_end == -1:
            segment_end = len(rest)
        close_at = rest.find("}", open_at, segment_end)
        if close_at != -1:
            raise CanonError(
                ErrorCode.WRITE_PREFIX,
                f"`{template}` holds the placeholder `{rest[open_at : close_at + 1]}`; "
                f"only {EXECUTION_ID_PLACEHOLDER} is expanded",
            )
        start = open_at + 1


def parse_processor_ref(raw: str) -> str:
    """`raw` if it is a processor ref `ns/name@version`, else an `ERR_PROCESSOR_REF`."""

    def refuse(why: str) -> CanonError:
        return CanonError(
            ErrorCode.PROCESSOR_REF,
            f"`{raw}` {why}; expected ns/name@version, e.g. llm/litellm@1",
        )

    path, at, version = raw.partition("@")
    if not at:
        raise refuse("has no @version")
    namespace, slash, name = path.partition("/")
    if not slash:
        raise refuse("has no ns/")
    if not _valid_part(namespace, 64, ""):
        raise refuse("has an invalid namespace")
    if not _valid_part(name, 64, ""):
        raise refuse("has an invalid name")
    if not _valid_part(version, 32, "."):
        raise refuse("has an invalid version")
    return raw


_LOWER_DIGITS = "abcdefghijklmnopqrstuvwxyz0123456789"


def _valid_part(part: str, longest: int, extra: str) -> bool:
    return (
        0 < len(part.encode("utf-8", "surrogatepass")) <= longest
        and part[0] in _LOWER_DIGITS
        and all(c in _LOWER_DIGITS or c in "-_" or c in extra for c in part)
    )
