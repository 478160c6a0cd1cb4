"""Operators the DAGs wire (small subclasses; the logic stays in the library and ``tasks``)."""

from __future__ import annotations

from collections.abc import Sequence

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator


class RequestSignoffOperator(TriggerDagRunOperator):
    """Triggers the ``signoff_model`` DAG run of a certification run, with a templated ``note``.

    Airflow 3.3 lets a task set a DAG run's note only when it *creates* that run (the Task SDK has no call to
    annotate its own run), so the sign-off run gets a note naming the model and version it waits for, while the
    certification run says it through its run id (``<model>_<version>__<timestamp>``, given by the trigger)."""

    template_fields: Sequence[str] = (*TriggerDagRunOperator.template_fields, "note")
