"""Which results database a command uses, and that no command but run/demo (embedded default) migrates it."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.store


def test_commands_refuse_a_database_without_the_schema_and_do_not_migrate_it(
        empty_db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from modelcert.cli import main
    from modelcert.db import migrate

    for argv in (["status"], ["certificates"], ["audit", "verify"]):
        assert main([*argv, "--database-url", empty_db_url]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no modelcert schema yet" in err[0] and "run `modelcert db upgrade`" in err[0], err
    assert migrate.current(empty_db_url) is None  # refused, not migrated behind the user's back


def test_run_on_an_explicit_database_does_not_migrate_it(empty_db_url: str, demo_build: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from modelcert.cli import main
    from modelcert.db import migrate

    spec = Path(__file__).resolve().parents[2] / "include" / "specs" / "german_credit.yaml"
    assert main(["run", str(spec), "--database-url", empty_db_url]) == 2
    assert "modelcert db upgrade" in capsys.readouterr().err
    assert migrate.current(empty_db_url) is None


def test_a_database_behind_is_named_with_its_revision_and_db_upgrade_makes_it_current(
        empty_db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from modelcert.cli import main
    from modelcert.db import migrate
    from modelcert.home import schema_problem

    migrate.upgrade(empty_db_url, "0001")
    problem = schema_problem(empty_db_url)
    assert problem is not None and "at revision 0001, behind" in problem and migrate.head() in problem
    assert main(["status", "--database-url", empty_db_url]) == 2
    assert "revision 0001" in capsys.readouterr().err
    assert main(["db", "upgrade", "--database-url", empty_db_url]) == 0
    assert schema_problem(empty_db_url) is None
    assert main(["status", "--database-url", empty_db_url]) == 0


def test_upgrade_if_behind_migrates_once_and_leaves_an_unknown_revision_alone(empty_db_url: str) -> None:
    from sqlalchemy import create_engine, text

    from modelcert.db import migrate
    from modelcert.home import schema_problem, upgrade_if_behind

    assert upgrade_if_behind(empty_db_url) == migrate.head()
    assert upgrade_if_behind(empty_db_url) is None  # already current: nothing done
    engine = create_engine(empty_db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'from_the_future'"))
    engine.dispose()
    assert upgrade_if_behind(empty_db_url) is None
    problem = schema_problem(empty_db_url)
    assert problem is not None and "from_the_future, which this code does not know" in problem
