"""The HTTP contract — `GET /healthz`, `POST /run`, `POST /run-stream` — as a Starlette
application served by uvicorn on a port or a unix socket until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import stat
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ._config import ConfigError, ServerConfig
from ._json import dumps
from ._log import JsonLinesHandler, add_secret_values, log
from ._redact import redactor_from_env
from ._runner import Accepted, Outcome, Runner
from .provider import Processor

#: Largest accepted request body.
MAX_BODY_BYTES = 32 * 1024 * 1024
#: How long an SSE stream stays silent before a keep-alive comment.
KEEP_ALIVE_SECONDS = 15.0


def _json_response(status: int, body: bytes) -> Response:
    return Response(body, status_code=status, headers={"content-type": "application/json"})


def _answer(outcome: Outcome) -> Response:
    return _json_response(outcome.status, outcome.body())


async def _read_body(request: Request) -> bytes | str:
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return f"length limit exceeded (limit {MAX_BODY_BYTES} bytes)"
        chunks.append(chunk)
    return b"".join(chunks)


async def _accept(runner: Runner, request: Request) -> Accepted | Outcome:
    """Reads and checks a request and takes a run slot for it, or its error answer."""
    started = time.monotonic_ns()
    body = await _read_body(request)
    accepted = runner.accept(request.headers.get("content-type"), body, started)
    if isinstance(accepted, Outcome):
        return accepted
    refused = runner.claim_slot(accepted)
    return accepted if refused is None else refused


def create_app(config: ServerConfig, processor: Processor) -> Starlette:
    """The contract's routes over one runner, whose set-up step starts with the app;
    runs still going when the server stops finish first."""
    runner = Runner(config, processor)

    async def healthz(request: Request) -> Response:
        status, health = runner.health()
        return _json_response(status, dumps(health).encode("utf-8"))

    async def run(request: Request) -> Response:
        accepted = await _accept(runner, request)
        if isinstance(accepted, Outcome):
            return _answer(accepted)
        return _answer(await runner.execute_detached(accepted, lambda stage: None))

    async def run_stream(request: Request) -> Response:
        accepted = await _accept(runner, request)
        if isinstance(accepted, Outcome):
            return _answer(accepted)
        events: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()

        def progress(stage: str) -> None:
            events.put_nowait(("progress", dumps({"stage": stage})))

        async def run_then_done(accepted: Accepted) -> None:
            outcome = await runner.execute_detached(accepted, progress)
            events.put_nowait(("done", dumps(outcome.envelope)))
            events.put_nowait(None)

        runner.detach(run_then_done(accepted))
        return StreamingResponse(
            _frames(events),
            headers={"content-type": "text/event-stream", "cache-control": "no-cache"},
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runner.detach(runner.set_up())
        yield
        await runner.drain()

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/run", run, methods=["POST"]),
            Route("/run-stream", run_stream, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


async def _frames(events: asyncio.Queue[tuple[str, str] | None]) -> AsyncIterator[bytes]:
    """The SSE frames of one run: `progress` events, then one `done` event; a comment
    whenever the run is silent for `KEEP_ALIVE_SECONDS`."""
    while True:
        try:
            event = await asyncio.wait_for(events.get(), KEEP_ALIVE_SECONDS)
        except asyncio.TimeoutError:
            yield b": \n\n"
            continue
        if event is None:
            return
        name, data = event
        yield f"event: {name}\ndata: {data}\n\n".encode("utf-8")


def bind(config: ServerConfig) -> socket.socket:
    """The listening socket: the unix socket `PROCTOR_SOCKET` (a stale file replaced) or
    `PROCTOR_BIND:PROCTOR_PORT`."""
    if config.socket is not None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(config.socket)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(config.socket))
    else:
        family = socket.AF_INET6 if ":" in config.bind else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((config.bind, config.port))
    listener.listen(1024)
    listener.setblocking(False)
    return listener


class Server:
    """A processor server on a bound socket; `stop` asks it to finish (in-flight runs
    first)."""

    def __init__(self, config: ServerConfig, processor: Processor, listener: socket.socket) -> None:
        self.config = config
        self.processor = processor
        self.listener = listener
        self._server = uvicorn.Server(
            uvicorn.Config(
                create_app(config, processor),
                log_config=None,
                access_log=False,
                lifespan="on",
            )
        )

    @property
    def started(self) -> bool:
        """Whether it accepts connections."""
        return self._server.started

    def stop(self) -> None:
        """Asks the server to stop; safe from any thread or a signal handler."""
        self._server.should_exit = True

    async def serve(self) -> None:
        """Serves until stopped, then removes its unix socket file."""
        address = self.listener.getsockname()
        where = {"socket": address} if self.config.socket else {"addr": f"{address[0]}:{address[1]}"}
        log(
            "info",
            "server.listening",
            processor_ref=self.processor.ref,
            image_digest=self.config.image_digest or "",
            **where,
        )
        try:
            await self._server.serve(sockets=[self.listener])
        finally:
            self.listener.close()
            if self.config.socket is not None:
                _remove_socket(self.config.socket)
        log("info", "server.stopped", **where)


def _remove_socket(path: Path) -> None:
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.remove(path)
    except OSError as error:
        log("warn", "server.socket_left", socket=str(path), error=str(error))


def _route_server_logs() -> None:
    """The HTTP server's own log records go out as redacted JSON lines, warnings and
    worse only."""
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "asyncio"):
        logger = logging.getLogger(name)
        logger.handlers = [JsonLinesHandler()]
        logger.setLevel(logging.WARNING)
        logger.propagate = False


@contextlib.contextmanager
def _signals_stop(server: Server) -> Iterator[None]:
    """SIGTERM and SIGINT stop `server` gracefully, and nothing else, while it serves."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def stop(signum: int, frame: Any) -> None:
        server.stop()

    for sig in previous:
        signal.signal(sig, stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(processor: Processor) -> None:
    """Serves `processor` with the configuration read from the environment until SIGTERM
    or Ctrl-C: on `PROCTOR_BIND:PROCTOR_PORT`, or the unix socket `PROCTOR_SOCKET` when
    set. Logs go to stderr as JSON lines, the values of secret-looking variables and of the
    processor's secrets and pass-through variables redacted. The whole `main` of a
    processor; a bad configuration exits with status 1."""
    try:
        config = ServerConfig.from_vars(os.environ)
    except ConfigError as error:
        print(error, file=sys.stderr)
        raise SystemExit(1) from None
    declared = [*processor.required_secrets, *processor.passthrough_env]
    add_secret_values(redactor_from_env(dict(os.environ), declared))
    _route_server_logs()
    try:
        listener = bind(config)
    except OSError as error:
        where = config.socket or f"{config.bind}:{config.port}"
        log("error", "server.fail", error=f"cannot listen on {where}: {error}")
        raise SystemExit(1) from None
    server = Server(config, processor, listener)
    with _signals_stop(server):
        asyncio.run(server.serve())
