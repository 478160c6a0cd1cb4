"""Engines and sessions for the results database.

The URL is explicit (argument) or ``MODELCERT_DATABASE_URL``; the CLI's ``--database-url`` and the Airflow
connection ``modelcert_db`` both end up here. One engine per URL per process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from modelcert.errors import StoreError

ENV_URL = "MODELCERT_DATABASE_URL"
_ENGINES: dict[str, Engine] = {}


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
        _ENGINES[resolved] = create_engine(resolved, pool_pre_ping=True, pool_size=5, max_overflow=5)
    return _ENGINES[resolved]


def dispose_all() -> None:
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()


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
