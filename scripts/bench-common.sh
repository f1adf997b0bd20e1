# Sourced by the benchmarks that run plans on the Docker engine.

# `bench_setup NAME` makes sure PROCTOR_BIN names a proctor binary (building
# target/release/proctor when it is unset), and sets `label` (the label of every container
# the benchmark starts), `work` (a scratch directory) and `opts` (the adapter options that
# label containers); at exit, containers left with the label, the pushed tag and `work` go.
bench_setup() {
  if [[ -z "${PROCTOR_BIN:-}" ]]; then
    echo "[$1] building target/release/proctor" >&2
    cargo build --release -p proctor-cli >&2
    PROCTOR_BIN=target/release/proctor
  fi
  label="$1-$$-$RANDOM"
  work="$(mktemp -d)"
  opts="{\"labels\":{\"proctor.bench\":\"$label\"}}"
  trap bench_cleanup EXIT
}

bench_cleanup() {
  local left
  left="$(docker ps -aq --filter "label=proctor.bench=$label")"
  [[ -n "$left" ]] && docker rm -f $left >/dev/null 2>&1
  [[ -n "${BENCH_PUSHED:-}" ]] && docker rmi "$BENCH_PUSHED" >/dev/null 2>&1
  rm -rf "$work"
}

# `bench_pin PROCTOR_BIN REF WORK LABEL INPUTS` builds REF's image
# from source (`proctor run --build` with the inputs JSON INPUTS, not timed), pushes it to the local registry and writes a copy
# of the registry in WORK/registry whose REF entry pins that digest for the host platform, so
# timed runs take the path a user's pinned run takes: image present, no build check. Sets
# BENCH_IMAGE (the image ID), BENCH_PUSHED (the pushed tag, for `docker rmi`) and
# BENCH_REGISTRY (the registry copy). Needs the Docker engine, the registry at
# ${PROCTOR_TEST_REGISTRY:-127.0.0.1:5000} (scripts/setup.sh) and jq.
bench_pin() {
  local bin=$1 ref=$2 work=$3 label=$4 inputs=$5
  local name=${ref%@*} version=${ref#*@}
  local source_dir="processors/$name/$version" platform repository pin envelope
  envelope="$("$bin" run --ref "$ref" --adapter local --mode mock --build --json \
    --write-prefix '/artifacts/bench-build/{execution_id}' --inputs-json "$inputs" \
    --adapter-opts-json "{\"labels\":{\"proctor.bench\":\"$label\"}}" \
    --artifacts-root "$work/build-artifacts" --ledger "sqlite://$work/build-ledger.db" \
    2>"$work/build.log")" || { tail -n 20 "$work/build.log" >&2; return 1; }
  BENCH_IMAGE="$(jq -r '.meta.image_digest' <<<"$envelope")"
  case "$(uname -m)" in
    x86_64) platform=amd64 ;;
    aarch64) platform=arm64 ;;
    *) echo "unsupported architecture $(uname -m)" >&2; return 1 ;;
  esac
  repository="${PROCTOR_TEST_REGISTRY:-127.0.0.1:5000}/proctor-bench/${name//\//-}"
  BENCH_PUSHED="$repository:$label"
  docker tag "$BENCH_IMAGE" "$BENCH_PUSHED"
  docker push "$BENCH_PUSHED" >/dev/null
  pin="$(docker inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$BENCH_IMAGE" \
    | grep -m1 "^$repository@")"
  BENCH_REGISTRY="$work/registry"
  mkdir -p "$BENCH_REGISTRY/$name"
  cp -r "$source_dir" "$BENCH_REGISTRY/$name/$version"
  sed -i -E "s|$platform: null|$platform: \"$pin\"|" "$BENCH_REGISTRY/$name/$version/registry.yaml"
  grep -q "$pin" "$BENCH_REGISTRY/$name/$version/registry.yaml" \
    || { echo "could not pin $pin" >&2; return 1; }
}
