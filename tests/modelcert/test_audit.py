"""The audit log is append-only in the database and its hash chain exposes tampering."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from modelcert import audit
from modelcert.db.session import reader, transaction
from tests.lifecycle import run_all

pytestmark = pytest.mark.store


@pytest.fixture
def chain(engine: Any, spec_path: Path, verdicts: dict[str, str]) -> Any:
    run_all(engine, spec_path)
    with reader(engine) as s:
        res = audit.verify(s)
    assert res.ok and res.rows >= 8
    return engine


def _verify(engine: Any) -> audit.VerifyResult:
    with reader(engine) as s:
        return audit.verify(s)


@pytest.mark.parametrize("sql", ["UPDATE audit_events SET actor = 'mallory' WHERE id = 2",
                                 "DELETE FROM audit_events WHERE id = 2",
                                 "TRUNCATE audit_events"])
def test_database_refuses_update_delete_truncate(chain: Any, sql: str) -> None:
    with pytest.raises(DBAPIError, match="append-only"):
        with transaction(chain) as s:
            s.execute(text(sql))
    assert _verify(chain).ok


def _superuser(engine: Any, *statements: str) -> None:
    """Tamper as a superuser would: switch the protecting trigger off for this session."""
    su = create_engine(engine.url, isolation_level="AUTOCOMMIT")
    try:
        with su.connect() as conn:
            conn.execute(text("SET session_replication_role = replica"))
            for st in statements:
                conn.execute(text(st))
    finally:
        su.dispose()


def test_edited_row_is_found(chain: Any) -> None:
    _superuser(chain, "UPDATE audit_events SET payload = '{\"stage\": \"forged\"}' WHERE id = 3")
    res = _verify(chain)
    assert not res.ok and res.first_bad_id == 3 and "edited" in res.problem


def test_deleted_row_is_found(chain: Any) -> None:
    _superuser(chain, "DELETE FROM audit_events WHERE id = 4")
    res = _verify(chain)
    assert not res.ok and res.first_bad_id == 5 and "prev_hash" in res.problem


def test_reordered_rows_are_found(chain: Any) -> None:
    _superuser(chain,
               "UPDATE audit_events SET id = -1 WHERE id = 5",
               "UPDATE audit_events SET id = 5 WHERE id = 6",
               "UPDATE audit_events SET id = 6 WHERE id = -1")
    res = _verify(chain)
    assert not res.ok and res.first_bad_id == 5


def test_cli_audit_verify_reports_first_bad_row(chain: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from modelcert.cli import main

    url = chain.url.render_as_string(hide_password=False)
    assert main(["--database-url", url, "audit", "verify"]) == 0
    _superuser(chain, "UPDATE audit_events SET actor = 'mallory' WHERE id = 2")
    assert main(["--database-url", url, "audit", "verify"]) != 0
    assert "first bad row 2" in capsys.readouterr().out
