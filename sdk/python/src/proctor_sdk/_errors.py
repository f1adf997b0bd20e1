"""The canonical errors a processor answers with: the codes of the contract's error canon
(`ErrorCode` in `proctor-contract`) that a processor can report, each with its stable
message fragment. The shared golden vectors check that they agree with the canon."""

from __future__ import annotations

from enum import Enum


class ErrorCode(Enum):
    """A canonical error code: its wire name and its stable message fragment."""

    IMAGE_UNPINNED = ("ERR_IMAGE_UNPINNED", "image not pinned")
    MISSING_SECRET = ("ERR_MISSING_SECRET", "missing required secret")
    OUTPUT_DUPLICATE = ("ERR_OUTPUT_DUPLICATE", "duplicate output after canonicalization")
    INPUTS = ("ERR_INPUTS", "invalid inputs payload")
    DECODED_SLASH = ("ERR_DECODED_SLASH", "encoded slash in world path")
    DOT_SEGMENTS = ("ERR_DOT_SEGMENTS", "dot segments in world path")
    BAD_FACET = ("ERR_BAD_FACET", "world path facet must be /artifacts/ or /streams/")
    PERCENT_DECODE = ("ERR_PERCENT_DECODE", "invalid percent-encoding in world path")
    SELECTOR_KIND_MISMATCH = ("ERR_SELECTOR_KIND_MISMATCH", "selector kind mismatch")
    BAD_PATH = ("ERR_BAD_PATH", "invalid world path")
    PATH_TOO_LONG = ("ERR_PATH_TOO_LONG", "world path too long")
    WRITE_PREFIX = ("ERR_WRITE_PREFIX", "invalid write_prefix")
    PROCESSOR_REF = ("ERR_PROCESSOR_REF", "invalid processor ref")
    PROVIDER = ("ERR_PROVIDER", "provider failed")
    OUTPUT_WRITE = ("ERR_OUTPUT_WRITE", "output write failed")
    PROCESSOR_BUSY = ("ERR_PROCESSOR_BUSY", "processor busy")
    ARTIFACT_MISMATCH = ("ERR_ARTIFACT_MISMATCH", "input artifact does not match its content id")
    NOT_FOUND = ("ERR_NOT_FOUND", "artifact not found")
    INTERNAL = ("ERR_INTERNAL", "internal error")

    @property
    def wire(self) -> str:
        """The wire name, e.g. `ERR_INPUTS`."""
        return self.value[0]

    @property
    def fragment(self) -> str:
        """The stable fragment every message of this code starts with."""
        return self.value[1]


class CanonError(Exception):
    """A canonical error: a code plus a detail naming what was wrong."""

    def __init__(self, code: ErrorCode, detail: str = "") -> None:
        super().__init__(f"{code.wire}: {_message(code, detail)}")
        self.code = code
        self.detail = detail

    @property
    def message(self) -> str:
        """The stable fragment, then the detail."""
        return _message(self.code, self.detail)


def _message(code: ErrorCode, detail: str) -> str:
    return f"{code.fragment}: {detail}" if detail else code.fragment
