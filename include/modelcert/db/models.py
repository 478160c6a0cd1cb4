"""Results database (our own, separate from Airflow's metadata DB): typed SQLAlchemy 2 models.

Relationships are ``lazy="raise"``: every query says what it loads, so nothing hides an N+1 or a query
after the session closed. The schema is owned by Alembic (``modelcert/db/migrations``); a test checks that
these models and the migrations agree.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: The states a run or a certificate can be in. The transitions between them live in ``modelcert.lifecycle``
#: (the only code that changes them); the migration ``0003`` makes the database refuse any other value.
CertificationRunStatus = Literal["running", "error", "rejected", "awaiting_signoff", "certified", "declined",
                                 "signoff_timeout", "superseded"]
#: Statuses of a recertification run: every check holds, a required check failed (certificate suspended), or
#: the checks could not be made (e.g. no current data; the certificate is unchanged, ops are told).
RecertificationStatus = Literal["running", "passed", "failed", "error"]
RunStatus = Literal[CertificationRunStatus, RecertificationStatus]
#: Run kinds: a certification (spec → stages → gate → sign-off → certificate) or a scheduled recertification
#: of a certificate on production data.
RunKind = Literal["certification", "recertification"]
CertificateStatus = Literal["valid", "expired", "suspended", "revoked", "superseded"]
#: A model version's status mirrors its latest certificate.
ModelVersionStatus = Literal["registered", "certified", "suspended", "expired", "revoked"]
StageStatus = Literal["passed", "failed", "error", "not_applicable"]
#: A judged check's verdict (``modelcert.thresholds.Verdict``); NULL for an informational check.
CheckVerdict = Literal["pass", "fail", "inconclusive"]
#: Findings register (``modelcert.findings``): how serious, and where it stands.
FindingSeverity = Literal["high", "medium", "low"]
FindingStatus = Literal["open", "accepted", "closed"]

RUN_STATUSES: tuple[str, ...] = get_args(CertificationRunStatus)
RUN_KINDS: tuple[str, ...] = get_args(RunKind)
RECERTIFICATION_STATUSES: tuple[str, ...] = get_args(RecertificationStatus)
STAGE_STATUSES: tuple[str, ...] = get_args(StageStatus)
CERT_STATUSES: tuple[str, ...] = get_args(CertificateStatus)
MODEL_VERSION_STATUSES: tuple[str, ...] = get_args(ModelVersionStatus)
CHECK_VERDICTS: tuple[str, ...] = get_args(CheckVerdict)
FINDING_SEVERITIES: tuple[str, ...] = get_args(FindingSeverity)
FINDING_STATUSES: tuple[str, ...] = get_args(FindingStatus)


def _in(column: str, values: tuple[str, ...]) -> str:
    """SQL of a CHECK constraint: ``column`` holds one of ``values`` (constants of this module, not input)."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


#: The CHECK constraints of migration 0003, by table (name → SQL), shared with it so the two cannot drift.
STATE_CHECKS: dict[str, dict[str, str]] = {
    "model_versions": {"status": _in("status", MODEL_VERSION_STATUSES)},
    "certification_runs": {
        "kind": _in("kind", RUN_KINDS),
        "status": f"(kind = 'certification' AND {_in('status', RUN_STATUSES)}) OR "
                  f"(kind = 'recertification' AND {_in('status', RECERTIFICATION_STATUSES)})",
    },
    "certificates": {"status": _in("status", CERT_STATUSES)},
}
#: The CHECK constraints of migration 0004 (verdicts and the findings register).
VERDICT_CHECKS: dict[str, dict[str, str]] = {
    "check_results": {"verdict": f"verdict IS NULL OR {_in('verdict', CHECK_VERDICTS)}"},
    "findings": {"severity": _in("severity", FINDING_SEVERITIES), "status": _in("status", FINDING_STATUSES),
                 "verdict": _in("verdict", CHECK_VERDICTS[1:])},
}


def _uuid() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSONB, list[Any]: JSONB, datetime: DateTime(timezone=True)}


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "version"),
                      *(CheckConstraint(sql, name=n) for n, sql in STATE_CHECKS["model_versions"].items()))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(128))
    risk_tier: Mapped[str] = mapped_column(String(16))
    #: Mirrors the latest certificate; changed only by ``modelcert.lifecycle``.
    status: Mapped[ModelVersionStatus] = mapped_column(String(32), default="registered")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())

    runs: Mapped[list[CertificationRun]] = relationship(back_populates="model_version", lazy="raise")


class CertificationRun(Base):
    __tablename__ = "certification_runs"
    __table_args__ = (UniqueConstraint("run_key"),
                      *(CheckConstraint(sql, name=n) for n, sql in STATE_CHECKS["certification_runs"].items()))

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    #: Idempotency key: "<dag_id>/<run_id>" for Airflow, "cli/<uuid>" for in-process runs.
    run_key: Mapped[str] = mapped_column(String(512))
    #: NULL only for a run whose spec could not even be parsed (recorded as error).
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="RESTRICT"),
                                                         index=True)
    kind: Mapped[RunKind] = mapped_column(String(16), default="certification")
    #: Changed only by ``modelcert.lifecycle`` (one function per transition, each audited).
    status: Mapped[RunStatus] = mapped_column(String(32), default="running", index=True)
    reasons: Mapped[list[Any]] = mapped_column(default=list)
    spec: Mapped[dict[str, Any]] = mapped_column()
    spec_path: Mapped[str] = mapped_column(Text)
    spec_base_dir: Mapped[str] = mapped_column(Text)
    spec_text: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column()
    evidence_digest: Mapped[str] = mapped_column(String(64))
    submitter: Mapped[str] = mapped_column(String(128))
    triggered_by: Mapped[str | None] = mapped_column(String(128))
    airflow_dag_id: Mapped[str | None] = mapped_column(String(250))
    airflow_run_id: Mapped[str | None] = mapped_column(String(250))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
    decided_at: Mapped[datetime | None] = mapped_column()
    awaiting_since: Mapped[datetime | None] = mapped_column()
    #: Recertification runs: the certificate they checked (NULL for certification runs, whose certificate
    #: points back at them through ``certificates.run_id``). ``use_alter``: the two tables reference each other.
    certificate_id: Mapped[str | None] = mapped_column(
        ForeignKey("certificates.id", ondelete="RESTRICT", use_alter=True), index=True)

    model_version: Mapped[ModelVersion | None] = relationship(back_populates="runs", lazy="raise")
    stage_results: Mapped[list[StageResult]] = relationship(back_populates="run", lazy="raise",
                                                              cascade="all, delete-orphan")


class StageResult(Base):
    __tablename__ = "stage_results"
    __table_args__ = (UniqueConstraint("run_id", "stage"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("certification_runs.id", ondelete="CASCADE"))
    stage: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    library: Mapped[str] = mapped_column(String(128), default="")
    library_version: Mapped[str] = mapped_column(String(64), default="")
    started_at: Mapped[datetime] = mapped_column()
    finished_at: Mapped[datetime] = mapped_column()
    duration_s: Mapped[float] = mapped_column(Float)
    attempt: Mapped[int] = mapped_column(Integer, default=1)

    run: Mapped[CertificationRun] = relationship(back_populates="stage_results", lazy="raise")
    checks: Mapped[list[CheckResult]] = relationship(back_populates="stage_result", lazy="raise",
                                                       cascade="all, delete-orphan", passive_deletes=True)


class CheckResult(Base):
    __tablename__ = "check_results"
    __table_args__ = tuple(CheckConstraint(sql, name=n) for n, sql in VERDICT_CHECKS["check_results"].items())

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    stage_result_id: Mapped[int] = mapped_column(ForeignKey("stage_results.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(128))
    subject: Mapped[str] = mapped_column(String(256), default="")
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    passed: Mapped[bool | None] = mapped_column(Boolean)
    #: pass / fail / inconclusive (judged on the value's interval); NULL for an informational check. ``passed``
    #: mirrors it (an inconclusive check has ``passed`` NULL).
    verdict: Mapped[CheckVerdict | None] = mapped_column(String(16))
    required: Mapped[bool] = mapped_column(Boolean, default=True)
    message: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)

    stage_result: Mapped[StageResult] = relationship(back_populates="checks", lazy="raise")


class Signoff(Base):
    __tablename__ = "signoffs"
    __table_args__ = (UniqueConstraint("run_id", "approver"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("certification_runs.id", ondelete="RESTRICT"), index=True)
    approver: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(64))
    #: approve | decline
    decision: Mapped[str] = mapped_column(String(16))
    #: The evidence the approver saw; an approval of another digest never counts.
    evidence_digest: Mapped[str] = mapped_column(String(64))
    comment: Mapped[str] = mapped_column(Text, default="")
    #: How the identity was established: "cli:os-user", "api:airflow-token", …
    authenticated_via: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Certificate(Base):
    __tablename__ = "certificates"
    __table_args__ = (UniqueConstraint("run_id"),
                      *(CheckConstraint(sql, name=n) for n, sql in STATE_CHECKS["certificates"].items()))

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    run_id: Mapped[str] = mapped_column(ForeignKey("certification_runs.id", ondelete="RESTRICT"))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="RESTRICT"), index=True)
    #: Changed only by ``modelcert.lifecycle``; ``superseded`` names the newer certificate in ``status_reason``.
    status: Mapped[CertificateStatus] = mapped_column(String(16), default="valid")
    status_reason: Mapped[str] = mapped_column(Text, default="")
    evidence_digest: Mapped[str] = mapped_column(String(64))
    approvers: Mapped[list[Any]] = mapped_column(default=list)
    valid_from: Mapped[datetime] = mapped_column()
    valid_until: Mapped[datetime] = mapped_column()
    issued_at: Mapped[datetime] = mapped_column(server_default=func.now())
    last_checked_at: Mapped[datetime | None] = mapped_column()


class Finding(Base):
    """One entry of the findings register: a failed, inconclusive or waived check of a decided run
    (``modelcert.findings``). Written by the gate, accepted by the role the risk policy names, carried over to the
    next version's run until closed."""

    __tablename__ = "findings"
    __table_args__ = (UniqueConstraint("run_id", "key"),
                      *(CheckConstraint(sql, name=n) for n, sql in VERDICT_CHECKS["findings"].items()))

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("certification_runs.id", ondelete="RESTRICT"), index=True)
    #: ``<stage>.<check>[<subject>]``: the same key in the next version's run is the same finding.
    key: Mapped[str] = mapped_column(String(512))
    model_name: Mapped[str] = mapped_column(String(128), index=True)
    severity: Mapped[FindingSeverity] = mapped_column(String(8))
    #: fail | inconclusive (a waived check's failure is ``fail`` with ``required`` false).
    verdict: Mapped[CheckVerdict] = mapped_column(String(16))
    required: Mapped[bool] = mapped_column(Boolean)
    message: Mapped[str] = mapped_column(Text, default="")
    meaning: Mapped[str] = mapped_column(Text, default="")
    owner: Mapped[str] = mapped_column(String(128))
    remediation: Mapped[str] = mapped_column(Text, default="")
    #: Whether the run cannot be signed off while this finding is open (the policy's rule, fixed at decide).
    blocking: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The role that may accept it (the policy's ``inconclusive.by`` or ``findings.accept_by``).
    accept_role: Mapped[str] = mapped_column(String(64))
    status: Mapped[FindingStatus] = mapped_column(String(16), default="open")
    accepted_by: Mapped[str | None] = mapped_column(String(128))
    accepted_role: Mapped[str | None] = mapped_column(String(64))
    #: Why it was accepted (written by the acceptor) or closed (written by modelcert).
    reason: Mapped[str] = mapped_column(Text, default="")
    #: The evidence digest the acceptor saw; an acceptance of another digest never counts.
    evidence_digest: Mapped[str | None] = mapped_column(String(64))
    accepted_at: Mapped[datetime | None] = mapped_column()
    carried_from: Mapped[int | None] = mapped_column(ForeignKey("findings.id", ondelete="RESTRICT"), index=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class AuditEvent(Base):
    """Append-only, hash-chained. UPDATE and DELETE are refused by a trigger (see the migration)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    ts: Mapped[datetime] = mapped_column(server_default=func.now())
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64), index=True)
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class Dossier(Base):
    """A document generated from a run's evidence (report, model card, regulation dossier): its sha256 is
    recorded here and sealed into the audit chain like other evidence. Once the run has a certificate the
    dossier is ``frozen``: regenerating it must give the same bytes; if it does not (a library changed its
    output), a new version is recorded that names the one it replaces (``supersedes_id``)."""

    __tablename__ = "dossiers"
    __table_args__ = (UniqueConstraint("run_id", "kind", "format", "version"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("certification_runs.id", ondelete="RESTRICT"), index=True)
    #: report | model-card | eu-ai-act | nyc-ll144 | sr-26-2 | colorado
    kind: Mapped[str] = mapped_column(String(32))
    #: html | pdf | json | md
    format: Mapped[str] = mapped_column(String(8))
    version: Mapped[int] = mapped_column(Integer, default=1)
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    frozen: Mapped[bool] = mapped_column(Boolean, default=False)
    certificate_id: Mapped[str | None] = mapped_column(ForeignKey("certificates.id", ondelete="RESTRICT"))
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("dossiers.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
