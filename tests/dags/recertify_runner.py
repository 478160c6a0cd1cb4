"""Run the recertify_models DAG with ``dag.test()`` in a clean process.

Usage: python recertify_runner.py RESULTS_DB_URL AIRFLOW_HOME LOGICAL_DATE(YYYY-MM-DD)
Prints one JSON line (the last line of stdout): {"dag_state", "run_id", "task_states", "map_labels",
"asset_events"} — task states keyed "task_id" or "task_id[map_index]", asset events of
modelcert://certificates/suspended as recorded in Airflow's metadata DB.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.dags.airflow_env import prepare  # noqa: E402


def main() -> None:
    results_url, home, day = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    prepare(home, results_url)

    import recertify_models

    logical_date = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
    # Like the scheduled run of that day (runs after its interval). A fixed run_after gives the same run id each
    # time: dag.test() then replaces the DAG run, as clearing a run in the UI would.
    dr = recertify_models.dag.test(logical_date=logical_date, run_after=logical_date + timedelta(days=1))
    states: dict[str, str] = {}
    labels: dict[str, str | None] = {}
    for ti in dr.get_task_instances():
        key = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
        states[key] = str(ti.state)
        if ti.map_index >= 0:
            labels[key] = ti.rendered_map_index

    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        events = [
            {"uri": uri, "extra": extra, "source_run_id": run_id, "source_task_id": task_id}
            for uri, extra, run_id, task_id in session.execute(
                select(AssetModel.uri, AssetEvent.extra, AssetEvent.source_run_id, AssetEvent.source_task_id)
                .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .where(AssetModel.uri.like("modelcert://%"))
                .order_by(AssetEvent.id)
            ).all()
        ]
    print(json.dumps({"dag_state": str(dr.state), "run_id": dr.run_id, "task_states": states, "map_labels": labels,
                      "asset_events": events}, default=str))


if __name__ == "__main__":
    main()
