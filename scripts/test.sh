#!/usr/bin/env bash
# The tests: install (.venv from pinned requirements), then every layer — unit, store (real PostgreSQL:
# embedded unless MODELCERT_TEST_DATABASE_URL is set), DAG integrity, dag.test() runs, e2e with real Airflow
# processes. Slow tests are marked `slow` and run here too.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/modelcert-runtime-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
exec .venv/bin/python -m pytest -q "$@"
