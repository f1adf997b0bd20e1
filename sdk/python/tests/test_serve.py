"""`serve` as a processor's `main` runs it: a real process configured by its environment,
on a unix socket, stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from proctor_sdk._json import dumps, loads
from proctor_sdk.testing import UnixHTTPConnection, request

SRC = Path(__file__).resolve().parents[1] / "src"

MAIN = textwrap.dedent(
    """
    from proctor_sdk import Output, Processor, ProviderResult, serve

    def provider(inputs, ctx):
        return ProviderResult(outputs=[Output.text("echo.txt", inputs["text"])],
                              processor_info="echo")

    if __name__ == "__main__":
        serve(Processor(ref="test/echo@1", provider=provider, required_secrets=["ECHO_KEY"]))
    """
)


def start(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    main = tmp_path / "main.py"
    main.write_text(MAIN)
    environment = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(SRC), **env}
    return subprocess.Popen(
        [sys.executable, str(main)], env=environment, stderr=subprocess.PIPE
    )


def test_serves_on_the_socket_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    socket_path = tmp_path / "processor.sock"
    socket_path.write_bytes(b"stale")
    process = start(
        tmp_path,
        {
            "PROCTOR_SOCKET": str(socket_path),
            "PROCTOR_IMAGE_DIGEST": "sha256:served",
            "PROCTOR_ARTIFACTS_ROOT": str(tmp_path / "artifacts"),
            "ECHO_KEY": "echo-key-0123456789",
        },
    )
    try:
        while True:
            # The stale file refuses connections until the server has replaced it.
            try:
                health = request(UnixHTTPConnection(str(socket_path)), "GET", "/healthz")
                break
            except OSError:
                assert process.poll() is None, process.stderr.read()  # type: ignore[union-attr]
                threading.Event().wait(0.01)
        assert health.status == 200
        assert health.json()["image_digest"] == "sha256:served"
        payload = {
            "schema": "v1",
            "execution_id": "sock-1",
            "ref": "test/echo@1",
            "mode": "mock",
            "inputs": {"text": "over the socket"},
            "write_prefix": "/artifacts/outputs/test/sock-1/",
        }
        answer = request(
            UnixHTTPConnection(str(socket_path)),
            "POST",
            "/run",
            dumps(payload).encode(),
            {"content-type": "application/json"},
        )
        assert answer.status == 200, answer.body
        written = tmp_path / "artifacts/outputs/test/sock-1/outputs/echo.txt"
        assert written.read_bytes() == b"over the socket"
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert not socket_path.exists()
    events = [loads(line)["event"] for line in stderr.splitlines()]
    assert events[0] == "server.listening" and events[-1] == "server.stopped", events
    assert {"run.start", "run.settle"} <= set(events)
    assert b"echo-key-0123456789" not in stderr


def test_a_bad_configuration_exits_with_status_1(tmp_path: Path) -> None:
    process = start(tmp_path, {"PROCTOR_PORT": "eighty"})
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 1
    assert stderr.decode().strip() == (
        "PROCTOR_PORT=`eighty` is invalid: invalid digit found in string"
    )
