#!/usr/bin/env bash
# Installs and starts what proctor needs on a fresh Debian machine. Idempotent: installs
# only what is missing and starts only what does not answer.
#   scripts/setup.sh --engine   what the main job needs: the Docker engine and the static
#                               C library processors link (the quick start)
#   scripts/setup.sh            everything the test suite needs besides: an OCI registry,
#                               S3, PostgreSQL, the arm64 cross toolchain, Python packages
set -euo pipefail

REGISTRY_ADDR="${PROCTOR_TEST_REGISTRY:-127.0.0.1:5000}"
STATE_DIR="${PROCTOR_SETUP_STATE:-/var/lib/proctor-setup}"

log() { printf '[setup] %s\n' "$*" >&2; }

case "${1:-}" in
  "") engine_only=false ;;
  --engine) engine_only=true ;;
  *) log "usage: scripts/setup.sh [--engine]"; exit 2 ;;
esac

# apt_install PACKAGE...: with apt's own progress on a terminal, quietly otherwise.
apt_install() {
  log "installing $*"
  export DEBIAN_FRONTEND=noninteractive
  if [[ -t 2 ]]; then
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends -o Dpkg::Progress-Fancy=1 "$@" >&2
  else
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  fi
}

need_packages=()
command -v dockerd >/dev/null 2>&1 || need_packages+=(docker.io)
# Processors are static binaries: the static glibc.
[[ -f "/usr/lib/$(uname -m)-linux-gnu/libc.a" ]] || need_packages+=(libc6-dev)
if ! $engine_only; then
  command -v docker-registry >/dev/null 2>&1 || need_packages+=(docker-registry)
  command -v jq >/dev/null 2>&1 || need_packages+=(jq)
  command -v curl >/dev/null 2>&1 || need_packages+=(curl)
  # Headless Chromium and its WebDriver server: the dashboard's browser tests.
  command -v chromium >/dev/null 2>&1 || need_packages+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need_packages+=(chromium-driver)
fi
if ((${#need_packages[@]})); then apt_install "${need_packages[@]}"; fi

mkdir -p "$STATE_DIR"

wait_for() { # wait_for DESCRIPTION SECONDS COMMAND...
  local what=$1 seconds=$2; shift 2
  for ((i = 0; i < seconds * 10; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  log "$what did not come up within ${seconds}s"
  return 1
}

if ! docker version >/dev/null 2>&1; then
  log "starting dockerd"
  # The engine keeps its own network rules; iptables may be unavailable in a sandbox.
  nohup dockerd --host=unix:///var/run/docker.sock >"$STATE_DIR/dockerd.log" 2>&1 &
  if ! wait_for "dockerd" 60 docker version; then
    log "retrying dockerd without iptables"
    pkill dockerd || true
    sleep 1
    nohup dockerd --host=unix:///var/run/docker.sock --iptables=false --ip6tables=false \
      >"$STATE_DIR/dockerd.log" 2>&1 &
    wait_for "dockerd" 60 docker version || { tail -n 30 "$STATE_DIR/dockerd.log" >&2; exit 1; }
  fi
fi
log "docker engine $(docker version --format '{{.Server.Version}}') answers"
if $engine_only; then exit 0; fi

if ! curl -fsS "http://$REGISTRY_ADDR/v2/" >/dev/null 2>&1; then
  log "starting docker-registry on $REGISTRY_ADDR"
  mkdir -p "$STATE_DIR/registry"
  cat >"$STATE_DIR/registry.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STATE_DIR/registry
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
YAML
  nohup docker-registry serve "$STATE_DIR/registry.yml" >"$STATE_DIR/registry.log" 2>&1 &
  wait_for "docker-registry" 30 curl -fsS "http://$REGISTRY_ADDR/v2/" \
    || { tail -n 30 "$STATE_DIR/registry.log" >&2; exit 1; }
fi
log "registry answers at http://$REGISTRY_ADDR/v2/"

# --- S3-compatible object storage (proctor-store's S3 tests) -------------------------------
# moto's server mode (PyPI), pinned, in its own virtualenv under the state dir; it speaks the
# S3 REST API (path-style, ListObjectsV2, multipart, S3 error codes) on loopback, accepts
# SigV4-signed requests without checking signatures, and keeps objects in memory, so it stops
# with the machine and starts empty. Skipped when something already answers there.
S3_ADDR="${PROCTOR_TEST_S3:-127.0.0.1:9000}"
MOTO_VERSION="5.2.5"
MOTO_VENV="$STATE_DIR/moto-$MOTO_VERSION"

s3_answers() { curl -sS -o /dev/null --max-time 2 "http://$S3_ADDR/"; }

if ! s3_answers >/dev/null 2>&1; then
  if [[ ! -x "$MOTO_VENV/bin/moto_server" ]]; then
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
      apt_install python3 python3-venv
    fi
    log "installing moto[server]==$MOTO_VERSION into $MOTO_VENV"
    rm -rf "$MOTO_VENV"
    python3 -m venv "$MOTO_VENV"
    "$MOTO_VENV/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  fi
  log "starting moto_server (S3) on $S3_ADDR"
  nohup "$MOTO_VENV/bin/moto_server" -H "${S3_ADDR%:*}" -p "${S3_ADDR##*:}" \
    >"$STATE_DIR/moto.log" 2>&1 &
  wait_for "moto_server" 60 s3_answers || { tail -n 30 "$STATE_DIR/moto.log" >&2; exit 1; }
fi
log "S3-compatible server answers at http://$S3_ADDR/"

# --- PostgreSQL (proctor-ledger's PostgreSQL tests) ----------------------------------------
# Debian's postgresql package and a throwaway cluster owned by the postgres user under the
# state dir: loopback only, trust auth (no password exists), fsync off (test data only), C
# collation. The tests create and drop one database per test. Skipped when a server answers.
PG_PORT="${PROCTOR_TEST_PG_PORT:-55432}"
PG_DIR="$STATE_DIR/pg"

pg_bin_dir() { find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1; }
pg_answers() { "$(pg_bin_dir)/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }

if [[ ! -x "$(pg_bin_dir)/initdb" ]]; then
  apt_install postgresql
fi
PG_BIN="$(pg_bin_dir)"

if ! pg_answers >/dev/null 2>&1; then
  mkdir -p "$PG_DIR"
  chown postgres:postgres "$PG_DIR"
  chmod 700 "$PG_DIR"
  if [[ ! -s "$PG_DIR/data/PG_VERSION" ]]; then
    log "initializing a PostgreSQL cluster in $PG_DIR/data"
    rm -rf "$PG_DIR/data"
    runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust \
      --encoding=UTF8 --locale=C >"$PG_DIR/initdb.log" 2>&1 \
      || { tail -n 30 "$PG_DIR/initdb.log" >&2; exit 1; }
  fi
  log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null || { tail -n 30 "$PG_DIR/postgres.log" >&2; exit 1; }
  wait_for "PostgreSQL" 30 pg_answers || { tail -n 30 "$PG_DIR/postgres.log" >&2; exit 1; }
fi
log "PostgreSQL answers at 127.0.0.1:$PG_PORT (user postgres, trust auth on loopback)"

# --- Cross-compilation prerequisites for `proctor build` (linux/amd64 + linux/arm64) -------
# Processor images are static binaries FROM scratch (the host's static glibc is installed
# above); the arm64 one is cross-compiled with the Rust target aarch64-unknown-linux-gnu,
# Debian's cross gcc (linker, and C compiler for crates that build C) and its static glibc.
cross_packages=()
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || cross_packages+=(gcc-aarch64-linux-gnu)
[[ -f /usr/aarch64-linux-gnu/lib/libc.a ]] || cross_packages+=(libc6-dev-arm64-cross)
if ((${#cross_packages[@]})); then apt_install "${cross_packages[@]}"; fi
if command -v rustup >/dev/null 2>&1 \
  && ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  log "adding the Rust target aarch64-unknown-linux-gnu"
  rustup target add aarch64-unknown-linux-gnu
fi
log "cross toolchain for linux/arm64: aarch64-linux-gnu-gcc $(aarch64-linux-gnu-gcc -dumpversion)"

# --- Python packages from PyPI, pinned, into the python3 on PATH ---------------------------
# Debian's own python3 refuses plain pip installs, hence the fallback.
pip_install() { # pip_install REQUIREMENT
  if ! python3 -m pip --version >/dev/null 2>&1; then
    apt_install python3 python3-pip
  fi
  log "installing $1"
  python3 -m pip install -q --disable-pip-version-check "$1" 2>/dev/null \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages "$1"
}

# --- Modal client (proctor-deploy's tests and `proctor deploy --target modal`) -------------
# The `modal` package, so that both `python3 -c 'import modal'` (the tests import generated
# apps with it; no token or network needed) and the `modal` command work. Skipped when modal
# is already importable.
MODAL_VERSION="1.6.4"

if ! python3 -c 'import modal' >/dev/null 2>&1; then
  pip_install "modal==$MODAL_VERSION"
fi
command -v modal >/dev/null 2>&1 || { log "the modal command is not on PATH"; exit 1; }
log "modal $(python3 -c 'import modal; print(modal.__version__)') importable, $(command -v modal)"

# --- PyYAML (proctor-registry's portability test) ------------------------------------------
# The test reads every shipped registry.yaml with PyYAML too, as tools outside Rust do.
# Skipped when yaml is already importable.
PYYAML_VERSION="6.0.3"

if ! python3 -c 'import yaml' >/dev/null 2>&1; then
  pip_install "PyYAML==$PYYAML_VERSION"
fi
log "PyYAML $(python3 -c 'import yaml; print(yaml.__version__)') importable"

# --- Local Python base image (the Python processors' Dockerfile builds) -------------------
# python:3.11-slim cannot be pulled here: scripts/python-base.sh builds a Debian bookworm one
# with mmdebstrap from the host's apt sources and imports it as proctor-python-base:bookworm,
# which the tests pass as --build-arg BASE_IMAGE. Skipped when the tag exists.
command -v mmdebstrap >/dev/null 2>&1 || apt_install mmdebstrap
bash "$(dirname "$0")/python-base.sh"
