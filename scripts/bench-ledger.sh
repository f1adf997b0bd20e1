#!/usr/bin/env bash
# Benchmarks the ledger under concurrency: 8 writers sharing one ledger handle append
# events one at a time to 2 plans (events/s), then record whole mock executions the way
# the engine does, 7 events in 6 writes each (executions/s), then `verify_all` over every
# chain (ms).
# Runs on an SQLite file in a temporary directory and, when the PostgreSQL server of
# scripts/setup.sh answers, on a scratch database there. Prints rates; asserts none.
#
# Usage: scripts/bench-ledger.sh
# Needs: cargo; psql for the PostgreSQL run (skipped, with a note, without it or the server).
# Environment:
#   BENCH_EVENTS        events per writer (default 5000)
#   BENCH_EXECUTIONS    executions per writer (default 500)
#   BENCH_POSTGRES_URL  the server's admin URL (default postgres://postgres@127.0.0.1:55432/postgres)
set -euo pipefail

cd "$(dirname "$0")/.."
log() { printf '[bench-ledger] %s\n' "$*" >&2; }

log "building the bench in release"
cargo build --release --quiet -p proctor-ledger --example concurrent_appends
BIN=target/release/examples/concurrent_appends

log "SQLite"
"$BIN"

ADMIN_URL="${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:55432/postgres}"
if ! command -v psql >/dev/null || ! psql "$ADMIN_URL" -qAtc 'SELECT 1' >/dev/null 2>&1; then
  log "PostgreSQL not reachable at $ADMIN_URL: skipped"
  exit 0
fi
DB="proctor_bench_$$"
psql "$ADMIN_URL" -qc "CREATE DATABASE $DB"
trap 'psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"' EXIT
log "PostgreSQL"
"$BIN" "${ADMIN_URL%/*}/$DB"
