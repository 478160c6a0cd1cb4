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
        "retry": {t.task_id: [t.retry_delay.total_seconds(), t.retry_exponential_backoff,
                              t.max_retry_delay.total_seconds() if t.max_retry_delay else None] for t in dag.tasks},
        "max_active_runs": dag.max_active_runs,
        "trigger": {t.task_id: [t.trigger_dag_id, t.trigger_run_id, t.conf, t.reset_dag_run, t.wait_for_completion]
                    for t in dag.tasks if type(t).__name__ == "TriggerDagRunOperator"},
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


def _min_wait(retries: int, delay: float, factor: float, cap: float | None) -> float:
    """Least total retry wait (Airflow adds jitter upwards only), computed here independently of the DAG code."""
    return sum(min(delay * (factor or 1.0) ** k, cap or float("inf")) for k in range(retries))


def test_dag_folder(tmp_path: Path) -> None:
    bag = _bag(tmp_path)
    assert bag["errors"] == {}
    dag = bag["dags"]["certify_model"]
    assert "modelcert" in dag["tags"] and dag["doc"]
    stages = ["data_quality", "performance", "robustness", "fairness", "drift", "compliance"]
    # The certification DAG ends at the decision: nothing in it waits for people.
    assert set(dag["tasks"]) == {"register", "decide", "request_signoff", *(f"stages.{s}" for s in stages)}
    assert dag["sensor"] == {}
    assert "stages" in dag["groups"]
    # Every task retries infrastructure faults long enough to outlast a short results-DB outage (>= 2 minutes of
    # waiting between tries); verdicts are AirflowFailException and never retried (tests/plugins).
    for task_id in dag["tasks"]:
        retries = dag["retries"][task_id]
        assert retries >= 3, (task_id, retries)
        assert _min_wait(retries, *dag["retry"][task_id]) >= 120, (task_id, dag["retry"][task_id])
    trigger_dag, run_id_template, conf, reset, wait = dag["trigger"]["request_signoff"]
    assert trigger_dag == "signoff_model" and reset is True and wait is False
    assert "signoff_run_id(" in run_id_template and "register" in run_id_template
    assert "register" in conf["modelcert_run_id"]
    spec_param = dag["params"]["spec"]
    assert {"german_credit.yaml", "adult_income.yaml", "compas_audit.yaml"} <= set(spec_param["examples"])
    assert spec_param["pattern"]


def test_signoff_dag_waits_without_limiting_certifications(tmp_path: Path) -> None:
    bag = _bag(tmp_path)
    dag = bag["dags"]["signoff_model"]
    assert "modelcert" in dag["tags"] and dag["doc"]
    assert set(dag["tasks"]) == {"await_signoff", "promote"}
    assert dag["sensor"]["await_signoff"][:2] == ["SignoffSensor", True]
    assert [u.rstrip("/") for u in dag["outlets"]["promote"]] == ["modelcert://certificates"]
    # Waiting runs are cheap (deferred): far more may wait than certifications may compute at once.
    assert dag["max_active_runs"] >= 100 > bag["dags"]["certify_model"]["max_active_runs"]
    assert dag["retries"]["await_signoff"] >= 3 and dag["retries"]["promote"] >= 3
    assert dag["params"]["modelcert_run_id"]["pattern"]


def test_signoff_run_id_is_deterministic() -> None:
    sys.path.insert(0, str(REPO / "plugins"))
    from modelcert_airflow.tasks import signoff_run_id

    rid = "0b6f4c1e-8f7e-4a53-9d7e-2f0d2a9c1b11"
    assert signoff_run_id(rid) == signoff_run_id(rid) == f"signoff__{rid}"
    assert signoff_run_id(rid) != signoff_run_id(rid.replace("1b11", "1b12"))


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
