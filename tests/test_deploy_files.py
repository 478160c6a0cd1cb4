"""Static checks of the deployment files: Dockerfile, docker/local.Dockerfile, docker-compose.yaml and the
scripts that build and run them (scripts/docker_local_images.sh, scripts/docker_smoke.sh,
scripts/docker_certify.py).

No Docker engine is needed (nor used): docker-compose.yaml is validated against the
Compose Specification JSON schema vendored in tests/data/compose-spec.json (provenance
in tests/data/README.md), and the Dockerfiles are checked line by line. The deployment run for
real is tests/test_docker_deploy.py (opt-in, MODELCERT_DOCKER_TESTS=1).
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
LOCAL_DOCKERFILE = ROOT / "docker" / "local.Dockerfile"
AIRFLOW_ENTRYPOINT = ROOT / "docker" / "airflow-entrypoint.sh"
POSTGRES_ENTRYPOINT = ROOT / "docker" / "postgres-entrypoint.sh"
POSTGRES_INITDB = ROOT / "docker" / "postgres-initdb.d"
SCRIPTS = ROOT / "scripts"
REQUIREMENTS = ROOT / "requirements.txt"
SCHEMA_FILE = Path(__file__).resolve().parent / "data" / "compose-spec.json"
# sha256 of schemas/compose.schema.json in the npm package dclint 3.1.0 (see tests/data/README.md).
SCHEMA_SHA256 = "46b7d35f19dd93a05f8fea530291bf84d881c1791ec167ecf0e6fb94e639d496"

AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-worker-2",
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


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    joined: list[str] = []
    buf = ""
    for raw in path.read_text().splitlines():
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


def dockerfile_base_image() -> str:
    """The image the Dockerfile builds on by default: its one FROM, with a global ARG default resolved."""
    instructions = dockerfile_instructions()
    froms = [i for i, (ins, _) in enumerate(instructions) if ins == "FROM"]
    assert len(froms) == 1, froms
    args = {}
    for ins, rest in instructions[: froms[0]]:
        if ins == "ARG":
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
    return interpolate(instructions[froms[0]][1], args)


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


def test_expected_services(compose, compose_resolved):
    assert set(compose["services"]) == AIRFLOW_SERVICES | SUPPORT_SERVICES
    # Docker Hub images by default; the local stand-ins only when asked for (scripts/docker_smoke.sh).
    assert compose_resolved["services"]["postgres"]["image"] == "postgres:16"
    assert compose_resolved["services"]["redis"]["image"] == "redis:7.2-bookworm"
    local = interpolate_tree(compose, {"POSTGRES_IMAGE": "modelcert-postgres:local",
                                       "REDIS_IMAGE": "modelcert-redis:local"})
    assert local["services"]["postgres"]["image"] == "modelcert-postgres:local"
    assert local["services"]["redis"]["image"] == "modelcert-redis:local"
    assert compose["services"]["airflow-apiserver"]["command"] == "api-server"
    assert compose["services"]["airflow-worker"]["command"] == "celery worker"
    assert compose["services"]["airflow-dag-processor"]["command"] == "dag-processor"


def test_two_identical_celery_workers(compose):
    workers = {name: svc for name, svc in compose["services"].items() if svc.get("command") == "celery worker"}
    assert set(workers) == {"airflow-worker", "airflow-worker-2"}
    assert workers["airflow-worker"] == workers["airflow-worker-2"]
    # No fixed container or host name: each worker must be told apart by its own hostname (celery@<id>).
    for svc in workers.values():
        assert "container_name" not in svc and "hostname" not in svc


def test_compose_file_is_readable_by_compose_v1(compose):
    """Debian's docker-compose 1.29 is the client on some machines (this one): no `configs: content:`
    (Compose >= 2.23 only), no top-level `name:` (v2 only)."""
    assert "name" not in compose
    for cfg in (compose.get("configs") or {}).values():
        assert "content" not in cfg, cfg
    docker_compose = shutil.which("docker-compose")
    if docker_compose is None:
        pytest.skip("docker-compose not installed (the static checks above still ran)")
    proc = subprocess.run([docker_compose, "-f", str(COMPOSE_FILE), "config", "-q"], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


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
    # The postgres init scripts (bind-mounted) create the second database.
    (mount,) = [v for v in postgres["volumes"] if v.split(":")[1] == "/docker-entrypoint-initdb.d"]
    host_dir = ROOT / mount.split(":")[0]
    assert host_dir.resolve() == POSTGRES_INITDB.resolve()
    init_sql = "\n".join(p.read_text() for p in sorted(host_dir.glob("*.sql")))
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
    (base,) = [args for ins, args in dockerfile_instructions() if ins == "FROM"]
    assert base == "${BASE_IMAGE}", "the base image is chosen with the BASE_IMAGE build argument"
    m = re.fullmatch(r"apache/airflow:(3\.3\.\d+)-python(3\.\d+)", dockerfile_base_image())
    assert m, dockerfile_base_image()
    assert m.group(2) == "3.11"


def test_airflow_pin_matches_image_tag():
    image_version = re.fullmatch(r"apache/airflow:([0-9.]+)-python[0-9.]+", dockerfile_base_image()).group(1)
    assert pinned_airflow_version() == image_version
    # The local stand-in base declares the same version (the Dockerfile installs apache-airflow==$AIRFLOW_VERSION).
    local_args = dict(a.partition("=")[::2] for ins, a in dockerfile_instructions(LOCAL_DOCKERFILE) if ins == "ARG")
    assert local_args["AIRFLOW_VERSION"] == image_version


def test_ca_bundle_is_a_build_secret_never_a_layer():
    """Behind a TLS-intercepting proxy pip needs its CA: a BuildKit secret mounted for the RUN steps that
    reach the index, so it is in no layer; no COPY/ADD/ENV/ARG carries a certificate into the image."""
    instructions = dockerfile_instructions()
    pip_runs = [args for ins, args in instructions if ins == "RUN" and "pip install" in args]
    for args in pip_runs:
        if "--no-deps -e" in args or "-r /opt/airflow/requirements.txt" in args:
            assert args.startswith("--mount=type=secret,id=ca_bundle,required=false"), args
            assert "PIP_CERT=/run/secrets/ca_bundle" in args, args
    for ins, args in instructions:
        if ins in ("COPY", "ADD", "ENV", "ARG"):
            assert not re.search(r"\.(crt|pem)\b|ca[-_]?bundle|CERT", args, re.IGNORECASE), (ins, args)


def test_local_dockerfile_stands_in_for_the_hub_images():
    text = LOCAL_DOCKERFILE.read_text()
    instructions = dockerfile_instructions(LOCAL_DOCKERFILE)
    targets = [a.split()[-1] for ins, a in instructions if ins == "FROM"]
    assert targets == ["airflow-base", "postgres", "redis"]
    assert all(a.startswith("${BOOKWORM_IMAGE} AS ") for ins, a in instructions if ins == "FROM")
    # airflow-base: the official image's user (uid 50000, gid 0), paths and entrypoint.
    assert re.search(r"useradd --uid \"\$\{AIRFLOW_UID\}\" --gid 0 .*airflow", text)
    assert "ARG AIRFLOW_UID=50000" in text
    assert "AIRFLOW_HOME=/opt/airflow" in text
    assert "COPY docker/airflow-entrypoint.sh /entrypoint" in text
    assert 'ENTRYPOINT ["/usr/bin/dumb-init", "--", "/entrypoint"]' in text
    # postgres: the entrypoint that honours POSTGRES_* and the initdb.d scripts.
    assert "COPY docker/postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh" in text
    # Only Debian packages: nothing in this file reaches PyPI.
    assert "pip install" not in text
    # The health checks of docker-compose.yaml need these on PATH.
    assert "curl" in text and "redis-server" in text and "postgresql-15" in text


def _fake_airflow(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "airflow"
    fake.write_text('#!/bin/sh\necho "airflow $*"\n')
    fake.chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin"}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["api-server"], "airflow api-server"),
        (["celery", "worker"], "airflow celery worker"),
        (["airflow", "db", "migrate"], "airflow db migrate"),
        (["bash", "-c", "echo from bash"], "from bash"),
        ([], "airflow --help"),
    ],
)
def test_local_airflow_entrypoint_maps_commands_like_the_official_one(tmp_path, argv, expected):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not available")
    proc = subprocess.run([bash, str(AIRFLOW_ENTRYPOINT), *argv], capture_output=True, text=True,
                          env=_fake_airflow(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected


def test_local_postgres_entrypoint_refuses_no_password():
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not available")
    proc = subprocess.run([bash, str(POSTGRES_ENTRYPOINT), "postgres"], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PGDATA": "/nonexistent"})
    assert proc.returncode == 2
    assert proc.stderr.strip() == "postgres: POSTGRES_PASSWORD must be set (no password-less TCP access in this image)"


@pytest.mark.parametrize("script", ["docker_local_images.sh", "docker_smoke.sh", "../docker/postgres-entrypoint.sh"])
def test_docker_scripts_are_valid_shell(script):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not available")
    proc = subprocess.run([bash, "-n", str(SCRIPTS / script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_smoke_script_tears_down_and_checks_two_workers():
    text = (SCRIPTS / "docker_smoke.sh").read_text()
    assert "trap cleanup EXIT" in text
    assert re.search(r"down -v --remove-orphans", text)
    assert "--run german_credit.yaml:awaiting_signoff --run adult_income.yaml:rejected" in text
    assert "--min-workers 2" in text


def _certify_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("docker_certify", SCRIPTS / "docker_certify.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_certify_client_arguments():
    mod = _certify_module()
    args = mod.parse_args(["--base-url", "http://x", "--run", "german_credit.yaml:awaiting_signoff",
                           "--run", "adult_income.yaml:rejected", "--run-id", "adult_income.yaml=adult_1__t"])
    assert args.expected == {"german_credit.yaml": "awaiting_signoff", "adult_income.yaml": "rejected"}
    assert args.run_ids == {"adult_income.yaml": "adult_1__t"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--run", "german_credit.yaml:approved"], "--run 'german_credit.yaml:approved': expected SPEC:VERDICT"),
        (["--run", "a.yaml:rejected", "--run-id", "b.yaml=x"], "--run-id 'b.yaml=x': expected SPEC=ID"),
    ],
)
def test_certify_client_refuses_bad_arguments(capsys, argv, message):
    mod = _certify_module()
    with pytest.raises(SystemExit) as exc:
        mod.parse_args(["--base-url", "http://x", *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


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


def _seconds(value: str) -> int:
    m = re.fullmatch(r"(\d+)s", value)
    assert m, value
    return int(m.group(1))


def test_cli_health_checks_kill_themselves_before_docker_gives_up(compose):
    """Docker 20.10 does not kill a health check's process when it times out: a check that starts the Airflow or
    Celery CLI must stop itself (`timeout N`, N below the check's timeout), or slow checks pile up."""
    cli_checks = 0
    for name, svc in compose["services"].items():
        test = svc.get("healthcheck", {}).get("test")
        if not test:
            continue
        command = test[-1]
        if re.search(r"\b(airflow|celery)\b", command):
            cli_checks += 1
            m = re.match(r"timeout (\d+) ", command)
            assert m, (name, command)
            assert int(m.group(1)) < _seconds(svc["healthcheck"]["timeout"]), name
            assert _seconds(svc["healthcheck"]["interval"]) >= _seconds(svc["healthcheck"]["timeout"]), name
    assert cli_checks == 4  # dag-processor, triggerer, two workers
