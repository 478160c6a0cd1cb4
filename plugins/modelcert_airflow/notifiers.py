"""Notifications: who must act, and what went wrong, with a link to the run's page.

Logged always (WARNING for ops-relevant events) and recorded as an audit event in the results DB; sent by
e-mail through the SMTP provider when ``MODELCERT_NOTIFY_EMAIL`` (comma-separated addresses) is set and an
SMTP connection (``smtp_default`` or ``MODELCERT_SMTP_CONN_ID``) is configured.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from airflow.sdk import BaseNotifier

log = logging.getLogger("modelcert.notify")


def run_page_url(run_id: str) -> str:
    base = os.environ.get("MODELCERT_UI_BASE_URL") or os.environ.get("AIRFLOW__API__BASE_URL") or ""
    if not base:
        try:
            from airflow.sdk import conf

            base = conf.get("api", "base_url", fallback="") or ""
        except Exception:  # noqa: BLE001 - a missing option only costs the absolute link
            base = ""
    return f"{base.rstrip('/')}/modelcert/ui/runs/{run_id}"


def compose(run: dict[str, Any], event: str) -> tuple[str, str, int]:
    """(subject, body, log level) for a run dict as returned by modelcert.report.run_report."""
    name = f"{run['model']} {run['version']}"
    link = run_page_url(run["run_id"])
    status = run["status"]
    reasons = "\n".join(f"  - {r}" for r in run.get("reasons") or [])
    if status == "awaiting_signoff":
        from modelcert.spec import parse_spec

        roles = parse_spec(run["spec"]).required_approvals if run.get("spec") else {}
        return (f"[modelcert] {name} awaits your sign-off",
                f"Certification run {run['run_id']} of {name} passed every check and awaits sign-off by {roles}.\n"
                f"Evidence digest {run['evidence_digest']}.\nReview and approve or decline: {link}", logging.INFO)
    if status == "certified":
        return (f"[modelcert] {name} certified", f"{name} was certified (run {run['run_id']}): {link}", logging.INFO)
    level = logging.WARNING
    return (f"[modelcert] {name}: {status.replace('_', ' ')}",
            f"Certification run {run['run_id']} of {name} ended as {status} ({event}).\n{reasons}\nDetails: {link}",
            level)


class CertificationNotifier(BaseNotifier):
    """Task callback: announces the run's current state (read from the results DB, the source of truth)."""

    template_fields = ("event",)

    def __init__(self, event: str, *, email_to: str | None = None, smtp_conn_id: str | None = None) -> None:
        super().__init__()
        self.event = event
        self.email_to = email_to if email_to is not None else os.environ.get("MODELCERT_NOTIFY_EMAIL", "")
        self.smtp_conn_id = smtp_conn_id or os.environ.get("MODELCERT_SMTP_CONN_ID")

    def notify(self, context: Any) -> None:
        from modelcert import audit, report
        from modelcert.db.session import reader, transaction
        from modelcert.pipeline import load_run
        from modelcert_airflow.connection import results_engine

        # certify_model: the register task's XCom; signoff_model: its modelcert_run_id param.
        reg = context["ti"].xcom_pull(task_ids="register")
        if not reg and (context.get("params") or {}).get("modelcert_run_id"):
            reg = {"run_id": context["params"]["modelcert_run_id"]}
        if not reg:
            log.warning("modelcert: %s for %s, but registration recorded no run", self.event, context.get("run_id"))
            return
        engine = results_engine()
        run = report.run_report(engine, reg["run_id"])
        with reader(engine) as s:
            run["spec"] = load_run(s, reg["run_id"]).spec
        subject, body, level = compose(run, self.event)
        log.log(level, "%s\n%s", subject, body)
        channels = ["log"]
        if self.email_to:
            from airflow.providers.smtp.notifications.smtp import SmtpNotifier

            SmtpNotifier(to=[a.strip() for a in self.email_to.split(",") if a.strip()], subject=subject,
                         html_content="<pre>" + body + "</pre>", smtp_conn_id=self.smtp_conn_id).notify(context)
            channels.append("email")
        with transaction(engine) as s:
            audit.append(s, actor="modelcert", action="notification_sent", entity_type="run", entity_id=run["run_id"],
                         payload={"event": self.event, "status": run["status"], "subject": subject,
                                  "channels": channels, "link": run_page_url(run["run_id"])})
