"""The modelcert web app, served by the Airflow api-server under ``/modelcert`` (see ``plugin.py``).

JSON API (``/modelcert/api``) and server-rendered pages (``/modelcert/ui``, in ``pages.py``). Airflow mounts
this app without authentication: every route authenticates the caller's Airflow token itself
(``auth.authenticate``). Sign-off rules are *not* here: ``modelcert.governance.record_decision`` applies
all of them and this module only translates its refusals into HTTP statuses:

====================  ======  =====================================================
refusal code          status  meaning
====================  ======  =====================================================
(no/invalid token)    401     not authenticated
forbidden             403     the user does not hold the role
four_eyes             403     the user submitted or triggered the run
not_awaiting          409     the run is not awaiting sign-off
duplicate             409     this person already signed this run
evidence_mismatch     409     the digest approved is not the run's evidence
findings_open         409     an approval while findings that block sign-off are not accepted
role_not_required     422     the run does not require that role
invalid               422     e.g. a decline without a reason
(no such run)         404
config                500     the roles configuration is missing or malformed
====================  ======  =====================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from modelcert_airflow.auth import Caller, CsrfRefused, NotAuthenticated, authenticate, check_csrf
from modelcert_airflow.views import URL_PREFIX, run_view  # noqa: F401 - URL_PREFIX is re-exported for plugin.py

STATUS_OF_REFUSAL: dict[str, int] = {
    "forbidden": 403,
    "four_eyes": 403,
    "not_awaiting": 409,
    "duplicate": 409,
    "evidence_mismatch": 409,
    "findings_open": 409,
    "role_not_required": 422,
    "invalid": 422,
    "not_found": 404,
    "config": 500,
}


# --------------------------------------------------------------------------------------------- bodies
#: An evidence digest is a sha256 in hex. Required in every decision: the server never fills it in, so an
#: approval always names the evidence the approver was shown (``review.evidence_digest`` of GET /runs/{id}).
DIGEST_PATTERN = r"^[0-9a-f]{64}$"
DIGEST_HELP = "the evidence digest you reviewed (64 lowercase hex characters, from GET /api/runs/{id}); required"


class ApproveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str = Field(description="the certification role you approve as, e.g. model_validator")
    evidence_digest: str = Field(pattern=DIGEST_PATTERN, description=DIGEST_HELP)
    comment: str = ""


class DeclineBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str
    evidence_digest: str = Field(pattern=DIGEST_PATTERN, description=DIGEST_HELP)
    reason: str = Field(description="why; a decline without a reason is refused")


class AcceptBody(BaseModel):
    """Accept findings of a run awaiting sign-off: ``finding_ids``, or ``all`` the open ones ``role`` accepts."""

    model_config = ConfigDict(extra="forbid")

    role: str = Field(description="the role the risk policy names for these findings, e.g. risk_officer")
    evidence_digest: str = Field(pattern=DIGEST_PATTERN, description=DIGEST_HELP)
    reason: str = Field(description="why the risk is acceptable; required, recorded and audited")
    finding_ids: list[int] | None = Field(default=None, description="the findings to accept (or all: true)")
    all: bool = False


# --------------------------------------------------------------------------------------------- dependencies
async def current_caller(request: Request) -> Caller:
    return await authenticate(request)


def results_engine(request: Request) -> Engine:
    return request.app.state.engine_factory()


CallerDep = Annotated[Caller, Depends(current_caller)]
EngineDep = Annotated[Engine, Depends(results_engine)]


def _default_engine() -> Engine:
    from modelcert_airflow.connection import results_engine as engine_from_airflow

    return engine_from_airflow()


# --------------------------------------------------------------------------------------------- JSON API
api = APIRouter(prefix="/api", tags=["modelcert"])


@api.get("/me")
def me(caller: CallerDep) -> dict[str, Any]:
    """Who the token says you are, and the certification roles configuration gives you."""
    return {"user": caller.name, "certification_roles": sorted(caller.roles), "authenticated_via": caller.via}


@api.get("/runs")
def runs(caller: CallerDep, engine: EngineDep, limit: int = 50) -> list[dict[str, Any]]:
    from modelcert import report

    return report.list_runs(engine, limit=max(1, min(limit, 500)))


@api.get("/runs/{run_id}")
def run(run_id: str, caller: CallerDep, engine: EngineDep) -> dict[str, Any]:
    """The run's evidence report, its sign-off state, what *you* may sign on it, and ``review``: the summary
    an approver must see first (warnings, waived checks, spec diff against the last certified spec, policy)."""
    return run_view(engine, run_id, caller)


def _document_response(doc: Any) -> Response:
    """A generated document as a download: its media type, file name, and sha256 (recorded with the run)."""
    disposition = "inline" if doc.format == "html" else "attachment"
    return Response(doc.body, media_type=doc.media_type,
                    headers={"Content-Disposition": f'{disposition}; filename="{doc.filename}"',
                             "X-Modelcert-Sha256": doc.sha256, "Cache-Control": "no-store"})


@api.get("/runs/{run_id}/report")
def run_report_document(run_id: str, caller: CallerDep, engine: EngineDep,
                        format: Literal["html", "pdf", "json"] = "html") -> Response:
    """The run's certification report (summary, findings, each stage's figures and table, model facts,
    sign-offs, audit trail) as self-contained HTML, PDF or JSON; its sha256 is recorded with the run."""
    from modelcert.dossier import documents

    return _document_response(documents.report_document(engine, run_id, format))


@api.get("/runs/{run_id}/dossier/{framework}")
def run_dossier_document(run_id: str, framework: Literal["eu-ai-act", "nyc-ll144", "sr-26-2", "colorado"],
                         caller: CallerDep, engine: EngineDep,
                         format: Literal["html", "pdf", "md"] = "html") -> Response:
    """A regulation dossier of the run, opening with its completeness table."""
    from modelcert.dossier import frameworks

    return _document_response(frameworks.dossier_document(engine, run_id, framework, format))


@api.get("/runs/{run_id}/model-card")
def run_model_card(run_id: str, caller: CallerDep, engine: EngineDep) -> Response:
    """The model card (Mitchell et al. sections, written with skops.card) as Markdown."""
    from modelcert.dossier import modelcard

    return _document_response(modelcard.model_card_document(engine, run_id))


def _decide(request: Request, caller: Caller, engine: Engine, run_id: str, decision: str, role: str,
            digest: str, text: str) -> JSONResponse:
    from modelcert import pipeline
    from modelcert.governance import record_decision

    check_csrf(request, caller)
    out = record_decision(engine, run_id, caller.identity(), role=role, decision=decision,  # type: ignore[arg-type]
                          evidence_digest=digest, comment=text)
    out["quorum"] = pipeline.signoff_state(engine, run_id).as_dict()
    return JSONResponse(out, status_code=201)


@api.post("/runs/{run_id}/approve", status_code=201)
def approve(run_id: str, body: ApproveBody, request: Request, caller: CallerDep, engine: EngineDep) -> JSONResponse:
    """Approve as ``role`` the evidence you reviewed (``evidence_digest``)."""
    return _decide(request, caller, engine, run_id, "approve", body.role, body.evidence_digest, body.comment)


@api.post("/runs/{run_id}/decline", status_code=201)
def decline(run_id: str, body: DeclineBody, request: Request, caller: CallerDep, engine: EngineDep) -> JSONResponse:
    """Decline as ``role``, with a reason; the run ends as ``declined``."""
    return _decide(request, caller, engine, run_id, "decline", body.role, body.evidence_digest, body.reason)


@api.get("/runs/{run_id}/findings")
def run_findings(run_id: str, caller: CallerDep, engine: EngineDep) -> list[dict[str, Any]]:
    """The run's findings register: every failed, inconclusive or waived check, most severe first."""
    from modelcert.findings import list_findings

    return list_findings(engine, run_id)


@api.post("/runs/{run_id}/findings/accept", status_code=201)
def accept_findings(run_id: str, body: AcceptBody, request: Request, caller: CallerDep,
                    engine: EngineDep) -> JSONResponse:
    """Accept findings as ``role`` with a ``reason``, for the evidence you reviewed (``evidence_digest``)."""
    from modelcert import pipeline
    from modelcert.errors import SignoffError
    from modelcert.governance import accept_findings as accept

    check_csrf(request, caller)
    if body.all == (body.finding_ids is not None):
        raise SignoffError("finding_ids or all: true — say which findings you accept (one of the two)",
                           code="invalid")
    out = accept(engine, run_id, caller.identity(), role=body.role, reason=body.reason,
                 evidence_digest=body.evidence_digest, finding_ids=None if body.all else body.finding_ids)
    out["quorum"] = pipeline.signoff_state(engine, run_id).as_dict()
    return JSONResponse(out, status_code=201)


@api.get("/certificates")
def certificates(caller: CallerDep, engine: EngineDep) -> list[dict[str, Any]]:
    from modelcert import report

    return report.list_certificates(engine)


@api.get("/models")
def models(caller: CallerDep, engine: EngineDep) -> list[dict[str, Any]]:
    """Every model version with its certificate, latest run and what needs attention (ops view)."""
    from modelcert import report

    return report.model_overview(engine)


# --------------------------------------------------------------------------------------------- errors
def _wants_html(request: Request) -> bool:
    return request.url.path.startswith(f"{request.scope.get('root_path', '')}/ui")


def _error(request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    if _wants_html(request):
        from modelcert_airflow.pages import error_page

        return error_page(request, status, code, message, headers=headers)
    return JSONResponse({"detail": message, "code": code}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    from modelcert.errors import RunNotFound, SignoffError

    @app.exception_handler(NotAuthenticated)
    async def _unauthenticated(request: Request, exc: NotAuthenticated) -> Response:
        return _error(request, 401, "unauthenticated", str(exc), headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, exc: CsrfRefused) -> Response:
        return _error(request, 403, "csrf", str(exc))

    @app.exception_handler(SignoffError)
    async def _refused(request: Request, exc: SignoffError) -> Response:
        return _error(request, STATUS_OF_REFUSAL.get(exc.code, 400), exc.code, str(exc))

    @app.exception_handler(RunNotFound)
    async def _not_found(request: Request, exc: RunNotFound) -> Response:
        return _error(request, 404, "not_found", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
                             for e in exc.errors())
        return _error(request, 422, "invalid", f"invalid request: {problems}")


# --------------------------------------------------------------------------------------------- app
def create_app(engine_factory: Callable[[], Engine] | None = None) -> FastAPI:
    """The app Airflow mounts; tests pass ``engine_factory`` to point it at their results database."""
    from modelcert_airflow.pages import pages

    app = FastAPI(
        title="modelcert",
        description="Model certification: evidence, sign-off and certificates. Every route needs an Airflow "
                    "token (Authorization: Bearer, from POST /auth/token; or the Airflow UI's cookie).",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.engine_factory = engine_factory or _default_engine
    app.include_router(api)
    app.include_router(pages)
    install_error_handlers(app)

    @app.get("/", include_in_schema=False)
    def index(request: Request) -> RedirectResponse:
        return RedirectResponse(f"{request.scope.get('root_path', '')}/ui/runs", status_code=307)

    return app


app = create_app()
