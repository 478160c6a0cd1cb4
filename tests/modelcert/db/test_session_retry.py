"""Riding out a results-database outage: which errors are retried, for how long, and that a retried unit of
work is not duplicated. Real PostgreSQL errors, not hand-made ones (their SQLSTATE is what is judged)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import create_engine, text

from modelcert.db.session import describe_error, get_engine, is_transient, retry_transient


def free_port_url() -> str:
    """A PostgreSQL URL on a local port nobody listens on: connecting is refused, as during an outage."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"postgresql+psycopg2://postgres@127.0.0.1:{port}/nothing"


def _error_of(engine: Any, sql: str) -> BaseException:
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    except Exception as exc:  # noqa: BLE001 - the error is the subject under test
        return exc
    raise AssertionError(f"{sql} did not fail")


def test_refused_connection_is_transient_and_described_by_the_driver_error() -> None:
    exc = _error_of(create_engine(free_port_url()), "SELECT 1")
    assert is_transient(exc)
    described = describe_error(exc)
    assert described.startswith("OperationalError: ") and "\n" not in described and len(described) < 200


@pytest.mark.store
def test_statement_errors_are_not_retried(db_url: str) -> None:
    engine = get_engine(db_url)
    assert not is_transient(_error_of(engine, "SELECT 1/0"))  # DataError
    # A cancelled statement is an OperationalError too, but with a SQLSTATE (57014) that is no outage.
    assert not is_transient(_error_of(engine, "SET statement_timeout = 1; SELECT pg_sleep(1)"))
    calls: list[int] = []

    def fails() -> None:
        calls.append(1)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1/0"))

    with pytest.raises(Exception, match="division by zero"):
        retry_transient(fails, what="test", budget_s=30, sleep=lambda s: None)
    assert len(calls) == 1


def test_retry_transient_repeats_until_the_database_is_back_within_the_budget() -> None:
    refused = _error_of(create_engine(free_port_url()), "SELECT 1")
    waits: list[float] = []
    outcomes: list[Any] = [refused, refused, refused, "ok"]

    def flaky() -> str:
        o = outcomes.pop(0)
        if isinstance(o, BaseException):
            raise o
        return o

    assert retry_transient(flaky, what="test", budget_s=60, sleep=waits.append) == "ok"
    assert waits == [1.0, 2.0, 4.0]  # backoff


def test_retry_transient_gives_up_after_its_budget() -> None:
    engine = create_engine(free_port_url())
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    with pytest.raises(Exception) as info:
        retry_transient(down, what="test", budget_s=0.5, sleep=lambda s: None)
    assert is_transient(info.value) and len(calls) >= 2
