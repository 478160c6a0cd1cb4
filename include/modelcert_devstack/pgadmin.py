"""Two PostgreSQL administration helpers shared by the test fixtures and the benchmarks: run one statement outside a
transaction (CREATE/DROP DATABASE cannot run inside one), and point a server URL at another database."""

from __future__ import annotations


def admin_exec(admin_url: str, sql: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


def with_db(url: str, db: str) -> str:
    """``url`` with its database replaced by ``db`` (the password kept: the caller connects with it)."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=db).render_as_string(hide_password=False)
