#!/usr/bin/env bash
# Build the images docker-compose.yaml runs, without Docker Hub:
#   modelcert-bookworm:local      Debian bookworm (debootstrap --variant=minbase, then docker import)
#   modelcert-airflow-base:local  docker/local.Dockerfile target airflow-base (stands in for apache/airflow)
#   modelcert-postgres:local      docker/local.Dockerfile target postgres      (stands in for postgres:16)
#   modelcert-redis:local         docker/local.Dockerfile target redis         (stands in for redis:7.2-bookworm)
#   modelcert-airflow:local       ./Dockerfile with BASE_IMAGE=modelcert-airflow-base:local
# With Docker Hub reachable none of this is needed: `docker compose build` builds ./Dockerfile on the official
# image (still pass the CA secret if PyPI sits behind a TLS-intercepting proxy, see below).
#
# Environment (all optional):
#   DOCKER            docker client with BuildKit (default: `docker` if it has buildx or is < 23, else
#                     /usr/bin/docker from Debian's docker.io 20.10, whose built-in BuildKit takes --secret)
#   CA_BUNDLE         CA bundle pip must trust (default: $PIP_CERT, $SSL_CERT_FILE, else the system bundle
#                     /etc/ssl/certs/ca-certificates.crt); passed as the BuildKit secret `ca_bundle`, never in a layer
#   DEBIAN_MIRROR     default http://deb.debian.org/debian
#   REBUILD_BASE=1    re-run debootstrap even if modelcert-bookworm:local exists
# Needs root for debootstrap (and docker). Prints each step's seconds.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

pick_docker() {
  if [[ -n "${DOCKER:-}" ]]; then echo "$DOCKER"; return; fi
  local c major
  for c in docker /usr/bin/docker; do
    command -v "$c" >/dev/null 2>&1 || continue
    if "$c" buildx version >/dev/null 2>&1; then echo "$c"; return; fi
    major="$("$c" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)"
    if [[ "$major" =~ ^[0-9]+$ ]] && (( major < 23 )); then echo "$c"; return; fi
  done
  echo "no docker client with BuildKit found: install docker-buildx, or Debian's docker.io (20.10), or set DOCKER" >&2
  return 2
}
DOCKER="$(pick_docker)"
export DOCKER_BUILDKIT=1
step() { printf '==> %s\n' "$*"; }
timed() { local t0=$SECONDS; "$@"; printf '    (%ss)\n' "$((SECONDS - t0))"; }

CA_BUNDLE="${CA_BUNDLE:-${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}}"
secret=()
if [[ -s "$CA_BUNDLE" ]]; then
  secret=(--secret "id=ca_bundle,src=$CA_BUNDLE")
else
  echo "    no CA bundle at '$CA_BUNDLE': pip uses its own (set CA_BUNDLE behind a TLS-intercepting proxy)"
fi

make_bookworm() {
  local tmp
  command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; return 2; }
  tmp="$(mktemp -d)"
  if ! debootstrap --variant=minbase bookworm "$tmp/rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" \
       >"$tmp/log" 2>&1; then
    tail -20 "$tmp/log" >&2
    rm -rf "$tmp"
    return 2
  fi
  tar -C "$tmp/rootfs" -c . | "$DOCKER" import - modelcert-bookworm:local >/dev/null
  rm -rf "$tmp"
}

if [[ "${REBUILD_BASE:-0}" == 1 ]] || ! "$DOCKER" image inspect modelcert-bookworm:local >/dev/null 2>&1; then
  step "debootstrap bookworm -> modelcert-bookworm:local"
  timed make_bookworm
fi
for target in airflow-base postgres redis; do
  step "docker/local.Dockerfile --target $target -> modelcert-$target:local"
  timed "$DOCKER" build -q -f docker/local.Dockerfile --target "$target" -t "modelcert-$target:local" .
done
step "Dockerfile (BASE_IMAGE=modelcert-airflow-base:local) -> ${AIRFLOW_IMAGE_NAME:-modelcert-airflow:local}"
timed "$DOCKER" build "${secret[@]}" --build-arg BASE_IMAGE=modelcert-airflow-base:local \
  -t "${AIRFLOW_IMAGE_NAME:-modelcert-airflow:local}" .
