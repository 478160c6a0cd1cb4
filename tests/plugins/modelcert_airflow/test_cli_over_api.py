"""``modelcert approve|decline`` with MODELCERT_API_URL: log in to Airflow, sign through the plugin API as the
authenticated user. Served in-process by uvicorn: our app at /modelcert and Airflow's own SimpleAuthManager
login app at /auth (the real ``POST /auth/token``)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from sqlalchemy import select

from modelcert.cli import main
from modelcert.db.models import Signoff
from modelcert.db.session import reader

pytestmark = pytest.mark.store


@pytest.fixture
def airflow_url(app: Any) -> Iterator[str]:
    import uvicorn

    from modelcert_airflow.auth import auth_manager

    am = auth_manager()
    am.init()  # SimpleAuthManager: generates the users' passwords file, as the api-server does at start
    app.mount("/auth", am.get_fastapi_app())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def password() -> Callable[[str], str]:
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    return lambda user: SimpleAuthManager.get_passwords()[user]


@pytest.fixture
def cli(airflow_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., Any]:
    monkeypatch.setenv("MODELCERT_API_URL", airflow_url)
    for var in ("MODELCERT_TOKEN", "MODELCERT_USER", "MODELCERT_PASSWORD", "MODELCERT_DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_approve_logs_in_and_signs_as_the_airflow_user(cli: Callable[..., Any], password: Any, engine: Any,
                                                       waiting: str) -> None:
    code, out, err = cli("approve", waiting, "--role", "model_validator", "--user", "bob", "--password",
                         password("bob"), "--comment", "reviewed")
    assert code == 0, err
    assert f"approved run {waiting} as bob (model_validator)" in out
    with reader(engine) as s:
        so = s.execute(select(Signoff).where(Signoff.run_id == waiting)).scalar_one()
    assert (so.approver, so.authenticated_via, so.comment) == ("bob", "api:airflow-token", "reviewed")


def test_a_different_approver_name_is_refused(cli: Callable[..., Any], password: Any, waiting: str) -> None:
    code, _, err = cli("approve", waiting, "--approver", "dave", "--role", "risk_officer", "--user", "bob",
                       "--password", password("bob"))
    assert code == 2
    assert "refused (identity_mismatch): --approver dave is not the authenticated Airflow user bob" in err


def test_rules_are_the_servers(cli: Callable[..., Any], password: Any, roles_file: Path, waiting: str) -> None:
    roles_file.write_text("roles:\n  model_validator: [alice, bob]\n  risk_officer: [dave]\n")
    code, _, err = cli("approve", waiting, "--role", "model_validator", "--user", "alice", "--password",
                       password("alice"))
    assert code == 2 and "refused (four_eyes): four-eyes rule: alice submitted or triggered" in err
    code, _, err = cli("approve", waiting, "--role", "risk_officer", "--user", "bob", "--password", password("bob"))
    assert code == 2 and "refused (forbidden): bob does not hold the role 'risk_officer'" in err
    code, _, err = cli("approve", waiting, "--role", "model_validator", "--user", "bob", "--password",
                       password("bob"), "--evidence-digest", "f" * 64)
    assert code == 2 and "refused (evidence_mismatch)" in err


def test_token_from_the_environment_and_decline(cli: Callable[..., Any], token: Callable[..., str],
                                                monkeypatch: pytest.MonkeyPatch, waiting: str) -> None:
    monkeypatch.setenv("MODELCERT_TOKEN", token("dave"))
    code, out, err = cli("--json", "decline", waiting, "--role", "risk_officer", "--reason", "calibration")
    assert code == 0, err
    assert '"run_status": "declined"' in out and '"approver": "dave"' in out


def test_wrong_password_and_missing_credentials(cli: Callable[..., Any], waiting: str) -> None:
    code, _, err = cli("approve", waiting, "--role", "model_validator", "--user", "bob", "--password", "nope")
    assert code == 2 and "refused (unauthenticated): Airflow refused the login of 'bob'" in err
    code, _, err = cli("approve", waiting, "--role", "model_validator")
    assert code == 2 and "give --user and --password" in err


def test_unknown_run_through_the_api(cli: Callable[..., Any], token: Callable[..., str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELCERT_TOKEN", token("bob"))
    code, _, err = cli("approve", "no-such-run", "--role", "model_validator")
    assert code == 2 and "'no-such-run' is not a run id" in err


def test_direct_path_needs_an_approver(db_url: str, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str], waiting: str) -> None:
    monkeypatch.delenv("MODELCERT_API_URL", raising=False)
    code = main(["--database-url", db_url, "approve", waiting, "--role", "model_validator"])
    assert code == 2 and "--approver is required without MODELCERT_API_URL" in capsys.readouterr().err
    assert main(["--database-url", db_url, "approve", waiting, "--role", "model_validator", "--approver", "bob"]) == 0
    assert "approved run" in capsys.readouterr().out


def test_the_short_run_id_status_prints_works_over_the_api(cli: Callable[..., Any], password: Any, engine: Any,
                                                           waiting: str) -> None:
    code, out, err = cli("approve", waiting[:8], "--role", "model_validator", "--user", "bob", "--password",
                         password("bob"))
    assert code == 0, err
    assert f"approved run {waiting} as bob" in out
    code, _, err = cli("approve", "ffff0000", "--role", "model_validator", "--user", "bob", "--password",
                       password("bob"))
    assert code == 2 and "no certification run with id or id prefix 'ffff0000'" in err
