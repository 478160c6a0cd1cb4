"""Server-rendered pages of the modelcert plugin (plain HTML, a little vanilla JS, no build step).

Shown inside the Airflow UI (external views: "Certification", "Model certificates", and a "Certification"
tab on each DAG run) or opened directly under ``/modelcert/ui``. Authentication is the Airflow UI's own
cookie; without a valid one a page answers 401 with a link to Airflow's login.

Which buttons a page offers comes from ``governance.signoff_options`` (display only); whether a click counts
is decided by ``governance.record_decision`` behind the JSON API.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from modelcert_airflow.auth import CSRF_HEADER, Caller, authenticate, login_url
from modelcert_airflow.views import URL_PREFIX, run_view

TEMPLATES = Path(__file__).resolve().parent / "templates"
_ENV: Any = None

pages = APIRouter(prefix="/ui", default_response_class=HTMLResponse, include_in_schema=False)

STATUS_CLASS = {
    "passed": "ok", "certified": "ok", "valid": "ok", "approve": "ok", "success": "ok",
    "failed": "bad", "rejected": "bad", "error": "bad", "declined": "bad", "decline": "bad", "revoked": "bad",
    "expired": "bad", "suspended": "bad", "superseded": "na",
    "loosened": "bad", "removed": "bad", "tightened": "ok", "added": "ok", "changed": "warn",
    "awaiting_signoff": "wait", "signoff_timeout": "warn", "running": "info", "not_applicable": "na", "-": "na",
}


# --------------------------------------------------------------------------------------------- rendering
def fmt_num(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def fmt_threshold(threshold: Any) -> str:
    """{"min": 0.8, "max": 1.25} -> "≥ 0.8 and ≤ 1.25"; the vocabulary of modelcert.thresholds."""
    if not threshold:
        return "—"
    if not isinstance(threshold, dict):
        return str(threshold)
    parts = []
    for key, value in threshold.items():
        if key == "required":
            continue
        if key == "min":
            parts.append(f"≥ {fmt_num(value)}")
        elif key == "max":
            parts.append(f"≤ {fmt_num(value)}")
        elif key == "abs_max":
            parts.append(f"|x| ≤ {fmt_num(value)}")
        elif key == "between" and isinstance(value, (list, tuple)) and len(value) == 2:
            parts.append(f"{fmt_num(value[0])} … {fmt_num(value[1])}")
        else:
            parts.append(f"{key} {fmt_num(value) if not isinstance(value, (dict, list)) else json.dumps(value)}")
    text = " and ".join(parts) or "—"
    if threshold.get("required") is False:
        text += " (warning only)"
    return text


def fmt_time(value: Any) -> str:
    if not value:
        return "—"
    try:
        dt = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return dt.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def fmt_time_short(value: Any) -> str:
    if not value:
        return "—"
    try:
        return datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return str(value)


def humanize(key: Any) -> str:
    return str(key).replace("_", " ")


def is_mapping(value: Any) -> bool:
    return isinstance(value, dict)


def is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def env() -> Any:
    global _ENV
    if _ENV is None:
        import jinja2

        _ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                                  autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True,
                                  lstrip_blocks=True)
        _ENV.filters.update(num=fmt_num, threshold=fmt_threshold, time=fmt_time, time_short=fmt_time_short,
                            humanize=humanize,
                            css=lambda s: STATUS_CLASS.get(str(s), "na"))
        _ENV.tests.update(mapping=is_mapping, sequence_list=is_list)
    return _ENV


#: ``airflow_dag_id`` values that name no Airflow DAG: in-process runs of the CLI record them.
NOT_AIRFLOW_DAGS = frozenset({"cli"})


class Links:
    """URLs for one request: ours (``/modelcert`` under Airflow) and Airflow's own pages."""

    def __init__(self, request: Request) -> None:
        self.base = str(request.scope.get("root_path", "")).rstrip("/")
        self.airflow = self.base[: -len(URL_PREFIX)] if self.base.endswith(URL_PREFIX) else ""
        self.api = f"{self.base}/api"

    def run(self, run_id: str) -> str:
        return f"{self.base}/ui/runs/{quote(run_id, safe='')}"

    def airflow_run(self, dag_id: str | None, run_id: str | None) -> str | None:
        """The Airflow UI page of the DAG run that recorded a run, or None: runs made by the CLI have no DAG
        run (no ids, or the ``cli`` marker ``modelcert recertify`` records), and a link must never 404."""
        if not dag_id or not run_id or dag_id in NOT_AIRFLOW_DAGS:
            return None
        return f"{self.airflow}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def render(request: Request, template: str, *, status_code: int = 200, headers: dict[str, str] | None = None,
           **context: Any) -> HTMLResponse:
    html = env().get_template(template).render(links=Links(request), request=request, **context)
    return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store", **(headers or {})})


def error_page(request: Request, status: int, code: str, message: str,
               headers: dict[str, str] | None = None) -> HTMLResponse:
    login = login_url(next_url=str(request.url)) if status == 401 else None
    titles = {401: "Please log in to Airflow", 403: "Not allowed", 404: "Not found"}
    return render(request, "message.html", status_code=status, headers=headers, title=titles.get(status, "Refused"),
                  message=message, code=code, status=status, login=login, caller=None)


# --------------------------------------------------------------------------------------------- pages
def _engine(request: Request) -> Any:
    return request.app.state.engine_factory()


@pages.get("/runs")
async def runs_page(request: Request) -> Response:
    from starlette.concurrency import run_in_threadpool

    from modelcert import report

    caller = await authenticate(request)
    runs = await run_in_threadpool(report.list_runs, _engine(request), limit=200)
    return render(request, "runs.html", caller=caller, runs=runs, stages=_stage_names(),
                  title="Certification runs")


@pages.get("/runs/{run_id}")
async def run_page(request: Request, run_id: str) -> Response:
    from starlette.concurrency import run_in_threadpool

    from modelcert.report import fairness_tables

    caller = await authenticate(request)
    rep = await run_in_threadpool(run_view, _engine(request), run_id, caller)
    approved_by: dict[str, list[str]] = {}
    for so in rep["signoffs"]:
        if so["decision"] == "approve" and so["evidence_digest"] == rep["evidence_digest"]:
            approved_by.setdefault(so["role"], []).append(so["approver"])
    from modelcert.explain_report import explainability_tables

    explain = next((st["summary"] for st in rep["stages"] if st["stage"] == "explainability"), None)
    figures = await run_in_threadpool(_stage_figures, rep)
    return render(request, "run.html", caller=caller, run=rep, checks=_checks_failed_first(rep), figures=figures,
                  frameworks=_frameworks(),
                  fairness_tables=fairness_tables(rep), explain_tables=explainability_tables(explain),
                  approved_by=approved_by, why_no_buttons=_why_no_buttons(rep, caller), csrf_header=CSRF_HEADER,
                  flash=request.query_params.get("done"), title=f"{rep['model']} {rep['version']} — certification run")


@pages.get("/airflow/{dag_id}/{airflow_run_id:path}")
async def airflow_run_page(request: Request, dag_id: str, airflow_run_id: str) -> Response:
    """The "Certification" tab of an Airflow DAG run: the certification run that DAG run recorded."""
    from starlette.concurrency import run_in_threadpool

    caller = await authenticate(request)
    run_id = await run_in_threadpool(_run_for_airflow, _engine(request), dag_id, airflow_run_id)
    if run_id is None:
        return render(request, "message.html", status_code=404, title="No certification run yet", code="not_found",
                      message=f"DAG run {airflow_run_id} of {dag_id} has not recorded a certification run (yet): "
                              "its register task has not finished, or this DAG does not certify models.",
                      status=404, login=None, caller=caller)
    return RedirectResponse(Links(request).run(run_id), status_code=303)


@pages.get("/models")
async def models_page(request: Request) -> Response:
    from starlette.concurrency import run_in_threadpool

    from modelcert import report

    caller = await authenticate(request)
    rows = await run_in_threadpool(report.model_overview, _engine(request))
    known = {"model", "version", "owner", "risk_tier", "model_status", "certificate", "latest_run", "attention"}
    extra_keys: list[str] = []
    for row in rows:
        for key in row:
            if key not in known and key not in extra_keys:
                extra_keys.append(key)
    return render(request, "models.html", caller=caller, rows=rows, extra_keys=extra_keys, stages=_stage_names(),
                  title="Model certificates")


# --------------------------------------------------------------------------------------------- helpers
def _stage_figures(rep: dict[str, Any]) -> list[dict[str, Any]]:
    """Per stage that recorded a result, the dossier's figures (inline SVG), so the page shows the picture."""
    from modelcert.dossier import content

    return [content.stage_section(st) for st in rep["stages"]]


def _frameworks() -> tuple[str, ...]:
    from modelcert.dossier.frameworks import FRAMEWORKS

    return FRAMEWORKS


def _stage_names() -> tuple[str, ...]:
    from modelcert.stages import STAGE_NAMES

    return STAGE_NAMES


def _run_for_airflow(engine: Any, dag_id: str, airflow_run_id: str) -> str | None:
    from sqlalchemy import select

    from modelcert.db.models import CertificationRun
    from modelcert.db.session import reader

    with reader(engine) as s:
        return s.execute(select(CertificationRun.id)
                         .where(CertificationRun.airflow_dag_id == dag_id,
                                CertificationRun.airflow_run_id == airflow_run_id)
                         .order_by(CertificationRun.created_at.desc()).limit(1)).scalar_one_or_none()


def _checks_failed_first(rep: dict[str, Any]) -> list[dict[str, Any]]:
    """Every check of every stage: failed (required) first, then warnings, passed, informational."""
    rows = []
    for stage in rep["stages"]:
        for check in stage["checks"]:
            rows.append({**check, "stage": stage["stage"]})

    def rank(c: dict[str, Any]) -> int:
        if c.get("verdict") == "inconclusive":
            return 1
        if c["passed"] is False:
            return 0 if c["required"] else 2
        return 3 if c["passed"] else 4

    order = {s["stage"]: i for i, s in enumerate(rep["stages"])}
    return sorted(rows, key=lambda c: (rank(c), order.get(c["stage"], 99)))


NOT_AWAITING = {
    "running": "This run is still running: sign-off opens once every stage has passed.",
    "error": "This run ended in an error; it cannot be signed off.",
    "rejected": "This run was rejected by its checks; it cannot be signed off.",
    "certified": "This run is certified: sign-off is complete.",
    "declined": "This run was declined; it cannot be signed off any more.",
    "signoff_timeout": "Sign-off timed out for this run (a timeout never approves).",
}


def _why_no_buttons(rep: dict[str, Any], caller: Caller) -> str | None:
    you = rep["you"]
    if you["allowed_roles"]:
        return None
    if rep["status"] != "awaiting_signoff":
        return NOT_AWAITING.get(rep["status"], f"This run is {humanize(rep['status'])}; it is not awaiting sign-off.")
    codes = {r["code"]: r["message"] for r in you["refused"].values()}
    for code in ("four_eyes", "duplicate", "evidence_mismatch", "findings_open"):
        if code in codes:
            return codes[code]
    required = ", ".join(sorted(you["required"])) or "none"
    held = ", ".join(you["held_roles"]) or "no certification role"
    return f"{caller.name} holds {held}; this run needs sign-off by: {required}."


SEAL_SVG = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="none" stroke="#5a8dee" stroke-width="2"
 stroke-linecap="round" stroke-linejoin="round"><circle cx="12" cy="9" r="6"/><path d="M9 9l2 2 4-4"/>
<path d="M8.5 14.2L7 22l5-3 5 3-1.5-7.8"/></svg>"""


@pages.get("/static/seal.svg")
def seal_icon() -> Response:
    """The navigation icon (public: it is an image, not data)."""
    return Response(SEAL_SVG, media_type="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"})
