"""What a processor supplies — a provider that turns inputs into outputs — and what the
SDK hands it: a `Context` per run."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from ._artifacts import ArtifactReader
from ._errors import CanonError
from ._json import JsonError, dumps
from ._log import log
from ._paths import parse_processor_ref
from ._redact import Redactor

#: How a run runs: `mock` is hermetic and byte-stable, `real` may use secrets and network.
Mode = Literal["mock", "real"]


class ProviderError(Exception):
    """Why a provider could not produce its outputs: unusable inputs (`ERR_INPUTS`, HTTP
    400) or a failure of the provider or its upstream (`ERR_PROVIDER`, HTTP 502) — or a
    canonical error the SDK raised for it (`Context.read_artifact`), answered with its own
    code. The SDK masks the processor's secret and pass-through values in the message."""

    def __init__(
        self,
        kind: Literal["inputs", "failed", "canon"],
        detail: str,
        canon: CanonError | None = None,
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        #: For `canon`: the canonical error.
        self.canon = canon

    @classmethod
    def inputs(cls, detail: object) -> ProviderError:
        """Unusable inputs, with what was wrong."""
        return cls("inputs", str(detail))

    @classmethod
    def failed(cls, detail: object) -> ProviderError:
        """A provider failure, with what went wrong."""
        return cls("failed", str(detail))


@dataclass(frozen=True)
class Output:
    """One output file, named relative to `{write_prefix}outputs/`."""

    #: Relative path such as `text/response.txt`; anything escaping `outputs/` is refused.
    path: str
    #: The file's bytes.
    data: bytes
    #: Its media type.
    mime: str

    def __post_init__(self) -> None:
        if isinstance(self.data, (bytearray, memoryview)):
            object.__setattr__(self, "data", bytes(self.data))

    @classmethod
    def text(cls, path: str, text: str) -> Output:
        """A `text/plain` output, UTF-8."""
        return cls(path, text.encode("utf-8"), "text/plain")

    @classmethod
    def json(cls, path: str, value: Any) -> Output:
        """An `application/json` output: pretty-printed as the Rust SDK prints it (two-space
        indents, keys in their order, non-ASCII as is) with a final newline. A value JSON
        cannot hold is a provider failure."""
        try:
            text = dumps(value, pretty=True)
        except JsonError as error:
            raise ProviderError.failed(f"cannot serialize output: {error}") from None
        return cls(path, (text + "\n").encode("utf-8"), "application/json")


@dataclass(frozen=True)
class ProviderResult:
    """What a provider produced."""

    #: The output files; the SDK writes them and builds the index.
    outputs: list[Output] = field(default_factory=list)
    #: What the provider says about itself (model, version), recorded in the receipt.
    processor_info: str = ""
    #: Named usage counters (tokens, calls): non-negative integers, recorded in the receipt.
    usage: Mapping[str, int] = field(default_factory=dict)


class Context:
    """Everything a provider may know about its run. Secrets and pass-through variables
    are present in `real` mode only; in `mock` mode the provider gets none, even when the
    process environment holds them."""

    def __init__(
        self,
        *,
        execution_id: str,
        processor_ref: str,
        mode: Mode,
        inputs_hash: str,
        secrets: Mapping[str, str],
        env: Mapping[str, str],
        artifacts: ArtifactReader | None = None,
    ) -> None:
        real = mode == "real"
        self._artifacts = artifacts or ArtifactReader(Path("/artifacts"), [])
        self._execution_id = execution_id
        self._processor_ref = processor_ref
        self._mode: Mode = mode
        self._inputs_hash = inputs_hash
        self._secrets = dict(sorted(secrets.items())) if real else {}
        self._env = dict(env) if real else {}

    @property
    def mode(self) -> Mode:
        """The mode of this run: `mock` or `real`."""
        return self._mode

    @property
    def execution_id(self) -> str:
        """The execution's id. Never feed it into mock output: mock output must be
        byte-stable."""
        return self._execution_id

    @property
    def processor_ref(self) -> str:
        """The processor's ref, `ns/name@version`."""
        return self._processor_ref

    @property
    def inputs_hash(self) -> str:
        """The lowercase hex BLAKE3 of the inputs' canonical JSON (RFC 8785)."""
        return self._inputs_hash

    def secret(self, name: str) -> str | None:
        """A required secret's value; `None` in `mock` mode."""
        return self._secrets.get(name)

    def secret_names(self) -> list[str]:
        """The names of the secrets present, sorted."""
        return list(self._secrets)

    def env(self, name: str) -> str | None:
        """A declared pass-through variable's value; `None` in `mock` mode or when unset."""
        return self._env.get(name)

    def rng(self) -> random.Random:
        """A fresh generator seeded from the inputs hash: the same inputs give the same
        stream on every run, so mock output drawn from it is byte-stable."""
        return random.Random(int(self._inputs_hash, 16))

    def read_artifact(self, artifact: Mapping[str, Any]) -> bytes:
        """The bytes of the input artifact `artifact` — a `$artifact` object of this run's
        inputs — once they match its content id. A mismatch is `ERR_ARTIFACT_MISMATCH`
        (HTTP 422), never silently used; an artifact the inputs do not name is
        `ERR_INPUTS`; a missing file is `ERR_NOT_FOUND` (both HTTP 400). What it hands
        over is listed in the receipt's `artifacts_read`."""
        try:
            return self._artifacts.read(artifact)
        except CanonError as error:
            raise ProviderError("canon", error.detail, error) from None

    def artifacts_read(self) -> list[dict[str, str]]:
        """The input artifacts read so far, sorted by path: the receipt's
        `artifacts_read`."""
        return self._artifacts.reads()

    def redactor(self) -> Redactor:
        """A redactor masking this run's secret and pass-through values (and every shape
        of credential), for text that leaves the provider, such as an upstream's error.
        Redact before cutting (`Redactor.truncate_redacted`)."""
        return Redactor([*self._secrets.values(), *self._env.values()])

    def __repr__(self) -> str:
        return (
            f"Context(execution_id={self._execution_id!r}, processor_ref="
            f"{self._processor_ref!r}, mode={self._mode!r}, secrets={list(self._secrets)!r},"
            f" env={list(self._env)!r})"
        )


#: A provider: a callable, plain or `async def`, from the inputs object and the context to
#: the result.
Provider = Callable[[dict[str, Any], Context], Union[ProviderResult, Awaitable[ProviderResult]]]


class SetupLog:
    """Where a set-up step reports its progress. Each line is logged (`setup.log`) and
    the last ones are kept: a failed set-up reports them, redacted, on `/healthz`."""

    #: How many of a set-up's last lines a failed set-up reports.
    TAIL_LINES = 20

    def __init__(self) -> None:
        self._lines: deque[str] = deque(maxlen=self.TAIL_LINES)

    def line(self, text: object) -> None:
        """Logs one line of the set-up's progress."""
        line = str(text)
        log("info", "setup.log", line=line)
        self._lines.append(line)

    def push(self, text: str) -> None:
        """Keeps `text` among the last lines without logging it."""
        self._lines.append(text)

    def tail(self) -> list[str]:
        """The lines kept, oldest first."""
        return list(self._lines)


#: A set-up step: run once when the server starts (load a model, warm a cache), plain or
#: `async def`. Raising fails the processor for good.
SetupStep = Callable[[SetupLog], Union[None, Awaitable[None]]]


class Processor:
    """A processor: its ref, the provider, the secret and variable names it needs, how
    many runs it serves at once, and an optional set-up step."""

    def __init__(
        self,
        ref: str,
        provider: Provider,
        *,
        required_secrets: Iterable[str] = (),
        passthrough_env: Iterable[str] = (),
        concurrency: int = 1,
        setup: SetupStep | None = None,
    ) -> None:
        parse_processor_ref(ref)
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an integer of at least 1, not {concurrency!r}")
        self.ref = ref
        self.provider = provider
        #: Secret names required in `real` mode, sorted (`secrets.required` in registry.yaml).
        self.required_secrets = sorted(set(required_secrets))
        #: Non-secret variables handed to the provider in `real` mode, sorted (`env`).
        self.passthrough_env = sorted(set(passthrough_env))
        #: How many `/run` and `/run-stream` requests are served at once; one more is
        #: answered 409 `ERR_PROCESSOR_BUSY`. `PROCTOR_CONCURRENCY` overrides it.
        self.concurrency = concurrency
        #: Run once at start; until it ends `/healthz` says `starting`.
        self.setup = setup

    def __repr__(self) -> str:
        return (
            f"Processor(ref={self.ref!r}, required_secrets={self.required_secrets!r}, "
            f"passthrough_env={self.passthrough_env!r}, concurrency={self.concurrency})"
        )
