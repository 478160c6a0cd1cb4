"""Compliance: policy rules on what the spec declares (no external library, no data read).

* every declaration named in ``checks.compliance.require`` is present and non-empty;
* declared PII columns (``governance.pii_columns``) are not model features;
* protected attributes are not model features unless ``governance.protected_feature_justification`` gives a
  non-empty justification for them;
* a high-risk use case needs sign-off by at least two distinct roles;
* the sha256 of the model and every dataset is recorded (from the run's evidence).

A policy check has no number: ``value`` is None and ``threshold`` names the rule that judged it.
"""

from __future__ import annotations

from typing import Any

from modelcert.context import EvalContext
from modelcert.stages.base import Check, StageOutcome, outcome
from modelcert.vocabulary import DOCUMENTATION_FIELDS

PREDICTIONS_ONLY = "not applicable: predictions only (third-party audit without a model artifact, so no features)"
HIGH_RISK_MIN_ROLES = 2

#: declaration -> (spec field, getter)
DECLARATION_FIELDS: dict[str, str] = {
    "intended_use": "use_case.intended_use",
    "owner": "model.owner",
    "risk_tier": "use_case.risk_tier",
    "data_retention_days": "governance.data_retention_days",
    "consent_basis": "governance.consent_basis",
    **{f: f"documentation.{f}" for f in DOCUMENTATION_FIELDS},
}


def _declared(ctx: EvalContext, name: str) -> Any:
    spec = ctx.spec
    return {
        "intended_use": spec.use_case.intended_use,
        "owner": spec.model.owner,
        "risk_tier": spec.use_case.risk_tier,
        "data_retention_days": spec.governance.data_retention_days,
        "consent_basis": spec.governance.consent_basis,
    }.get(name, getattr(spec.documentation, name, None))


def _present(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    return True


def _policy(name: str, passed: bool, rule: str, *, subject: str = "", message: str,
            detail: dict[str, Any] | None = None, value: float | None = None) -> Check:
    return Check(name=name, value=value, threshold={"rule": rule, "required": True}, passed=passed, subject=subject,
                 required=True, message=message, detail=detail or {})


class ComplianceStage:
    name = "compliance"
    library = "modelcert-policy"

    def run(self, ctx: EvalContext) -> StageOutcome:
        spec = ctx.spec
        checks: list[Check] = []

        # ------------------------------------------------------------------ declarations
        for name in spec.checks.compliance.require:
            field = DECLARATION_FIELDS[name]
            value = _declared(ctx, name)
            ok = _present(value)
            checks.append(_policy(
                "declaration", ok, "present and non-empty (checks.compliance.require)", subject=field,
                message=f"{field} is declared: {value!r}" if ok else
                f"{field} is missing{' (empty)' if value is not None else ''}; "
                f"required by checks.compliance.require or the risk policy's required_declarations ({name!r})",
                detail={"declaration": name, "value": value if ok else None}))

        # ------------------------------------------------------------------ regulation dossiers
        checks += self._dossier_checks(ctx)

        # ------------------------------------------------------------------ features: PII and protected
        features = ctx.features
        pii = list(spec.governance.pii_columns)
        justifications = spec.governance.protected_feature_justification
        if spec.is_audit:
            checks.append(Check.info("pii_not_feature", None, message=f"PII columns {pii}: {PREDICTIONS_ONLY}",
                                     detail={"pii_columns": pii}))
            checks.append(Check.info("protected_not_feature", None,
                                     message=f"protected attributes {list(spec.data.protected_attributes)}: "
                                             f"{PREDICTIONS_ONLY}"))
        else:
            feature_set = set(features)
            if not pii:
                checks.append(Check.info("pii_not_feature", None,
                                         message="no PII columns declared (governance.pii_columns is empty)"))
            for col in pii:
                used = col in feature_set
                checks.append(_policy(
                    "pii_not_feature", not used, "a governance.pii_columns entry is not in model.features", subject=col,
                    message=(f"PII column {col!r} (governance.pii_columns) is a model feature (model.features); "
                             "remove it from the model" if used else
                             f"PII column {col!r} is not a model feature")))
            for attr in spec.data.protected_attributes:
                rule = ("a protected attribute is not in model.features unless "
                        "governance.protected_feature_justification gives a justification")
                if attr not in feature_set:
                    checks.append(_policy("protected_not_feature", True, rule, subject=attr,
                                          message=f"protected attribute {attr!r} is not a model feature"))
                    continue
                why = justifications.get(attr)
                if _present(why):
                    checks.append(_policy(
                        "protected_not_feature", True, rule, subject=attr,
                        message=f"protected attribute {attr!r} is a model feature, justified in "
                                f"governance.protected_feature_justification.{attr}",
                        detail={"justification": why}))
                else:
                    checks.append(_policy(
                        "protected_not_feature", False, rule, subject=attr,
                        message=f"protected attribute {attr!r} is a model feature (model.features) without a "
                                f"justification in governance.protected_feature_justification.{attr}"))

        # ------------------------------------------------------------------ sign-off for high risk
        approvals = spec.required_approvals
        roles = sorted(role for role, count in approvals.items() if count >= 1)
        tier = spec.use_case.risk_tier
        if tier == "high":
            ok = len(roles) >= HIGH_RISK_MIN_ROLES
            checks.append(_policy(
                "signoff_roles", ok, f"risk_tier high needs sign-off by at least {HIGH_RISK_MIN_ROLES} distinct roles",
                value=float(len(roles)),
                message=(f"risk_tier high: sign-off by {len(roles)} distinct roles {roles}" if ok else
                         f"use_case.risk_tier is high but signoff.required names {len(roles)} role(s) {roles}; "
                         f"a high-risk model needs at least {HIGH_RISK_MIN_ROLES} distinct roles"),
                detail={"required_approvals": approvals}))
        else:
            checks.append(Check.info("signoff_roles", float(len(roles)),
                                     message=f"risk_tier {tier}: sign-off by {roles}",
                                     detail={"required_approvals": approvals}))

        # ------------------------------------------------------------------ artifact hashes
        if ctx.evidence is None:
            checks.append(Check.info("artifact_sha256", None, message="evidence not collected"))
        else:
            for name, f in sorted(ctx.evidence.files.items()):
                checks.append(Check.info(
                    "artifact_sha256", None, subject=name,
                    message=f"{name}: sha256 {f['sha256']}",
                    detail={"path": str(f["path"]), "sha256": str(f["sha256"]), "bytes": int(f["bytes"])}))

        summary = {
            "risk_tier": tier,
            "required_approvals": approvals,
            "features": len(features),
            "pii_columns": pii,
            "protected_attributes": list(spec.data.protected_attributes),
            "evidence_digest": ctx.evidence.digest if ctx.evidence is not None else None,
        }
        return outcome(self.name, checks, library=self.library, summary=summary)

    @staticmethod
    def _dossier_checks(ctx: EvalContext) -> list[Check]:
        """Each regulation dossier ``use_case.jurisdictions`` requires (``modelcert.dossier.frameworks``) must be
        complete: every item covered by a declaration or by evidence this run can produce. A gap fails the check,
        or warns when the tier's policy says ``dossier_gaps: warn``."""
        from modelcert.dossier.frameworks import Evidence, gaps, required_frameworks
        from modelcert.policy import load_policy

        spec = ctx.spec
        required = required_frameworks(list(spec.use_case.jurisdictions))
        if not required:
            return [Check.info("dossier_completeness", None,
                               message=f"no regulation dossier required by use_case.jurisdictions "
                                       f"{list(spec.use_case.jurisdictions)}",
                               detail={"jurisdictions": list(spec.use_case.jurisdictions)})]
        policy = load_policy()
        tier = policy.tiers.get(spec.use_case.risk_tier)
        blocking = tier is None or tier.dossier_gaps == "fail"
        ev = Evidence.for_spec(spec.model_dump(mode="json"),
                               files=dict(ctx.evidence.files) if ctx.evidence is not None else {},
                               policy=policy.label, digest=ctx.evidence.digest if ctx.evidence is not None else None)
        out = []
        for fw in required:
            missing = gaps(fw, ev)
            rule = f"every item of the {fw} dossier covered (use_case.jurisdictions; policy dossier_gaps)"
            out.append(Check(
                name="dossier_completeness", value=float(len(missing)), subject=fw, passed=not missing,
                required=blocking, threshold={"rule": rule, "required": blocking},
                message=(f"{fw} dossier: every item is covered" if not missing else
                         f"{fw} dossier misses {len(missing)} item(s): " + "; ".join(missing)),
                detail={"framework": fw, "missing": missing, "jurisdictions": list(spec.use_case.jurisdictions)}))
        return out


STAGE = ComplianceStage()
