#!/usr/bin/env bash
# Benchmarks `proctor plan apply` on the local adapter: a generated plan of N mock
# `text/stats@1` transitions in layers of W. Layer 0 measures literal texts; every later
# transition reads the normalized text of one transition of the layer before through `$from`
# (with its own `top_n`, so no two transitions share inputs and none is a memo hit) and runs
# `after` a second one, so each has two upstream transitions (fan-in). Prints transitions per
# second for the first apply (every transition run, on warm containers) and for a re-apply
# (every transition skipped), and the time `proctor ledger verify` takes over the plan's
# chain. Prints rates; asserts none. Checks that no container is left.
#
# Usage: scripts/bench-plan.sh [N]     N transitions (default 1000, at least 200).
# Needs: the Docker engine and the registry at 127.0.0.1:5000 (scripts/setup.sh), jq.
# Environment:
#   PROCTOR_BIN        the proctor binary (default: target/release/proctor, built by cargo
#                      first so it is current)
#   BENCH_WIDTH        transitions per layer (default 20)
#   BENCH_PARALLEL     --max-parallel of both applies (default 8)
#
# The image is built from source, pushed and pinned in a copy of the registry before the
# timing (scripts/bench-common.sh): the timed applies run the pinned image, with no build check.
set -euo pipefail

COUNT="${1:-1000}"
WIDTH="${BENCH_WIDTH:-20}"
PARALLEL="${BENCH_PARALLEL:-8}"
REF="text/stats@1"
PLAN="bench-plan"
INPUTS='{"schema":"v1","text":"The quick brown fox jumps over the lazy dog."}'

cd "$(dirname "$0")/.."
source scripts/bench-common.sh
log() { printf '[bench-plan] %s\n' "$*" >&2; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
rate() { awk -v n="$1" -v ms="$2" 'BEGIN {printf "%.1f", n * 1000 / (ms > 0 ? ms : 1)}'; }

if ((COUNT < 200)); then
  log "N must be at least 200"
  exit 2
fi
bench_setup bench-plan
ledger="sqlite://$work/ledger.db"

# The plan: layer 0 literal, each later transition `$from` one upstream and `after` another.
{
  printf 'plan: %s\nmode: mock\npolicy: {max_parallel: %d, on_failure: stop}\ntransitions:\n' \
    "$PLAN" "$PARALLEL"
  for ((i = 0; i < COUNT; i++)); do
    layer=$((i / WIDTH)) column=$((i % WIDTH))
    printf '  - id: t%d\n    ref: %s\n' "$i" "$REF"
    if ((layer == 0)); then
      printf '    inputs: {schema: v1, text: "text %d: the quick brown fox jumps over the lazy dog"}\n' "$i"
    else
      read_from=$(((layer - 1) * WIDTH + column))
      also_after=$(((layer - 1) * WIDTH + (column + 1) % WIDTH))
      printf '    inputs: {schema: v1, top_n: %d, text: {$from: "t%d:outputs/normalized.txt"}}\n' \
        "$i" "$read_from"
      printf '    after: [t%d]\n' "$also_after"
    fi
  done
} >"$work/plan.yaml"
log "$COUNT transitions, $(((COUNT + WIDTH - 1) / WIDTH)) layers of $WIDTH, max_parallel $PARALLEL"

log "building and pinning the $REF image (not timed)"
bench_pin "$PROCTOR_BIN" "$REF" "$work" "$label" "$INPUTS"
common=(--registry-root "$BENCH_REGISTRY" --artifacts-root "$work/artifacts" --ledger "$ledger")

# One timed apply; prints its elapsed milliseconds, checks every transition ended as `$1`.
apply() {
  local expected="$1" started elapsed report
  started="$(now_ms)"
  report="$("$PROCTOR_BIN" plan apply "$work/plan.yaml" --json \
    --max-parallel "$PARALLEL" --adapter-opts-json "$opts" "${common[@]}" \
    2>"$work/apply.log")" || { tail -n 20 "$work/apply.log" >&2; exit 1; }
  elapsed=$(($(now_ms) - started))
  local ended
  ended="$(jq --arg s "$expected" '[.transitions[] | select(.state == $s)] | length' <<<"$report")"
  if ((ended != COUNT)); then
    log "expected $COUNT transitions $expected, got $ended"
    exit 1
  fi
  echo "$elapsed"
}

first_ms="$(apply succeeded)"
reapply_ms="$(apply skipped)"
started="$(now_ms)"
"$PROCTOR_BIN" ledger verify "$PLAN" --ledger "$ledger" >/dev/null 2>"$work/verify.log" \
  || { cat "$work/verify.log" >&2; exit 1; }
verify_ms=$(($(now_ms) - started))
events="$("$PROCTOR_BIN" ledger show "$PLAN" --json --ledger "$ledger" 2>/dev/null | jq '.events | length')"

left="$(docker ps -aq --filter "label=proctor.bench=$label")"
if [[ -n "$left" ]]; then
  log "containers left: $left"
  exit 1
fi

printf '%-28s %d\n' "transitions" "$COUNT"
printf '%-28s %d ms  %s transitions/s\n' "first apply" "$first_ms" "$(rate "$COUNT" "$first_ms")"
printf '%-28s %d ms  %s transitions/s\n' "re-apply (all skipped)" "$reapply_ms" "$(rate "$COUNT" "$reapply_ms")"
printf '%-28s %d ms\n' "ledger verify ($events events)" "$verify_ms"
