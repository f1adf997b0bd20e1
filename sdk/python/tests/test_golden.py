"""The golden vectors shared with the Rust SDK (`golden/sdk/`): the Rust implementation
wrote every `expected`; this SDK must compute the same."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from proctor_sdk import CanonError, ErrorCode, Output, Redactor
from proctor_sdk._evidence import stable_part
from proctor_sdk._hashing import canonical_json, inputs_hash
from proctor_sdk._json import loads
from proctor_sdk._paths import WritePrefix, parse_world_path
from proctor_sdk.testing import replay

GOLDEN = Path(__file__).resolve().parents[3] / "golden" / "sdk"


def cases(name: str, *lists: str) -> list[dict[str, Any]]:
    document = json.loads((GOLDEN / name).read_text(encoding="utf-8"))
    return [case for key in lists or ("cases",) for case in document[key]]


def test_every_code_the_sdk_answers_with_is_the_canons() -> None:
    canon = {row["code"]: row["fragment"] for row in cases("error_codes.json", "codes")}
    for code in ErrorCode:
        assert canon.get(code.wire) == code.fragment, code


@pytest.mark.parametrize("case", cases("inputs_hash.json"), ids=lambda case: case["inputs_json"])
def test_inputs_hashes(case: dict[str, Any]) -> None:
    inputs = loads(case["inputs_json"].encode("utf-8"))
    assert canonical_json(inputs).decode("utf-8") == case["expected"]["jcs"]
    assert inputs_hash(inputs) == case["expected"]["inputs_hash"]


@pytest.mark.parametrize("case", cases("json_output.json"), ids=lambda case: case["value_json"])
def test_json_outputs(case: dict[str, Any]) -> None:
    output = Output.json("value.json", loads(case["value_json"].encode("utf-8")))
    assert output.data.decode("utf-8") == case["expected"]["bytes"]
    assert output.mime == "application/json"


def canonical_or_code(compute: Any) -> dict[str, str]:
    try:
        return {"canonical": compute()}
    except CanonError as error:
        return {"code": error.code.wire}


@pytest.mark.parametrize(
    "case",
    cases("world_paths.json", "paths", "write_prefixes", "output_paths"),
    ids=lambda case: repr(case.get("raw", case.get("relative")))[:60],
)
def test_world_paths_and_write_prefixes(case: dict[str, Any]) -> None:
    if "execution_id" in case:
        got = canonical_or_code(lambda: WritePrefix.receive(case["raw"], case["execution_id"]).path)
    elif "relative" in case:
        prefix = WritePrefix.from_expanded(case["prefix"])
        got = canonical_or_code(lambda: prefix.output_path(case["relative"]))
    else:
        got = canonical_or_code(lambda: parse_world_path(case["raw"]))
    assert got == case["expected"]


@pytest.mark.parametrize("case", cases("redaction.json"), ids=lambda case: case["text"][:40])
def test_redactions(case: dict[str, Any]) -> None:
    redactor = Redactor(case["secrets"])
    if "max_bytes" in case:
        got = redactor.truncate_redacted(case["text"], case["max_bytes"])
    else:
        got = redactor.redact(case["text"])
    assert got == case["expected"]["text"]


@pytest.mark.parametrize("case", cases("runs.json"), ids=lambda case: case["name"])
def test_runs(case: dict[str, Any], tmp_path: Path) -> None:
    status, envelope = replay(case, tmp_path)
    expected = case["expected"]
    assert status == expected["status"]
    if envelope["status"] == "error":
        assert envelope["error"]["code"] == expected["code"]
        stored = {tmp_path / stored["path"].removeprefix("/artifacts/") for stored in case.get("stored", [])}
        assert {path for path in tmp_path.rglob("*") if path.is_file()} == stored
        return
    index_path = envelope["index_path"]
    root = tmp_path
    index = (root / index_path.removeprefix("/artifacts/")).read_bytes()
    assert index.decode("utf-8") == expected["index"]
    receipt_bytes = (root / "execution" / envelope["execution_id"] / "receipt.json").read_bytes()
    prefixed = root / index_path.removeprefix("/artifacts/").replace("outputs.json", "receipt.json")
    assert prefixed.read_bytes() == receipt_bytes
    receipt = loads(receipt_bytes)
    assert stable_part(receipt) == expected["receipt_stable_part"]
    assert receipt["inputs_hash"] == expected["inputs_hash"]
    assert envelope["meta"]["env_fingerprint"] == expected["env_fingerprint"]
    assert {output["path"]: output["cid"] for output in envelope["outputs"]} == expected["cids"]
