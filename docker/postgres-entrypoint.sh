#!/usr/bin/env bash
# Entrypoint of the local PostgreSQL image (docker/local.Dockerfile), behaving like the official postgres
# image's for what docker-compose.yaml uses: on an empty data directory, initdb with POSTGRES_USER /
# POSTGRES_PASSWORD, create POSTGRES_DB, run /docker-entrypoint-initdb.d/*.sql with a server listening on the
# unix socket only (so a TCP health check is healthy only once this is over), then run the server on every
# interface with password authentication.
set -euo pipefail
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=${POSTGRES_USER}}"
if [[ -z "${POSTGRES_PASSWORD:-}" ]]; then
  echo "postgres: POSTGRES_PASSWORD must be set (no password-less TCP access in this image)" >&2
  exit 2
fi
if [[ "$(id -u)" == 0 ]]; then
  mkdir -p "${PGDATA}" /var/run/postgresql
  chown -R postgres:postgres "${PGDATA}" /var/run/postgresql
  chmod 700 "${PGDATA}"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [[ ! -s "${PGDATA}/PG_VERSION" ]]; then
  pwfile="$(mktemp)"
  printf '%s\n' "${POSTGRES_PASSWORD}" > "${pwfile}"
  initdb --pgdata="${PGDATA}" --username="${POSTGRES_USER}" --pwfile="${pwfile}" \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8
  rm -f "${pwfile}"
  printf 'host all all all scram-sha-256\n' >> "${PGDATA}/pg_hba.conf"
  pg_ctl --pgdata="${PGDATA}" --wait --options="-c listen_addresses='' -k /var/run/postgresql" start
  psql=(psql -v ON_ERROR_STOP=1 --host=/var/run/postgresql --username="${POSTGRES_USER}" --no-password)
  if [[ "${POSTGRES_DB}" != postgres ]]; then
    "${psql[@]}" --dbname=postgres --set=db="${POSTGRES_DB}" <<<'CREATE DATABASE :"db";'
  fi
  for f in /docker-entrypoint-initdb.d/*.sql; do
    [[ -e "$f" ]] || continue
    echo "postgres: running $f"
    "${psql[@]}" --dbname="${POSTGRES_DB}" -f "$f"
  done
  pg_ctl --pgdata="${PGDATA}" --wait --mode=fast stop
fi
if [[ "${1:-}" == postgres ]]; then
  shift
  exec postgres -D "${PGDATA}" -c listen_addresses='*' -k /var/run/postgresql "$@"
fi
exec "$@"
