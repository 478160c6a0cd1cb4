# modelcert: the official Airflow image extended with the project's pinned dependencies,
# the modelcert library (include/), the DAGs (dags/) and the Airflow plugins (plugins/).
#
# Follows "Extending the image" in the Airflow docker-stack docs: packages are installed
# with pip as the `airflow` user, and apache-airflow is named at the image's own version
# (${AIRFLOW_VERSION}, set by the base image) so that pip can never up- or downgrade it.
# requirements.txt pins the same version; tests/test_deploy_files.py checks that the tag
# below and that pin agree.
#
# Needs BuildKit (RUN --mount). Built by scripts/docker_local_images.sh; see docs/docker.md.
#
#   BASE_IMAGE   default: the official image. Where Docker Hub cannot be reached, the local
#                base of docker/local.Dockerfile (Debian bookworm's Python 3.11 in a venv;
#                BASE_IMAGE=modelcert-airflow-base:local) gives the same user, paths,
#                AIRFLOW_VERSION and /entrypoint, so every step below is the same.
#   secret ca_bundle   optional: a CA bundle for PyPI behind a TLS-intercepting proxy
#                (`--secret id=ca_bundle,src=/etc/ssl/certs/ca-certificates.crt`). It is
#                mounted for the pip steps only and is in no layer of the image.
ARG BASE_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${BASE_IMAGE}

# 0. WeasyPrint (the certification dossier's PDF, served by the api-server) lays out text with the system's Pango.
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 \
 && apt-get autoremove -yqq --purge && apt-get clean && rm -rf /var/lib/apt/lists/*

USER airflow
WORKDIR /opt/airflow

# 1. Third-party dependencies first, so that this layer is cached while only code changes.
COPY --chown=airflow:0 requirements.txt requirements-nodeps.txt /opt/airflow/
RUN --mount=type=secret,id=ca_bundle,required=false,mode=0444 \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/airflow/requirements.txt \
 && pip install --no-cache-dir --no-deps -r /opt/airflow/requirements-nodeps.txt

# 2. The modelcert library (package dir "" = "include" in pyproject.toml), installed
#    editable so that the ./include bind mount of docker-compose.yaml is what gets imported.
#    This puts the `modelcert` CLI (used by airflow-init: `modelcert db upgrade`) on PATH.
#    pip fetches the build backend (setuptools>=68, pyproject.toml) from the index: same CA secret.
COPY --chown=airflow:0 pyproject.toml /opt/airflow/pyproject.toml
COPY --chown=airflow:0 include/ /opt/airflow/include/
RUN --mount=type=secret,id=ca_bundle,required=false,mode=0444 \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && pip install --no-cache-dir --no-deps -e /opt/airflow

# 3. DAGs and plugins (docker-compose.yaml also bind-mounts these for development).
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
