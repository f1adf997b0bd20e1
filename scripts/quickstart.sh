#!/usr/bin/env bash
# The main job on a fresh machine: set up the container engine, build proctor, build the
# example processor's image from source, run it in mock mode in a real container, and say
# where its outputs are. Each long step shows its progress on a terminal; the end says what
# each took.
set -euo pipefail
cd "$(dirname "$0")/.."

host="$(rustc -vV | sed -n 's/^host: //p')"
case "$(uname -m)" in
  x86_64) platform=linux/amd64 ;;
  aarch64 | arm64) platform=linux/arm64 ;;
  *) echo "quickstart: no processor platform for $(uname -m)" >&2; exit 1 ;;
esac
# proctor is built as it builds processors (crates/proctor-oci/src/compile.rs): the same
# target, flags, profile and target directory, so the processor's build compiles only the
# processor's own crates.
export "CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<<"$host")_RUSTFLAGS=-C target-feature=+crt-static"
proctor="target/$host/release/proctor"

timings=()
step() { # step NAME COMMAND...: runs the command and records how long it took
  local name=$1 started=$SECONDS
  shift
  printf '\n==> %s\n' "$name" >&2
  "$@"
  timings+=("$(printf '  %-34s %4d s' "$name" $((SECONDS - started)))")
}

# stdout carries the run's summary only.
build_image() { "$proctor" build --ref llm/litellm@1 --platform "$platform" >&2; }

step "set-up (container engine)" bash scripts/setup.sh --engine
step "build proctor" cargo build --release --locked --target "$host" -p proctor-cli
step "build the llm/litellm@1 image" build_image
# The defaults: the local adapter, mock mode, the smoke example's inputs, outputs under
# /artifacts/outputs/llm/litellm/1/{execution_id}/.
step "run llm/litellm@1 (mock)" "$proctor" run llm/litellm@1 --build

{
  printf '\nquick start: %d s in all\n' "$SECONDS"
  printf '%s\n' "${timings[@]}"
} >&2
