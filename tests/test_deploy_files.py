"""Static checks of the deployment files: Dockerfile and docker-compose.yaml.

No Docker engine is needed (nor used): docker-compose.yaml is validated against the
Compose Specification JSON schema vendored in tests/data/compose-spec.json (provenance
in tests/data/README.md), and the Dockerfile is checked line by line.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
REQUIREMENTS = ROOT / "requirements.txt"
SCHEMA_FILE = Path(__file__).resolve().parent / "data" / "compose-spec.json"
# sha256 of schemas/compose.schema.json in the npm package dclint 3.1.0 (see tests/data/README.md).
SCHEMA_SHA256 = "46b7d35f19dd93a05f8fea530291bf84d881c1791ec167ecf0e6fb94e639d496"

AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "airflow-init",
}
SUPPORT_SERVICES = {"postgres", "redis"}


# --------------------------------------------------------------------------- helpers

_INTERPOLATION = re.compile(
    r"\$\$"  # escaped dollar
    r"|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose-style variable interpolation of one string, with `env` as the environment."""
    env = env or {}

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("braced") or m.group("bare")
        op, arg = m.group("op"), m.group("arg")
        current = env.get(name)
        if op == ":-":
            return current if current else arg
        if op == "-":
            return current if current is not None else arg
        if op in (":?", "?"):
            if not current if op == ":?" else current is None:
                raise ValueError(f"required variable {name} is not set: {arg}")
            return current
        return current or ""

    return _INTERPOLATION.sub(repl, value)


def interpolate_tree(node, env: dict[str, str] | None = None):
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(v, env) for v in node]
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env) for k, v in node.items()}
    return node


def env_dict(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def db_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    joined: list[str] = []
    buf = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # comment inside a continued instruction
            continue
        if line.endswith("\\"):
            buf += line[:-1].strip() + " "
            continue
        joined.append((buf + line).strip())
        buf = ""
    if buf:
        joined.append(buf.strip())
    out = []
    for ins in joined:
        keyword, _, args = ins.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def pinned_airflow_version() -> str:
    for line in REQUIREMENTS.read_text().splitlines():
        m = re.match(r"^\s*apache-airflow(\[[^\]]*\])?\s*==\s*([0-9][^\s;#]*)", line)
        if m:
            return m.group(2)
    raise AssertionError("apache-airflow is not pinned with == in requirements.txt")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text())


@pytest.fixture(scope="module")
def validator(schema) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(schema)


@pytest.fixture(scope="module")
def compose() -> dict:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def compose_resolved(compose) -> dict:
    """The compose model as compose sees it with no variables set (all defaults)."""
    return interpolate_tree(compose)


def schema_errors(validator, instance) -> list[str]:
    return [
        f"{e.json_path}: {e.message}"
        for e in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    ]


# --------------------------------------------------------------------------- the schema


def test_vendored_schema_is_the_recorded_file(schema):
    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() == SCHEMA_SHA256, (
        "tests/data/compose-spec.json changed: update tests/data/README.md and SCHEMA_SHA256"
    )
    assert "draft-07" in schema["$schema"]
    assert schema["title"] == "Compose Specification"
    jsonschema.Draft7Validator.check_schema(schema)


# --------------------------------------------------------------------------- compose: schema


def test_compose_file_is_valid_against_compose_spec(validator, compose, compose_resolved):
    assert schema_errors(validator, compose) == []
    assert schema_errors(validator, compose_resolved) == []


def test_schema_rejects_unknown_service_key(validator, compose):
    bad = copy.deepcopy(compose)
    svc = bad["services"]["airflow-scheduler"]
    svc["healthchek"] = svc.pop("healthcheck")  # typo
    errors = schema_errors(validator, bad)
    assert errors, "a misspelt service key must make the compose file invalid"
    assert any("healthchek" in e for e in errors), errors


def test_schema_rejects_invalid_compose_text(validator):
    text = """
services:
  web:
    image: nginx
    port:              # typo for "ports"
      - "80:80"
    depends_on:
      db:
        condition: service_ready   # not a valid condition
  db:
    image: postgres:16
"""
    errors = schema_errors(validator, yaml.safe_load(text))
    assert any("port" in e for e in errors), errors
    assert any("depends_on" in e for e in errors), errors


def test_schema_rejects_unknown_top_level_key(validator, compose):
    bad = copy.deepcopy(compose)
    bad["service"] = bad.pop("services")  # typo
    assert schema_errors(validator, bad)


# --------------------------------------------------------------------------- compose: content


def test_expected_services(compose):
    assert set(compose["services"]) == AIRFLOW_SERVICES | SUPPORT_SERVICES
    assert compose["services"]["postgres"]["image"].startswith("postgres:16")
    assert compose["services"]["airflow-apiserver"]["command"] == "api-server"
    assert compose["services"]["airflow-worker"]["command"] == "celery worker"
    assert compose["services"]["airflow-dag-processor"]["command"] == "dag-processor"


def test_every_airflow_service_uses_the_common_image(compose):
    common = compose["x-airflow-common"]
    assert common["build"]["context"] == "."
    assert common["build"].get("dockerfile", "Dockerfile") == "Dockerfile"
    for name in AIRFLOW_SERVICES:
        svc = compose["services"][name]
        assert svc["image"] == common["image"], name
        assert svc["build"] == common["build"], name
        # Every Airflow service carries the whole common environment (overrides allowed on top).
        env = env_dict(svc)
        for key, value in env_dict(common).items():
            assert env.get(key) == value, (name, key)
        for volume in common["volumes"]:
            assert volume in svc["volumes"], (name, volume)


def test_common_airflow_environment(compose_resolved):
    env = env_dict(compose_resolved["x-airflow-common"])
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"].lower() == "false"
    assert env["AIRFLOW__CORE__AUTH_MANAGER"] == (
        "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
    )
    assert "admin:admin" in env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",")
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert urlsplit(env["AIRFLOW__CELERY__BROKER_URL"]).hostname == "redis"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
    # The JWT secret must be shared by every component, so it must not be left to each
    # container to generate.
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"]


def test_results_db_is_separate_from_metadata_db(compose_resolved):
    env = env_dict(compose_resolved["x-airflow-common"])
    metadata_url = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    results_url = env["MODELCERT_DATABASE_URL"]
    conn_url = env["AIRFLOW_CONN_MODELCERT_DB"]

    metadata_db, results_db = db_name(metadata_url), db_name(results_url)
    assert metadata_db == "airflow"
    assert results_db == "modelcert"
    assert metadata_db != results_db
    # The Airflow connection and the library URL point at the same results database.
    assert db_name(conn_url) == results_db
    assert urlsplit(conn_url).hostname == urlsplit(results_url).hostname == "postgres"
    assert results_url.startswith("postgresql+psycopg2://")
    # Celery results live in the metadata DB, never in the results DB.
    assert db_name(env["AIRFLOW__CELERY__RESULT_BACKEND"]) == metadata_db

    postgres = compose_resolved["services"]["postgres"]
    assert env_dict(postgres)["POSTGRES_DB"] == metadata_db
    # The postgres init script creates the second database.
    (cfg_ref,) = postgres["configs"]
    assert cfg_ref["target"].startswith("/docker-entrypoint-initdb.d/")
    assert cfg_ref["target"].endswith(".sql")
    init_sql = compose_resolved["configs"][cfg_ref["source"]]["content"]
    assert re.search(rf"CREATE DATABASE\s+\"?{results_db}\"?", init_sql, re.IGNORECASE)


def test_depends_on_and_healthchecks(compose):
    services = compose["services"]
    for name in ("postgres", "redis"):
        assert "healthcheck" in services[name], name
    for name in AIRFLOW_SERVICES:
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy", name
        assert deps["redis"]["condition"] == "service_healthy", name
        if name != "airflow-init":
            assert "healthcheck" in services[name], name
            assert deps["airflow-init"]["condition"] == "service_completed_successfully", name
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"
    assert "8080" in services["airflow-apiserver"]["ports"][0].split(":")[-1]


def test_airflow_init_runs_both_migrations(compose_resolved):
    init = compose_resolved["services"]["airflow-init"]
    script = init["command"][-1] if isinstance(init["command"], list) else init["command"]
    assert "airflow db migrate" in script
    assert "modelcert db upgrade" in script
    assert script.index("airflow db migrate") < script.index("modelcert db upgrade")


def test_airflow_init_script_is_valid_shell_and_python(compose_resolved):
    init = compose_resolved["services"]["airflow-init"]
    assert init["entrypoint"] == "/bin/bash"
    assert init["command"][0] == "-c"
    script = init["command"][1]
    m = re.search(r"python - <<'PY'\n(.*?)\nPY\n", script, re.DOTALL)
    assert m, "expected an embedded python heredoc creating the results database"
    compile(m.group(1), "airflow-init-create-db", "exec")
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not available")
    proc = subprocess.run([bash, "-n", "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_interpolation_helper():
    assert interpolate("${A:-x}") == "x"
    assert interpolate("${A:-x}", {"A": "y"}) == "y"
    assert interpolate("$${HOSTNAME}") == "${HOSTNAME}"
    assert interpolate("${A}-$B", {"A": "1", "B": "2"}) == "1-2"


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_base_image_is_airflow_3_3():
    froms = [args for ins, args in dockerfile_instructions() if ins == "FROM"]
    assert len(froms) == 1, froms
    m = re.fullmatch(r"apache/airflow:(3\.3\.\d+)-python(3\.\d+)", froms[0])
    assert m, froms[0]
    assert m.group(2) == "3.11"


def test_airflow_pin_matches_image_tag():
    (base,) = [args for ins, args in dockerfile_instructions() if ins == "FROM"]
    image_version = re.fullmatch(r"apache/airflow:([0-9.]+)-python[0-9.]+", base).group(1)
    assert pinned_airflow_version() == image_version


def test_dockerfile_installs_project_as_airflow_user():
    instructions = dockerfile_instructions()
    runs = [(i, args) for i, (ins, args) in enumerate(instructions) if ins == "RUN"]
    pip_runs = [(i, args) for i, args in runs if "pip install" in args]
    assert pip_runs, "no pip install in the Dockerfile"

    # USER airflow comes before the first pip install, and no later USER switches away. Before it, root may
    # only install system packages (apt-get: the Pango libraries WeasyPrint needs), never Python ones.
    users = [(i, args) for i, (ins, args) in enumerate(instructions) if ins == "USER"]
    first_pip = pip_runs[0][0]
    before = [args for i, args in users if i < first_pip]
    assert before and before[-1] == "airflow", users
    first_airflow = next(i for i, args in users if args == "airflow")
    assert all(args == "airflow" for i, args in users if i >= first_airflow), users
    assert all(args in ("root", "airflow") for _, args in users), users
    as_root = [args for i, args in runs if i < first_airflow]
    assert all("apt-get" in args and "pip" not in args for args in as_root), as_root

    copies = " ".join(args for ins, args in instructions if ins in ("COPY", "ADD"))
    for src in ("requirements.txt", "requirements-nodeps.txt", "pyproject.toml", "include/", "dags/", "plugins/"):
        assert src in copies, src
    assert re.search(r"\binclude/\s+/opt/airflow/include/?", copies)
    assert re.search(r"\bdags/\s+/opt/airflow/dags/?", copies)
    assert re.search(r"\bplugins/\s+/opt/airflow/plugins/?", copies)

    pip_text = " && ".join(args for _, args in pip_runs)
    commands = [c.strip() for c in re.split(r"&&|;", pip_text) if "pip install" in c]
    req = [c for c in commands if re.search(r"-r\s+\S*requirements\.txt\b", c)]
    assert req, commands
    assert "--no-deps" not in req[0]
    nodeps = [c for c in commands if re.search(r"-r\s+\S*requirements-nodeps\.txt\b", c)]
    assert nodeps and "--no-deps" in nodeps[0], commands
    project = [c for c in commands if re.search(r"(-e\s+)?(\.|/opt/airflow)\s*$", c)]
    assert project and "--no-deps" in project[0], commands
