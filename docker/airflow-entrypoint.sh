#!/usr/bin/env bash
# /entrypoint of the local Airflow base image (docker/local.Dockerfile): the part of the official image's
# entrypoint that docker-compose.yaml relies on. `bash ...` and `python ...` run as given; `airflow X` and a
# bare Airflow subcommand (`api-server`, `scheduler`, `celery worker`, ...) run `airflow X`.
# The official one also waits for the database and can migrate it; here airflow-init does the migration and
# compose's depends_on/healthchecks do the waiting.
set -euo pipefail
if [[ $# -eq 0 ]]; then
  exec airflow --help
fi
case "$1" in
  bash | sh) shell="$1"; shift; exec "/bin/${shell}" "$@" ;;
  python | python3) shift; exec python "$@" ;;
  airflow) shift ;;
esac
exec airflow "$@"
