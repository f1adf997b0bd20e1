"""Test support: a processor served in-process on 127.0.0.1 with a temporary artifacts
root, and helpers to post payloads and read what a run wrote — the Rust SDK's `testing`
feature, for processor tests.

```python
from proctor_sdk.testing import TestServer

def test_upper():
    with TestServer(Processor(ref="example/upper@1", provider=provider)) as server:
        envelope = server.run_ok("e1", "mock", {"text": "hi"})
        assert server.output(envelope, "upper.txt") == b"HI"
```

Helpers raise `AssertionError` on failure, as test code does; never use them outside tests.

`python -m proctor_sdk.testing replay CASES_JSON ARTIFACTS_DIR` replays the run cases of a
golden file (a payload and a provider result each) through this SDK, for the test that
compares the Python and Rust SDKs byte for byte.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._config import ServerConfig
from ._evidence import fs_path
from ._hashing import cid
from ._json import dumps, loads
from ._paths import execution_receipt_path, parse_world_path
from ._server import Server, bind
from .provider import Context, Mode, Output, Processor, ProviderResult

#: The image digest a `TestServer` reports.
TEST_IMAGE_DIGEST = "sha256:test"


class UnixHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection over a unix socket (a processor in `mock` mode listens on one)."""

    def __init__(self, path: str, timeout: float = 60.0) -> None:
        super().__init__("processor", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class HttpAnswer:
    """An HTTP answer: status, headers (names lowercase) and body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        """The body as JSON."""
        return loads(self.body)


def request(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> HttpAnswer:
    """Sends one request on `connection` and reads the whole answer."""
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        data = response.read()
        answer_headers = {name.lower(): value for name, value in response.getheaders()}
        return HttpAnswer(response.status, answer_headers, data)
    finally:
        connection.close()


def sse_events(body: bytes) -> list[tuple[str, str]]:
    """An SSE body as `(event, data)` pairs, comments skipped."""
    events = []
    for block in body.decode("utf-8").split("\n\n"):
        fields = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        if "event" in fields:
            events.append((fields["event"], fields.get("data", "")))
    return events


class TestServer:
    """A processor served on an ephemeral 127.0.0.1 port from a background thread, with a
    temporary artifacts root (or the one given); `close` (or leaving the `with` block)
    stops it and deletes a temporary root."""

    __test__ = False

    def __init__(
        self,
        processor: Processor,
        env: Mapping[str, str] | None = None,
        *,
        artifacts_root: Path | None = None,
    ) -> None:
        self._temporary = None if artifacts_root else tempfile.TemporaryDirectory()
        root = artifacts_root or Path(self._temporary.name)  # type: ignore[union-attr]
        variables = {
            "PROCTOR_IMAGE_DIGEST": TEST_IMAGE_DIGEST,
            "PROCTOR_ARTIFACTS_ROOT": str(root),
            "PROCTOR_BIND": "127.0.0.1",
            "PROCTOR_PORT": "0",
            **(env or {}),
        }
        self.processor = processor
        self.config = ServerConfig.from_vars(variables)
        self.artifacts_root = self.config.artifacts_root
        listener = bind(self.config)
        self.port = listener.getsockname()[1]
        # The socket listens already: requests wait in its backlog until the server runs.
        self._server = Server(self.config, processor, listener)
        self._thread = threading.Thread(target=asyncio.run, args=(self._server.serve(),), daemon=True)
        self._thread.start()
        # Answered once the server runs: from here on its log lines belong to the caller.
        self.request("GET", "/healthz")

    def __enter__(self) -> TestServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stops the server (runs in flight finish first) and deletes a temporary root."""
        self._server.stop()
        self._thread.join()
        if self._temporary is not None:
            self._temporary.cleanup()

    # Requests.

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str | None = None
    ) -> HttpAnswer:
        """Sends one request and reads the whole answer."""
        headers = {} if content_type is None else {"content-type": content_type}
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        return request(connection, method, path, body, headers)

    def health(self) -> tuple[int, dict[str, Any]]:
        """`GET /healthz`: the status and the document."""
        answer = self.request("GET", "/healthz")
        return answer.status, answer.json()

    def payload(self, execution_id: str, mode: Mode, inputs: Any) -> dict[str, Any]:
        """A run payload for this processor, writing under
        `/artifacts/outputs/test/{execution_id}/`."""
        return {
            "schema": "v1",
            "execution_id": execution_id,
            "ref": self.processor.ref,
            "mode": mode,
            "inputs": inputs,
            "write_prefix": f"/artifacts/outputs/test/{execution_id}/",
        }

    def post(self, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        """Posts `body` as JSON (bytes as they are) and returns the status and the
        envelope."""
        data = body if isinstance(body, bytes) else dumps(body).encode("utf-8")
        answer = self.request("POST", path, data, "application/json")
        assert answer.headers.get("content-type") == "application/json", answer.headers
        envelope = answer.json()
        assert envelope["status"] in ("success", "error"), envelope
        return answer.status, envelope

    def stream(self, body: Any) -> list[tuple[str, str]]:
        """Posts `body` to `/run-stream` and returns its SSE events."""
        answer = self.request("POST", "/run-stream", dumps(body).encode("utf-8"), "application/json")
        assert answer.status == 200, answer.body
        assert answer.headers["content-type"] == "text/event-stream", answer.headers
        return sse_events(answer.body)

    def run(self, execution_id: str, mode: Mode, inputs: Any) -> tuple[int, dict[str, Any]]:
        """Posts `payload(...)` to `/run`."""
        return self.post("/run", self.payload(execution_id, mode, inputs))

    def run_ok(self, execution_id: str, mode: Mode, inputs: Any) -> dict[str, Any]:
        """Runs and requires success; the envelope."""
        status, envelope = self.run(execution_id, mode, inputs)
        assert status == 200 and envelope["status"] == "success", (status, envelope)
        return envelope

    def run_err(self, execution_id: str, mode: Mode, inputs: Any) -> tuple[int, str, str]:
        """Runs and requires an error; the status, code and message."""
        status, envelope = self.run(execution_id, mode, inputs)
        assert envelope["status"] == "error", (status, envelope)
        return status, envelope["error"]["code"], envelope["error"]["message"]

    # What a run wrote.

    def fs_path(self, world_path: str) -> Path:
        """The file backing a world path."""
        return fs_path(self.artifacts_root, parse_world_path(world_path))

    def read(self, world_path: str) -> bytes:
        """The bytes at a world path."""
        return self.fs_path(world_path).read_bytes()

    def output(self, envelope: dict[str, Any], relative: str) -> bytes:
        """The bytes of the output named `relative` (under `outputs/`) in `envelope`."""
        prefix = envelope["index_path"].removesuffix("outputs.json")
        path = parse_world_path(f"{prefix}outputs/{relative}")
        listed = [output["path"] for output in envelope["outputs"]]
        assert path in listed, f"no output {relative} in {listed}"
        return self.read(path)

    def receipt(self, envelope: dict[str, Any]) -> dict[str, Any]:
        """The receipt under `/artifacts/execution/{execution_id}/`, after checking it is
        byte-identical to the one under the write prefix."""
        data = self.read(execution_receipt_path(envelope["execution_id"]))
        prefix = envelope["index_path"].removesuffix("outputs.json")
        assert self.read(f"{prefix}receipt.json") == data, "the two receipts differ"
        receipt: dict[str, Any] = loads(data)
        return receipt

    def attach(self, file_name: str, data: bytes, mime: str) -> dict[str, str]:
        """Stores `data` as the attachment file `file_name` would be stored
        (`/artifacts/inputs/{cid}/{file_name}`) and returns its `$artifact` object with
        media type `mime`, for inputs that name an input artifact."""
        content_id = cid(data)
        raw = f"/artifacts/inputs/{content_id}/{file_name}"
        path = parse_world_path(raw)
        assert path == raw and "%" not in file_name, f"`{file_name}` cannot name an artifact"
        file = self.fs_path(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(data)
        return {"$artifact": path, "cid": content_id, "mime": mime}

    def listing(self) -> list[str]:
        """Every file and directory under the artifacts root, relative, sorted."""
        root = self.artifacts_root
        return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


# Replaying golden run cases.


def result_of(spec: Mapping[str, Any]) -> ProviderResult:
    """The provider result a golden run case describes: outputs given as `text`, `hex`
    bytes or a `json` value's text (written with `Output.json`)."""
    outputs = []
    for output in spec["outputs"]:
        if "json" in output:
            outputs.append(Output.json(output["path"], loads(output["json"].encode("utf-8"))))
        elif "hex" in output:
            outputs.append(Output(output["path"], bytes.fromhex(output["hex"]), output["mime"]))
        else:
            outputs.append(Output(output["path"], output["text"].encode("utf-8"), output["mime"]))
    return ProviderResult(
        outputs=outputs, processor_info=spec["processor_info"], usage=dict(spec["usage"])
    )


def processor_of(case: Mapping[str, Any]) -> Processor:
    """A processor that reads the input artifacts the case's result names under `reads`
    (keys of the inputs), then answers with the case's provider result."""
    result = result_of(case["result"])

    def provider(inputs: dict[str, Any], context: Context) -> ProviderResult:
        for name in case["result"].get("reads", []):
            context.read_artifact(inputs[name])
        return result

    return Processor(
        ref=case["processor_ref"],
        provider=provider,
        required_secrets=case.get("required_secrets", []),
        passthrough_env=case.get("passthrough_env", []),
    )


def replay(case: Mapping[str, Any], artifacts_root: Path) -> tuple[int, dict[str, Any]]:
    """Runs a golden run case through this SDK, writing under `artifacts_root`: its
    `stored` files put in place, then its payload text posted to `/run` of a processor
    answering with its provider result."""
    for stored in case.get("stored", []):
        file = fs_path(artifacts_root, stored["path"])
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(stored["text"].encode("utf-8"))
    with TestServer(
        processor_of(case), case.get("environment", {}), artifacts_root=artifacts_root
    ) as server:
        return server.post("/run", case["payload"].encode("utf-8"))


def _main(arguments: list[str]) -> int:
    if len(arguments) != 3 or arguments[0] != "replay":
        print("usage: python -m proctor_sdk.testing replay CASES_JSON ARTIFACTS_DIR", file=sys.stderr)
        return 2
    cases = json.loads(Path(arguments[1]).read_text(encoding="utf-8"))["cases"]
    for case in cases:
        root = Path(arguments[2]) / case["name"]
        root.mkdir(parents=True, exist_ok=True)
        status, envelope = replay(case, root)
        print(dumps({"name": case["name"], "status": status, "envelope": envelope}))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
