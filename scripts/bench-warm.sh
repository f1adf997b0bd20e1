#!/usr/bin/env bash
# Benchmarks the warm path: `proctor plan apply` of N independent mock `text/stats@1`
# transitions, one at a time (`max_parallel` 1), so after the first every execution runs on
# the same warm container. Prints the median and 90th percentile of the engine's own
# per-execution time (from admission to the settled ledger record: the ledger's start,
# reservation and lease, the run, the evidence check and commit to the World), and the
# wall-clock rate of the whole apply. Prints figures; asserts none. Checks that every
# transition succeeded on one container and that no container is left.
#
# Usage: scripts/bench-warm.sh [N]     N transitions (default 300).
# Needs: the Docker engine and the registry at 127.0.0.1:5000 (scripts/setup.sh), jq.
# Environment:
#   PROCTOR_BIN   the proctor binary (default: target/release/proctor, built by cargo first)
#
# The image is built from source, pushed to the local registry and pinned in a copy of the
# registry before the timing (scripts/bench-common.sh): the timed apply runs the pinned image, as
# a user's plan does, with no build check.
set -euo pipefail

COUNT="${1:-300}"
REF="text/stats@1"
cd "$(dirname "$0")/.."
source scripts/bench-common.sh
log() { printf '[bench-warm] %s\n' "$*" >&2; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

bench_setup bench-warm

{
  printf 'plan: bench-warm\nmode: mock\npolicy: {max_parallel: 1}\ntransitions:\n'
  for ((i = 0; i < COUNT; i++)); do
    printf '  - {id: t%d, ref: %s, inputs: {schema: v1, text: "run %d: the quick brown fox"}}\n' \
      "$i" "$REF" "$i"
  done
} >"$work/plan.yaml"

log "building and pinning the $REF image (not timed)"
bench_pin "$PROCTOR_BIN" "$REF" "$work" "$label" '{"schema":"v1","text":"warm-up"}'
common=(--registry-root "$BENCH_REGISTRY" --artifacts-root "$work/artifacts"
  --ledger "sqlite://$work/ledger.db")

log "$COUNT transitions, one at a time"
started="$(now_ms)"
"$PROCTOR_BIN" plan apply "$work/plan.yaml" --json --adapter-opts-json "$opts" \
  "${common[@]}" >"$work/report.json" 2>"$work/apply.log" \
  || { tail -n 20 "$work/apply.log" >&2; exit 1; }
elapsed=$(($(now_ms) - started))

succeeded="$(jq '[.transitions[] | select(.state == "succeeded")] | length' "$work/report.json")"
containers="$(grep -c '"event":"container.started"' "$work/apply.log" || true)"
if ((succeeded != COUNT || containers != 1)); then
  log "expected $COUNT successes on 1 container, got $succeeded on $containers"
  exit 1
fi
left="$(docker ps -aq --filter "label=proctor.bench=$label")"
if [[ -n "$left" ]]; then
  log "containers left: $left"
  exit 1
fi

# The first execution started the container; the others ran warm.
grep '"event":"execution.settle"' "$work/apply.log" | tail -n +2 \
  | jq -r '.duration_ms' | sort -n >"$work/durations"
percentile() { awk -v p="$1" '{v[NR] = $1} END {i = int(NR * p + 0.5); if (i < 1) i = 1; print v[i]}' "$work/durations"; }
printf '%-40s %s ms\n' "warm execution, median" "$(percentile 0.5)"
printf '%-40s %s ms\n' "warm execution, 90th percentile" "$(percentile 0.9)"
printf '%-40s %d ms  %s transitions/s\n' "whole apply ($COUNT transitions)" "$elapsed" \
  "$(awk -v n="$COUNT" -v ms="$elapsed" 'BEGIN {printf "%.1f", n * 1000 / ms}')"
