"""How a spec is held to the risk policy: it may tighten any bound, never loosen one.

The merge rule, for every threshold the policy floors: the effective bound is the *intersection* of the spec's
bound and the policy's floor (the stricter of the two on each side: the higher ``min``, the lower ``max`` and
``abs_max``). A spec value looser than the floor is an error naming the check, the value, the floor and the
policy — never a silent override, because the submitter must see that their bar was not the one applied. What
the spec did not write (a schema default, an omitted mandatory check) silently gets the floor. The same holds
for the quorum (roles and counts may only grow), the certificate validity (only shorter), the stages (a
mandatory one cannot be switched off) and warnings (``required: false`` only where the tier allows one).

:func:`spec_problems` finds every violation; :func:`effective_spec` is the transform applied once at
registration, so the stored ``run.spec`` holds the thresholds the stages judge (and store beside each value).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from modelcert.safe_yaml import clip
from modelcert.thresholds import Threshold
from modelcert.vocabulary import CHECKS, format_duration, tier_message

if TYPE_CHECKING:
    from modelcert.policy import Policy, TierPolicy
    from modelcert.spec import CertificationSpec

#: Stages whose checks are a section of named thresholds, and stages whose checks are a metric map.
_SECTIONS = ("data_quality", "robustness", "explainability")
_MAPS = ("performance", "fairness")


def _fmt(x: float) -> str:
    return f"{x:g}"


# ------------------------------------------------------------------------------------------- thresholds
def _lower(t: Threshold) -> tuple[float, str] | None:
    """The tightest lower bound ``t`` puts on the value, and the field that puts it."""
    sides = [(t.min, "min"), (t.between[0] if t.between else None, "between"),
             (-t.abs_max if t.abs_max is not None else None, "abs_max")]
    present = [(v, f) for v, f in sides if v is not None]
    return max(present, key=lambda x: x[0]) if present else None


def _upper(t: Threshold) -> tuple[float, str] | None:
    sides = [(t.max, "max"), (t.between[1] if t.between else None, "between"), (t.abs_max, "abs_max")]
    present = [(v, f) for v, f in sides if v is not None]
    return min(present, key=lambda x: x[0]) if present else None


def looser(path: str, spec_t: Threshold, floor: Threshold, tier: str, label: str) -> list[str]:
    """One line per side on which the spec's bound allows a value the policy's floor does not."""
    out: list[str] = []
    sl, fl = _lower(spec_t), _lower(floor)
    if sl is not None and fl is not None and sl[0] < fl[0]:
        value, field = sl
        if field == "abs_max":
            out.append(f"{path}.abs_max: {_fmt(-value)} is above the {tier}-tier policy ceiling "
                       f"{_fmt(-fl[0])} ({label})")
        elif field == "between":
            out.append(f"{path}.between: the lower bound {_fmt(value)} is below the {tier}-tier policy floor "
                       f"{_fmt(fl[0])} ({label})")
        else:
            out.append(f"{path}.min: {_fmt(value)} is below the {tier}-tier policy floor {_fmt(fl[0])} ({label})")
    su, fu = _upper(spec_t), _upper(floor)
    if su is not None and fu is not None and su[0] > fu[0]:
        value, field = su
        if field == "abs_max":
            line = f"{path}.abs_max: {_fmt(value)} is above the {tier}-tier policy ceiling {_fmt(fu[0])} ({label})"
            if line not in out and not any(o.startswith(f"{path}.abs_max:") for o in out):
                out.append(line)
        elif field == "between":
            out.append(f"{path}.between: the upper bound {_fmt(value)} is above the {tier}-tier policy ceiling "
                       f"{_fmt(fu[0])} ({label})")
        else:
            out.append(f"{path}.max: {_fmt(value)} is above the {tier}-tier policy ceiling {_fmt(fu[0])} ({label})")
    return out


def intersect(spec_t: Threshold | None, floor: Threshold | None, *, required: bool) -> Threshold:
    """The bound that satisfies both the spec and the floor (raises ValueError when none can)."""
    parts = [t for t in (spec_t, floor) if t is not None]
    assert parts, "intersect needs a spec bound or a floor"
    lows = [x for t in parts for x in (t.min, t.between[0] if t.between else None) if x is not None]
    highs = [x for t in parts for x in (t.max, t.between[1] if t.between else None) if x is not None]
    absm = [t.abs_max for t in parts if t.abs_max is not None]
    lo, hi, a = (max(lows) if lows else None), (min(highs) if highs else None), (min(absm) if absm else None)
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"lower bound {_fmt(lo)} above upper bound {_fmt(hi)}")
    if a is not None and ((lo is not None and lo > a) or (hi is not None and hi < -a)):
        raise ValueError(f"no value within |x| <= {_fmt(a)} meets the other bounds")
    # Keep the spec's shape (a spec's min/max stays min/max); the floor's shape only for a check the spec omits.
    use_between = lo is not None and hi is not None and parts[0].between is not None
    return Threshold(min=None if use_between else lo, max=None if use_between else hi, abs_max=a,
                     between=(lo, hi) if use_between else None, required=required)


# ------------------------------------------------------------------------------------------- the spec's checks
def _checks_of(spec: CertificationSpec) -> dict[str, tuple[Threshold, bool]]:
    """Every threshold of ``spec.checks`` as ``<stage>.<check>`` -> (bound, written by the submitter)."""
    checks = spec.checks
    given = checks.model_fields_set
    out: dict[str, tuple[Threshold, bool]] = {}
    for stage in _SECTIONS:
        section = getattr(checks, stage)
        for name in CHECKS[stage]:
            out[f"{stage}.{name}"] = (getattr(section, name), stage in given and name in section.model_fields_set)
    for stage in _MAPS:
        for name, t in getattr(checks, stage).items():
            out[f"{stage}.{name}"] = (t, stage in given)
    d = checks.drift
    out["drift.max_drifted_share"] = (Threshold(max=d.max_drifted_share, required=d.required),
                                      "drift" in given and bool({"max_drifted_share", "required"} & d.model_fields_set))
    return out


def _threshold_problems(path: str, key: str, spec_t: Threshold, tier_name: str, tier: TierPolicy,
                        label: str) -> list[str]:
    found: list[str] = []
    floor = tier.floors.get(key)
    if floor is not None:
        found += looser(path, spec_t, floor, tier_name, label)
        if not found:
            try:
                intersect(spec_t, floor, required=True)
            except ValueError as exc:
                found.append(f"{path}: the spec's bound ({spec_t.text()}) and the {tier_name}-tier policy floor "
                             f"({floor.text()}) leave no allowed value: {exc} ({label})")
    if key == "drift.max_drifted_share":  # a plain number in the spec, not a threshold mapping
        found = [f.replace(f"{path}.max:", f"{path}:", 1) for f in found]
    if not spec_t.required and not tier.may_warn(key):
        field = path.rsplit(".", 1)[0] + ".required" if key == "drift.max_drifted_share" else f"{path}.required"
        if key.startswith("drift.") and "drift" in tier.mandatory_stages:
            found.append(f"{field}: false switches off drift, a mandatory stage for the {tier_name} tier ({label})")
        else:
            allowed = ", ".join(tier.allow_warning) or "none"
            found.append(f"{field}: false is not allowed for the {tier_name} tier: the policy does not allow a "
                         f"warning for {key} ({label}; warnings allowed for: {allowed})")
    return found


def spec_problems(spec: CertificationSpec, policy: Policy) -> list[str]:
    """Every way ``spec`` breaks ``policy``, one line each (empty when it complies)."""
    tier_name = spec.use_case.risk_tier
    if tier_name not in policy.tiers:
        return [tier_message(tier_name, policy)]
    tier = policy.tier(tier_name)
    label = policy.label
    found: list[str] = []
    m = spec.model
    if m.artifact is not None and m.format is not None and m.format not in tier.allowed_artifact_formats:
        found.append(f"model.format: {m.format} is not allowed for risk tier {tier_name} by {label}; "
                     f"allowed: {', '.join(tier.allowed_artifact_formats)}")
    reviewed = policy.trusted_types(tier_name)
    for t in m.trusted_types:
        if t not in reviewed:
            found.append(f"model.trusted_types: {clip(t)} is not a reviewed skops type for risk tier {tier_name} "
                         f"in {label}; a validator must add it to the policy's skops_trusted_types first")
    for key, (t, written) in _checks_of(spec).items():
        if written:
            path = "checks.drift.max_drifted_share" if key == "drift.max_drifted_share" else f"checks.{key}"
            found += _threshold_problems(path, key, t, tier_name, tier, label)
    found += _recertification_problems(spec, tier_name, tier, label)
    found += _stage_problems(spec, tier_name, tier, label)
    found += _signoff_problems(spec, tier_name, tier, label)
    found += _statistics_problems(spec, tier_name, tier, label)
    cert = spec.certificate
    if "valid_for" in cert.model_fields_set and cert.valid_for > tier.max_validity:
        found.append(f"certificate.valid_for: {format_duration(cert.valid_for)} is above the {tier_name}-tier policy "
                     f"maximum {format_duration(tier.max_validity)} ({label})")
    return found


def _stage_problems(spec: CertificationSpec, tier_name: str, tier: TierPolicy, label: str) -> list[str]:
    found: list[str] = []
    rc = spec.checks.robustness
    need = max(tier.min_attacks_executed, 1 if "robustness" in tier.mandatory_stages else 0)
    if not spec.is_audit and need and not rc.attacks:
        found.append(f"checks.robustness.attacks: empty, but the {tier_name}-tier policy requires at least {need} "
                     f"attack executed on the model ({label})")
    if "compliance" in tier.mandatory_stages or tier.required_declarations:
        written = "require" in spec.checks.compliance.model_fields_set
        missing = [d for d in tier.required_declarations if d not in spec.checks.compliance.require]
        if missing and written:
            found.append(f"checks.compliance.require: omits {', '.join(missing)}, which the {tier_name}-tier policy "
                         f"requires ({label})")
        elif not spec.checks.compliance.require:
            found.append(f"checks.compliance.require: empty, but compliance is a mandatory stage for the {tier_name} "
                         f"tier ({label})")
    try:
        effective = _effective_checks(spec, tier)
    except ValueError:
        return found  # an impossible bound is already named by the threshold problems
    for stage in ("data_quality", "performance", "fairness", "robustness", "explainability"):
        if stage in tier.mandatory_stages and not any(
                t.required for key, (t, _) in effective.items() if key.startswith(stage + ".")):
            if stage == "robustness" and spec.is_audit:
                continue
            found.append(f"checks.{stage}: no required check, but {stage} is a mandatory stage for the {tier_name} "
                         f"tier ({label})")
    return found


def merged_quorum(policy_quorum: dict[str, int], spec_required: dict[str, int] | None) -> dict[str, int]:
    """The policy's quorum with the spec's additions: every role of either, at the higher count."""
    out = dict(policy_quorum)
    for role, n in (spec_required or {}).items():
        out[role] = max(n, out.get(role, 0))
    return out


def _signoff_problems(spec: CertificationSpec, tier_name: str, tier: TierPolicy, label: str) -> list[str]:
    found: list[str] = []
    if spec.signoff.policy_merged:
        found.append("signoff.policy_merged: set by modelcert when a run is registered, not by a spec; remove it")
    required = spec.signoff.required
    if required is None:
        return found
    for role, n in tier.signoff.items():  # a role the spec does not name is merged in; a lower count is refused
        if role in required and required[role] < n:
            found.append(f"signoff.required.{role}: {required[role]} is below the {tier_name}-tier policy quorum {n} "
                         f"({label})")
    return found


def _statistics_problems(spec: CertificationSpec, tier_name: str, tier: TierPolicy, label: str) -> list[str]:
    """A spec's ``statistics`` may only tighten the tier's: a lower alpha, more resamples, holm where bh is
    allowed. Anything looser is refused naming the field (never silently replaced by the policy's value)."""
    found: list[str] = []
    st, bar = spec.statistics, tier.statistics
    if st.alpha is not None and st.alpha > bar.alpha:
        found.append(f"statistics.alpha: {_fmt(st.alpha)} is above the {tier_name}-tier policy's {_fmt(bar.alpha)} "
                     f"(a higher alpha is a looser bar; {label})")
    if st.multiple_testing == "bh" and bar.multiple_testing == "holm":
        found.append(f"statistics.multiple_testing: bh (false-discovery rate) is looser than the {tier_name}-tier "
                     f"policy's holm (family-wise error); use holm or leave it out ({label})")
    if st.bootstrap_resamples is not None and st.bootstrap_resamples < bar.min_bootstrap_resamples:
        found.append(f"statistics.bootstrap_resamples: {st.bootstrap_resamples} is below the {tier_name}-tier policy "
                     f"minimum {bar.min_bootstrap_resamples} ({label})")
    return found


def effective_statistics(spec: CertificationSpec, tier: TierPolicy) -> dict[str, Any]:
    """The statistics the stages use: alpha = min(spec, policy), resamples = max(spec, policy minimum), the
    policy's multiple-testing method unless the spec asks for the stricter holm; the spec's seed."""
    st, bar = spec.statistics, tier.statistics
    return {"alpha": min(x for x in (st.alpha, bar.alpha) if x is not None),
            "multiple_testing": "holm" if "holm" in (st.multiple_testing, bar.multiple_testing) else "bh",
            "bootstrap_resamples": max(x for x in (st.bootstrap_resamples, bar.min_bootstrap_resamples)
                                       if x is not None),
            "seed": st.seed}


# ------------------------------------------------------------------------------------------- recertification
def _override_items(spec: CertificationSpec) -> Iterable[tuple[str, str, Threshold | None]]:
    """The thresholds a ``recertification.checks`` override gives: (check key, spec path, bound or None)."""
    section = spec.recertification
    if section is None:
        return
    over = section.checks
    for stage in _SECTIONS:
        given = getattr(over, stage)
        if given is not None:
            for name in given.model_fields_set:
                value = getattr(given, name)
                if isinstance(value, Threshold):
                    yield f"{stage}.{name}", f"recertification.checks.{stage}.{name}", value
    for stage in _MAPS:
        for name, t in (getattr(over, stage) or {}).items():
            yield f"{stage}.{name}", f"recertification.checks.{stage}.{name}", t
    d = over.drift
    if d is not None and ({"max_drifted_share", "required"} & d.model_fields_set):
        base = spec.checks.drift
        share = d.max_drifted_share if "max_drifted_share" in d.model_fields_set else base.max_drifted_share
        req = d.required if "required" in d.model_fields_set else base.required
        yield "drift.max_drifted_share", "recertification.checks.drift.max_drifted_share", Threshold(max=share,
                                                                                                    required=req)


def _recertification_problems(spec: CertificationSpec, tier_name: str, tier: TierPolicy, label: str) -> list[str]:
    found: list[str] = []
    for key, path, t in _override_items(spec):
        if t is None:
            if key in tier.mandatory_checks:
                found.append(f"{path}: null drops {key}, a mandatory check of the {tier_name}-tier policy ({label})")
            continue
        found += _threshold_problems(path, key, t, tier_name, tier, label)
    return found


# ------------------------------------------------------------------------------------------- the transform
def _effective_checks(spec: CertificationSpec, tier: TierPolicy) -> dict[str, tuple[Threshold, bool]]:
    """Every check after the merge: the spec's bounds intersected with the floors, the mandatory checks
    added at their floor, ``required`` forced where the tier allows no warning."""
    out: dict[str, tuple[Threshold, bool]] = {}
    for key, (t, written) in _checks_of(spec).items():
        required = t.required if tier.may_warn(key) else True
        out[key] = (intersect(t, tier.floors.get(key), required=required), written)
    for key in tier.mandatory_checks:
        if key not in out:
            out[key] = (intersect(None, tier.floors[key], required=True), False)
    return out


def effective_spec(spec: CertificationSpec, policy: Policy) -> CertificationSpec:
    """The spec the stages judge (call after :func:`spec_problems` found nothing): effective thresholds, the
    merged quorum (``signoff.policy_merged``), the validity capped at the tier's maximum."""
    tier = policy.tier(spec.use_case.risk_tier)
    data = spec.model_dump(mode="json")
    checks = data["checks"]
    for key, (t, _) in _effective_checks(spec, tier).items():
        stage, name = key.split(".", 1)
        if key == "drift.max_drifted_share":
            checks["drift"]["max_drifted_share"] = t.max
            checks["drift"]["required"] = t.required
        else:
            checks[stage][name] = t.model_dump(mode="json")
    if spec.recertification is not None:
        over = data["recertification"]["checks"]
        for key, _, t in _override_items(spec):
            if t is None:
                continue
            stage, name = key.split(".", 1)
            merged = intersect(t, tier.floors.get(key), required=t.required if tier.may_warn(key) else True)
            if key == "drift.max_drifted_share":
                over.setdefault("drift", {}).update(max_drifted_share=merged.max, required=merged.required)
            else:
                over.setdefault(stage, {})[name] = merged.model_dump(mode="json")
    data["statistics"] = effective_statistics(spec, tier)
    require = checks["compliance"]["require"]
    checks["compliance"]["require"] = [*require, *(d for d in tier.required_declarations if d not in require)]
    data["signoff"]["required"] = merged_quorum(tier.signoff, spec.signoff.required)
    data["signoff"]["policy_merged"] = True
    if spec.certificate.valid_for > tier.max_validity:
        data["certificate"]["valid_for"] = tier.max_validity.total_seconds()
    return type(spec).from_data(data)


# ------------------------------------------------------------------------------------------- the gate
def gate_failures(spec: CertificationSpec, results: dict[str, Any], policy: Policy) -> list[str]:
    """What the policy adds to the gate: the minimum robustness evidence. A robustness result that executed
    fewer attacks than the tier requires (not applicable, or every attack not applicable) is a failed
    mandatory check — unless the run is a predictions-only audit. A stage error is the gate's already."""
    if spec.is_audit or spec.use_case.risk_tier not in policy.tiers:
        return []
    tier = policy.tier(spec.use_case.risk_tier)
    need = tier.min_attacks_executed
    if need <= 0:
        return []
    r = results.get("robustness")
    if r is None or r.status == "error":
        return []
    ran = list((r.summary or {}).get("attacks_run") or []) if r.status in ("passed", "failed") else []
    if len(ran) >= need:
        return []
    why = r.reason or "; ".join(f"{a}: {w}" for a, w in ((r.summary or {}).get("attacks_not_applicable") or {}).items())
    return [f"robustness: attacks_executed: {len(ran)} attack(s) ran on the model; the {spec.use_case.risk_tier}-tier "
            f"policy requires at least {need} ({policy.label})" + (f"; {clip(why, 200)}" if why else "")]
