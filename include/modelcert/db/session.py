"""Engines and sessions for the results database, and riding out a short outage of it.

The URL is explicit (argument) or ``MODELCERT_DATABASE_URL``; the CLI's ``--database-url`` and the Airflow
connection ``modelcert_db`` both end up here. One engine per URL per process; ``pool_pre_ping`` replaces a
pooled connection the server dropped (e.g. after a restart) instead of failing the next statement with it.

A restart or failover of the results database takes seconds to tens of seconds. Every unit of work here is one
transaction that is idempotent by design (keyed upserts), so repeating it after a *connection* failure is safe;
:func:`retry_transient` does that with a bounded backoff, and only for errors that say the connection (not the
statement) failed: a constraint or data error is never retried.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

# Every Session seals the evidence rows it writes into the audit chain (see modelcert.seal).
import modelcert.seal  # noqa: E402,F401,I001
from modelcert.errors import StoreError

ENV_URL = "MODELCERT_DATABASE_URL"
#: Seconds a unit of work keeps retrying while the results database is unreachable (0 = no retry).
ENV_RETRY_SECONDS = "MODELCERT_DB_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 60.0
_ENGINES: dict[str, Engine] = {}
#: SQLSTATEs that mean "try again": connection exceptions (class 08), the server shutting down or starting up
#: (57P01-57P03), serialization failure and deadlock (the transaction was rolled back as a whole).
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "57P01", "57P02", "57P03", "40001", "40P01")
log = logging.getLogger("modelcert.db")
T = TypeVar("T")


def normalize_url(url: str) -> str:
    """Accept Airflow-style URIs (postgres://, postgresql://) and use psycopg2."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def database_url(explicit: str | None = None) -> str:
    url = explicit or os.environ.get(ENV_URL)
    if not url:
        raise StoreError(
            f"no results database configured: pass --database-url or set {ENV_URL} "
            "(e.g. postgresql+psycopg2://user@localhost:5432/modelcert)"
        )
    return normalize_url(url)


def get_engine(url: str | None = None) -> Engine:
    resolved = database_url(url)
    if resolved not in _ENGINES:
        # A hung server must not hang a task: fail the connect fast, then retry_transient decides.
        connect_args = {"connect_timeout": 10} if resolved.startswith("postgresql+psycopg2://") else {}
        _ENGINES[resolved] = create_engine(resolved, pool_pre_ping=True, pool_size=5, max_overflow=5,
                                          connect_args=connect_args)
    return _ENGINES[resolved]


def dispose_all() -> None:
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` (or what it wraps) says the database connection failed, not the statement.

    psycopg2 reports a refused or dropped connection without a SQLSTATE; a server shutting down or starting up,
    a serialization failure or a deadlock with one of :data:`_TRANSIENT_SQLSTATE_PREFIXES`."""
    from sqlalchemy.exc import DBAPIError, DisconnectionError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DisconnectionError):
            return True
        if isinstance(current, DBAPIError):
            if current.connection_invalidated:
                return True
            current = current.orig
            continue
        module = type(current).__module__ or ""
        if module.startswith("psycopg2"):
            import psycopg2

            if not isinstance(current, (psycopg2.OperationalError, psycopg2.InterfaceError)):
                return False
            code = getattr(current, "pgcode", None)
            return code is None or code.startswith(_TRANSIENT_SQLSTATE_PREFIXES)
        current = current.__cause__ or current.__context__
    return False


def retry_budget() -> float:
    """``MODELCERT_DB_RETRY_SECONDS`` (default 60; 0 disables retrying)."""
    raw = os.environ.get(ENV_RETRY_SECONDS, "")
    try:
        return max(0.0, float(raw)) if raw.strip() else DEFAULT_RETRY_SECONDS
    except ValueError:
        return DEFAULT_RETRY_SECONDS


def retry_transient(fn: Callable[[], T], *, what: str, budget_s: float | None = None,
                    sleep: Callable[[float], None] = time.sleep) -> T:
    """Call ``fn`` until it succeeds, repeating it after transient database errors for up to ``budget_s``
    seconds (backoff 1, 2, 4, 8, 15, 15 … s); any other error, or the last transient one, propagates.

    ``fn`` must be safe to repeat: one transaction, idempotent (every modelcert writer is)."""
    budget = retry_budget() if budget_s is None else budget_s
    deadline = time.monotonic() + budget
    delay = 1.0
    attempt = 1
    while True:
        try:
            return fn()
        except Exception as exc:
            remaining = deadline - time.monotonic()
            if not is_transient(exc) or remaining <= 0:
                raise
            wait = min(delay, remaining)
            log.warning("results database unavailable during %s (attempt %d: %s); retrying in %.0fs",
                        what, attempt, describe_error(exc), wait)
            sleep(wait)
            delay = min(delay * 2, 15.0)
            attempt += 1


def _first_line(exc: BaseException, limit: int = 160) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_error(exc: BaseException) -> str:
    """``Type: first line of the message`` (bounded), for reasons people read: a DBAPI error names the driver's
    error (``OperationalError: connection … refused``), not SQLAlchemy's wrapper text with the statement."""
    from sqlalchemy.exc import DBAPIError

    inner: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return f"{type(inner).__name__}: {_first_line(inner)}"


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: commits on success, rolls back everything on any error."""
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory() as session, session.begin():
        yield session


@contextmanager
def reader(engine: Engine) -> Iterator[Session]:
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory() as session:
        yield session
