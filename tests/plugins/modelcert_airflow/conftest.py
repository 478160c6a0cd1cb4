"""The plugin app in-process: FastAPI's TestClient, a real results DB, and real Airflow JWTs.

Airflow is configured for this package only (a throwaway AIRFLOW_HOME, a sqlite metadata DB holding the
``revoked_token`` table that token validation consults, a known JWT secret) and tokens are issued by
Airflow's own auth manager (``generate_jwt``), exactly as ``POST /auth/token`` issues them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lifecycle import run_all

JWT_SECRET = "modelcert-test-secret-" + "x" * 48
USERS = "admin:admin,alice:user,bob:viewer,carol:user,dave:viewer,erin:viewer,frank:viewer"
ROLES_YAML = """roles:
  model_validator: [bob, frank]
  risk_officer: [dave]
  legal: [erin]
"""


@pytest.fixture(scope="package", autouse=True)
def airflow_in_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("airflow_home_plugin")
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__API_AUTH__JWT_SECRET": JWT_SECRET,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": USERS,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(Path(__file__).resolve().parents[3] / "plugins"),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        from airflow import settings
        from airflow.configuration import conf
        from airflow.models.revoked_token import RevokedToken

        # Also when another test imported Airflow first (its config is then already read): same secret.
        conf.set("api_auth", "jwt_secret", JWT_SECRET)
        RevokedToken.__table__.create(settings.engine, checkfirst=True)
        yield home
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(autouse=True)
def roles_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    p = tmp_path / "roles.yaml"
    p.write_text(ROLES_YAML)
    monkeypatch.setenv("MODELCERT_ROLES_FILE", str(p))
    return p


@pytest.fixture
def token() -> Callable[..., str]:
    """token("bob") -> a JWT issued by Airflow's auth manager, as POST /auth/token would issue it."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    from modelcert_airflow.auth import auth_manager

    def make(user: str, role: str = "viewer", expires_in: int | None = None) -> str:
        am = auth_manager()
        u = SimpleAuthManagerUser(username=user, role=role)
        if expires_in is None:
            return str(am.generate_jwt(u))
        return str(am.generate_jwt(u, expiration_time_in_seconds=expires_in))

    return make


@pytest.fixture
def app(engine: Any) -> Any:
    """Our app mounted at /modelcert inside a parent app, as the Airflow api-server mounts it."""
    from fastapi import FastAPI

    from modelcert_airflow.api import URL_PREFIX, create_app

    parent = FastAPI()
    parent.mount(URL_PREFIX, create_app(engine_factory=lambda: engine))
    return parent


@pytest.fixture
def client(app: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c


@pytest.fixture
def as_user(client: Any, token: Callable[..., str]) -> Callable[..., Any]:
    """as_user("bob").post(...) — the TestClient with bob's token as a Bearer header."""

    class Bound:
        def __init__(self, user: str) -> None:
            self.headers = {"Authorization": f"Bearer {token(user)}"}

        def get(self, url: str, **kw: Any) -> Any:
            return client.get(url, headers=self.headers, **kw)

        def post(self, url: str, **kw: Any) -> Any:
            return client.post(url, headers=self.headers, **kw)

    return Bound


@pytest.fixture
def waiting(engine: Any, spec_path: Path, verdicts: dict[str, str]) -> str:
    """A run awaiting sign-off by model_validator and risk_officer; submitted and triggered by alice."""
    return run_all(engine, spec_path)


def digest_of(engine: Any, run_id: str) -> str:
    from modelcert import report

    return str(report.run_report(engine, run_id)["evidence_digest"])


@pytest.fixture
def reviewed(engine: Any, tmp_path: Path, verdicts: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Two runs of model ``synthetic``: version 1 certified with disparate impact ≥ 0.9; version 2 awaiting
    sign-off with the bar loosened to ≥ 0.8, a waived check (average odds, ``required: false``) that fails
    (a warning), and the same data. Returns the run ids and the certificate."""
    import pandas as pd

    from modelcert import pipeline
    from modelcert.governance import Identity, record_decision
    from modelcert.stages.base import Check, outcome
    from modelcert.thresholds import Threshold
    from tests.conftest import write_synthetic
    from tests.lifecycle import ROLES, digest_shown

    fake = pipeline.get_stage

    class FairnessWithWarning:
        name = "fairness"
        library = ""

        def run(self, ctx: Any) -> Any:
            return outcome("fairness", [
                Check.judged("disparate_impact", 0.95, Threshold(min=0.8, max=1.25), subject="sex"),
                Check.judged("average_odds_difference", 0.31, Threshold(abs_max=0.15, required=False), subject="sex"),
            ], library="")

    monkeypatch.setattr(pipeline, "get_stage", lambda name: FairnessWithWarning() if name == "fairness" else fake(name))
    df = pd.DataFrame({"x": range(40), "sex": ["m", "f"] * 20, "y": [0, 1, 1, 0] * 10, "pred": [1, 0] * 20})
    common = {
        "predictions": {"column": "pred", "positive": [1]},
        "data": {"label": "y", "protected_attributes": {"sex": {"privileged": ["m"]}}, "extra_columns": ["x"]},
        "signoff": {"required": {"model_validator": 1, "risk_officer": 1}, "timeout": "1h"},
    }
    specs = {}
    for version, fairness in (("1", {"disparate_impact": {"min": 0.9, "max": 1.25}}),
                              ("2", {"disparate_impact": {"min": 0.8, "max": 1.25},
                                     "average_odds_difference": {"abs_max": 0.15, "required": False}})):
        folder = tmp_path / f"v{version}"
        folder.mkdir()
        specs[version], _ = write_synthetic(folder, {"test": df}, {**common, "model": {"version": version},
                                                                   "checks": {"fairness": fairness}})
    certified = run_all(engine, specs["1"], key="reviewed/1")
    for who, role in (("bob", "model_validator"), ("dave", "risk_officer")):
        record_decision(engine, certified, Identity(who, "test"), role=role, decision="approve", roles=ROLES,
                        evidence_digest=digest_shown(engine, certified))
    cert = pipeline.promote(engine, certified)
    waiting = run_all(engine, specs["2"], key="reviewed/2")
    return {"certified": certified, "waiting": waiting, "certificate": str(cert["certificate_id"])}
