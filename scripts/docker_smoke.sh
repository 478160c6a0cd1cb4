#!/usr/bin/env bash
# The docker-compose deployment, run for real: images, compose up, certify two demo models over the REST API v2
# (German credit -> awaiting sign-off, Adult -> rejected, each task on one of the two Celery workers), compose down.
# Tears everything down even on failure (containers, network, volumes; dockerd too if this script started it) and
# prints each phase's seconds.
#
#   bash scripts/docker_smoke.sh            # uses a running Docker engine, or starts dockerd (as root)
#   COLD=1 bash scripts/docker_smoke.sh     # from nothing: also deletes the modelcert-*:local images and the
#                                           # build cache first, and re-runs debootstrap
#
# Environment: IMAGES=local (default: scripts/docker_local_images.sh, no Docker Hub) or hub (build ./Dockerfile on
# the official image, postgres:16 and redis:7.2-bookworm from Docker Hub); DOCKERD_ARGS (extra dockerd flags when
# this script starts it, e.g. "--storage-driver=vfs" where overlayfs is unavailable); CA_BUNDLE (see
# scripts/docker_local_images.sh); KEEP=1 leaves the stack running (no teardown).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
IMAGES="${IMAGES:-local}"
PROJECT="${COMPOSE_PROJECT_NAME:-modelcert-smoke}"
T_START=$SECONDS
declare -a TIMES=()
phase_start=$SECONDS
phase() {  # phase NAME: closes the previous phase's clock, opens NAME's
  if [[ -n "${PHASE:-}" ]]; then TIMES+=("$(printf '%-28s %4ss' "$PHASE" "$((SECONDS - phase_start))")"); fi
  PHASE="$1"; phase_start=$SECONDS
  [[ -n "$1" ]] && printf '==> %s\n' "$1"
  return 0
}

DOCKERD_PID=""
DOCKERD_LOG=""
COMPOSE=()
STATUS=1
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if (( ${#COMPOSE[@]} )); then
    if [[ "$STATUS" != 0 ]]; then
      echo "==> FAILED: last log lines of every service"
      "${COMPOSE[@]}" ps
      "${COMPOSE[@]}" logs --no-color --tail=60
    fi
    if [[ "${KEEP:-0}" == 1 ]]; then
      echo "KEEP=1: the stack keeps running; stop it with: ${COMPOSE[*]} down -v"
    else
      phase "compose down -v"
      "${COMPOSE[@]}" down -v --remove-orphans --timeout 20
    fi
  fi
  if [[ -n "$DOCKERD_PID" && "${KEEP:-0}" != 1 ]]; then
    phase "stop dockerd"
    kill "$DOCKERD_PID" 2>/dev/null
    for _ in $(seq 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
  fi
  phase ""
  echo
  echo "Phase times:"
  printf '  %s\n' "${TIMES[@]}"
  printf '  %-28s %4ss\n' "total" "$((SECONDS - T_START))"
  if [[ "$STATUS" == 0 ]]; then echo "docker smoke: OK"; exit 0; fi
  echo "docker smoke: FAILED (exit $rc)"
  exit $(( rc == 0 ? 1 : rc ))
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --------------------------------------------------------------------------- the engine
phase "docker engine"
DOCKER="${DOCKER:-docker}"
if ! "$DOCKER" info >/dev/null 2>&1; then
  if [[ "$(id -u)" != 0 ]] || ! command -v dockerd >/dev/null; then
    echo "no Docker engine answers and this script cannot start one (needs root and dockerd: apt-get install docker.io)" >&2
    exit 2
  fi
  DOCKERD_LOG="$(mktemp -t modelcert-dockerd.XXXXXX.log)"
  # shellcheck disable=SC2086  # DOCKERD_ARGS is a list of flags
  dockerd ${DOCKERD_ARGS:-} >"$DOCKERD_LOG" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 60); do "$DOCKER" info >/dev/null 2>&1 && break; sleep 0.5; done
  "$DOCKER" info >/dev/null 2>&1 || { tail -20 "$DOCKERD_LOG" >&2; exit 2; }
  echo "    started dockerd (pid $DOCKERD_PID, log $DOCKERD_LOG, storage driver $("$DOCKER" info --format '{{.Driver}}'))"
fi
if "$DOCKER" compose version >/dev/null 2>&1; then
  COMPOSE_BIN=("$DOCKER" compose)
elif command -v docker-compose >/dev/null; then
  COMPOSE_BIN=(docker-compose)
else
  echo "no compose client: install docker-compose (Debian) or the compose plugin" >&2
  exit 2
fi

if [[ "${COLD:-0}" == 1 ]]; then
  phase "cold start: delete images and build cache"
  "$DOCKER" image ls --format '{{.Repository}}:{{.Tag}}' | grep -E '^modelcert-[a-z-]+:local$' \
    | xargs -r "$DOCKER" image rm -f >/dev/null
  "$DOCKER" builder prune -af >/dev/null 2>&1 || true
fi

# --------------------------------------------------------------------------- images
export AIRFLOW_IMAGE_NAME="${AIRFLOW_IMAGE_NAME:-modelcert-airflow:local}"
if [[ "$IMAGES" == local ]]; then
  phase "images (debootstrap + build)"
  REBUILD_BASE="${COLD:-0}" bash scripts/docker_local_images.sh
  export POSTGRES_IMAGE=modelcert-postgres:local REDIS_IMAGE=modelcert-redis:local
elif [[ "$IMAGES" == hub ]]; then
  phase "images (official base)"
  CA_BUNDLE="${CA_BUNDLE:-${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}}"
  secret=()
  [[ -s "$CA_BUNDLE" ]] && secret=(--secret "id=ca_bundle,src=$CA_BUNDLE")
  DOCKER_BUILDKIT=1 "$DOCKER" build "${secret[@]}" -t "$AIRFLOW_IMAGE_NAME" .
else
  echo "IMAGES must be local or hub, not '$IMAGES'" >&2
  exit 2
fi

# --------------------------------------------------------------------------- demo data (bind-mounted via ./include)
phase "demo data"
"$DOCKER" run --rm --user "$(id -u):$(id -g)" -e HOME=/tmp -v "$ROOT/include:/opt/airflow/include" \
  --entrypoint python "$AIRFLOW_IMAGE_NAME" -m modelcert.demo.build >/dev/null

# --------------------------------------------------------------------------- compose up
PORT="${AIRFLOW_API_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
export AIRFLOW_API_PORT="$PORT"
COMPOSE=("${COMPOSE_BIN[@]}" -p "$PROJECT" -f docker-compose.yaml)
phase "compose up (init + 8 services)"
"${COMPOSE[@]}" down -v --remove-orphans --timeout 5 >/dev/null 2>&1 || true  # a stale project of the same name
"${COMPOSE[@]}" up -d --no-build
echo "    waiting for the api-server to be healthy (http://localhost:$PORT) and every service to run"
# The other services' health checks start the Airflow or Celery CLI (several CPU-seconds each): on a loaded
# 2-core machine they can take minutes to turn healthy, so the certification below is what proves the
# scheduler, dag-processor, triggerer and workers work; their health is printed at the end.
deadline=$((SECONDS + 600))
while :; do
  waiting=()
  for svc in postgres redis airflow-apiserver airflow-scheduler airflow-dag-processor airflow-triggerer \
             airflow-worker airflow-worker-2; do
    cid="$("${COMPOSE[@]}" ps -q "$svc")"
    state="$([[ -n "$cid" ]] && "$DOCKER" inspect -f '{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}/{{.RestartCount}}' "$cid")"
    case "$svc:$state" in
      postgres:running/healthy/0 | redis:running/healthy/0 | airflow-apiserver:running/healthy/0) ;;
      airflow-apiserver:* | postgres:* | redis:*) waiting+=("$svc=${state:-missing}") ;;
      *:running/*/0) ;;
      *) waiting+=("$svc=${state:-missing}") ;;
    esac
  done
  (( ${#waiting[@]} == 0 )) && break
  if (( SECONDS > deadline )); then echo "    not up after 600s: ${waiting[*]}" >&2; exit 1; fi
  sleep 5
done
init_rc="$("$DOCKER" inspect -f '{{.State.ExitCode}}' "$("${COMPOSE[@]}" ps -q airflow-init)")"
[[ "$init_rc" == 0 ]] || { echo "    airflow-init exited $init_rc" >&2; exit 1; }

# --------------------------------------------------------------------------- certify through the REST API v2
phase "certify 2 models (REST v2)"
# Run ids named after model and version, as the README asks of anyone who triggers a run.
mapfile -t run_ids < <("${COMPOSE[@]}" exec -T airflow-apiserver python -c '
from modelcert_devstack.airflow_stack import certify_run_id
for spec in ("german_credit.yaml", "adult_income.yaml"):
    run_id = certify_run_id(spec)
    if run_id:
        print(f"{spec}={run_id}")')
python3 scripts/docker_certify.py --base-url "http://localhost:$PORT" \
  --password "${AIRFLOW_ADMIN_PASSWORD:-admin}" \
  --run german_credit.yaml:awaiting_signoff --run adult_income.yaml:rejected \
  "${run_ids[@]/#/--run-id=}" --min-workers 2
"${COMPOSE[@]}" ps
STATUS=0
