#!/usr/bin/env bash
# The main job on a fresh machine: set-up, build proctor, build the example processor from
# source, run it in mock mode in a real container, print the envelope.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cargo build --release --locked -p proctor-cli >&2
./target/release/proctor run \
  --ref llm/litellm@1 --adapter local --mode mock --build \
  --write-prefix '/artifacts/outputs/demo/{execution_id}' \
  --inputs-json '{"schema":"v1","params":{}}' \
  --json
