"""Task callables of the ``recertify_models`` DAG: each calls one ``modelcert.recertify`` function and maps its
outcome to a task state.

passed → success · failed (certificate suspended) / error (e.g. no current data) → failed (AirflowFailException:
the verdict is final, no retry) · not configured / certificate no longer valid / just expired → skipped, with the
reason. Unexpected exceptions propagate, so Airflow's retries apply (a retry replaces the same rows).

``notify_ops`` is the hook ops alerting hangs on: today a WARNING log line (logger ``modelcert.notify``) in the
task's log.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from typing import Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from modelcert_airflow.connection import results_engine

log = logging.getLogger("modelcert.notify")

#: Asset event per suspended certificate; ``extra`` names model, version and certificate (deployment DAGs roll back).
SUSPENDED_URI = "modelcert://certificates/suspended"
SCHEDULE_ENV = "MODELCERT_RECERTIFY_SCHEDULE"
DEFAULT_SCHEDULE = "@daily"


def schedule_from_env() -> str | None:
    """``MODELCERT_RECERTIFY_SCHEDULE`` (a cron expression or preset), default ``@daily``; ``none`` = manual only."""
    value = os.environ.get(SCHEDULE_ENV, DEFAULT_SCHEDULE).strip()
    return None if value.lower() in ("", "none", "null", "manual") else value


def notify_ops(event: dict[str, Any]) -> None:
    """Tell ops about a recertification event (suspension, error, expiry, validity ending soon)."""
    kind = event.get("event", "recertification")
    what = event.get("label") or " ".join(str(event.get(k, "")) for k in ("model", "version")).strip()
    log.warning("[modelcert] %s: %s\n%s", kind, what, json.dumps(event, indent=2, sort_keys=True, default=str))


def run_ds(dag_run: Any, params: dict[str, Any] | None = None) -> str:
    """The date whose current data is judged: the ``ds`` param when given, else the run's logical date, else
    (a run triggered without one) the day it runs."""
    explicit = (params or {}).get("ds")
    if explicit:
        return str(explicit)
    when: datetime | None = getattr(dag_run, "logical_date", None) or getattr(dag_run, "run_after", None)
    if when is None:
        from modelcert.recertify import utcnow

        when = utcnow()
    return when.strftime("%Y-%m-%d")


def expire() -> list[dict[str, Any]]:
    from modelcert import recertify

    expired = recertify.expire_due(results_engine())
    for cert in expired:
        notify_ops({"event": "certificate_expired", **cert})
    return expired


def find(dag_id: str | None = None, run_id: str | None = None) -> list[dict[str, Any]]:
    from modelcert import recertify

    targets = recertify.find_targets(results_engine(), dag_id=dag_id, airflow_run_id=run_id)
    for t in targets:
        if t["expiring_soon"]:
            notify_ops({"event": "certificate_expiring", **t})
    log.info("recertifying %d certificate(s): %s", len(targets), ", ".join(t["label"] for t in targets) or "none")
    return targets


def recertify_one(target: dict[str, Any], *, dag_id: str, run_id: str, ds: str, triggered_by: str | None,
                  attempt: int = 1) -> dict[str, Any]:
    from modelcert import recertify

    out = recertify.recertify(results_engine(), target["certificate_id"], dag_id=dag_id, airflow_run_id=run_id,
                              ds=ds, triggered_by=triggered_by, attempt=attempt)
    status = out["status"]
    label = out["label"]
    if status == "expired":
        notify_ops({"event": "certificate_expired", **out})
        raise AirflowSkipException(f"{label}: {out['note']}")
    if status in ("skipped", "not_configured"):
        raise AirflowSkipException(f"{label}: not recertified: {out['note']}")
    reasons = "\n  - ".join(out["reasons"])
    if out.get("transition") == "suspended":
        notify_ops({"event": "certificate_suspended", **out})
    if status == "failed":
        raise AirflowFailException(f"{label}: recertification FAILED on {ds}; certificate {out['certificate_id']} "
                                   f"is {out['certificate_status']}:\n  - {reasons}")
    if status == "error":
        notify_ops({"event": "recertification_error", **out})
        raise AirflowFailException(f"{label}: recertification ERROR on {ds} (certificate unchanged, "
                                   f"{out['certificate_status']}):\n  - {reasons}")
    log.info("%s: every recertification check holds on %s (%s); certificate %s stays valid", label, ds,
             out["current_data"], out["certificate_id"])
    return out


def suspended(dag_id: str, run_id: str) -> list[dict[str, Any]]:
    from modelcert import recertify

    return recertify.pending_announcements(results_engine(), dag_id=dag_id, airflow_run_id=run_id)


def announce(suspension: dict[str, Any]) -> dict[str, Any]:
    """Record the announcement once; the caller puts the returned ``extra`` on the asset event."""
    from modelcert import recertify

    first = recertify.record_announcement(results_engine(), suspension["certificate_id"],
                                          recertification_run_id=suspension["recertification_run_id"],
                                          channel=f"airflow asset {SUSPENDED_URI}")
    if not first:
        raise AirflowSkipException(f"{suspension['label']}: suspension already announced")
    extra = {k: suspension[k] for k in ("certificate_id", "model", "version", "recertification_run_id", "ds",
                                        "reasons", "suspended_at")}
    notify_ops({"event": "certificate_suspension_announced", "asset": SUSPENDED_URI, **extra})
    return extra


def summary(dag_id: str, run_id: str, targets: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The DAG run's verdict: fails (the run turns red) when any recertification failed or errored, or a listed,
    configured, still valid certificate has no recertification recorded (its task broke before recording)."""
    from modelcert import recertify

    engine = results_engine()
    outcomes = recertify.run_outcomes(engine, dag_id=dag_id, airflow_run_id=run_id)
    missing = recertify.unrecorded_targets(engine, targets or [], outcomes)
    by_status: dict[str, list[str]] = {}
    for o in outcomes:
        by_status.setdefault(o["status"], []).append(o["label"])
        log.info("%-32s %-8s certificate %s %s", o["label"], o["status"], o["certificate_status"],
                 "; ".join(o["reasons"])[:300])
    bad = [f"{o['label']}: {o['status']} (certificate {o['certificate_status']}): " + "; ".join(o["reasons"])[:500]
           for o in outcomes if o["status"] in ("failed", "error", "running")]
    bad += [f"{t['label']}: no recertification recorded (see its recertify task's log)" for t in missing]
    if bad:
        lines = "\n".join(f"  - {line}" for line in bad)
        raise AirflowFailException(f"{len(bad)} recertification(s) need attention:\n{lines}")
    return {"recertified": len(outcomes), "by_status": by_status}
