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
ref=llm/litellm@1
processor_package=processor-llm-litellm
# proctor is built as it builds processors (crates/proctor-oci/src/compile.rs): the same
# target, flags, profile and target directory, so the processor's build compiles only the
# processor's own crates.
export "CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<<"$host")_RUSTFLAGS=-C target-feature=+crt-static"
target_dir="${CARGO_TARGET_DIR:-target}"
proctor="$target_dir/$host/release/proctor"
mkdir -p "$target_dir"

timings=()
record() { timings+=("$(printf '  %-48s %4d s' "$1" "$2")"); }
step() { # step NAME COMMAND...: runs the command and records how long it took
  local name=$1 started=$SECONDS
  shift
  printf '\n==> %s\n' "$name" >&2
  "$@"
  record "$name" $((SECONDS - started))
}

# The engine's set-up mostly waits on apt, so it runs while the compiler has the CPU. Its
# output goes to a log, shown live if the build ends first. The static link needs the
# static C library, so without it the set-up runs first.
setup_name="set-up (container engine)"
setup_log="$target_dir/quickstart-setup.log"
setup_seconds="$target_dir/quickstart-setup.seconds"
setup_in_background() {
  local started=$SECONDS status=0
  bash scripts/setup.sh --engine >"$setup_log" 2>&1 || status=$?
  echo $((SECONDS - started)) >"$setup_seconds"
  if ((status == 0)); then
    printf '\n==> %s: done in %d s\n' "$setup_name" $((SECONDS - started)) >&2
  else
    printf '\n==> %s: failed (exit %d); its log: %s\n' "$setup_name" "$status" "$setup_log" >&2
  fi
  return "$status"
}
wait_for_setup() {
  if kill -0 "$setup_pid" 2>/dev/null; then
    printf '\n==> %s: still running; its log so far:\n' "$setup_name" >&2
    tail -n +1 -f --pid="$setup_pid" "$setup_log" >&2
  fi
  wait "$setup_pid" || { tail -n 20 "$setup_log" >&2; exit 1; }
  record "$setup_name, alongside the build" "$(cat "$setup_seconds")"
}

if [[ -f "/usr/lib/$(uname -m)-linux-gnu/libc.a" ]]; then
  printf '\n==> %s, alongside the build; its log: %s\n' "$setup_name" "$setup_log" >&2
  setup_in_background &
  setup_pid=$!
  # A failed build still lets the set-up finish rather than stopping apt midway.
  finish_setup() {
    if kill -0 "$setup_pid" 2>/dev/null; then
      printf '\n==> waiting for the set-up to finish; its log: %s\n' "$setup_log" >&2
    fi
    wait "$setup_pid" 2>/dev/null || true
  }
  trap finish_setup EXIT
else
  step "$setup_name" bash scripts/setup.sh --engine
  setup_pid=""
fi

# One cargo run for both binaries: the processor's crates compile while the CLI's last
# crates, which follow one another, leave a core free.
step "build proctor and the $ref processor" \
  cargo build --release --locked --target "$host" -p proctor-cli -p "$processor_package"
if [[ -n "$setup_pid" ]]; then wait_for_setup; trap - EXIT; fi

# stdout carries the run's summary only.
build_image() { "$proctor" build --ref "$ref" --platform "$platform" >&2; }
step "build the $ref image" build_image
# The defaults: the local adapter, mock mode, the smoke example's inputs, outputs under
# /artifacts/outputs/llm/litellm/1/{execution_id}/.
step "run $ref (mock)" "$proctor" run "$ref" --build

{
  printf '\nquick start: %d s in all\n' "$SECONDS"
  printf '%s\n' "${timings[@]}"
} >&2
