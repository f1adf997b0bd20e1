#!/usr/bin/env bash
# The whole test suite: set-up (engine + registry), format check, lints, every test.
# Integration tests run against the real Docker engine and OCI registry that set-up starts.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo nextest run --workspace --locked --no-fail-fast
