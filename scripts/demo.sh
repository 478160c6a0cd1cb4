#!/usr/bin/env bash
# The main job: install (.venv from pinned requirements), then certify the demo models through Airflow.
# Embedded PostgreSQL unless MODELCERT_DATABASE_URL and AIRFLOW__DATABASE__SQL_ALCHEMY_CONN are set.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh"
exec "$ROOT/.venv/bin/modelcert" demo "$@"
