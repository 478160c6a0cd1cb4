"""What the JSON API and the pages both show, in a module of its own so that neither imports the other for it
(``api`` assembles the app and includes ``pages``; ``pages`` needs only this).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from modelcert_airflow.auth import Caller

#: Where Airflow mounts this app (``fastapi_apps[].url_prefix``).
URL_PREFIX = "/modelcert"


def run_view(engine: Engine, run_id: str, caller: Caller) -> dict[str, Any]:
    """One run as an approver sees it: the evidence report, its sign-off state, what ``caller`` may sign, and
    ``review`` (the summary shown above the buttons: warnings, waived checks, spec diff, policy)."""
    from modelcert import pipeline, report
    from modelcert.governance import acceptance_options, signoff_options
    from modelcert.review import approval_summary

    rep = report.run_report(engine, run_id)
    rep["quorum"] = pipeline.signoff_state(engine, run_id).as_dict()
    rep["you"] = signoff_options(engine, run_id, caller.name)
    rep["review"] = approval_summary(engine, run_id)
    #: Which open findings the caller may accept (display only; the accept route applies the rules).
    rep["you"]["findings"] = acceptance_options(engine, run_id, caller.name)
    return rep
