"""DAG integrity: the DAG folder imports cleanly, fast, without a database, with the expected shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
out = {"errors": {k: v for k, v in bag.import_errors.items()}, "seconds": time.perf_counter() - t0, "dags": {}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {
        "tags": sorted(dag.tags), "doc": bool(dag.doc_md), "tasks": sorted(dag.task_dict),
        "retries": {t.task_id: t.retries for t in dag.tasks},
        "params": {k: dag.params.get_param(k).schema for k in dag.params.keys()},
        "groups": sorted(k for k in dag.task_group.get_task_group_dict() if k),
        "outlets": {t.task_id: [getattr(o, "uri", str(o)) for o in t.outlets] for t in dag.tasks if t.outlets},
        "sensor": {t.task_id: [type(t).__name__, getattr(t, "deferrable", None), t.mode]
                   for t in dag.tasks if hasattr(t, "poke")},
    }
print(json.dumps(out, default=str))
"""


def _bag(tmp_path: Path) -> dict:
    env = dict(os.environ, AIRFLOW_HOME=str(tmp_path), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"), AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
               AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{tmp_path}/unused.db",
               PYTHONPATH=os.pathsep.join([str(REPO / "plugins"), str(REPO / "dags")]))
    env.pop("MODELCERT_DATABASE_URL", None)
    out = subprocess.run([sys.executable, "-c", PROBE, str(REPO / "dags")], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_dag_folder(tmp_path: Path) -> None:
    bag = _bag(tmp_path)
    assert bag["errors"] == {}
    dag = bag["dags"]["certify_model"]
    assert "modelcert" in dag["tags"] and dag["doc"]
    stages = ["data_quality", "performance", "robustness", "fairness", "drift", "compliance"]
    assert set(dag["tasks"]) == {"register", "decide", "await_signoff", "promote", *(f"stages.{s}" for s in stages)}
    assert "stages" in dag["groups"]
    # Stage tasks retry (transient failures); verdict tasks do not (a verdict is final).
    assert all(dag["retries"][f"stages.{s}"] >= 1 for s in stages)
    assert dag["retries"]["register"] == 0 and dag["retries"]["decide"] == 0
    assert [u.rstrip("/") for u in dag["outlets"]["promote"]] == ["modelcert://certificates"]
    assert dag["sensor"]["await_signoff"][0] == "SignoffSensor" and dag["sensor"]["await_signoff"][1] is True
    spec_param = dag["params"]["spec"]
    assert {"german_credit.yaml", "adult_income.yaml", "compas_audit.yaml"} <= set(spec_param["examples"])
    assert spec_param["pattern"]


def test_spec_param_schema_rejects_non_yaml(tmp_path: Path) -> None:
    import jsonschema

    schema = _bag(tmp_path)["dags"]["certify_model"]["params"]["spec"]
    jsonschema.validate("german_credit.yaml", schema)
    jsonschema.validate("/data/specs/my model.yml", schema)
    for bad in ("", "model.json", " leading-space.yaml"):
        try:
            jsonschema.validate(bad, schema)
        except jsonschema.ValidationError:
            continue
        raise AssertionError(f"{bad!r} passed the param schema")
