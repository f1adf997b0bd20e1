"""One run, from request bytes to envelope: check the request, call the provider, check
its outputs, write outputs, index and receipts — all or nothing — and answer. The checks
and their order, the statuses and the error envelopes are the Rust SDK's."""

from __future__ import annotations

import asyncio
import inspect
import time
import traceback
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ._artifacts import ArtifactReader, input_artifacts
from ._config import ENV_IMAGE_DIGEST, ServerConfig
from ._errors import CanonError, ErrorCode
from ._evidence import (
    OutputEntry,
    PlannedFile,
    Receipt,
    build_index,
    check_layout,
    index_bytes,
    write_evidence,
)
from ._hashing import HASH_SCHEMA, cid, env_fingerprint, inputs_hash
from ._json import JsonError, dumps, loads
from ._log import log
from ._paths import WritePrefix, execution_receipt_path
from ._redact import Redactor
from ._serde import SerdeError, read_payload
from .provider import Context, Mode, Output, Processor, ProviderError, ProviderResult, SetupLog

#: The payload schema this SDK reads.
PAYLOAD_SCHEMA = "v1"
#: Longest accepted execution id, in bytes.
MAX_EXECUTION_ID_BYTES = 128
#: Longest detail of an error envelope's message, in bytes, counted after redaction.
MAX_ERROR_DETAIL_BYTES = 4096
#: Longest line of a failed set-up's log tail, in bytes, counted after redaction.
MAX_SETUP_LINE_BYTES = 512
#: Largest usage counter (a u64).
_U64_MAX = 2**64 - 1

#: The stages a run reports as SSE `progress` events, in order.
STAGES = ("accepted", "provider_started", "provider_finished", "outputs_written")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Outcome:
    """What a run answers: an HTTP status and the envelope that is the body."""

    status: int
    envelope: dict[str, Any]

    def body(self) -> bytes:
        """The envelope as one line of compact JSON."""
        return dumps(self.envelope).encode("utf-8")


@dataclass(frozen=True)
class Accepted:
    """A request that passed every check, ready to run."""

    execution_id: str
    mode: Mode
    inputs: dict[str, Any]
    upstream: list[dict[str, str]]
    prefix: WritePrefix
    started: int
    image_digest: str


class _Failure(Exception):
    """A failed step: the status to answer with and the canonical error."""

    def __init__(self, status: int, error: CanonError) -> None:
        super().__init__(error.message)
        self.status = status
        self.error = error


def _inputs_failure(status: int, detail: str) -> _Failure:
    return _Failure(status, CanonError(ErrorCode.INPUTS, detail))


def _missing_digest() -> CanonError:
    return CanonError(
        ErrorCode.IMAGE_UNPINNED,
        f"{ENV_IMAGE_DIGEST} is unset; a processor runs only from an image it can name",
    )


class Runner:
    """Runs payloads for one processor. Everything but the provider and the file writes
    runs on the server's event loop."""

    def __init__(self, config: ServerConfig, processor: Processor) -> None:
        self.config = config
        self.processor = processor
        self.redactor = Redactor(
            value
            for name in [*processor.required_secrets, *processor.passthrough_env]
            if (value := config.var(name)) is not None
        )
        self.concurrency = config.concurrency or processor.concurrency
        # One thread per run slot: a plain provider never waits for a thread.
        self._provider_threads = ThreadPoolExecutor(
            max_workers=self.concurrency, thread_name_prefix="provider"
        )
        self._busy = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._readiness = "ready"
        self._log_tail: list[str] = []
        if config.image_digest is None:
            self._readiness, self._log_tail = "failed", [_missing_digest().detail]
        elif processor.setup is not None:
            self._readiness = "starting"

    # Set-up and health.

    async def set_up(self) -> None:
        """Runs the processor's set-up step, if any, and records how it ended."""
        if self._readiness == "failed":
            log("error", "setup.fail", log_tail=self._log_tail)
            return
        setup = self.processor.setup
        if setup is None:
            return
        log("info", "setup.start")
        setup_log = SetupLog()
        try:
            if inspect.iscoroutinefunction(setup):
                await setup(setup_log)
            else:
                ended = await asyncio.to_thread(setup, setup_log)
                if inspect.isawaitable(ended):
                    await ended
        except ProviderError as error:
            self._setup_failed(setup_log, f"set-up failed: {error.detail}")
            return
        except Exception as error:  # noqa: BLE001 - any failure of the step fails set-up
            why = f"set-up failed: the set-up step raised {type(error).__name__}: {error}"
            self._setup_failed(setup_log, why)
            return
        log("info", "setup.done")
        self._readiness = "ready"

    def _setup_failed(self, setup_log: SetupLog, why: str) -> None:
        setup_log.push(why)
        self._log_tail = [
            self.redactor.truncate_redacted(line, MAX_SETUP_LINE_BYTES) for line in setup_log.tail()
        ]
        log("error", "setup.fail", log_tail=self._log_tail)
        self._readiness = "failed"

    def health(self) -> tuple[int, dict[str, Any]]:
        """What `/healthz` answers now: the status and the document."""
        if self._readiness == "starting":
            state = "starting"
        elif self._readiness == "failed":
            state = "setup_failed"
        elif self._busy >= self.concurrency:
            state = "busy"
        else:
            state = "ready"
        health: dict[str, Any] = {
            "ok": True,
            "image_digest": self.config.image_digest or "",
            "ref": self.processor.ref,
            "state": state,
            "concurrency": self.concurrency,
        }
        if state == "setup_failed":
            health["log_tail"] = self._log_tail
        return (200 if state in ("ready", "busy") else 503), health

    # Accepting a request.

    def accept(self, content_type: str | None, body: bytes | str, started: int) -> Accepted | Outcome:
        """Checks a request: an image digest to run from (else 500 `ERR_IMAGE_UNPINNED`),
        JSON content type (else 415), a JSON body (else 400), a valid payload for this
        processor, a usable execution id and a valid write prefix (else 400). `body` is
        the bytes, or why they could not be read."""
        parsed: Any = None
        parse_error = ""
        if isinstance(body, bytes):
            try:
                parsed = loads(body)
            except JsonError as error:
                parse_error = str(error) or "not JSON"
        hint_id = ""
        hint_mode: Mode = "mock"
        if isinstance(parsed, dict):
            if isinstance(parsed.get("execution_id"), str):
                hint_id = parsed["execution_id"]
            if parsed.get("mode") == "real":
                hint_mode = "real"
        if self.config.image_digest is None:
            return self.fail(hint_id, hint_mode, started, None, _Failure(500, _missing_digest()))
        try:
            return self._validate(
                content_type, body, parsed, parse_error, started, self.config.image_digest
            )
        except _Failure as failure:
            return self.fail(hint_id, hint_mode, started, None, failure)

    def _validate(
        self,
        content_type: str | None,
        body: bytes | str,
        parsed: Any,
        parse_error: str,
        started: int,
        image_digest: str,
    ) -> Accepted:
        media_type = content_type or ""
        essence = media_type.split(";", 1)[0].strip()
        if essence.lower() != "application/json":
            raise _inputs_failure(
                415, f"content type must be application/json, not `{media_type}`"
            )
        if isinstance(body, str):
            raise _inputs_failure(400, f"cannot read body: {body}")
        if parse_error:
            raise _inputs_failure(400, f"body is not JSON: {parse_error}")
        try:
            payload = read_payload(parsed)
        except SerdeError as error:
            raise _inputs_failure(400, f"run payload: {error}") from None
        if payload["schema"] != PAYLOAD_SCHEMA:
            raise _inputs_failure(
                400,
                f"run payload schema must be `{PAYLOAD_SCHEMA}`, not `{payload['schema']}`",
            )
        if payload["ref"] != self.processor.ref:
            raise _inputs_failure(
                400,
                f"payload is for `{payload['ref']}` but this processor is `{self.processor.ref}`",
            )
        execution_id = payload["execution_id"]
        _check_execution_id(execution_id)
        if not isinstance(payload["inputs"], dict):
            raise _inputs_failure(400, "inputs must be a JSON object")
        try:
            prefix = WritePrefix.receive(payload["write_prefix"], execution_id)
        except CanonError as error:
            raise _Failure(400, error) from None
        return Accepted(
            execution_id=execution_id,
            mode=payload["mode"],
            inputs=payload["inputs"],
            upstream=payload["upstream"],
            prefix=prefix,
            started=started,
            image_digest=image_digest,
        )

    def claim_slot(self, accepted: Accepted) -> Outcome | None:
        """Takes a run slot for an accepted run (`release` gives it back), or answers:
        busy (409) before set-up has ended or when every slot is taken, a refusal (503)
        after a failed set-up."""

        def refuse(status: int, code: ErrorCode, detail: str) -> Outcome:
            failure = _Failure(status, CanonError(code, detail))
            return self.fail(accepted.execution_id, accepted.mode, accepted.started, None, failure)

        if self._readiness == "starting":
            return refuse(409, ErrorCode.PROCESSOR_BUSY, "set-up has not finished; try again")
        if self._readiness == "failed":
            tail = self._log_tail[-1] if self._log_tail else ""
            return refuse(503, ErrorCode.PROVIDER, tail)
        if self._busy >= self.concurrency:
            return refuse(
                409,
                ErrorCode.PROCESSOR_BUSY,
                f"all {self.concurrency} run slots are taken; try again when one ends",
            )
        self._busy += 1
        return None

    def release(self) -> None:
        """Gives back a slot taken by `claim_slot`."""
        self._busy -= 1

    def detach(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Runs `work` on its own task, kept until it ends: a dropped connection never
        stops a run halfway."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self) -> None:
        """Waits for every detached run to end, then lets the provider threads go."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._provider_threads.shutdown(wait=False)

    # Running.

    async def execute_detached(self, accepted: Accepted, progress: Progress) -> Outcome:
        """Runs an accepted run (its slot taken) on its own task and frees the slot when
        it ends; the outcome, even if the caller goes away."""

        async def run() -> Outcome:
            try:
                return await self.execute(accepted, progress)
            except Exception as error:  # noqa: BLE001 - an SDK fault still answers
                log("error", "process.panic", panic=traceback.format_exc())
                failure = _Failure(500, CanonError(ErrorCode.PROVIDER, f"run stopped: {error}"))
                return self.fail(accepted.execution_id, accepted.mode, accepted.started, None, failure)
            finally:
                self.release()

        return await asyncio.shield(self.detach(run()))

    async def execute(self, accepted: Accepted, progress: Progress) -> Outcome:
        """Runs an accepted run to its envelope, reporting each stage to `progress`."""
        progress("accepted")
        log(
            "info",
            "run.start",
            execution_id=accepted.execution_id,
            processor_ref=self.processor.ref,
            mode=accepted.mode,
        )
        secrets = self._secrets_for(accepted.mode)
        fingerprint = env_fingerprint(
            [
                ("image_digest", accepted.image_digest),
                ("mode", accepted.mode),
                ("ref", self.processor.ref),
                ("secrets", ",".join(secrets)),
                *self.config.runtime_limits(),
            ]
        )
        try:
            envelope = await self._produce(accepted, secrets, fingerprint, progress)
        except _Failure as failure:
            return self.fail(
                accepted.execution_id, accepted.mode, accepted.started, fingerprint, failure
            )
        log(
            "info",
            "run.settle",
            execution_id=accepted.execution_id,
            duration_ms=envelope["meta"]["duration_ms"],
        )
        return Outcome(200, envelope)

    def _secrets_for(self, mode: Mode) -> dict[str, str]:
        if mode == "mock":
            return {}
        return {
            name: value
            for name in self.processor.required_secrets
            if (value := self.config.var(name)) is not None
        }

    async def _produce(
        self,
        accepted: Accepted,
        secrets: dict[str, str],
        fingerprint: str,
        progress: Progress,
    ) -> dict[str, Any]:
        if accepted.mode == "real":
            for name in self.processor.required_secrets:
                if name not in secrets:
                    raise _Failure(400, CanonError(ErrorCode.MISSING_SECRET, name))
        env = {
            name: value
            for name in self.processor.passthrough_env
            if (value := self.config.var(name)) is not None
        }
        hashed = inputs_hash(accepted.inputs)
        try:
            artifacts = input_artifacts(accepted.inputs)
        except CanonError as error:
            raise _Failure(400, error) from None
        context = Context(
            execution_id=accepted.execution_id,
            processor_ref=self.processor.ref,
            mode=accepted.mode,
            inputs_hash=hashed,
            secrets=secrets,
            env=env,
            artifacts=ArtifactReader(self.config.artifacts_root, artifacts),
        )

        progress("provider_started")
        result = await self._call_provider(accepted.inputs, context)
        progress("provider_finished")

        files: list[PlannedFile] = []
        entries: list[OutputEntry] = []
        try:
            for output in result.outputs:
                path = accepted.prefix.output_path(output.path)
                _check_media_type(path, output.mime)
                entries.append(OutputEntry(path, cid(output.data), len(output.data), output.mime))
                files.append(PlannedFile(path, output.data))
            index = build_index(entries)
            files.append(PlannedFile(accepted.prefix.index_path, index_bytes(index)))
            receipt_paths = [
                accepted.prefix.receipt_path,
                execution_receipt_path(accepted.execution_id),
            ]
            layout = check_layout(files, receipt_paths)
        except CanonError as error:
            raise _Failure(500, error) from None
        receipt = Receipt(
            execution_id=accepted.execution_id,
            processor_ref=self.processor.ref,
            image_digest=accepted.image_digest,
            env_fingerprint=fingerprint,
            inputs_hash=hashed,
            hash_schema=HASH_SCHEMA,
            outputs_index=accepted.prefix.index_path,
            processor_info=result.processor_info,
            usage=dict(result.usage),
            timestamp_utc="",
            duration_ms=0,
            mode=accepted.mode,
            upstream=accepted.upstream,
            artifacts_read=context.artifacts_read(),
        )

        def stamp() -> bytes:
            # Stamped once the outputs and the index are on disk.
            receipt.duration_ms = duration_ms(accepted.started)
            receipt.timestamp_utc = timestamp_utc()
            return receipt.to_bytes()

        def warn(path: Any, error: OSError) -> None:
            log("warn", "artifacts.rollback_failed", path=str(path), error=str(error))

        try:
            await asyncio.to_thread(
                write_evidence, self.config.artifacts_root, layout, stamp, warn
            )
        except CanonError as error:
            raise _Failure(500, error) from None
        progress("outputs_written")

        return {
            "status": "success",
            "execution_id": accepted.execution_id,
            "outputs": [entry.to_json() for entry in index],
            "index_path": accepted.prefix.index_path,
            "meta": {
                "image_digest": accepted.image_digest,
                "env_fingerprint": fingerprint,
                "duration_ms": receipt.duration_ms,
                "mode": accepted.mode,
            },
        }

    async def _call_provider(self, inputs: dict[str, Any], context: Context) -> ProviderResult:
        provider = self.processor.provider
        try:
            if _is_async(provider):
                result = await provider(inputs, context)  # type: ignore[misc]
            else:
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(
                    self._provider_threads, provider, inputs, context
                )
                if inspect.isawaitable(result):
                    result = await result
        except ProviderError as error:
            if error.kind == "inputs":
                raise _inputs_failure(400, error.detail) from None
            if error.canon is not None:
                raise _Failure(_canon_status(error.canon.code), error.canon) from None
            raise _Failure(502, CanonError(ErrorCode.PROVIDER, error.detail)) from None
        except Exception as error:  # noqa: BLE001 - a provider's fault is an error envelope
            log("error", "process.panic", panic=traceback.format_exc())
            detail = f"the provider raised {type(error).__name__}: {error}"
            raise _Failure(500, CanonError(ErrorCode.PROVIDER, detail)) from None
        problem = _result_problem(result)
        if problem:
            raise _Failure(500, CanonError(ErrorCode.PROVIDER, f"the provider returned {problem}"))
        checked: ProviderResult = result
        return checked

    def fail(
        self,
        execution_id: str,
        mode: Mode,
        started: int,
        fingerprint: str | None,
        failure: _Failure,
    ) -> Outcome:
        """An error outcome, logged. Its detail is redacted, then cut to 4 KiB."""
        detail = self.redactor.truncate_redacted(failure.error.detail, MAX_ERROR_DETAIL_BYTES)
        error = CanonError(failure.error.code, detail)
        log(
            "warn",
            "run.fail",
            execution_id=execution_id,
            code=error.code.wire,
            message=error.message,
            status=failure.status,
        )
        meta: dict[str, Any] = {}
        if self.config.image_digest is not None:
            meta["image_digest"] = self.config.image_digest
        if fingerprint is not None:
            meta["env_fingerprint"] = fingerprint
        meta["duration_ms"] = duration_ms(started)
        meta["mode"] = mode
        envelope = {
            "status": "error",
            "execution_id": execution_id,
            "error": {"code": error.code.wire, "message": error.message},
            "meta": meta,
        }
        return Outcome(failure.status, envelope)


def _canon_status(code: ErrorCode) -> int:
    """The status of a canonical error the SDK raised for a provider: 400 for inputs it
    refused or could not find, 422 for an input artifact whose bytes do not match, 502
    otherwise."""
    if code in (ErrorCode.INPUTS, ErrorCode.NOT_FOUND):
        return 400
    if code == ErrorCode.ARTIFACT_MISMATCH:
        return 422
    return 502


def _is_async(function: Any) -> bool:
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)
    )


def _result_problem(result: Any) -> str:
    """What is wrong with what a provider returned, or the empty string."""
    if not isinstance(result, ProviderResult):
        return f"{type(result).__name__}, not a ProviderResult"
    if not isinstance(result.outputs, (list, tuple)):
        return "outputs that are not a list"
    for output in result.outputs:
        if not isinstance(output, Output):
            return f"an output of type {type(output).__name__}, not an Output"
        if not isinstance(output.path, str) or not isinstance(output.mime, str):
            return f"an output whose path or mime is not a string: {output.path!r}"
        if not isinstance(output.data, bytes):
            return f"output `{output.path}` whose data is not bytes"
    if not isinstance(result.processor_info, str):
        return "a processor_info that is not a string"
    if not isinstance(result.usage, Mapping):
        return "a usage that is not a mapping"
    for name, count in result.usage.items():
        if not isinstance(name, str):
            return f"a usage name that is not a string: {name!r}"
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= _U64_MAX:
            return f"usage `{name}` = {count!r}, not a non-negative 64-bit integer"
    return ""


def duration_ms(started: int) -> int:
    """Milliseconds since `started` (`time.monotonic_ns()` at the request's arrival),
    rounded up: a run that took any time at all is at least 1 ms."""
    elapsed = time.monotonic_ns() - started
    return -(-elapsed // 1_000_000)


def timestamp_utc() -> str:
    """Now, as RFC 3339 UTC with milliseconds (`2026-01-01T00:00:00.000Z`)."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _check_execution_id(execution_id: str) -> None:
    allowed = all(c.isascii() and (c.isalnum() or c in "._-") for c in execution_id)
    valid = (
        0 < len(execution_id.encode("utf-8", "surrogatepass")) <= MAX_EXECUTION_ID_BYTES
        and allowed
        and execution_id not in (".", "..")
    )
    if not valid:
        raise _Failure(
            400,
            CanonError(
                ErrorCode.INPUTS,
                f"execution_id must be 1-{MAX_EXECUTION_ID_BYTES} characters of "
                f"[A-Za-z0-9._-]: `{execution_id}`",
            ),
        )


def _check_media_type(path: str, mime: str) -> None:
    essence = mime.split(";", 1)[0]
    kind, slash, sub = essence.partition("/")
    valid = bool(slash and kind and sub) and all("!" <= c <= "~" or c == " " for c in mime)
    if not valid:
        raise CanonError(ErrorCode.PROVIDER, f"output `{path}` has invalid media type `{mime}`")
