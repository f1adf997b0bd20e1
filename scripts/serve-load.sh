#!/usr/bin/env bash
# The load check of `proctor serve`: 200 concurrent API submissions of mock runs complete,
# none lost, and the ledger verifies.
#   scripts/serve-load.sh [RUNS]
# Builds the debug `proctor` (the binary the test suite builds; a release build would only
# add a long compile to a check of the server's queueing and ledger) unless PROCTOR_BIN
# names a built one (the test suite's `serve` test passes its own), starts a server in a
# temp project over the workspace's registry, and runs scripts/serve-load.py against it:
# one warm-up run builds text/stats@1 from source into the server's build cache, so that
# every later `build: true` run gets that image without compiling; then RUNS (200)
# submissions at once. Afterwards the server is stopped with SIGTERM (it must exit 0), the
# ledger must hold every execution as a success, and `proctor ledger verify` must pass.
# Prints submissions/s, completions/s and the p50/p95 submit latency; exits non-zero on
# any loss. Needs the Docker engine (scripts/setup.sh --engine) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-200}"

log() { printf '[load %s] %s\n' "$(date -u +%T)" "$*" >&2; }

REPO="$PWD"
if [[ -n "${PROCTOR_BIN:-}" ]]; then
  PROCTOR="$PROCTOR_BIN"
else
  cargo build -q -p proctor-cli --bin proctor
  PROCTOR="$REPO/target/debug/proctor"
fi
REGISTRY="$PWD/processors"
PROJECT="$(mktemp -d -t proctor-serve-load-XXXXXX)"
mkdir -p "$PROJECT/.proctor"
SERVER_PID=""
cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$PROJECT"
}
trap cleanup EXIT

log "project $PROJECT"
cd "$PROJECT"
coproc SERVER { exec "$PROCTOR" serve --json --addr 127.0.0.1:0 --registry-root "$REGISTRY" \
  --artifacts-root artifacts 2>"$PROJECT/serve.log"; }
SERVER_PID=$SERVER_PID
read -r -t 120 LINE <&"${SERVER[0]}" || { log "the server did not start"; tail -n 30 serve.log >&2; exit 1; }
URL="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["url"])' "$LINE")"
TOKEN="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["token"])' "$LINE")"
log "server at $URL (pid $SERVER_PID)"

if ! python3 "$REPO/scripts/serve-load.py" "$URL" "$TOKEN" --runs "$RUNS" >figures.json; then
  log "the load check failed"; tail -n 30 serve.log >&2; exit 1
fi

kill -TERM "$SERVER_PID"
if wait "$SERVER_PID"; then code=0; else code=$?; fi
SERVER_PID=""
[[ $code -eq 0 ]] || { log "the server exited $code"; tail -n 30 serve.log >&2; exit 1; }

"$PROCTOR" ledger show default --json >ledger.json
python3 - "$RUNS" <<'PY'
import json, sys
runs = int(sys.argv[1])
figures = json.load(open("figures.json"))
events = json.load(open("ledger.json"))["events"]
started = {e["execution_id"] for e in events if e["kind"] == "execution.start"}
succeeded = {e["execution_id"] for e in events if e["kind"] == "execution.settle.success"}
ids = set(figures["execution_ids"])
missing = ids - succeeded
if missing or len(ids) != runs:
    sys.exit(f"[load] lost: {len(missing)} of {runs} runs are not settled as successes in the ledger")
# Every load run, plus the warm-up, and nothing else.
if len(started) != runs + 1 or len(succeeded) != runs + 1:
    sys.exit(f"[load] the ledger holds {len(started)} starts and {len(succeeded)} successes, want {runs + 1}")
print(f"[load] ledger: {len(started)} executions ({runs} + the warm-up), each settled as a success", file=sys.stderr)
PY
"$PROCTOR" ledger verify default >&2
python3 - <<'PY'
import json
f = json.load(open("figures.json"))
print(f"runs: {f['runs']} submitted, {f['distinct_ids']} distinct ids, {f['succeeded']} succeeded")
print(f"submissions/s: {f['submissions_per_s']} ({f['submit_seconds']} s for all)")
print(f"completions/s: {f['completions_per_s']} ({f['completion_seconds']} s to the last settle)")
print(f"submit latency: p50 {f['submit_latency_p50_ms']} ms, p95 {f['submit_latency_p95_ms']} ms")
PY
