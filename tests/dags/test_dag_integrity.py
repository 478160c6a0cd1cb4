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
        "trigger": {t.task_id: [t.trigger_dag_id, t.trigger_run_id, t.conf, t.reset_dag_run, t.wait_for_completion,
                                t.note, "note" in t.template_fields]
                    for t in dag.tasks if hasattr(t, "trigger_dag_id")},
        "branch": sorted(t.task_id for t in dag.tasks if "Branch" in type(t).__name__),
        "downstream": {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks},
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
    stages = ["data_quality", "performance", "robustness", "fairness", "drift", "compliance", "explainability"]
    # The certification DAG ends at the decision: nothing in it waits for people. decide branches to one terminal
    # task per verdict, so the grid names the verdict; only awaiting_signoff leads on to the sign-off DAG.
    verdicts = ["awaiting_signoff", "error", "rejected"]
    assert set(dag["tasks"]) == {"register", "decide", *verdicts, "request_signoff", *(f"stages.{s}" for s in stages)}
    assert dag["sensor"] == {}
    assert dag["branch"] == ["decide"] and dag["downstream"]["decide"] == verdicts
    assert dag["downstream"]["awaiting_signoff"] == ["request_signoff"]
    assert dag["downstream"]["rejected"] == dag["downstream"]["error"] == dag["downstream"]["request_signoff"] == []
    assert "stages" in dag["groups"]
    # Every task retries infrastructure faults long enough to outlast a short results-DB outage (>= 2 minutes of
    # waiting between tries); verdicts are AirflowFailException and never retried (tests/plugins).
    for task_id in dag["tasks"]:
        retries = dag["retries"][task_id]
        assert retries >= 3, (task_id, retries)
        assert _min_wait(retries, *dag["retry"][task_id]) >= 120, (task_id, dag["retry"][task_id])
    trigger_dag, run_id_template, conf, reset, wait, note, note_templated = dag["trigger"]["request_signoff"]
    assert trigger_dag == "signoff_model" and reset is True and wait is False
    assert note_templated and "signoff_note(" in note and "register" in note  # the sign-off run names the model
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


def test_verdict_tasks_and_sign_off_note() -> None:
    """decide's verdict picks the terminal task; only ``error`` fails it; the note names model and version."""
    sys.path.insert(0, str(REPO / "plugins"))
    from airflow.sdk.exceptions import AirflowFailException

    from modelcert_airflow import tasks

    assert {s: tasks.verdict_task({"status": s}) for s in ("awaiting_signoff", "rejected", "error")} == {
        "awaiting_signoff": "awaiting_signoff", "rejected": "rejected", "error": "error"}
    reg = {"run_id": "r-1", "model": "german-credit-lr", "version": "1.0.0"}
    rejected = {"run_id": "r-1", "status": "rejected", "reasons": ["fairness: disparate_impact[sex]: 0.32 < 0.8"]}
    assert tasks.announce(rejected, reg) is rejected  # a verdict: logged, the task succeeds
    try:
        tasks.announce({"run_id": "r-1", "status": "error", "reasons": ["robustness: the model process died"]}, reg)
    except AirflowFailException as exc:
        assert str(exc) == ("german-credit-lr 1.0.0: ERROR (modelcert run r-1): robustness: the model process died")
    else:
        raise AssertionError("an error verdict must fail its task")
    assert tasks.decide(None)["status"] == "error"  # no registration: nothing to decide, routed to error
    note = tasks.signoff_note(reg, "german-credit-lr_1.0.0__2026-12-02T10:15:03.123Z")
    assert note.startswith("german-credit-lr 1.0.0 awaits sign-off (modelcert run r-1")
