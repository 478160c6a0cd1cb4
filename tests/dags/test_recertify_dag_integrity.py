"""recertify_models parses without a database, with its schedule from the environment and the expected shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
dag = bag.dags["recertify_models"]
print(json.dumps({
    "errors": dict(bag.import_errors),
    "schedule": dag.schedule, "timetable": type(dag.timetable).__name__,
    "catchup": dag.catchup, "tags": sorted(dag.tags), "doc": dag.doc_md or "", "max_active_runs": dag.max_active_runs,
    "tasks": sorted(dag.task_dict),
    "mapped": sorted(t.task_id for t in dag.tasks if getattr(t, "is_mapped", False)),
    "retries": {t.task_id: t.retries for t in dag.tasks},
    "trigger_rules": {t.task_id: str(getattr(t.trigger_rule, "value", t.trigger_rule)) for t in dag.tasks},
    "outlets": {t.task_id: [getattr(o, "uri", str(o)) for o in t.outlets] for t in dag.tasks if t.outlets},
    "upstream": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
    "params": {k: dag.params.get_param(k).schema for k in dag.params.keys()},
}, default=str))
"""


def _probe(tmp_path: Path, schedule: str | None = None) -> dict:
    env = dict(os.environ, AIRFLOW_HOME=str(tmp_path), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"), AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
               AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{tmp_path}/unused.db",
               PYTHONPATH=os.pathsep.join([str(REPO / "plugins"), str(REPO / "dags")]))
    env.pop("MODELCERT_DATABASE_URL", None)
    env.pop("MODELCERT_RECERTIFY_SCHEDULE", None)
    if schedule is not None:
        env["MODELCERT_RECERTIFY_SCHEDULE"] = schedule
    out = subprocess.run([sys.executable, "-c", PROBE, str(REPO / "dags")], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_recertify_dag_shape(tmp_path: Path) -> None:
    dag = _probe(tmp_path)
    assert dag["errors"] == {}
    assert dag["schedule"] == "@daily" and dag["catchup"] is False
    assert "modelcert" in dag["tags"] and "current data" in dag["doc"]
    assert dag["tasks"] == ["announce_suspension", "expire_certificates", "find_certificates", "recertify",
                            "summary", "suspended_certificates"]
    # One mapped task instance per model, and one asset event per newly suspended certificate.
    assert dag["mapped"] == ["announce_suspension", "recertify"]
    assert [u.rstrip("/") for u in dag["outlets"]["announce_suspension"]] == ["modelcert://certificates/suspended"]
    assert dag["upstream"]["recertify"] == ["find_certificates"]
    assert dag["upstream"]["find_certificates"] == ["expire_certificates"]
    assert dag["trigger_rules"]["suspended_certificates"] == "all_done"
    assert dag["trigger_rules"]["summary"] == "all_done" and dag["retries"]["summary"] == 0
    assert dag["retries"]["recertify"] >= 1  # transient failures retry; verdicts fail without retry
    assert dag["max_active_runs"] == 1
    assert dag["params"]["ds"]["pattern"]


def test_schedule_comes_from_the_environment(tmp_path: Path) -> None:
    assert _probe(tmp_path, "0 3 * * *")["schedule"] == "0 3 * * *"
    manual = _probe(tmp_path, "none")
    assert manual["schedule"] is None and manual["timetable"] == "NullTimetable"
