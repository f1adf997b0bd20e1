#!/usr/bin/env bash
# Builds the local Python base image that Python processors take as their Dockerfile's
# BASE_IMAGE where the official python:3.11-slim cannot be pulled: a Debian bookworm root
# filesystem made by mmdebstrap from the host's apt sources (variant minbase, with python3,
# its venv module and CA certificates; no documentation, manuals or locales), imported into
# the Docker engine. Debian bookworm's python3 is CPython 3.11, the version Python processors
# declare in registry.yaml (`build.python`).
#
# Idempotent: nothing is done when the tag exists, and the root filesystem tarball is kept in
# the state directory, so a lost image is imported again without downloading anything.
# Usage: scripts/python-base.sh   (tag: $PROCTOR_PYTHON_BASE, default proctor-python-base:bookworm)
set -euo pipefail

TAG="${PROCTOR_PYTHON_BASE:-proctor-python-base:bookworm}"
STATE_DIR="${PROCTOR_SETUP_STATE:-/var/lib/proctor-setup}"
TARBALL="$STATE_DIR/python-base-bookworm.tar"
PACKAGES="python3,python3-venv,ca-certificates"

log() { printf '[python-base] %s\n' "$*" >&2; }

if docker image inspect "$TAG" >/dev/null 2>&1; then
  log "$TAG present"
  exit 0
fi

if [[ ! -s "$TARBALL" ]]; then
  # The host's apt sources, one-line and deb822 files alike; mmdebstrap reads both.
  sources=()
  [[ -s /etc/apt/sources.list ]] && sources+=(/etc/apt/sources.list)
  for file in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -s "$file" ]] && sources+=("$file")
  done
  ((${#sources[@]})) || { log "no apt sources on this host"; exit 1; }
  mkdir -p "$STATE_DIR"
  log "building a bookworm root filesystem ($PACKAGES) from ${sources[*]}"
  started=$SECONDS
  mmdebstrap --quiet --variant=minbase --include="$PACKAGES" \
    --aptopt='Acquire::Languages "none"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --format=tar bookworm "$TARBALL.partial" "${sources[@]}"
  mv "$TARBALL.partial" "$TARBALL"
  log "root filesystem built in $((SECONDS - started)) s: $(du -h "$TARBALL" | cut -f1)"
fi

log "importing $TARBALL as $TAG"
docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  "$TARBALL" "$TAG" >/dev/null
log "$TAG: $(docker run --rm --network none "$TAG" python3 --version)"
