"""The core library never imports Airflow; DAG files hold wiring only."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_core_library_has_no_airflow_import() -> None:
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "include").rglob("*.py") if "airflow" in _imports(p)]
    assert offenders == []


def test_dag_files_import_no_heavy_library_at_parse_time() -> None:
    heavy = {"pandas", "numpy", "sklearn", "great_expectations", "evidently", "aif360", "art", "sqlalchemy"}
    for dag_file in (REPO / "dags").glob("*.py"):
        assert not (_imports(dag_file) & heavy), dag_file
