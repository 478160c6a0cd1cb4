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


def test_0004_fills_verdicts_from_passed_and_downgrades_cleanly(empty_db_url: str) -> None:
    """Rows judged before three-way verdicts get theirs from ``passed`` (True → pass, False → fail, NULL stays
    NULL: nothing was inconclusive then); the downgrade drops the column and the findings register."""
    migrate.upgrade(empty_db_url, "0003")
    engine = create_engine(empty_db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO certification_runs (id, run_key, kind, status, reasons, spec, spec_path, spec_base_dir, "
                "spec_text, evidence, evidence_digest, submitter) VALUES ('r1', 'k', 'certification', 'running', "
                "'[]', '{}', '', '', '', '{}', '', 'alice')"))
            conn.execute(text("INSERT INTO stage_results (id, run_id, stage, status, summary, library, library_version,"
                              " started_at, finished_at, duration_s, attempt) VALUES (1, 'r1', 'fairness', 'passed', "
                              "'{}', '', '', now(), now(), 0, 1)"))
            for i, passed in enumerate(("true", "false", "null")):
                conn.execute(text(f"INSERT INTO check_results (id, stage_result_id, position, name, subject, passed, "
                                  f"required, message, detail) VALUES ({i + 1}, 1, {i}, 'c{i}', '', {passed}, true, "
                                  "'', '{}')"))
        migrate.upgrade(empty_db_url, "0004")
        with engine.connect() as conn:
            got = conn.execute(text("SELECT name, verdict FROM check_results ORDER BY id")).all()
        assert [tuple(r) for r in got] == [("c0", "pass"), ("c1", "fail"), ("c2", None)]
        assert "findings" in inspect(engine).get_table_names()
        migrate.downgrade(empty_db_url, "0003")
        inspector = inspect(engine)
        assert "findings" not in inspector.get_table_names()
        assert "verdict" not in {c["name"] for c in inspector.get_columns("check_results")}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM check_results")).scalar() == 3
    finally:
        engine.dispose()
