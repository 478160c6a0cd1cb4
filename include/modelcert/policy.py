"""The risk policy: the bar a spec must meet, set by the model-risk function and never by the submitter.

The submitter writes the spec, so the spec cannot be trusted to choose its own thresholds, how its model is
loaded, which checks may merely warn, or who signs it off. The policy file (``include/config/policy.yaml`` or
``MODELCERT_POLICY_FILE``) is reviewed, versioned and changed only through ``modelcert policy apply``
(:mod:`modelcert.policy_store`); every refusal names its ``version`` and sha256 so a decision can be traced to
the exact text in force. Per risk tier it holds: the artifact formats, the mandatory stages and checks, the
floor of each threshold (spec vocabulary: min, max, abs_max, between), the checks that may be warnings, the
minimum robustness evidence, the sign-off quorum, the maximum certificate validity and the recertification
cadence. How a spec is held to it — tighten, never loosen — is :mod:`modelcert.policy_rules`.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictStr,
    ValidationError,
    model_validator,
)

from modelcert.errors import ModelcertError, SpecError
from modelcert.thresholds import Threshold
from modelcert.vocabulary import CHECKS, KNOWN_CHECKS, RISK_TIERS, Declaration, parse_duration, tier_message
from modelcert.vocabulary import format_duration as format_duration  # re-exported: part of this module's interface

if TYPE_CHECKING:
    from modelcert.spec import CertificationSpec

POLICY_ENV = "MODELCERT_POLICY_FILE"
DEFAULT_POLICY_FILE = Path(__file__).resolve().parents[1] / "config" / "policy.yaml"
#: A policy is a short, human-reviewed file; anything bigger is a mistake (or an attack on the loader).
MAX_POLICY_BYTES = 256 * 1024
ArtifactFormat = Literal["skops", "joblib"]
Stage = Literal["data_quality", "performance", "robustness", "fairness", "drift", "compliance", "explainability"]



class PolicyError(ModelcertError):
    """The policy file is missing or malformed: nothing can be certified against an unknown bar."""


def _short(value: object, limit: int = 80) -> str:
    """A user-supplied value as it may appear in a message: repr'd and bounded."""
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_name(value: Any) -> Any:
    if isinstance(value, str) and value not in KNOWN_CHECKS:
        stage = value.split(".", 1)[0]
        allowed = ", ".join(f"{stage}.{n}" for n in CHECKS[stage]) if stage in CHECKS else ", ".join(sorted(CHECKS))
        raise ValueError(f"unknown check {_short(value)}; allowed: {allowed}")
    return value


CheckName = Annotated[str, BeforeValidator(_check_name)]
PolicyDuration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


Role = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Severity = Literal["high", "medium", "low"]


class StatisticsPolicy(_Strict):
    """The statistical bar of interval-aware verdicts (a spec's ``statistics:`` may only tighten it)."""

    #: Error rate per run across a stage's judged comparisons (0.05 = 95% intervals); a spec may only lower it.
    alpha: float = Field(default=0.05, gt=0, le=0.2)
    #: ``holm`` (family-wise error, stricter) or ``bh`` (Benjamini-Hochberg false-discovery rate). Under ``bh`` a
    #: spec may ask for ``holm``; under ``holm`` a spec asking ``bh`` is refused.
    multiple_testing: Literal["holm", "bh"] = "holm"
    #: The fewest bootstrap resamples an interval may rest on; a spec may ask for more.
    min_bootstrap_resamples: int = Field(default=1000, ge=200, le=100_000)


class InconclusivePolicy(_Strict):
    """What an *inconclusive* required check (its interval straddles the bound) does to a certification run:
    ``reject`` (more data may settle it), ``accept_risk`` (awaiting sign-off, but a certificate is issued only
    once a holder of ``by`` accepted the finding, with a reason) or ``warn`` (awaiting sign-off; the approvers
    are shown a warning). Recertification never suspends on it: it flags the certificate for attention."""

    action: Literal["reject", "accept_risk", "warn"] = "reject"
    by: Role | None = None

    @model_validator(mode="after")
    def _who(self) -> InconclusivePolicy:
        if self.action == "accept_risk" and self.by is None:
            raise ValueError("inconclusive.by: required when action is accept_risk (the role that accepts the risk)")
        return self


class FindingsPolicy(_Strict):
    """The findings register: who accepts open findings, and which severities block sign-off until accepted."""

    accept_by: Role = "model_validator"
    block_signoff_on: list[Severity] = []


class TierPolicy(_Strict):
    """What one risk tier demands."""

    #: Artifact formats a model of this tier may be handed over in. joblib (pickle) is always isolated.
    allowed_artifact_formats: list[ArtifactFormat] = Field(min_length=1)
    #: Reviewed skops types allowed for this tier only, on top of the global list.
    skops_trusted_types: list[StrictStr] = []
    #: Stages that must judge something: a spec cannot switch them off (``checks.drift.required: false``) or
    #: leave them without a required check.
    mandatory_stages: list[Stage] = []
    #: Checks every spec of the tier is judged on; a spec that omits one gets its floor as the bound.
    mandatory_checks: list[CheckName] = []
    #: The loosest bound the tier accepts per check, in the spec vocabulary. A spec may only tighten it.
    floors: dict[CheckName, Threshold] = {}
    #: Checks whose failure may be a warning (``required: false``): ``<stage>.<check>`` or ``<stage>.*``.
    allow_warning: list[StrictStr] = []
    #: Declarations the compliance stage must find (``checks.compliance.require`` may add, never drop).
    required_declarations: list[Declaration] = []
    #: A regulation dossier required by the spec's ``use_case.jurisdictions`` (``modelcert.dossier.frameworks``)
    #: with an item no evidence or declaration covers: a failed compliance check (``fail``) or a warning.
    dossier_gaps: Literal["fail", "warn"] = "warn"
    #: Minimum robustness evidence: attacks actually executed on the model (predictions-only audits exempt).
    min_attacks_executed: int = Field(default=0, ge=0, le=3)
    #: The sign-off quorum: approvals per role, from distinct people. A spec may add roles or raise counts.
    signoff: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")], Annotated[int, Field(ge=1, le=10)]] = Field(
        min_length=1)
    #: The longest a certificate of this tier may be valid (``certificate.valid_for`` may be shorter).
    max_validity: PolicyDuration
    #: A valid certificate is re-checked on production data at most this often (``recertify.find_targets``
    #: skips one checked more recently).
    recertify_every: PolicyDuration
    #: The statistical bar of interval-aware verdicts (alpha, multiple-testing method, bootstrap resamples).
    statistics: StatisticsPolicy = StatisticsPolicy()
    #: What an inconclusive required check does (reject / accept_risk by a role / warn).
    inconclusive: InconclusivePolicy = InconclusivePolicy()
    #: Who accepts findings, and which severities block sign-off until accepted.
    findings: FindingsPolicy = FindingsPolicy()

    @model_validator(mode="after")
    def _consistent(self) -> TierPolicy:
        missing = [c for c in self.mandatory_checks if c not in self.floors]
        if missing:
            raise ValueError(f"mandatory_checks {missing} have no floor; give each a bound under floors")
        for pattern in self.allow_warning:
            stage, _, name = pattern.partition(".")
            if stage not in CHECKS or not (name == "*" or name in CHECKS[stage]):
                raise ValueError(f"allow_warning: unknown check {_short(pattern)}; use <stage>.<check> or <stage>.*")
        both = [c for c in self.mandatory_checks if c in self.allow_warning]
        if both:
            raise ValueError(f"{both} are both mandatory and allowed as warnings; a mandatory check is required")
        drift = self.floors.get("drift.max_drifted_share")
        if drift is not None and (drift.max is None or drift.min is not None or drift.abs_max is not None
                                  or drift.between is not None):
            raise ValueError("floors.drift.max_drifted_share: only a max is allowed (the share of drifted columns)")
        return self

    def may_warn(self, check: str) -> bool:
        """Whether ``check`` (``<stage>.<name>``) may be a warning: listed, or its stage wildcard is, and it
        is not mandatory."""
        if check in self.mandatory_checks:
            return False
        return check in self.allow_warning or f"{check.split('.', 1)[0]}.*" in self.allow_warning


class Policy(_Strict):
    """One version of the risk policy; ``sha256``, ``source`` and ``text`` identify the file it was read from."""

    version: StrictStr = Field(min_length=1, max_length=64)
    #: skops types a validator reviewed, valid for every tier.
    skops_trusted_types: list[StrictStr] = []
    tiers: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,15}$")], TierPolicy]
    _sha256: str = PrivateAttr(default="")
    _source: str = PrivateAttr(default="")
    _text: str = PrivateAttr(default="")

    @model_validator(mode="after")
    def _every_spec_tier_is_covered(self) -> Policy:
        missing = [t for t in RISK_TIERS if t not in self.tiers]
        if missing:
            raise ValueError(f"tiers: no entry for risk tier(s) {missing}; low, medium and high always need one")
        return self

    @property
    def sha256(self) -> str:
        return self._sha256

    @property
    def source(self) -> str:
        return self._source

    @property
    def text(self) -> str:
        """The exact text that was hashed (stored when applied, so the policy can be reproduced)."""
        return self._text

    @property
    def label(self) -> str:
        """How a message names this policy: version and the start of its hash."""
        return f"policy {self.version} sha256 {self._sha256[:8]}…" if self._sha256 else f"policy {self.version}"

    @property
    def identity(self) -> dict[str, str]:
        """What a run records of the policy it was judged under (``run.evidence.policy``)."""
        return {"version": self.version, "sha256": self._sha256}

    def tier(self, name: str) -> TierPolicy:
        try:
            return self.tiers[name]
        except KeyError:
            raise SpecError(tier_message(name, self)) from None

    def trusted_types(self, tier: str) -> frozenset[str]:
        """The reviewed skops types for a tier: the global list plus the tier's own."""
        return frozenset(self.skops_trusted_types) | frozenset(self.tier(tier).skops_trusted_types)


class _NoDuplicateKeys(yaml.SafeLoader):
    """SafeLoader that refuses a repeated key: a reviewer reading the first value must not be overruled."""


def _construct_mapping(loader: _NoDuplicateKeys, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {_short(repr(key))}",
                                                    key_node.start_mark)
        seen.add(key)
    return dict(loader.construct_pairs(node, deep=deep))


_NoDuplicateKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

_cache: dict[tuple[str, int, int], Policy] = {}


def policy_path(path: str | Path | None = None) -> Path:
    """The policy file in force: ``path``, else ``MODELCERT_POLICY_FILE``, else the shipped file."""
    return Path(path or os.environ.get(POLICY_ENV) or DEFAULT_POLICY_FILE).resolve()


def load_policy(path: str | Path | None = None) -> Policy:
    """The policy at ``path`` (default: :func:`policy_path`), cached by path and mtime so each stage does not
    re-parse it, yet an edited file takes effect at once (and is then refused by the in-force check of
    :mod:`modelcert.policy_store` until it is applied)."""
    p = policy_path(path)
    try:
        st = p.stat()
    except OSError:
        raise PolicyError(f"policy: file {_short(str(p))} does not exist (set {POLICY_ENV})") from None
    key = (str(p), st.st_mtime_ns, st.st_size)
    if key in _cache:
        return _cache[key]
    if st.st_size > MAX_POLICY_BYTES:
        raise PolicyError(f"policy: {_short(str(p))} has {st.st_size} bytes; at most {MAX_POLICY_BYTES} allowed")
    policy = parse_policy(p.read_bytes(), source=str(p))
    _cache.clear()  # one policy in force per process; do not grow with every edit
    _cache[key] = policy
    return policy


def parse_policy(raw: bytes, *, source: str) -> Policy:
    """Validate a policy's bytes (no cache): what ``policy apply`` checks before anything is written."""
    where = _short(source)
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError(f"policy: {where} has {len(raw)} bytes; at most {MAX_POLICY_BYTES} allowed")
    try:
        text = raw.decode("utf-8")
        # No aliases: a reviewed policy has no need for them, and a few hundred bytes of nested aliases expand
        # to gigabytes (checked on the event stream, before anything is constructed).
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise PolicyError(f"policy: {where} uses a YAML alias at line {event.start_mark.line + 1}; "
                                  "aliases are not allowed in the policy")
        data = yaml.load(text, Loader=_NoDuplicateKeys)  # noqa: S506 - a SafeLoader subclass
    except UnicodeDecodeError:
        raise PolicyError(f"policy: {where} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise PolicyError(f"policy: {where} is not valid YAML{line}: "
                          f"{_short(getattr(exc, 'problem', None) or exc)}") from None
    if not isinstance(data, dict):
        raise PolicyError(f"policy: {where} must be a mapping with version, skops_trusted_types, tiers")
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = "".join(f".{x}" for x in first["loc"] if not (isinstance(x, str) and "[" in x))
        raise PolicyError(f"policy{loc}: {_short(first['msg'].removeprefix('Value error, '), 160)} "
                          f"(in {where}; {exc.error_count()} problem(s))") from None
    policy._sha256 = hashlib.sha256(raw).hexdigest()
    policy._source = source
    policy._text = text
    return policy


def problems(spec: CertificationSpec, policy: Policy) -> list[str]:
    """Every way ``spec`` breaks ``policy``, one line each (empty when it complies)."""
    from modelcert.policy_rules import spec_problems

    return spec_problems(spec, policy)


def enforce(spec: CertificationSpec, policy: Policy | None = None) -> None:
    """Refuse a spec the policy does not allow, with one line per problem (raises SpecError)."""
    policy = policy if policy is not None else load_policy()
    found = problems(spec, policy)
    if found:
        raise SpecError(found)


def effective(spec: CertificationSpec, policy: Policy | None = None) -> CertificationSpec:
    """The spec the stages judge: every bound the stricter of floor and spec, the omitted mandatory checks at
    their floor, the policy quorum merged in, the validity capped. Refuses (SpecError) a spec that loosens."""
    from modelcert.policy_rules import effective_spec

    policy = policy if policy is not None else load_policy()
    enforce(spec, policy)
    return effective_spec(spec, policy)


#: A schedule fires a little early or late; a certificate checked ``recertify_every`` minus this long ago is due,
#: so a daily DAG with a one-day cadence re-checks every day rather than every other day.
CADENCE_SLACK = timedelta(hours=1)


def recertification_due(tier: str, last_checked_at: datetime | None, now: datetime) -> bool:
    """Whether a valid certificate of ``tier`` is due for recertification under the policy in force: never
    checked yet, or last checked at least the tier's ``recertify_every`` (less :data:`CADENCE_SLACK`) ago."""
    if last_checked_at is None:
        return True
    policy = load_policy()
    if tier not in policy.tiers:
        return True
    return now - last_checked_at >= policy.tiers[tier].recertify_every - CADENCE_SLACK
