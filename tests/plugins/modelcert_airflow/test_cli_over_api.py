"""``modelcert approve|decline`` with MODELCERT_API_URL: log in to Airflow, sign through the plugin API as the
authenticated user. Served in-process by uvicorn: our app at /modelcert and Airflow's own SimpleAuthManager
login app at /auth (the real ``POST /auth/token``)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from modelcert.cli import main
from modelcert.db.models import Signoff
from modelcert.db.session import reader
from tests.plugins.modelcert_airflow.conftest import digest_of

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
                         password("bob"), "--comment", "reviewed", "--evidence-digest", digest_of(engine, waiting))
    assert code == 0, err
    assert f"approved run {waiting} as bob (model_validator)" in out
    assert f"Before you sign run {waiting}" in out and "spec diff: first certification of synthetic" in out
    with reader(engine) as s:
        so = s.execute(select(Signoff).where(Signoff.run_id == waiting)).scalar_one()
    assert (so.approver, so.authenticated_via, so.comment) == ("bob", "api:airflow-token", "reviewed")


def test_a_different_approver_name_is_refused(cli: Callable[..., Any], password: Any, engine: Any,
                                             waiting: str) -> None:
    code, _, err = cli("approve", waiting, "--approver", "dave", "--role", "risk_officer", "--user", "bob",
                       "--password", password("bob"), "--evidence-digest", digest_of(engine, waiting))
    assert code == 2
    assert "refused (identity_mismatch): --approver dave is not the authenticated Airflow user bob" in err


def test_rules_are_the_servers(cli: Callable[..., Any], password: Any, roles_file: Path, engine: Any,
                               waiting: str) -> None:
    roles_file.write_text("roles:\n  model_validator: [alice, bob]\n  risk_officer: [dave]\n")
    seen = digest_of(engine, waiting)
    code, _, err = cli("approve", waiting, "--role", "model_validator", "--user", "alice", "--password",
                       password("alice"), "--evidence-digest", seen)
    assert code == 2 and "refused (four_eyes): four-eyes rule: alice submitted or triggered" in err
    code, _, err = cli("approve", waiting, "--role", "risk_officer", "--user", "bob", "--password", password("bob"),
                       "--evidence-digest", seen)
    assert code == 2 and "refused (forbidden): bob does not hold the role 'risk_officer'" in err
    code, _, err = cli("approve", waiting, "--role", "model_validator", "--user", "bob", "--password",
                       password("bob"), "--evidence-digest", "f" * 64)
    assert code == 2 and "refused (evidence_mismatch)" in err


def test_token_from_the_environment_and_decline(cli: Callable[..., Any], token: Callable[..., str], engine: Any,
                                                monkeypatch: pytest.MonkeyPatch, waiting: str) -> None:
    monkeypatch.setenv("MODELCERT_TOKEN", token("dave"))
    code, out, err = cli("--json", "decline", waiting, "--role", "risk_officer", "--reason", "calibration",
                         "--evidence-digest", digest_of(engine, waiting))
    assert code == 0, err
    assert '"run_status": "declined"' in out and '"approver": "dave"' in out


def test_wrong_password_and_missing_credentials(cli: Callable[..., Any], waiting: str) -> None:
    code, _, err = cli("approve", waiting, "--role", "model_validator", "--user", "bob", "--password", "nope",
                       "--evidence-digest", "f" * 64)
    assert code == 2 and "refused (unauthenticated): Airflow refused the login of 'bob'" in err
    code, _, err = cli("approve", waiting, "--role", "model_validator", "--evidence-digest", "f" * 64)
    assert code == 2 and "give --user and --password" in err


def test_unknown_run_through_the_api(cli: Callable[..., Any], token: Callable[..., str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELCERT_TOKEN", token("bob"))
    code, _, err = cli("approve", "no-such-run", "--role", "model_validator", "--evidence-digest", "f" * 64)
    assert code == 2 and "'no-such-run' is not a run id" in err


def test_direct_path_needs_an_approver(db_url: str, engine: Any, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str], waiting: str) -> None:
    monkeypatch.delenv("MODELCERT_API_URL", raising=False)
    seen = ["--evidence-digest", digest_of(engine, waiting)]
    code = main(["--database-url", db_url, "approve", waiting, "--role", "model_validator", *seen])
    assert code == 2 and "--approver is required without MODELCERT_API_URL" in capsys.readouterr().err
    assert main(["--database-url", db_url, "approve", waiting, "--role", "model_validator", "--approver", "bob",
                 *seen]) == 0
    assert "approved run" in capsys.readouterr().out


def test_the_short_run_id_status_prints_works_over_the_api(cli: Callable[..., Any], password: Any, engine: Any,
                                                           waiting: str) -> None:
    code, out, err = cli("approve", waiting[:8], "--role", "model_validator", "--user", "bob", "--password",
                         password("bob"), "--evidence-digest", digest_of(engine, waiting))
    assert code == 0, err
    assert f"approved run {waiting} as bob" in out
    code, _, err = cli("approve", "ffff0000", "--role", "model_validator", "--user", "bob", "--password",
                       password("bob"), "--evidence-digest", "f" * 64)
    assert code == 2 and "no certification run with id or id prefix 'ffff0000'" in err


# ---------------------------------------------------------------------------------------------- the digest seen
class Terminal:
    """stdin of a person at a terminal who will type ``answer`` when asked."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.asked = 0

    def isatty(self) -> bool:
        return True

    def readline(self) -> str:
        self.asked += 1
        return self.answer + "\n"


def signoffs(engine: Any, run_id: str) -> list[tuple[str, str]]:
    with reader(engine) as s:
        return [(x.approver, x.evidence_digest) for x in
                s.execute(select(Signoff).where(Signoff.run_id == run_id)).scalars()]


def test_without_a_terminal_and_without_a_digest_nothing_is_signed(cli: Callable[..., Any], password: Any,
                                                                   db_url: str, engine: Any,
                                                                   monkeypatch: pytest.MonkeyPatch, waiting: str) -> None:
    code, out, err = cli("approve", waiting, "--role", "model_validator", "--user", "bob", "--password",
                         password("bob"))
    assert code == 2 and out == ""
    assert err.strip().splitlines() == ["modelcert: refused (invalid): --evidence-digest: required when not on a "
                                        "terminal — give the digest you reviewed (`modelcert report RUN` shows it); "
                                        "nothing was signed"]
    monkeypatch.delenv("MODELCERT_API_URL")  # the direct database path refuses it the same way
    code, _, err = cli("--database-url", db_url, "decline", waiting, "--role", "risk_officer", "--approver", "dave",
                       "--reason", "no")
    assert code == 2 and "--evidence-digest: required when not on a terminal" in err
    assert signoffs(engine, waiting) == []


def test_a_wrong_digest_is_refused_on_both_paths(cli: Callable[..., Any], password: Any, db_url: str, engine: Any,
                                                 monkeypatch: pytest.MonkeyPatch, waiting: str) -> None:
    stale = "0" * 64
    code, _, err = cli("approve", waiting, "--role", "model_validator", "--user", "bob", "--password",
                       password("bob"), "--evidence-digest", stale)
    assert code == 2 and f"refused (evidence_mismatch): evidence digest {stale} is not this run's" in err
    monkeypatch.delenv("MODELCERT_API_URL")
    code, _, err = cli("--database-url", db_url, "approve", waiting, "--role", "risk_officer", "--approver", "dave",
                       "--evidence-digest", stale)
    assert code == 2 and "refused (evidence_mismatch)" in err
    assert signoffs(engine, waiting) == []


def test_on_a_terminal_the_summary_and_digest_are_shown_and_must_be_confirmed(
        cli: Callable[..., Any], password: Any, engine: Any, monkeypatch: pytest.MonkeyPatch,
        reviewed: dict[str, str]) -> None:
    run_id = reviewed["waiting"]
    digest = digest_of(engine, run_id)
    monkeypatch.setattr("sys.stdin", Terminal("12345678"))
    code, out, err = cli("approve", run_id, "--role", "model_validator", "--user", "bob", "--password",
                         password("bob"))
    assert code == 2 and f"confirmation: '12345678' is neither yes nor {digest[:8]}; nothing was signed" in err
    assert signoffs(engine, run_id) == []
    assert f"evidence digest {digest}" in out  # the full digest, shown before the question
    assert "loosened: checks.fairness.disparate_impact: ≥ 0.9 and ≤ 1.25 → ≥ 0.8 and ≤ 1.25" in out
    assert "fairness.average_odds_difference [sex] = 0.31" in out
    monkeypatch.setattr("sys.stdin", Terminal(digest[:8]))
    code, out, err = cli("approve", run_id, "--role", "model_validator", "--user", "bob", "--password",
                         password("bob"))
    assert code == 0, err
    assert out.index("Before you sign") < out.index(f"evidence digest {digest}") < out.index("approved run")
    assert signoffs(engine, run_id) == [("bob", digest)]


def test_the_api_client_never_sends_a_decision_without_the_digest_seen() -> None:
    from modelcert.api_client import ApiClient
    from modelcert.errors import SignoffError

    client = ApiClient("http://127.0.0.1:9", "unused-token", timeout=1)  # nothing listens: a request would fail
    for blank in ("", "  "):
        with pytest.raises(SignoffError, match="evidence_digest: required") as exc:
            client.decide("a" * 36, "approve", role="model_validator", evidence_digest=blank, text="")
        assert exc.value.code == "invalid"
