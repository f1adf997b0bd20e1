#!/usr/bin/env bash
# Installs and starts what proctor needs on a fresh Debian machine: a Docker engine and a
# local OCI distribution registry. Idempotent: installs only what is missing and starts only
# what does not answer. Usage: scripts/setup.sh
set -euo pipefail

REGISTRY_ADDR="${PROCTOR_TEST_REGISTRY:-127.0.0.1:5000}"
STATE_DIR="${PROCTOR_SETUP_STATE:-/var/lib/proctor-setup}"

log() { printf '[setup] %s\n' "$*" >&2; }

need_packages=()
command -v dockerd >/dev/null 2>&1 || need_packages+=(docker.io)
command -v docker-registry >/dev/null 2>&1 || need_packages+=(docker-registry)
command -v jq >/dev/null 2>&1 || need_packages+=(jq)
command -v curl >/dev/null 2>&1 || need_packages+=(curl)
if ((${#need_packages[@]})); then
  log "installing ${need_packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_packages[@]}" >/dev/null
fi

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
