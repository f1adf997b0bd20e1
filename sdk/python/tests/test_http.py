"""The HTTP contract against a server on 127.0.0.1 with a temporary artifacts root
(`proctor_sdk.testing`), as the Rust SDK's `tests/http.rs` checks it."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from proctor_sdk import Context, Output, Processor, ProviderError, ProviderResult, SetupLog
from proctor_sdk._hashing import cid, inputs_hash
from proctor_sdk._evidence import stable_part
from proctor_sdk._json import dumps, loads
from proctor_sdk.testing import TEST_IMAGE_DIGEST, TestServer

REF = "test/echo@1"


def echo(inputs: dict[str, Any], context: Context) -> ProviderResult:
    """Writes the files listed in `inputs.files`; reports what the context showed when
    `inputs.context` is true; fails as `inputs.fail` says."""
    fail = inputs.get("fail")
    if fail == "inputs":
        raise ProviderError.inputs("`fail` asked for it")
    if fail == "provider":
        raise ProviderError.failed(inputs.get("upstream", "upstream said no"))
    if fail == "raise":
        raise RuntimeError("asked to raise")
    outputs = [
        Output(file["path"], file.get("text", "").encode("utf-8"), file.get("mime", "text/plain"))
        for file in inputs.get("files", [])
    ]
    if inputs.get("context") is True:
        seen = {
            "mode": context.mode,
            "secrets": context.secret_names(),
            "token": context.secret("TEST_TOKEN"),
            "base_url": context.env("TEST_BASE_URL"),
            "random": context.rng().getrandbits(64),
        }
        outputs.append(Output.json("context.json", seen))
    return ProviderResult(outputs=outputs, processor_info="echo", usage={"calls": 1})


def processor(**options: Any) -> Processor:
    return Processor(
        ref=REF,
        provider=options.pop("provider", echo),
        required_secrets=["TEST_TOKEN"],
        passthrough_env=["TEST_BASE_URL"],
        **options,
    )


@pytest.fixture
def server() -> Any:
    with TestServer(processor()) as server:
        yield server


FILES_INPUTS = {
    "schema": "v1",
    "files": [
        {"path": "text/b.txt", "text": "bee\n"},
        {"path": "a.json", "text": "{}\n", "mime": "application/json"},
    ],
    "context": True,
}


def test_healthz_reports_digest_ref_state_and_concurrency(server: TestServer) -> None:
    status, health = server.health()
    assert status == 200
    assert health == {
        "ok": True,
        "image_digest": TEST_IMAGE_DIGEST,
        "ref": REF,
        "state": "ready",
        "concurrency": 1,
    }
    answer = server.request("GET", "/healthz")
    assert answer.headers["content-type"] == "application/json"


def test_concurrency_is_declared_or_set_by_the_environment() -> None:
    with TestServer(processor(concurrency=4)) as server:
        assert server.health()[1]["concurrency"] == 4
    with TestServer(processor(concurrency=4), {"PROCTOR_CONCURRENCY": "2"}) as server:
        assert server.health()[1]["concurrency"] == 2


def test_run_writes_outputs_index_and_identical_receipts(server: TestServer) -> None:
    envelope = server.run_ok("e1", "mock", FILES_INPUTS)
    prefix = "/artifacts/outputs/test/e1/"
    assert envelope["index_path"] == prefix + "outputs.json"
    assert [output["path"] for output in envelope["outputs"]] == [
        prefix + "outputs/a.json",
        prefix + "outputs/context.json",
        prefix + "outputs/text/b.txt",
    ]
    for output in envelope["outputs"]:
        data = server.read(output["path"])
        assert cid(data) == output["cid"]
        assert len(data) == output["size_bytes"]
    assert server.output(envelope, "text/b.txt") == b"bee\n"
    index = server.read(envelope["index_path"])
    assert index == dumps({"outputs": envelope["outputs"]}).encode()

    receipt = server.receipt(envelope)
    fingerprint = "image_digest=sha256:test;mode=mock;ref=test/echo@1;secrets="
    assert envelope["meta"] == {
        "image_digest": TEST_IMAGE_DIGEST,
        "env_fingerprint": fingerprint,
        "duration_ms": receipt["duration_ms"],
        "mode": "mock",
    }
    assert list(receipt) == [
        "execution_id", "processor_ref", "image_digest", "env_fingerprint", "inputs_hash",
        "hash_schema", "outputs_index", "processor_info", "usage", "timestamp_utc",
        "duration_ms", "mode",
    ]
    assert receipt["inputs_hash"] == inputs_hash(FILES_INPUTS)
    assert receipt["hash_schema"] == "jcs-blake3-v1"
    assert receipt["outputs_index"] == envelope["index_path"]
    assert (receipt["processor_info"], receipt["usage"]) == ("echo", {"calls": 1})
    assert receipt["duration_ms"] >= 1
    assert receipt["timestamp_utc"].endswith("Z") and len(receipt["timestamp_utc"]) == 24
    assert not any(".proctor-tmp-" in name for name in server.listing())


def test_the_receipt_names_the_upstream_outputs_of_the_payload(server: TestServer) -> None:
    upstream = [
        {"execution_id": "e0", "path": "/artifacts/p/e0//outputs/a.txt", "cid": cid(b"a")},
        {"execution_id": "e9", "path": "/artifacts/p/e9/outputs/b.txt", "cid": cid(b"b")},
    ]
    payload = server.payload("u1", "mock", FILES_INPUTS)
    payload["upstream"] = upstream
    status, envelope = server.post("/run", payload)
    assert status == 200, envelope
    receipt = server.receipt(envelope)
    assert receipt["upstream"][0]["path"] == "/artifacts/p/e0/outputs/a.txt"
    assert receipt["upstream"][1] == upstream[1]
    assert receipt["inputs_hash"] == inputs_hash(FILES_INPUTS)

    payload["execution_id"] = "u2"
    payload["upstream"][0]["transition"] = "stats"
    status, envelope = server.post("/run", payload)
    assert (status, envelope["error"]["code"]) == (400, "ERR_INPUTS")
    assert "unknown field `transition`" in envelope["error"]["message"]


def test_same_inputs_twice_give_identical_bytes_and_stable_receipts(server: TestServer) -> None:
    reordered = loads(
        b'{"context":true,"files":[{"path":"text/b.txt","text":"bee\\n"},'
        b'{"mime":"application/json","text":"{}\\n","path":"a.json"}],"schema":"v1"}'
    )
    first = server.run_ok("run-a", "mock", FILES_INPUTS)
    second = server.run_ok("run-b", "mock", reordered)
    for a, b in zip(first["outputs"], second["outputs"], strict=True):
        assert a["cid"] == b["cid"]
        assert server.read(a["path"]) == server.read(b["path"])
    receipt_a, receipt_b = server.receipt(first), server.receipt(second)
    assert receipt_a["execution_id"] != receipt_b["execution_id"]
    assert stable_part(receipt_a) == stable_part(receipt_b)


def test_mock_gets_no_secrets_even_when_the_environment_has_them() -> None:
    env = {"TEST_TOKEN": "tok-1234567890", "TEST_BASE_URL": "http://127.0.0.1:9"}
    with TestServer(processor(), env) as server:
        mock = server.run_ok("m1", "mock", {"context": True})
        seen = loads(server.output(mock, "context.json"))
        assert (seen["secrets"], seen["token"], seen["base_url"]) == ([], None, None)
        assert mock["meta"]["env_fingerprint"].endswith("secrets=")

        real = server.run_ok("r1", "real", {"context": True})
        seen = loads(server.output(real, "context.json"))
        assert seen["secrets"] == ["TEST_TOKEN"]
        assert (seen["token"], seen["base_url"]) == ("tok-1234567890", "http://127.0.0.1:9")
        assert seen["random"] == loads(server.output(mock, "context.json"))["random"]
        assert (
            real["meta"]["env_fingerprint"]
            == "image_digest=sha256:test;mode=real;ref=test/echo@1;secrets=TEST_TOKEN"
        )
        assert b"tok-1234567890" not in server.read("/artifacts/execution/r1/receipt.json")


def test_real_mode_without_the_secret_is_refused_before_the_provider(server: TestServer) -> None:
    status, envelope = server.run("r2", "real", FILES_INPUTS)
    assert (status, envelope["error"]["code"]) == (400, "ERR_MISSING_SECRET")
    assert "missing required secret: TEST_TOKEN" in envelope["error"]["message"]
    assert "env_fingerprint" in envelope["meta"]
    assert server.listing() == []


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("../x", "ERR_DOT_SEGMENTS"),
        ("a/../../x", "ERR_DOT_SEGMENTS"),
        ("/etc/x", "ERR_BAD_PATH"),
        ("a%2Fb", "ERR_DECODED_SLASH"),
        ("dir/", "ERR_SELECTOR_KIND_MISMATCH"),
    ],
)
def test_escaping_output_paths_are_refused_and_nothing_is_written(
    server: TestServer, path: str, code: str
) -> None:
    inputs = {"files": [{"path": "ok.txt", "text": "fine"}, {"path": path, "text": "x"}]}
    assert server.run_err("esc", "mock", inputs)[:2] == (500, code)
    assert server.listing() == []


def test_duplicate_outputs_are_refused_with_no_files(server: TestServer) -> None:
    for a, b in [("a.txt", "a.txt"), ("caf%C3%A9", "café"), ("x//y", "x/y")]:
        inputs = {"files": [{"path": a, "text": "1"}, {"path": b, "text": "2"}]}
        status, code, message = server.run_err("dup", "mock", inputs)
        assert (status, code) == (500, "ERR_OUTPUT_DUPLICATE")
        assert "duplicate output after canonicalization" in message
    inputs = {"files": [{"path": "a", "text": "1"}, {"path": "a/b", "text": "2"}]}
    assert server.run_err("dup", "mock", inputs)[1] == "ERR_BAD_PATH"
    assert server.listing() == []


def test_bad_requests_get_error_envelopes(server: TestServer) -> None:
    good = server.payload("bad", "mock", FILES_INPUTS)
    answer = server.request("POST", "/run", dumps(good).encode(), "text/plain")
    assert answer.status == 415
    assert answer.json()["error"]["code"] == "ERR_INPUTS"
    assert answer.json()["execution_id"] == "bad"
    answer = server.request("POST", "/run-stream", b"{not json", "application/json")
    assert (answer.status, answer.json()["error"]["code"]) == (400, "ERR_INPUTS")
    assert answer.headers["content-type"] == "application/json"

    def mutate(key: str, value: Any) -> dict[str, Any]:
        return {**good, key: value}

    without_inputs = {key: value for key, value in good.items() if key != "inputs"}
    for body, code in [
        (mutate("schema", "v2"), "ERR_INPUTS"),
        (mutate("ref", "other/thing@1"), "ERR_INPUTS"),
        (mutate("ref", "not a ref"), "ERR_INPUTS"),
        (mutate("mode", "dry"), "ERR_INPUTS"),
        (mutate("execution_id", "../up"), "ERR_INPUTS"),
        (mutate("inputs", [1]), "ERR_INPUTS"),
        ({**good, "extra": 1}, "ERR_INPUTS"),
        (without_inputs, "ERR_INPUTS"),
        (mutate("write_prefix", "/tmp/x/"), "ERR_BAD_FACET"),
        (mutate("write_prefix", "/streams/x/"), "ERR_WRITE_PREFIX"),
        (mutate("write_prefix", "/artifacts/../x/"), "ERR_DOT_SEGMENTS"),
        (mutate("write_prefix", "/artifacts/a%2Fb/"), "ERR_DECODED_SLASH"),
        (mutate("write_prefix", "/artifacts/o/{plan_id}/{execution_id}/"), "ERR_WRITE_PREFIX"),
    ]:
        for path in ("/run", "/run-stream"):
            status, envelope = server.post(path, body)
            assert (status, envelope["error"]["code"]) == (400, code), (path, body)
    assert server.listing() == []


def test_payload_errors_name_the_field_as_serde_does(server: TestServer) -> None:
    good = server.payload("p", "mock", {})
    for body, message in [
        ({**good, "extra": 1}, "run payload: unknown field `extra`, expected one of `schema`,"),
        ({k: v for k, v in good.items() if k != "mode"}, "run payload: missing field `mode`"),
        ({**good, "mode": "dry"}, "run payload: unknown variant `dry`, expected `mock` or `real`"),
        ({**good, "schema": 1}, "run payload: invalid type: integer `1`, expected a string"),
        ({**good, "ref": "x"}, "run payload: ERR_PROCESSOR_REF: invalid processor ref: `x` has no"),
    ]:
        status, envelope = server.post("/run", body)
        assert status == 400
        assert envelope["error"]["message"].startswith("invalid inputs payload: " + message)


def test_a_template_write_prefix_is_expanded_and_a_missing_slash_added(server: TestServer) -> None:
    for execution_id, prefix, index in [
        ("t1", "/artifacts/outputs/demo/{execution_id}", "/artifacts/outputs/demo/t1/outputs.json"),
        ("t2", "/artifacts/outputs/demo/t2", "/artifacts/outputs/demo/t2/outputs.json"),
    ]:
        payload = {**server.payload(execution_id, "mock", FILES_INPUTS), "write_prefix": prefix}
        status, envelope = server.post("/run", payload)
        assert (status, envelope["index_path"]) == (200, index)
        assert server.receipt(envelope)["outputs_index"] == index
    assert not any("{" in name for name in server.listing())


@pytest.mark.parametrize(
    ("fail", "status", "code"),
    [("inputs", 400, "ERR_INPUTS"), ("provider", 502, "ERR_PROVIDER"), ("raise", 500, "ERR_PROVIDER")],
)
def test_provider_failures_become_error_envelopes_with_no_files(
    server: TestServer, fail: str, status: int, code: str
) -> None:
    inputs = {"files": [{"path": "a.txt", "text": "a"}], "fail": fail}
    assert server.run_err("fail", "mock", inputs)[:2] == (status, code)
    assert server.listing() == []


def test_an_async_provider_is_awaited() -> None:
    async def provider(inputs: dict[str, Any], context: Context) -> ProviderResult:
        await asyncio.sleep(0)
        return ProviderResult(outputs=[Output.text("a.txt", inputs["text"])], processor_info="a")

    with TestServer(Processor(ref=REF, provider=provider)) as server:
        envelope = server.run_ok("async", "mock", {"text": "awaited"})
        assert server.output(envelope, "a.txt") == b"awaited"


def test_a_provider_returning_something_else_is_a_provider_error() -> None:
    def provider(inputs: dict[str, Any], context: Context) -> Any:
        return ProviderResult(outputs=[Output.text("a.txt", "a")], usage={"calls": -1})

    with TestServer(Processor(ref=REF, provider=provider)) as server:
        status, code, message = server.run_err("bad-usage", "mock", {})
        assert (status, code) == (500, "ERR_PROVIDER")
        assert "usage `calls`" in message
        assert server.listing() == []


def test_a_write_failure_midway_leaves_no_partial_files(server: TestServer) -> None:
    (server.artifacts_root / "execution" / "w1" / "receipt.json").mkdir(parents=True)
    assert server.run_err("w1", "mock", FILES_INPUTS)[:2] == (500, "ERR_OUTPUT_WRITE")
    assert server.listing() == ["execution", "execution/w1", "execution/w1/receipt.json"]


def test_run_stream_sends_progress_then_one_done(server: TestServer) -> None:
    events = server.stream(server.payload("s1", "mock", FILES_INPUTS))
    *progress, (last, data) = events
    assert last == "done"
    assert [loads(data.encode())["stage"] for _, data in progress] == [
        "accepted",
        "provider_started",
        "provider_finished",
        "outputs_written",
    ]
    assert {name for name, _ in progress} == {"progress"}
    envelope = loads(data.encode())
    assert envelope["status"] == "success" and envelope["execution_id"] == "s1"
    assert server.fs_path(envelope["index_path"]).is_file()

    events = server.stream(server.payload("s2", "mock", {"fail": "provider"}))
    assert [name for name, _ in events].count("done") == 1
    assert loads(events[-1][1].encode())["error"]["code"] == "ERR_PROVIDER"


def test_a_run_over_the_limit_is_answered_busy_until_a_slot_frees() -> None:
    started, release = threading.Event(), threading.Event()

    def gated(inputs: dict[str, Any], context: Context) -> ProviderResult:
        started.set()
        release.wait()
        return ProviderResult()

    with TestServer(Processor(ref=REF, provider=gated)) as server:
        first: list[Any] = []
        runner = threading.Thread(target=lambda: first.append(server.run("first", "mock", {})))
        runner.start()
        started.wait()
        assert server.health() [1]["state"] == "busy"
        status, code, message = server.run_err("second", "mock", {})
        assert (status, code) == (409, "ERR_PROCESSOR_BUSY")
        assert message.startswith("processor busy: all 1 run slots are taken")
        status, envelope = server.post("/run-stream", server.payload("third", "mock", {}))
        assert (status, envelope["error"]["code"]) == (409, "ERR_PROCESSOR_BUSY")
        release.set()
        runner.join()
        assert first[0][0] == 200
        assert server.health()[1]["state"] == "ready"
        server.run_ok("fourth", "mock", {})


def test_plain_providers_of_a_concurrent_processor_run_at_once() -> None:
    together = threading.Barrier(3, timeout=60)

    def meet(inputs: dict[str, Any], context: Context) -> ProviderResult:
        together.wait()
        return ProviderResult(outputs=[Output.text("met.txt", context.execution_id)])

    with TestServer(Processor(ref=REF, provider=meet, concurrency=3)) as server:
        answers: list[tuple[int, dict[str, Any]]] = []
        clients = [
            threading.Thread(target=lambda n=n: answers.append(server.run(f"c{n}", "mock", {})))
            for n in range(3)
        ]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        assert sorted(status for status, _ in answers) == [200, 200, 200], answers


def test_runs_wait_for_setup_and_are_busy_meanwhile() -> None:
    release = threading.Event()

    def setup(log: SetupLog) -> None:
        log.line("loading the model")
        release.wait()

    with TestServer(processor(setup=setup)) as server:
        status, health = server.health()
        assert (status, health["state"]) == (503, "starting")
        status, code, message = server.run_err("early", "mock", {})
        assert (status, code) == (409, "ERR_PROCESSOR_BUSY")
        assert "set-up has not finished" in message
        release.set()
        while server.health()[1]["state"] == "starting":
            threading.Event().wait(0.01)
        assert server.health() == (200, {**health, "state": "ready"})
        server.run_ok("later", "mock", FILES_INPUTS)


TOKEN = "tok-1234567890"
BASE_URL = "http://127.0.0.1:9/v1"


def test_a_failed_setup_reports_its_redacted_log_tail_and_refuses_runs() -> None:
    async def setup(log: SetupLog) -> None:
        log.line("connecting to the model server")
        log.line(f"GET {BASE_URL}/models with token {TOKEN}")
        raise ProviderError.failed(f"{BASE_URL} answered 401")

    env = {"TEST_TOKEN": TOKEN, "TEST_BASE_URL": BASE_URL}
    with TestServer(processor(setup=setup), env) as server:
        while server.health()[1]["state"] == "starting":
            threading.Event().wait(0.01)
        status, health = server.health()
        assert (status, health["state"]) == (503, "setup_failed")
        assert health["log_tail"] == [
            "connecting to the model server",
            "GET [REDACTED]/models with token [REDACTED]",
            "set-up failed: [REDACTED] answered 401",
        ]
        status, code, message = server.run_err("refused", "mock", {})
        assert (status, code) == (503, "ERR_PROVIDER")
        assert message == "provider failed: set-up failed: [REDACTED] answered 401"


def test_without_an_image_digest_every_run_is_refused_and_healthz_says_why() -> None:
    ran: list[bool] = []
    with TestServer(processor(setup=lambda log: ran.append(True)), {"PROCTOR_IMAGE_DIGEST": ""}) as server:
        status, health = server.health()
        assert (status, health["state"], health["image_digest"]) == (503, "setup_failed", "")
        assert health["log_tail"] == [
            "PROCTOR_IMAGE_DIGEST is unset; a processor runs only from an image it can name"
        ]
        for path in ("/run", "/run-stream"):
            status, envelope = server.post(path, server.payload("d1", "mock", FILES_INPUTS))
            assert (status, envelope["error"]["code"]) == (500, "ERR_IMAGE_UNPINNED")
            assert "image_digest" not in envelope["meta"]
            assert envelope["execution_id"] == "d1"
        assert server.request("POST", "/run", b"not json").status == 500
        assert server.listing() == []
    assert ran == []


def test_the_env_fingerprint_names_the_runtime_limits_the_adapter_set() -> None:
    limits = {"PROCTOR_CPU": "0.5", "PROCTOR_MEMORY_GB": "2", "PROCTOR_GPU": "A100"}
    with TestServer(processor(), limits) as server:
        envelope = server.run_ok("f1", "mock", FILES_INPUTS)
        fingerprint = (
            "cpu=0.5;gpu=A100;image_digest=sha256:test;memory_gb=2;mode=mock;ref=test/echo@1;secrets="
        )
        assert envelope["meta"]["env_fingerprint"] == fingerprint
        assert server.receipt(envelope)["env_fingerprint"] == fingerprint


LEAKY_UPSTREAM = (
    f"upstream said: bad key {TOKEN} for {BASE_URL}/chat?key=tok%2D1234567890 "
    "(redirected to https://leak-user:leak-pass-77@up.example/v1); "
    "sent Authorization: Bearer leak-bearer-5521"
)
LEAKED = [TOKEN, BASE_URL, "tok%2D1234567890", "leak-pass-77", "leak-bearer-5521"]


def test_provider_errors_and_their_logs_never_carry_the_processors_values(
    capfd: pytest.CaptureFixture[str],
) -> None:
    env = {"TEST_TOKEN": TOKEN, "TEST_BASE_URL": BASE_URL}
    with TestServer(processor(), env) as server:
        for mode in ("mock", "real"):
            inputs = {"fail": "provider", "upstream": LEAKY_UPSTREAM}
            status, code, message = server.run_err("leak", mode, inputs)  # type: ignore[arg-type]
            assert (status, code) == (502, "ERR_PROVIDER")
            assert message.startswith(
                "provider failed: upstream said: bad key [REDACTED] for [REDACTED]/chat?key=[REDACTED]"
            ), message
            assert not any(leaked in message for leaked in LEAKED)
    logged = capfd.readouterr().err.splitlines()
    failures = [line for line in logged if '"run.fail"' in line]
    assert len(failures) == 2 and "upstream said" in failures[0]
    assert all(loads(line.encode())["level"] for line in logged)
    assert not any(leaked in line for line in logged for leaked in LEAKED)


def test_long_provider_errors_are_redacted_before_they_are_cut() -> None:
    with TestServer(processor(), {"TEST_TOKEN": TOKEN}) as server:
        upstream = "x" * 4090 + TOKEN + "y" * 100
        _, code, message = server.run_err("long", "mock", {"fail": "provider", "upstream": upstream})
        assert code == "ERR_PROVIDER"
        assert message.removeprefix("provider failed: ") == "x" * 4090 + "…"


def test_json_outputs_are_pretty_ordered_and_end_in_a_newline() -> None:
    output = Output.json("m.json", {"k": 1, "a": [1.0, "é"], "e": {}})
    assert output.data == '{\n  "k": 1,\n  "a": [\n    1.0,\n    "é"\n  ],\n  "e": {}\n}\n'.encode()
    with pytest.raises(ProviderError) as refused:
        Output.json("m.json", {"k": object()})
    assert refused.value.kind == "failed"


def test_the_rng_depends_on_the_inputs_only() -> None:
    def context(mode: str, inputs: dict[str, Any]) -> Context:
        return Context(
            execution_id="e1", processor_ref=REF, mode=mode,  # type: ignore[arg-type]
            inputs_hash=inputs_hash(inputs), secrets={"API_KEY": "sk-secret-value"}, env={},
        )

    first = context("mock", {"a": 1, "b": 2}).rng().random()
    assert context("real", {"b": 2, "a": 1}).rng().random() == first
    assert context("mock", {"a": 2}).rng().random() != first
    assert context("mock", {}).secret("API_KEY") is None
    assert context("real", {}).secret("API_KEY") == "sk-secret-value"
    assert "sk-secret-value" not in repr(context("real", {}))


def test_artifacts_root_is_the_one_given(tmp_path: Path) -> None:
    with TestServer(processor(), artifacts_root=tmp_path) as server:
        envelope = server.run_ok("given", "mock", {"files": [{"path": "a.txt", "text": "a"}]})
    assert (tmp_path / envelope["index_path"].removeprefix("/artifacts/")).is_file()


def read_notes(inputs: dict[str, Any], context: Context) -> ProviderResult:
    """Reads the input artifact `inputs.notes`, once or (with `twice`) twice."""
    data = context.read_artifact(inputs["notes"])
    if inputs.get("twice"):
        data = context.read_artifact(inputs["notes"])
    return ProviderResult(outputs=[Output("copy.txt", data, "text/plain")])


def test_input_artifacts_are_read_checked_and_named_in_the_receipt() -> None:
    with TestServer(Processor(ref=REF, provider=read_notes)) as server:
        notes = server.attach("notes.txt", b"hello\n", "text/plain")
        envelope = server.run_ok("a1", "mock", {"notes": notes, "twice": True})
        assert server.output(envelope, "copy.txt") == b"hello\n"
        receipt_bytes = server.read("/artifacts/execution/a1/receipt.json")
        read = [{"path": notes["$artifact"], "cid": notes["cid"]}]
        assert receipt_bytes.endswith(b',"mode":"mock","artifacts_read":' + dumps(read).encode() + b"}")
        assert stable_part(server.receipt(envelope))["artifacts_read"] == read

        server.fs_path(notes["$artifact"]).write_bytes(b"jello\n")
        status, code, message = server.run_err("a2", "mock", {"notes": notes})
        assert (status, code) == (422, "ERR_ARTIFACT_MISMATCH")
        assert message.startswith(
            "input artifact does not match its content id: `/artifacts/inputs/"
        ), message
        assert not server.fs_path("/artifacts/execution/a2/receipt.json").exists()


def test_artifacts_outside_the_inputs_links_and_missing_files_are_refused() -> None:
    with TestServer(Processor(ref=REF, provider=read_notes)) as server:
        notes = server.attach("notes.txt", b"hello\n", "text/plain")
        forged = {**notes, "mime": "text/csv"}

        def refused(artifact: dict[str, str]) -> tuple[int, str]:
            def forge(inputs: dict[str, Any], context: Context) -> ProviderResult:
                context.read_artifact(artifact)
                return ProviderResult()

            with TestServer(Processor(ref=REF, provider=forge), artifacts_root=server.artifacts_root) as other:
                return other.run_err("forged", "mock", {"notes": notes})[:2]

        assert refused(forged) == (400, "ERR_INPUTS")
        file = server.fs_path(notes["$artifact"])
        moved = server.artifacts_root / "elsewhere"
        file.rename(moved)
        assert server.run_err("a3", "mock", {"notes": notes})[:2] == (400, "ERR_NOT_FOUND")
        file.symlink_to(moved)
        assert server.run_err("a4", "mock", {"notes": notes})[:2] == (400, "ERR_NOT_FOUND")
        file.unlink()
        file.mkdir()
        assert server.run_err("a5", "mock", {"notes": notes})[:2] == (400, "ERR_NOT_FOUND")


def test_malformed_artifact_objects_are_refused_before_the_provider_runs() -> None:
    ran: list[bool] = []

    def provider(inputs: dict[str, Any], context: Context) -> ProviderResult:
        ran.append(True)
        return ProviderResult()

    good = {"$artifact": "/artifacts/inputs/x/a.txt", "cid": "b3:" + "0" * 64, "mime": "text/plain"}
    with TestServer(Processor(ref=REF, provider=provider)) as server:
        for inputs, fragment in [
            ({"a": {**good, "extra": 1}}, "unknown field `extra`"),
            ({"a": {**good, "cid": "b3:00"}}, "is not `b3:` and 64 lowercase hex digits"),
            ({"a": {**good, "mime": "text"}}, "is not `type/subtype`"),
            ({"a": {**good, "$artifact": "/artifacts/inputs/"}}, "must be an exact path"),
            ({"a": [good, {**good, "cid": "b3:" + "1" * 64}]}, "is named with two content ids"),
            ({"a": {key: value for key, value in good.items() if key != "mime"}}, "missing field `mime`"),
        ]:
            status, code, message = server.run_err("m", "mock", inputs)
            assert (status, code) == (400, "ERR_INPUTS"), message
            assert fragment in message, message
        server.run_ok("ok", "mock", {"a": [good, good]})
    assert ran == [True]
