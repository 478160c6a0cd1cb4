# Local stand-ins for the three Docker Hub images docker-compose.yaml uses, for machines that cannot reach
# Docker Hub (this one: registry-1.docker.io does not resolve). Built from Debian bookworm packages only, on a
# base made with debootstrap (scripts/docker_local_images.sh makes it and builds every target):
#
#   airflow-base  what the main Dockerfile needs from apache/airflow:3.3.2-python3.11: Python 3.11 (Debian's)
#                 in a virtualenv owned by `airflow` (uid 50000, gid 0) on PATH, AIRFLOW_VERSION, AIRFLOW_HOME,
#                 /entrypoint (docker/airflow-entrypoint.sh) under dumb-init, curl for the health checks.
#                 Airflow itself is installed by the main Dockerfile (BASE_IMAGE=modelcert-airflow-base:local).
#   postgres      PostgreSQL 15 (bookworm's; the compose default is postgres:16) with the official image's
#                 POSTGRES_USER/POSTGRES_PASSWORD/POSTGRES_DB and /docker-entrypoint-initdb.d/*.sql behaviour
#                 (docker/postgres-entrypoint.sh).
#   redis         redis-server 7.0 (bookworm's; the compose default is redis:7.2-bookworm).
#
# Nothing here talks to PyPI, so no CA bundle is needed: apt fetches over plain HTTP and checks signatures.
ARG BOOKWORM_IMAGE=modelcert-bookworm:local

FROM ${BOOKWORM_IMAGE} AS airflow-base
ARG AIRFLOW_VERSION=3.3.2
ARG AIRFLOW_UID=50000
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    AIRFLOW_VERSION=${AIRFLOW_VERSION} \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW_USER_HOME_DIR=/home/airflow \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/home/airflow/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv ca-certificates curl dumb-init \
      libgomp1 procps \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid "${AIRFLOW_UID}" --gid 0 --home-dir /home/airflow --create-home --shell /bin/bash airflow \
 && mkdir -p /opt/airflow \
 && chown -R airflow:0 /opt/airflow /home/airflow \
 && chmod -R g+rwX /opt/airflow /home/airflow
COPY docker/airflow-entrypoint.sh /entrypoint
USER airflow
RUN python3.11 -m venv /home/airflow/.venv && chmod -R g+rwX /home/airflow/.venv
WORKDIR /opt/airflow
ENTRYPOINT ["/usr/bin/dumb-init", "--", "/entrypoint"]
CMD []

FROM ${BOOKWORM_IMAGE} AS postgres
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PGDATA=/var/lib/postgresql/data \
    PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /docker-entrypoint-initdb.d /var/run/postgresql "${PGDATA}" \
 && chown -R postgres:postgres /var/run/postgresql "${PGDATA}"
COPY docker/postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /var/lib/postgresql/data
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]

FROM ${BOOKWORM_IMAGE} AS redis
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/*
USER redis
EXPOSE 6379
# As the official image without a config file: listen on every interface, no protected mode, no persistence
# beyond what the broker needs (Celery messages are transient; a restart re-queues from the scheduler).
CMD ["redis-server", "--bind", "0.0.0.0", "--port", "6379", "--protected-mode", "no", "--save", "", "--appendonly", "no"]
