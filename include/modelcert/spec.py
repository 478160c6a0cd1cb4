"""The certification spec: a strict pydantic schema and a loader that turns every problem into a message
naming the field and what is allowed (never a traceback for the user)."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from modelcert.errors import SpecError
from modelcert.thresholds import Threshold

Scalar = Union[bool, int, float, str]
RISK_TIERS = ("low", "medium", "high")

#: Approvals required when the spec does not name them, per risk tier (distinct people, one role each).
DEFAULT_SIGNOFF: dict[str, dict[str, int]] = {
    "low": {"model_validator": 1},
    "medium": {"model_validator": 1},
    "high": {"model_validator": 1, "risk_officer": 1},
}

PERFORMANCE_METRICS = (
    "accuracy",
    "balanced_accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "brier_score",
    "expected_calibration_error",
    "latency_p50_ms",
    "latency_p95_ms",
    "model_size_mb",
)
FAIRNESS_METRICS = (
    "disparate_impact",
    "statistical_parity_difference",
    "equal_opportunity_difference",
    "average_odds_difference",
    "false_positive_rate_difference",
    "false_negative_rate_difference",
    "base_rate_difference",
)
ATTACKS = ("hop_skip_jump", "fgsm", "pgd")
DECLARATIONS = ("intended_use", "owner", "risk_tier", "data_retention_days", "consent_basis")

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: Any) -> timedelta:
    """'90d', '12h', '30m', '45s', '2w' or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=float(value))
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
        if value.startswith("P"):  # ISO 8601, as stored in the run's spec JSON
            from pydantic import TypeAdapter

            try:
                return TypeAdapter(timedelta).validate_python(value)
            except ValidationError:
                pass
    raise ValueError(f"{value!r} is not a duration; use a number with a unit s, m, h, d or w, e.g. '7d' or '12h'")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSection(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
    version: str = Field(min_length=1, max_length=64)
    #: The submitter: accountable for the model, never one of its approvers.
    owner: str = Field(min_length=1)
    artifact: str | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    format: Literal["skops", "joblib"] | None = None
    task: Literal["binary_classification"] = "binary_classification"
    #: Columns the model consumes, in order. Required with an artifact.
    features: list[str] | None = None
    #: skops types the owner vouches for beyond skops' defaults (anything else is refused).
    trusted_types: list[str] = []

    @field_validator("version", mode="before")
    @classmethod
    def _version_str(cls, v: Any) -> Any:
        return str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _artifact_needs_hash(self) -> "ModelSection":
        if self.artifact is not None:
            if self.sha256 is None:
                raise ValueError("an artifact needs its sha256 (64 lowercase hex digits): the model is loaded only after it matches")
            if not self.features:
                raise ValueError("an artifact needs 'features': the columns the model consumes")
            if self.format is None:
                suffix = Path(self.artifact).suffix.lower()
                fmt = {".skops": "skops", ".joblib": "joblib", ".pkl": "joblib"}.get(suffix)
                if fmt is None:
                    raise ValueError(f"cannot tell the format of {self.artifact!r}; set format: skops or joblib")
                object.__setattr__(self, "format", fmt)
        return self


class PredictionsSection(_Strict):
    """Third-party audit: the model's outputs are a column of the evaluation data."""

    column: str
    #: Values of ``column`` that count as a positive prediction.
    positive: list[Scalar] = Field(min_length=1)
    #: Optional numeric score (higher = more positive), for ROC AUC and calibration.
    score_column: str | None = None


class UseCase(_Strict):
    description: str = Field(min_length=1)
    intended_use: str | None = None
    risk_tier: Literal["low", "medium", "high"]
    jurisdictions: list[str] = []
    out_of_scope: list[str] = []


class Governance(_Strict):
    data_retention_days: int | None = Field(default=None, gt=0)
    consent_basis: str | None = None
    pii_columns: list[str] = []
    #: Protected attributes the model may use as features, each with its justification.
    protected_feature_justification: dict[str, str] = {}


class GroupRange(_Strict):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounded(self) -> "GroupRange":
        if self.min is None and self.max is None:
            raise ValueError("a privileged range needs min, max or both")
        return self


class ProtectedAttribute(_Strict):
    #: Listed values, or a numeric range (min inclusive, max exclusive), e.g. {min: 25} for age >= 25.
    privileged: list[Scalar] | GroupRange


class DataSection(_Strict):
    train: str | None = None
    test: str
    #: Drift reference; defaults to the training data.
    reference: str | None = None
    #: Production-like data for drift; drift is not applicable without it.
    current: str | None = None
    label: str
    #: Label value that is the positive class (what the model predicts as 1).
    positive_label: Scalar = 1
    #: Label value that is the favorable outcome for the person (e.g. 0 = "does not reoffend").
    favorable_label: Scalar = 1
    protected_attributes: dict[str, ProtectedAttribute] = Field(min_length=1)
    min_group_size: int = Field(default=30, ge=1)
    sha256: dict[str, Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = {}

    @model_validator(mode="after")
    def _labels(self) -> "DataSection":
        bad = set(self.sha256) - {"train", "test", "reference", "current"}
        if bad:
            raise ValueError(f"sha256 keys {sorted(bad)} are not datasets; allowed: train, test, reference, current")
        return self


class DataQualityChecks(_Strict):
    null_fraction: Threshold = Threshold(max=0.05)
    duplicate_fraction: Threshold = Threshold(max=0.05, required=False)
    #: Share of test rows also present in train (by row hash).
    leakage_fraction: Threshold = Threshold(max=0.0)
    value_sets: dict[str, list[Scalar]] = {}
    ranges: dict[str, GroupRange] = {}
    dtypes: dict[str, Literal["numeric", "string", "boolean"]] = {}


def _threshold_map(allowed: tuple[str, ...]):
    def check(v: dict[str, Any]) -> dict[str, Any]:
        bad = sorted(set(v) - set(allowed))
        if bad:
            raise ValueError(f"unknown metric(s) {bad}; allowed: {', '.join(allowed)}")
        return v

    return check


class RobustnessChecks(_Strict):
    attacks: list[Literal["hop_skip_jump", "fgsm", "pgd"]] = ["hop_skip_jump", "fgsm"]
    #: Perturbation budgets as a fraction of each feature's observed range (L-infinity).
    eps: list[Annotated[float, Field(gt=0, le=1)]] = Field(default=[0.05, 0.1], min_length=1)
    min_robust_accuracy: Threshold = Threshold(min=0.6)
    sample_size: int = Field(default=100, ge=10, le=5000)
    seed: int = 0
    #: Numeric features that must not be perturbed (in addition to the protected attributes).
    frozen_features: list[str] = []
    #: Natural perturbation: Gaussian noise with these sigmas (fraction of each feature's std).
    noise_sigma: list[Annotated[float, Field(gt=0)]] = [0.1]
    max_flip_rate: Threshold = Threshold(max=0.1)
    hop_skip_jump_max_iter: int = Field(default=10, ge=1)
    hop_skip_jump_max_eval: int = Field(default=100, ge=10)


class DriftChecks(_Strict):
    max_drifted_share: float = Field(default=0.3, ge=0, le=1)
    #: Evidently's per-column drift threshold; None keeps Evidently's default per test.
    column_threshold: float | None = None
    columns: list[str] | None = None
    required: bool = True


class ComplianceChecks(_Strict):
    require: list[Literal["intended_use", "owner", "risk_tier", "data_retention_days", "consent_basis"]] = list(DECLARATIONS)


class Checks(_Strict):
    data_quality: DataQualityChecks = DataQualityChecks()
    performance: Annotated[dict[str, Threshold], BeforeValidator(_threshold_map(PERFORMANCE_METRICS))] = {
        "roc_auc": Threshold(min=0.7),
        "expected_calibration_error": Threshold(max=0.1),
    }
    robustness: RobustnessChecks = RobustnessChecks()
    fairness: Annotated[dict[str, Threshold], BeforeValidator(_threshold_map(FAIRNESS_METRICS))] = {
        "disparate_impact": Threshold(min=0.8, max=1.25),
        "equal_opportunity_difference": Threshold(abs_max=0.1),
    }
    drift: DriftChecks = DriftChecks()
    compliance: ComplianceChecks = ComplianceChecks()


#: Stages a recertification may re-run on production data (compliance judges the spec, not data).
RECERTIFICATION_STAGES = ("data_quality", "drift", "performance", "fairness", "robustness")
DEFAULT_RECERTIFICATION_STAGES = ("data_quality", "drift", "performance", "fairness")
#: Stages that judge predictions against true labels: they need labels in the current data.
LABEL_STAGES = ("performance", "fairness", "robustness")
#: Placeholders of ``recertification.current_data``, filled from the Airflow run's logical date.
CURRENT_DATA_PLACEHOLDERS = ("ds", "ds_nodash")


def _optional_threshold_map(allowed: tuple[str, ...]):
    check = _threshold_map(allowed)

    def optional(v: Any) -> Any:
        return check(v) if isinstance(v, dict) else v

    return optional


class RecertificationChecks(_Strict):
    """Overrides of the top-level ``checks`` for recertification, in the same shape. Only what is given changes:
    a section's fields (data_quality, robustness, drift) replace the certification's; a metric map (performance,
    fairness) adds or replaces metrics, and ``null`` for a metric drops its bound (it becomes informational)."""

    data_quality: DataQualityChecks | None = None
    performance: Annotated[dict[str, Threshold | None], BeforeValidator(_optional_threshold_map(PERFORMANCE_METRICS))] | None = None
    robustness: RobustnessChecks | None = None
    fairness: Annotated[dict[str, Threshold | None], BeforeValidator(_optional_threshold_map(FAIRNESS_METRICS))] | None = None
    drift: DriftChecks | None = None

    @model_serializer(mode="wrap")
    def _only_given(self, handler: Any) -> dict[str, Any]:
        """Serialize only what the spec gave (also inside a section), so a stored spec parses back to the same
        overrides instead of overriding every field with its default."""
        full = handler(self)
        out: dict[str, Any] = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            if isinstance(value, BaseModel):
                out[name] = {k: v for k, v in full[name].items() if k in value.model_fields_set}
            else:
                out[name] = full[name]
        return out

    @model_validator(mode="before")
    @classmethod
    def _no_compliance(cls, v: Any) -> Any:
        if isinstance(v, dict) and "compliance" in v:
            raise ValueError("compliance: judges the spec, not production data; it is not re-run in recertification "
                             "(allowed: data_quality, performance, robustness, fairness, drift)")
        return v


def merge_checks(base: Checks, override: RecertificationChecks | None) -> Checks:
    """The checks a recertification judges: the certification's, with the recertification overrides applied."""
    if override is None:
        return base
    updates: dict[str, Any] = {}
    for name in override.model_fields_set:
        value = getattr(override, name)
        if value is None:
            continue
        current = getattr(base, name)
        if isinstance(value, dict):
            merged = {**current, **value}
            updates[name] = {k: t for k, t in merged.items() if t is not None}
        else:
            updates[name] = current.model_copy(update={f: getattr(value, f) for f in value.model_fields_set})
    return Checks.model_validate({**{k: getattr(base, k) for k in Checks.model_fields}, **updates})


class RecertificationSection(_Strict):
    """How the scheduled recertification re-checks a certified model on production data."""

    #: A file, or a glob (the newest match wins), relative to the spec's folder. ``{ds}`` (YYYY-MM-DD) and
    #: ``{ds_nodash}`` are the recertification run's logical date, e.g. "../prod/german_credit_{ds}.csv".
    current_data: str = Field(min_length=1)
    #: Stages re-run on the current data. Default: data_quality, drift, performance, fairness (the last two are
    #: recorded not applicable when the current data has no labels).
    stages: list[Literal["data_quality", "drift", "performance", "fairness", "robustness"]] | None = Field(
        default=None, min_length=1)
    #: Whether the current data holds true labels (``data.label``); performance, fairness and robustness need them.
    labels_available: bool = False
    #: Threshold overrides for recertification (stricter or looser than at certification).
    checks: RecertificationChecks = RecertificationChecks()
    #: A certificate whose validity ends within this many days is flagged for ops.
    expiring_within_days: int = Field(default=14, ge=0, le=3650)

    @field_validator("current_data")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        import string

        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(v) if f is not None]
        except ValueError as exc:
            raise ValueError(f"{v!r} is not a valid template ({exc}); placeholders are "
                             + ", ".join("{" + p + "}" for p in CURRENT_DATA_PLACEHOLDERS)) from exc
        bad = sorted({f for f in fields if f not in CURRENT_DATA_PLACEHOLDERS})
        if bad:
            raise ValueError(f"unknown placeholder(s) {', '.join('{' + b + '}' for b in bad)} in {v!r}; allowed: "
                             + ", ".join("{" + p + "}" for p in CURRENT_DATA_PLACEHOLDERS))
        return v

    @field_validator("stages", mode="before")
    @classmethod
    def _stages(cls, v: Any) -> Any:
        if isinstance(v, list):
            if "compliance" in v:
                raise ValueError("compliance judges the spec, not production data; it is not re-run in recertification "
                                 f"(allowed: {', '.join(RECERTIFICATION_STAGES)})")
            dupes = sorted({s for s in v if isinstance(s, str) and v.count(s) > 1})
            if dupes:
                raise ValueError(f"stage(s) {dupes} listed more than once")
        return v

    @model_validator(mode="after")
    def _labels(self) -> "RecertificationSection":
        if self.stages is not None and not self.labels_available:
            need = [s for s in self.stages if s in LABEL_STAGES]
            if need:
                raise ValueError(f"stages {need} judge predictions against true labels, but labels_available is false; "
                                 "set labels_available: true (the current data has the label column) or drop them")
        return self

    @property
    def effective_stages(self) -> list[str]:
        """The stages re-run, in a fixed order."""
        chosen = self.stages if self.stages is not None else DEFAULT_RECERTIFICATION_STAGES
        return [s for s in RECERTIFICATION_STAGES if s in chosen]


class Signoff(_Strict):
    #: Approvals needed per role, from distinct people. Defaults by risk tier (DEFAULT_SIGNOFF).
    required: dict[str, Annotated[int, Field(ge=1, le=10)]] | None = None
    timeout: Duration = timedelta(days=7)


class CertificateSection(_Strict):
    valid_for: Duration = timedelta(days=90)


class CertificationSpec(_Strict):
    spec_version: Literal[1] = 1
    model: ModelSection
    predictions: PredictionsSection | None = None
    use_case: UseCase
    governance: Governance = Governance()
    data: DataSection
    checks: Checks = Checks()
    signoff: Signoff = Signoff()
    certificate: CertificateSection = CertificateSection()
    #: Optional: how the schedule recertifies the certified model on production data.
    recertification: RecertificationSection | None = None

    @field_validator("recertification")
    @classmethod
    def _recertification_applies(cls, v: RecertificationSection | None, info: Any) -> RecertificationSection | None:
        if v is None or v.stages is None:
            return v
        data, model = info.data.get("data"), info.data.get("model")
        if "drift" in v.stages and data is not None and data.reference is None and data.train is None:
            raise ValueError("stages lists drift, but the spec has no data.reference or data.train: drift in "
                             "recertification compares against the certification-time reference")
        if "robustness" in v.stages and model is not None and model.artifact is None:
            raise ValueError("stages lists robustness, but the spec has no model.artifact (predictions-only audit): "
                             "attacks need the model itself")
        return v

    @model_validator(mode="after")
    def _model_or_predictions(self) -> "CertificationSpec":
        if self.model.artifact is None and self.predictions is None:
            raise ValueError("give either model.artifact (with sha256 and features) or predictions (a column of the test data)")
        if self.model.artifact is not None and self.predictions is not None:
            raise ValueError("give model.artifact or predictions, not both")
        return self

    @property
    def required_approvals(self) -> dict[str, int]:
        return dict(self.signoff.required or DEFAULT_SIGNOFF[self.use_case.risk_tier])

    @property
    def is_audit(self) -> bool:
        """True for a third-party audit from predictions alone (no model artifact)."""
        return self.model.artifact is None


def _loc(err: dict[str, Any]) -> str:
    return ".".join(str(p) for p in err["loc"]) or "(top level)"


def _message(err: dict[str, Any]) -> str:
    kind = err["type"]
    loc = _loc(err)
    if kind == "extra_forbidden":
        return f"{loc}: unknown key (not part of the spec schema; check the spelling)"
    if kind == "missing":
        return f"{loc}: required field is missing"
    if kind in ("literal_error", "enum"):
        return f"{loc}: {err['input']!r} is not allowed; {err['msg'].replace('Input should be', 'expected')}"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{loc}: {msg} (got {err.get('input')!r})" if kind != "value_error" else f"{loc}: {msg}"


def parse_spec(data: Any, *, source: str | None = None) -> CertificationSpec:
    """Validate a spec already parsed from YAML/JSON."""
    if not isinstance(data, dict):
        raise SpecError(f"the spec must be a mapping at the top level, got {type(data).__name__}", source=source)
    try:
        return CertificationSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError([_message(e) for e in exc.errors()], source=source) from exc


def load_spec(path: str | os.PathLike[str]) -> tuple[CertificationSpec, str]:
    """Read and validate a spec file. Returns the spec and its raw text (hashed into the evidence digest)."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"spec file {str(p)!r} does not exist", source=str(p))
    text = p.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"malformed YAML{where}: {problem}", source=str(p)) from exc
    return parse_spec(data, source=str(p)), text


def resolve_path(value: str, base_dir: Path) -> Path:
    """Dataset and artifact paths: environment variables expanded, relative paths taken from the spec's folder."""
    expanded = os.path.expandvars(os.path.expanduser(value))
    p = Path(expanded)
    return p if p.is_absolute() else (base_dir / p).resolve()
