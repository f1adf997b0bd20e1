"""llm/litellm@2 served in-process by the SDK's test server: mock mode through litellm's mock
response (byte-stable, no secret, no connection anywhere), real mode against a fake
OpenAI-compatible server on 127.0.0.1 that the test starts."""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from main import PROCESSOR  # noqa: E402
from proctor_sdk.testing import TestServer  # noqa: E402

API_KEY = "sk-litellm-test-canary"
SMOKE = {"schema": "v1", "params": {}}
CHAT = {
    "schema": "v1",
    "params": {
        "model": "gpt-4o-mini",
        "temperature": 0,
        "max_tokens": 64,
        "messages": [
            {"role": "system", "content": "You answer in one short sentence."},
            {"role": "user", "content": "What does a receipt prove?"},
        ],
    },
}
REPLY = "A receipt proves what ran, on what, and what it wrote."


class FakeOpenAI:
    """`POST /v1/chat/completions` on an ephemeral 127.0.0.1 port: records each request's
    headers and body and answers `status` with a chat completion of `REPLY`."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[tuple[dict[str, str], Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the handler's API
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                fake.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                if self.path != "/v1/chat/completions":
                    answer, code = {"error": {"message": f"no route {self.path}"}}, 404
                elif status != 200:
                    answer, code = {"error": {"message": "upstream is down", "type": "server_error"}}, status
                else:
                    answer, code = {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": REPLY},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
                    }, 200
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    yield fake
    fake.close()


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every address a socket of this process connects to, in order."""
    seen: list[Any] = []
    connect = socket.socket.connect

    def recording(self: socket.socket, address: Any) -> None:
        seen.append(address)
        connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", recording)
    return seen


def real_server(base_url: str) -> TestServer:
    return TestServer(PROCESSOR, {"OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": base_url})


def test_mock_answers_with_litellms_mock_response_byte_stable_and_offline(
    fake_openai: FakeOpenAI, connections: list[Any]
) -> None:
    # Secrets and a reachable endpoint are there, and mock mode uses neither.
    with real_server(f"http://127.0.0.1:{fake_openai.port}/v1") as server:
        first = server.run_ok("e1", "mock", SMOKE)
        second = server.run_ok("e2", "mock", SMOKE)
        reply = server.output(first, "text/response.txt").decode()
        assert reply == server.output(second, "text/response.txt").decode()
        metadata = json.loads(server.output(first, "metadata.json"))
        assert server.output(second, "metadata.json") == server.output(first, "metadata.json")
        chat = server.run_ok("e3", "mock", CHAT)
        chat_reply = server.output(chat, "text/response.txt").decode()
    assert [o["cid"] for o in first["outputs"]] == [o["cid"] for o in second["outputs"]]
    assert reply.startswith('Mock reply from mock-gpt to 1 message(s). You said: "Hello from proctor". ')
    assert reply.endswith(".\n") and len(reply.split()) > 12
    assert metadata["model"] == "mock-gpt" and metadata["finish_reason"] == "stop"
    assert metadata["total_tokens"] == metadata["prompt_tokens"] + metadata["completion_tokens"]
    assert chat_reply.startswith(
        'Mock reply from gpt-4o-mini to 2 message(s). You said: "What does a receipt prove?". '
    )
    assert fake_openai.requests == []
    assert all(address[0] == "127.0.0.1" and address[1] == server.port for address in connections), connections


def test_real_calls_the_endpoint_with_the_secret_as_the_only_credential(fake_openai: FakeOpenAI) -> None:
    with real_server(f"http://user:hunter2@127.0.0.1:{fake_openai.port}/v1") as server:
        envelope = server.run_ok("e1", "real", CHAT)
        assert server.output(envelope, "text/response.txt").decode() == REPLY
        metadata = json.loads(server.output(envelope, "metadata.json"))
    assert metadata == {
        "model": "gpt-4o-mini",
        "finish_reason": "stop",
        "prompt_tokens": 5,
        "completion_tokens": 7,
        "total_tokens": 12,
    }
    assert envelope["status"] == "success"
    [(headers, body)] = fake_openai.requests
    assert headers["authorization"] == f"Bearer {API_KEY}"
    assert "hunter2" not in json.dumps(headers)
    assert body["model"] == "gpt-4o-mini"
    assert body["messages"] == CHAT["params"]["messages"]
    assert body["max_tokens"] == 64 and body["temperature"] == 0


def test_real_needs_a_model_and_messages(fake_openai: FakeOpenAI) -> None:
    with real_server(f"http://127.0.0.1:{fake_openai.port}/v1") as server:
        status, code, message = server.run_err("e1", "real", SMOKE)
    assert (status, code) == (400, "ERR_INPUTS")
    assert "real mode needs params.model" in message
    assert fake_openai.requests == []


def test_a_failing_provider_is_err_provider_without_the_secret() -> None:
    failing = FakeOpenAI(status=500)
    try:
        with real_server(f"http://127.0.0.1:{failing.port}/v1") as server:
            status, code, message = server.run_err("e1", "real", CHAT)
    finally:
        failing.close()
    assert (status, code) == (502, "ERR_PROVIDER")
    assert "the provider call failed" in message
    assert API_KEY not in message
    assert len(failing.requests) == 1, "no retries"
