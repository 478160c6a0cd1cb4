"""Alembic migrations: upgrade and downgrade work, and the models agree with the migrations."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text

from modelcert.db import migrate
from modelcert.db.models import Base

pytestmark = pytest.mark.store


def test_upgrade_downgrade_upgrade(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url)
    assert migrate.current(empty_db_url) == migrate.head()
    engine = create_engine(empty_db_url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert {"model_versions", "certification_runs", "stage_results", "check_results", "signoffs",
                "certificates", "audit_events"} <= tables
        migrate.downgrade(empty_db_url, "base")
        assert migrate.current(empty_db_url) is None
        inspector = inspect(engine)
        assert set(inspector.get_table_names()) == {"alembic_version"}
        with engine.connect() as conn:
            fn = conn.execute(text("SELECT count(*) FROM pg_proc WHERE proname = 'modelcert_audit_append_only'")).scalar()
        assert fn == 0
        migrate.upgrade(empty_db_url)
        assert migrate.current(empty_db_url) == migrate.head()
    finally:
        engine.dispose()


def test_models_match_migrations(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], f"models and migrations disagree: {diff}"
