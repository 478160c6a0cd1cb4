"""The certification spec: a strict pydantic schema and a loader that turns every problem into a message
naming the field and what is allowed (never a traceback for the user)."""

from __future__ import annotations

import math
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from modelcert import safe_yaml
from modelcert.errors import SpecError
from modelcert.safe_yaml import short
from modelcert.thresholds import Threshold
from modelcert.vocabulary import DOCUMENTATION_FIELDS as DOCUMENTATION_FIELDS  # re-exported
from modelcert.vocabulary import FAIRNESS_METRICS, PERFORMANCE_METRICS, Declaration, parse_duration, tier_message
from modelcert.vocabulary import MAX_DURATION as MAX_DURATION  # re-exported: part of this module's interface
from modelcert.vocabulary import RISK_TIERS as RISK_TIERS  # re-exported: part of this module's interface


def _scalar(v: Any) -> Any:
    """A label, group or category value: a string, an integer, a finite number or a boolean, nothing else."""
    if isinstance(v, (bool, int, str)) or (isinstance(v, float) and math.isfinite(v)):
        return v
    raise ValueError(f"{short(v)} is not allowed; expected a string, an integer, a finite number or a boolean")


Scalar = Annotated[bool | int | float | str, PlainValidator(_scalar)]
RISK_TIER_PATTERN = r"^[a-z][a-z0-9_]{0,15}$"

ATTACKS = ("hop_skip_jump", "fgsm", "pgd")
DECLARATIONS = ("intended_use", "owner", "risk_tier", "data_retention_days", "consent_basis")

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    #: NaN and infinities are never a meaningful bound or value in a spec (and cannot be stored as JSONB).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


#: Identifiers stored in bounded database columns and shown in the UI: a pattern, not an escape, keeps them
#: safe (no SQL/HTML metacharacters, no look-alike unicode that could let an owner pass as an approver).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+\-]{0,63}$"
PERSON_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,127}$"
#: What each pattern allows, for the message that refuses a value.
PATTERN_HELP = {
    NAME_PATTERN: "1-128 ASCII letters, digits, '_', '.', '-', starting with a letter or digit",
    VERSION_PATTERN: "1-64 ASCII letters, digits, '_', '.', '+', '-', starting with a letter or digit, as a "
                     "quoted string",
    PERSON_PATTERN: "1-128 ASCII letters, digits, '_', '.', '@', '-' (a login name), starting with a letter or digit",
}
#: A column name as it appears in a CSV header (also a check subject, a 256-character column).
Column = Annotated[str, Field(min_length=1, max_length=200)]
#: Free text shown to approvers; unicode is fine (stored as parameters, escaped in HTML), length is bounded.
Text = Annotated[str, Field(min_length=1, max_length=2000)]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]
#: A file path as written in the spec (resolved and confined to the data roots by ``resolve_path``).
PathText = Annotated[str, Field(min_length=1, max_length=1024)]
MAX_COLUMNS = 10_000


class ModelSection(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    #: A quoted string: YAML reads 1.10 as the number 1.1, so numbers are refused.
    version: str = Field(pattern=VERSION_PATTERN)
    #: The submitter: accountable for the model, never one of its approvers.
    owner: str = Field(pattern=PERSON_PATTERN)
    artifact: PathText | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    format: Literal["skops", "joblib"] | None = None
    task: Literal["binary_classification"] = "binary_classification"
    #: Columns the model consumes, in order. Required with an artifact.
    features: list[Column] | None = Field(default=None, max_length=MAX_COLUMNS)
    #: The model takes missing feature values itself (e.g. HistGradientBoosting). Otherwise a null in a model
    #: feature is refused before anything runs, naming the column, instead of crashing the prediction.
    accepts_missing: bool = False
    #: skops types the owner vouches for beyond skops' defaults (anything else is refused).
    trusted_types: list[ShortText] = []

    @field_validator("version", mode="before")
    @classmethod
    def _version_str(cls, v: Any) -> Any:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            raise ValueError(f"the number {short(v)} is not allowed: YAML reads 1.10 as 1.1; quote the version, "
                             f"e.g. version: \"{short(v, 20)}\"")
        return v

    @model_validator(mode="after")
    def _artifact_needs_hash(self) -> ModelSection:
        if self.artifact is not None:
            if self.sha256 is None:
                raise ValueError("an artifact needs its sha256 (64 lowercase hex digits): "
                                 "the model is loaded only after it matches")
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

    column: Column
    #: Values of ``column`` that count as a positive prediction.
    positive: list[Scalar] = Field(min_length=1, max_length=1000)
    #: Optional numeric score (higher = more positive), for ROC AUC and calibration.
    score_column: Column | None = None


class UseCase(_Strict):
    description: Text
    intended_use: Text | None = None
    #: A tier of the risk policy in force (checked when a submitted spec is loaded; a stored spec keeps the tier
    #: it was judged under even if a later policy drops it).
    risk_tier: str = Field(pattern=RISK_TIER_PATTERN)
    jurisdictions: list[ShortText] = Field(default=[], max_length=100)
    out_of_scope: list[ShortText] = Field(default=[], max_length=100)

    @field_validator("risk_tier")
    @classmethod
    def _policy_tier(cls, v: str, info: Any) -> str:
        policy = (info.context or {}).get("policy")
        if policy is not None and v not in policy.tiers:
            raise ValueError(tier_message(v, policy).split(": ", 1)[1])
        return v


class Documentation(_Strict):
    """What a reader of the model card and the regulation dossiers needs that no check measures: what the model
    is, why this algorithm, what it assumes and cannot do, where its data came from, who oversees it. Free
    text (each at most 2,000 characters); which fields are required is the risk policy's call
    (``required_declarations``)."""

    #: What the model does, its inputs and output (model card "details"; EU AI Act Annex IV §1, §2(c)).
    model_description: Text | None = None
    #: Why this algorithm and these features (Annex IV §2(b); SR 26-2 conceptual soundness).
    algorithm_rationale: Text | None = None
    #: Assumptions the model relies on (SR 26-2 conceptual soundness).
    assumptions: Text | None = None
    #: Known limitations and conditions where it should not be trusted (Annex IV §3; Colorado).
    limitations: Text | None = None
    #: Ethical considerations and the mitigations taken (model card; Colorado discrimination-risk analysis).
    ethical_considerations: Text | None = None
    #: Where the training data came from, how it was collected and prepared (Art. 10; Colorado).
    training_data_description: Text | None = None
    #: Where the evaluation (test) data came from and why it is representative (Art. 10; LL144 data source).
    evaluation_data_description: Text | None = None
    #: When the evaluation data was collected, e.g. "2013-2014" (LL144: the data's date).
    data_collection_period: ShortText | None = None
    #: How people oversee, override and stop the model in use (Art. 14).
    human_oversight: Text | None = None
    #: How the model is monitored after deployment, beyond the recertification schedule (Annex IV §9; SR 26-2).
    monitoring_plan: Text | None = None
    #: Security measures around the model and its data (Art. 15; Annex IV §2(h)).
    cybersecurity: Text | None = None
    #: Who places the system on the market or develops it (Annex IV §1; Colorado developer).
    provider: ShortText | None = None
    #: Foreseeable misuse and harmful uses (Annex IV §3; Colorado).
    foreseeable_misuse: Text | None = None
    #: Challenger or benchmark models compared with this one, and the result (SR 26-2 benchmarking).
    benchmarking: Text | None = None
    #: How affected people are told that the model is used and how to contest a decision (Art. 13; Colorado).
    transparency: Text | None = None


class Governance(_Strict):
    data_retention_days: int | None = Field(default=None, gt=0, le=36500)
    consent_basis: Text | None = None
    pii_columns: list[Column] = Field(default=[], max_length=MAX_COLUMNS)
    #: Protected attributes the model may use as features, each with its justification.
    protected_feature_justification: dict[Column, Text] = {}


class GroupRange(_Strict):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounded(self) -> GroupRange:
        if self.min is None and self.max is None:
            raise ValueError("a privileged range needs min, max or both")
        return self


#: ``reference: max_rate``: the reference group is the category with the highest favorable selection rate among
#: the judged groups (NYC Local Law 144's impact ratio).
MAX_RATE = "max_rate"
#: At most this many band edges per numeric attribute.
MAX_BANDS = 50


def band_labels(edges: list[float] | tuple[float, ...]) -> list[str]:
    """Stable labels of the groups cut by band edges [25, 40, 60]: ``<25``, ``25-40``, ``40-60``, ``>=60``
    (each band includes its lower edge and excludes its upper one)."""
    e = [f"{x:g}" for x in edges]
    return [f"<{e[0]}", *(f"{a}-{b}" for a, b in zip(e, e[1:], strict=False)), f">={e[-1]}"]


class ProtectedAttribute(_Strict):
    """How one protected attribute is cut into groups, and which group the others are compared with.

    Categorical: every category is a group; the reference is the union of the ``privileged`` values, or
    ``reference: max_rate``. Numeric: ``bands: [25, 40, 60]`` with ``reference: max_rate`` or a band label
    (``"25-40"``), or a ``privileged: {min, max}`` range (two groups: in the range and outside it)."""

    #: Listed values, or a numeric range (min inclusive, max exclusive), e.g. {min: 25} for age >= 25.
    privileged: Annotated[
        Annotated[list[Scalar], Field(min_length=1, max_length=1000), Tag("values")]
        | Annotated[GroupRange, Tag("range")],
        Discriminator(lambda v: "range" if isinstance(v, (dict, GroupRange)) else "values"),
    ] | None = None
    #: ``max_rate``, or (with ``bands``) the label of the reference band.
    reference: ShortText | None = None
    #: Increasing band edges for a numeric attribute.
    bands: list[float] | None = Field(default=None, min_length=1, max_length=MAX_BANDS)

    @model_validator(mode="after")
    def _one_reference(self) -> ProtectedAttribute:
        if self.bands is not None:
            if any(b <= a for a, b in zip(self.bands, self.bands[1:], strict=False)):
                raise ValueError(f"bands {short(self.bands)} must be strictly increasing numbers, e.g. [25, 40, 60]")
            if self.privileged is not None:
                raise ValueError("give bands (with reference) or privileged, not both")
            labels = band_labels(self.bands)
            if self.reference is None or (self.reference != MAX_RATE and self.reference not in labels):
                raise ValueError(f"bands need reference: max_rate or one of the band labels {', '.join(labels)} "
                                 f"(got {short(self.reference)})")
            return self
        if self.privileged is None and self.reference is None:
            raise ValueError("give privileged (the reference values, or a {min, max} range), "
                             "reference: max_rate, or bands with a reference")
        if self.privileged is not None and self.reference is not None:
            raise ValueError("give privileged or reference, not both (reference: max_rate picks the category "
                             "with the highest favorable selection rate)")
        if self.reference is not None and self.reference != MAX_RATE:
            raise ValueError(f"reference {short(self.reference)} is not allowed without bands; allowed: max_rate "
                             "(for a declared category, use privileged: [value])")
        return self

    @property
    def kind(self) -> Literal["categorical", "bands", "privileged_range"]:
        if self.bands is not None:
            return "bands"
        return "privileged_range" if isinstance(self.privileged, GroupRange) else "categorical"


class DataSection(_Strict):
    train: PathText | None = None
    test: PathText
    #: Drift reference; defaults to the training data.
    reference: PathText | None = None
    #: Production-like data for drift; drift is not applicable without it.
    current: PathText | None = None
    label: Column
    #: Label value that is the positive class (what the model predicts as 1).
    positive_label: Scalar = 1
    #: Label value that is the favorable outcome for the person (e.g. 0 = "does not reoffend").
    favorable_label: Scalar = 1
    protected_attributes: dict[Column, ProtectedAttribute] = Field(min_length=1, max_length=100)
    min_group_size: int = Field(default=30, ge=1)
    #: A group with a smaller share of the rows is reported but not judged (NYC LL144's small-category rule).
    min_group_share: float = Field(default=0.02, ge=0, lt=1)
    #: Intersections of protected attributes (2-3 each): every combined category is a group, e.g.
    #: ``[[sex, race]]`` gives "Female × Black". Reference: the combination of the attributes' declared reference
    #: groups, or the highest selection rate when one of them uses ``max_rate``.
    intersections: list[Annotated[list[Column], Field(min_length=2, max_length=3)]] = Field(default=[],
                                                                                         max_length=20)
    sha256: dict[str, Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = {}
    #: Columns present in the datasets that no check uses (an id, a raw date, a field kept for reference).
    #: Every other column must be used by the spec (model feature, label, protected attribute, predictions,
    #: PII, a data-quality rule, drift columns): an undeclared column is refused, so nothing a reviewer cannot
    #: see rides along in the evidence.
    extra_columns: list[Column] = Field(default=[], max_length=MAX_COLUMNS)

    @model_validator(mode="after")
    def _labels(self) -> DataSection:
        bad = set(self.sha256) - {"train", "test", "reference", "current"}
        if bad:
            raise ValueError(f"sha256 keys {short(sorted(bad))} are not datasets; "
                             "allowed: train, test, reference, current")
        seen: set[tuple[str, ...]] = set()
        for i, combo in enumerate(self.intersections):
            unknown = [c for c in combo if c not in self.protected_attributes]
            if unknown:
                raise ValueError(f"intersections.{i}: {short(unknown)} not among protected_attributes "
                                 f"({', '.join(map(str, self.protected_attributes))}); an intersection combines "
                                 "2-3 declared protected attributes")
            if len(set(combo)) != len(combo):
                raise ValueError(f"intersections.{i}: {short(combo)} names an attribute twice")
            key = tuple(sorted(combo))
            if key in seen:
                raise ValueError(f"intersections.{i}: {short(combo)} is listed twice")
            seen.add(key)
        return self


class DataQualityChecks(_Strict):
    null_fraction: Threshold = Threshold(max=0.05)
    duplicate_fraction: Threshold = Threshold(max=0.05, required=False)
    #: Share of test rows also present in train (by row hash).
    leakage_fraction: Threshold = Threshold(max=0.0)
    value_sets: dict[Column, list[Scalar]] = {}
    ranges: dict[Column, GroupRange] = {}
    dtypes: dict[Column, Literal["numeric", "string", "boolean"]] = {}


def _threshold_map(allowed: tuple[str, ...]):
    def check(v: dict[str, Any]) -> dict[str, Any]:
        bad = sorted(map(str, set(v) - set(allowed)))
        if bad:
            raise ValueError(f"unknown metric(s) {short(bad)}; allowed: {', '.join(allowed)}")
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
    frozen_features: list[Column] = []
    #: Natural perturbation: Gaussian noise with these sigmas (fraction of each feature's std).
    noise_sigma: list[Annotated[float, Field(gt=0)]] = [0.1]
    max_flip_rate: Threshold = Threshold(max=0.1)
    hop_skip_jump_max_iter: int = Field(default=10, ge=1)
    hop_skip_jump_max_eval: int = Field(default=100, ge=10)


class DriftChecks(_Strict):
    max_drifted_share: float = Field(default=0.3, ge=0, le=1)
    #: Evidently's per-column drift threshold; None keeps Evidently's default per test.
    column_threshold: float | None = None
    columns: list[Column] | None = None
    required: bool = True
    #: Above this many rows (in data.reference or data.current) drift is computed on a seeded sample of this many
    #: rows per dataset, stratified by the label; its size and sampling error are stored. None = always all rows.
    sample_above: int | None = Field(default=200_000, ge=1_000)


class ExplainabilityChecks(_Strict):
    """Why the model decides (importance), whether its inputs stand in for a protected attribute (proxies), where
    it is weak (slices), and whether it is no worse than the certified version it replaces (champion) or a
    benchmark. The change bounds judge ``champion - challenger`` (a positive value = the new model is worse)."""

    #: Proxy strength: the cross-validated ROC AUC of a probe predicting a protected attribute's privileged group
    #: from the model's own features (0.5 = no information). Judged on its 95% (DeLong) interval.
    max_proxy_auc: Threshold = Threshold(max=0.8, required=False)
    #: Test-data slices (one or two features) whose error rate is significantly above the rest of the data
    #: (Benjamini-Hochberg across every slice tried) by at least ``slice_min_difference``.
    max_weak_slices: Threshold = Threshold(max=0, required=False)
    #: ROC AUC of the champion (or benchmark) minus the challenger's, judged on the paired bootstrap interval.
    roc_auc_max_drop: Threshold = Threshold(max=0.01)
    #: Accuracy of the champion minus the challenger's (informational unless required by the policy or the spec).
    accuracy_max_drop: Threshold = Threshold(max=0.02, required=False)
    #: Per protected attribute: the impact ratio (favorable-rate ratio of the two groups, the smaller over the
    #: larger, so 1 = parity) of the champion minus the challenger's.
    impact_ratio_max_drop: Threshold = Threshold(max=0.05)
    #: Rows of the test data the proxy probe uses (a seeded sample; all rows when fewer).
    sample_size: int = Field(default=2000, ge=100, le=100_000)
    #: Rows of that sample explained for importance (SHAP costs per row; 500 rows rank features stably).
    importance_sample_size: int = Field(default=500, ge=50, le=100_000)
    #: Smallest slice (rows) tried for weak slices.
    min_slice_size: int = Field(default=50, ge=10, le=1_000_000)
    #: The smallest error-rate excess over the rest of the data that makes a significant slice weak.
    slice_min_difference: float = Field(default=0.05, ge=0, le=1)
    #: Quantile bins for a numeric feature in slices and Cramér's V (more distinct values than this).
    numeric_bins: int = Field(default=4, ge=2, le=20)
    #: Slices reported in the evidence (the weakest first).
    top_slices: int = Field(default=10, ge=1, le=100)
    #: Shuffles per feature for permutation importance (when SHAP does not fit the model).
    permutation_repeats: int = Field(default=5, ge=1, le=50)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)


class BenchmarkSection(_Strict):
    """A simple reference model (e.g. a logistic regression) the certified model is compared with, as model-risk
    guidance asks: same test data, same paired bootstrap and change bounds as the champion comparison."""

    artifact: PathText
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    format: Literal["skops", "joblib"] | None = None
    #: The benchmark's input columns; default: the model's ``features``.
    features: list[Column] | None = Field(default=None, max_length=MAX_COLUMNS)
    trusted_types: list[ShortText] = []

    @model_validator(mode="after")
    def _format(self) -> BenchmarkSection:
        if self.format is None:
            fmt = {".skops": "skops", ".joblib": "joblib", ".pkl": "joblib"}.get(Path(self.artifact).suffix.lower())
            if fmt is None:
                raise ValueError(f"cannot tell the format of {self.artifact!r}; set format: skops or joblib")
            object.__setattr__(self, "format", fmt)
        return self


class ComplianceChecks(_Strict):
    #: Declarations that must be present. The risk policy's ``required_declarations`` for the tier are added
    #: to this list by the policy transform (a spec that writes the list must include them).
    require: list[Declaration] = list(DECLARATIONS)


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
    explainability: ExplainabilityChecks = ExplainabilityChecks()


#: Stages a recertification may re-run on production data (compliance judges the spec, not data).
RECERTIFICATION_STAGES = ("data_quality", "drift", "performance", "fairness", "robustness", "explainability")
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
    performance: Annotated[dict[str, Threshold | None],
                           BeforeValidator(_optional_threshold_map(PERFORMANCE_METRICS))] | None = None
    robustness: RobustnessChecks | None = None
    fairness: Annotated[dict[str, Threshold | None],
                        BeforeValidator(_optional_threshold_map(FAIRNESS_METRICS))] | None = None
    drift: DriftChecks | None = None
    explainability: ExplainabilityChecks | None = None

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
                             "(allowed: data_quality, performance, robustness, fairness, drift, explainability)")
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
    current_data: PathText
    #: Stages re-run on the current data. Default: data_quality, drift, performance, fairness (the last two are
    #: recorded not applicable when the current data has no labels).
    stages: list[Literal["data_quality", "drift", "performance", "fairness", "robustness",
                         "explainability"]] | None = Field(
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
    def _labels(self) -> RecertificationSection:
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
    #: Approvals needed per role, from distinct people, on top of the risk policy's quorum for the tier: a spec
    #: may add roles or raise counts, never ask for fewer (``modelcert.policy``).
    required: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")],
                   Annotated[int, Field(ge=1, le=10)]] | None = None
    timeout: Duration = timedelta(days=7)
    #: Set by the policy transform at registration: ``required`` is already the merged quorum (stored specs).
    policy_merged: bool = False


class CertificateSection(_Strict):
    valid_for: Duration = timedelta(days=90)


class Statistics(_Strict):
    """How interval-aware verdicts are computed (fairness, model comparisons). The risk policy's tier sets the bar
    (``statistics:`` in the policy); a spec may only tighten it: a lower ``alpha``, more resamples, ``holm``
    (family-wise error) where the policy allows ``bh`` (false-discovery rate). ``None`` = the policy's value."""

    #: Error rate per run across all judged comparisons of a stage (0.05 = 95% intervals).
    alpha: float | None = Field(default=None, gt=0, le=0.2)
    #: Multiple-comparison control across a stage's comparisons: Holm (family-wise) or Benjamini-Hochberg (FDR).
    multiple_testing: Literal["holm", "bh"] | None = None
    bootstrap_resamples: int | None = Field(default=None, ge=200, le=100_000)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)


class CertificationSpec(_Strict):
    spec_version: Literal[1] = 1
    model: ModelSection
    predictions: PredictionsSection | None = None
    use_case: UseCase
    governance: Governance = Governance()
    documentation: Documentation = Documentation()
    data: DataSection
    checks: Checks = Checks()
    signoff: Signoff = Signoff()
    certificate: CertificateSection = CertificateSection()
    statistics: Statistics = Statistics()
    #: Optional: how the schedule recertifies the certified model on production data.
    recertification: RecertificationSection | None = None
    #: Optional: a reference model the explainability stage compares this model with (``checks.explainability``).
    benchmark: BenchmarkSection | None = None

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
    def _model_or_predictions(self) -> CertificationSpec:
        if self.benchmark is not None and self.model.artifact is None:
            raise ValueError("benchmark: a comparison needs the model itself; a predictions-only audit has no "
                             "model.artifact to compare (remove benchmark)")
        if self.model.artifact is None and self.predictions is None:
            raise ValueError("give either model.artifact (with sha256 and features) "
                             "or predictions (a column of the test data)")
        if self.model.artifact is not None and self.predictions is not None:
            raise ValueError("give model.artifact or predictions, not both")
        return self

    @property
    def required_approvals(self) -> dict[str, int]:
        """The sign-off quorum: the policy tier's quorum merged with the spec's stricter additions (more roles,
        higher counts). A run's stored spec is the effective spec (``modelcert.policy.effective``) whose
        ``signoff.required`` already holds that merge, so a later policy change cannot move a waiting run's bar."""
        from modelcert.policy import load_policy
        from modelcert.policy_rules import merged_quorum

        if self.signoff.required is not None and self.signoff.policy_merged:
            return dict(self.signoff.required)
        return merged_quorum(load_policy().tier(self.use_case.risk_tier).signoff, self.signoff.required)

    @property
    def is_audit(self) -> bool:
        """True for a third-party audit from predictions alone (no model artifact)."""
        return self.model.artifact is None

    @classmethod
    def from_data(cls, data: Any) -> CertificationSpec:
        """:func:`parse_spec` (no policy, no source), reached through a spec in hand: how
        :mod:`modelcert.policy_rules` validates the effective spec it derives without importing this module,
        which needs the policy (and so the rules) itself."""
        return parse_spec(data)


_PYDANTIC_LOC = re.compile(r"^[a-z][a-z0-9_-]*\[.*\]$")


def _loc(err: dict[str, Any]) -> str:
    # pydantic adds its validator names ("function-after[...]", "list[...]") and union tags to the location;
    # the user wrote none of them.
    parts = [str(p) for p in err["loc"]
             if not (isinstance(p, str) and (p in ("[key]", "values", "range") or _PYDANTIC_LOC.match(p)))]
    return ".".join(safe_yaml.clip(p, 40) for p in parts) or "(top level)"


def _message(err: dict[str, Any]) -> str:
    """One line per problem: the field, what is wrong, what is allowed; the offending value bounded."""
    kind = err["type"]
    loc = _loc(err)
    got = short(err.get("input"))
    if kind == "extra_forbidden":
        return f"{loc}: unknown key (not part of the spec schema; check the spelling)"
    if kind == "missing":
        return f"{loc}: required field is missing"
    if kind in ("literal_error", "enum"):
        return f"{loc}: {got} is not allowed; {err['msg'].replace('Input should be', 'expected')}"
    if kind == "finite_number":
        return f"{loc}: {got} is not allowed; expected a finite number (.nan, .inf and -.inf are not)"
    if kind == "string_pattern_mismatch":
        pattern = (err.get("ctx") or {}).get("pattern", "")
        return f"{loc}: {got} is not allowed; expected {PATTERN_HELP.get(pattern, 'a value matching ' + pattern)}"
    msg = safe_yaml.clip(err["msg"].removeprefix("Value error, "), 300)
    return f"{loc}: {msg} (got {got})" if kind != "value_error" else f"{loc}: {msg}"


def parse_spec(data: Any, *, source: str | None = None, policy: Any = None) -> CertificationSpec:
    """Validate a spec already parsed from YAML/JSON. With ``policy`` (a submitted spec), its risk tier must be
    one of the policy's tiers; a stored spec is parsed without it."""
    if not isinstance(data, dict):
        got = "an empty document" if data is None else f"a {type(data).__name__}"
        raise SpecError(f"(top level): the spec must be a mapping of sections (model, use_case, data, …), got {got}",
                        source=source)
    try:
        return CertificationSpec.model_validate(data, context={"policy": policy} if policy is not None else None)
    except ValidationError as exc:
        raise SpecError([_message(e) for e in exc.errors()], source=source) from exc


def read_spec_text(path: Path) -> str:
    """The spec file's text: at most 1 MiB, UTF-8 (a problem names the byte), no NUL characters."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(safe_yaml.MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"spec: cannot read {short(str(path))}: {exc.strerror or type(exc).__name__}",
                        source=str(path)) from None
    if len(raw) > safe_yaml.MAX_SPEC_BYTES:
        size = path.stat().st_size
        raise SpecError(f"spec: the file has {size} bytes; a spec is at most {safe_yaml.MAX_SPEC_BYTES} bytes (1 MiB)",
                        source=str(path))
    try:
        return safe_yaml.decode(raw)
    except safe_yaml.YamlProblem as exc:
        raise SpecError(str(exc), source=str(path)) from None


def load_spec(path: str | os.PathLike[str]) -> tuple[CertificationSpec, str]:
    """Read and validate a spec file. Returns the spec and its raw text (hashed into the evidence digest).

    The YAML is read by :mod:`modelcert.safe_yaml` (bounded size and alias expansion, no duplicate keys,
    no python tags), so what a reviewer reads is what is validated."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"spec: file {short(str(p))} does not exist", source=str(p))
    text = read_spec_text(p)
    try:
        data = safe_yaml.load(text)
    except safe_yaml.YamlProblem as exc:
        raise SpecError(str(exc), source=str(p)) from None
    from modelcert.policy import load_policy

    return parse_spec(data, source=str(p), policy=load_policy()), text


#: os.pathsep-separated folders that data and artifact paths may resolve into (symlinks resolved first).
#: Unset: the spec's parent folder, so a ``specs/`` folder beside ``data/`` and ``models/`` works.
DATA_ROOTS_ENV = "MODELCERT_DATA_ROOTS"


def allowed_roots(base_dir: Path) -> list[Path]:
    """Where a spec's files may live: the roots in MODELCERT_DATA_ROOTS, else the spec folder's parent."""
    env = os.environ.get(DATA_ROOTS_ENV, "")
    roots = [Path(r).expanduser().resolve() for r in env.split(os.pathsep) if r.strip()]
    return roots or [Path(base_dir).resolve().parent]


def resolve_path(value: str, base_dir: Path, *, field: str = "path") -> Path:
    """Dataset and artifact paths: environment variables expanded, relative paths taken from the spec's folder,
    symlinks resolved, and the result inside an allowed root — a spec cannot make the certifier read (and echo
    in messages) files elsewhere on the machine, through ``../``, an absolute path or a planted symlink."""
    expanded = os.path.expandvars(os.path.expanduser(value))
    p = Path(expanded)
    full = (p if p.is_absolute() else Path(base_dir) / p).resolve()
    roots = allowed_roots(base_dir)
    if not any(full.is_relative_to(r) for r in roots):
        raise SpecError(f"{field}: {short(value)} resolves to {short(str(full))}, outside the allowed data roots "
                        f"{short([str(r) for r in roots], 160)}; files must be inside the spec's parent folder or a "
                        f"root listed in {DATA_ROOTS_ENV} (symlinks are resolved first)")
    return full
