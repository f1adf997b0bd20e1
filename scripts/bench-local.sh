#!/usr/bin/env bash
# Benchmarks `proctor run --mode mock` on the local adapter against its floor: the same steps
# done by hand with the docker CLI and curl (`docker run -d` with the same hardening and the
# same two staging mounts, poll /healthz, POST /run, `docker rm -f`). proctor does more than
# the floor on top: the ledger record, the evidence check and the commit to the World. Prints both medians and their ratio, then checks
# that no container is left.
#
# Usage: scripts/bench-local.sh [N]      N runs of each (default 10), interleaved.
# Needs: the Docker engine and the registry at 127.0.0.1:5000 (scripts/setup.sh), curl, jq.
# Environment:
#   PROCTOR_BIN   the proctor binary (default target/release/proctor, built when missing)
#   BENCH_BUILD=1 also time `proctor run --build` (a no-op rebuild: cargo + cached image)
#
# The image is built once (`proctor run --build`), then pushed to the local registry and
# pinned in a copy of the registry, so the timed proctor runs take the path a user's run
# without --build takes: pinned image already present, no build.
set -euo pipefail

RUNS="${1:-10}"
REF="text/stats@1"
PROCESSOR_DIR="processors/text/stats/1"
REGISTRY_ADDR="${PROCTOR_TEST_REGISTRY:-127.0.0.1:5000}"
INPUTS='{"schema":"v1","text":"The quick brown fox jumps over the lazy dog.\nThe dog sleeps."}'

cd "$(dirname "$0")/.."
log() { printf '[bench] %s\n' "$*" >&2; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
median() { sort -n | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

PROCTOR_BIN="${PROCTOR_BIN:-target/release/proctor}"
if [[ ! -x "$PROCTOR_BIN" ]]; then
  log "building $PROCTOR_BIN"
  cargo build --release -p proctor-cli >&2
fi

label="bench-$$-$RANDOM"
work="$(mktemp -d)"
artifacts="$work/artifacts"
pushed=""
cleanup() {
  local left
  left="$(docker ps -aq --filter "label=proctor.bench=$label")"
  [[ -n "$left" ]] && docker rm -f $left >/dev/null 2>&1
  [[ -n "$pushed" ]] && docker rmi "$pushed" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$artifacts"
opts="{\"labels\":{\"proctor.bench\":\"$label\"}}"

# One run with --build makes sure the image exists and tells its ID.
log "building the $REF image (proctor run --build)"
envelope="$("$PROCTOR_BIN" run --ref "$REF" --adapter local --mode mock --build --json \
  --write-prefix '/artifacts/bench/{execution_id}' --inputs-json "$INPUTS" \
  --adapter-opts-json "$opts" --artifacts-root "$artifacts" 2>"$work/build.log")" \
  || { tail -n 20 "$work/build.log" >&2; exit 1; }
image="$(jq -r '.meta.image_digest' <<<"$envelope")"
log "image $image"

# Pin it: push to the local registry and point a copy of the registry at the digest.
case "$(uname -m)" in x86_64) platform=amd64 ;; aarch64) platform=arm64 ;; *) log "unsupported arch"; exit 1 ;; esac
repository="$REGISTRY_ADDR/proctor-bench/text-stats"
pushed="$repository:$label"
docker tag "$image" "$pushed"
docker push "$pushed" >/dev/null
pin="$(docker inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$image" | grep -m1 "^$repository@")"
mkdir -p "$work/registry/text/stats"
cp -r "$PROCESSOR_DIR" "$work/registry/text/stats/1"
sed -i -E "s|$platform: null|$platform: \"$pin\"|" "$work/registry/text/stats/1/registry.yaml"
grep -q "$pin" "$work/registry/text/stats/1/registry.yaml" || { log "could not pin $pin"; exit 1; }
log "pinned $pin"

# The floor uses the limits the adapter derives from registry.yaml's runtime.
runtime_line="$(grep -E '^runtime:' "$PROCESSOR_DIR/registry.yaml")"
cpu="$(sed -E 's/.*cpu: *([0-9.]+).*/\1/' <<<"$runtime_line")"
memory_gb="$(sed -E 's/.*memory_gb: *([0-9.]+).*/\1/' <<<"$runtime_line")"
memory_bytes="$(awk -v gb="$memory_gb" 'BEGIN {printf "%d", gb * 1024 * 1024 * 1024}')"
user="65532:65532"
[[ "$(id -u)" -ne 0 ]] && user="$(id -u):$(id -g)"

proctor_once() { # proctor_once REGISTRY_ROOT [FLAG...]
  local registry_root=$1; shift
  PROCTOR_REGISTRY_ROOT="$registry_root" "$PROCTOR_BIN" run --ref "$REF" --adapter local \
    --mode mock --json --write-prefix '/artifacts/bench/{execution_id}' --inputs-json "$INPUTS" \
    --adapter-opts-json "$opts" --artifacts-root "$artifacts" "$@" 2>>"$work/proctor.log"
}

floor_once() { # the same isolation by hand: the container writes only its two staging dirs
  local id sock stage container tries=0
  id="$(cat /proc/sys/kernel/random/uuid)"
  sock="$(mktemp -d "$work/sock.XXXXXX")"
  stage="$(mktemp -d "$work/stage.XXXXXX")"
  mkdir "$stage/prefix" "$stage/execution"
  [[ "$(id -u)" -eq 0 ]] && chown "$user" "$sock" "$stage/prefix" "$stage/execution"
  container="$(docker run -d --label "proctor.bench=$label" --network none --read-only \
    --cap-drop ALL --security-opt no-new-privileges --pids-limit 256 \
    --memory "$memory_bytes" --memory-swap "$memory_bytes" --cpus "$cpu" --user "$user" \
    --mount "type=bind,src=$stage/prefix,dst=/artifacts/bench-floor/$id" \
    --mount "type=bind,src=$stage/execution,dst=/artifacts/execution/$id" \
    --mount "type=bind,src=$sock,dst=/run/proctor" \
    -e PROCTOR_PORT=8000 -e "PROCTOR_IMAGE_DIGEST=$image" -e PROCTOR_ARTIFACTS_ROOT=/artifacts \
    -e PROCTOR_SOCKET=/run/proctor/processor.sock "$image")"
  until curl -fsS --unix-socket "$sock/processor.sock" http://processor/healthz >/dev/null 2>&1; do
    ((++tries < 2000)) || { docker rm -f "$container" >/dev/null; return 1; }
    sleep 0.005
  done
  curl -fsS --unix-socket "$sock/processor.sock" -H 'content-type: application/json' \
    -d "{\"schema\":\"v1\",\"execution_id\":\"$id\",\"ref\":\"$REF\",\"mode\":\"mock\",\"inputs\":$INPUTS,\"write_prefix\":\"/artifacts/bench-floor/$id/\"}" \
    http://processor/run
  docker rm -f "$container" >/dev/null
}

timed() { # timed FILE COMMAND...: runs COMMAND, checks a success envelope, appends its ms to FILE
  local file=$1 start out; shift
  start="$(now_ms)"
  out="$("$@")" || { log "run failed: $*"; tail -n 5 "$work/proctor.log" >&2 || true; exit 1; }
  echo $(($(now_ms) - start)) >>"$file"
  [[ "$(jq -r .status <<<"$out")" == success ]] || { log "not a success: $out"; exit 1; }
}

log "timing $RUNS runs each, interleaved"
for ((i = 0; i < RUNS; i++)); do
  timed "$work/proctor.ms" proctor_once "$work/registry"
  timed "$work/floor.ms" floor_once
  if [[ "${BENCH_BUILD:-0}" == 1 ]]; then
    timed "$work/build.ms" proctor_once processors --build
  fi
done

proctor_ms="$(median <"$work/proctor.ms")"
floor_ms="$(median <"$work/floor.ms")"
echo "proctor run --mode mock (pinned image present): median ${proctor_ms} ms over $RUNS runs"
echo "floor (docker run -d + curl /healthz + curl /run + docker rm -f): median ${floor_ms} ms over $RUNS runs"
if [[ -f "$work/build.ms" ]]; then
  echo "proctor run --mode mock --build (no-op rebuild): median $(median <"$work/build.ms") ms over $RUNS runs"
fi
awk -v p="$proctor_ms" -v f="$floor_ms" 'BEGIN {printf "ratio proctor/floor: %.2f\n", p / f}'

orphans="$(docker ps -aq --filter "label=proctor.bench=$label" | wc -l)"
echo "orphan containers: $orphans"
[[ "$orphans" -eq 0 ]]
