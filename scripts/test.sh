#!/usr/bin/env bash
# The whole test suite: set-up (engine + registry), format check, lints, every test.
# Integration tests run against the real Docker engine and OCI registry that set-up starts.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
# The test runner, on a machine that has only Rust and Debian.
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "[test] installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi
# A CI run builds once from a fresh clone: incremental caches would only cost disk and time.
if [[ -n "${CI:-}" ]]; then export CARGO_INCREMENTAL=0; fi
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The Python SDK with its test extra (the cross-SDK test in nextest runs it too), then its tests.
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore './sdk/python[test]'
python3 -m pytest -q sdk/python
# llm/litellm@2's tests, in a virtualenv of their own: litellm's dependencies stay out of python3.
python3 -m venv target/py/litellm-2
target/py/litellm-2/bin/pip install -q --disable-pip-version-check \
  -r processors/llm/litellm/2/requirements.txt './sdk/python[test]'
target/py/litellm-2/bin/python -m pytest -q -p no:cacheprovider \
  -W 'ignore::UserWarning:pydantic._internal._generate_schema' processors/llm/litellm/2
cargo nextest run --workspace --locked --no-fail-fast
