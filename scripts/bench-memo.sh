#!/usr/bin/env bash
# Benchmarks memo hits through the engine library (the `memo_hits` example of
# proctor-engine, release build): one mock `text/stats@1` run built from source on the local
# Docker engine becomes the source, then N runs of the same request with memo on, C at a
# time on one engine, are each answered from the memo cache (ledger lookup, the source's
# evidence re-verified, `execution.memo` recorded; no container).
# Prints hits per second and the time `ledger verify` takes over the plan's chain. Prints
# rates; asserts none (the goal is 5,000 hits/s). Checks that no container is left.
#
# Usage: scripts/bench-memo.sh [N]      N hits (default 5000).
# Needs: the Docker engine (scripts/setup.sh).
# Environment:
#   BENCH_CONCURRENCY   runs at a time (default 16)
set -euo pipefail

HITS="${1:-5000}"
export BENCH_HITS="$HITS"
export BENCH_CONCURRENCY="${BENCH_CONCURRENCY:-16}"

cd "$(dirname "$0")/.."
log() { printf '[bench-memo] %s\n' "$*" >&2; }

log "building the memo_hits example (release)"
cargo build --release -p proctor-engine --example memo_hits >&2
export BENCH_LABEL="bench-memo-$$-$RANDOM"
log "$HITS hits, $BENCH_CONCURRENCY at a time"
target/release/examples/memo_hits processors
left="$(docker ps -aq --filter "label=proctor.bench=$BENCH_LABEL")"
if [[ -n "$left" ]]; then
  log "containers left: $left"
  docker rm -f $left >/dev/null 2>&1
  exit 1
fi
