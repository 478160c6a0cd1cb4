"""Everything a run would refuse, checked before anything runs: one function used by ``modelcert validate`` and by
``pipeline.register``, so the two can never disagree.

It reads the spec (safely), applies the risk policy, checks that every file is where the rules allow and hashes
to what is declared, that every column is accounted for, that the label, the groups and the model's inputs are
usable, and that a skops artifact holds only trusted types — without deserializing the model or predicting
anything, so it stays cheap (a few reads of the data).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from modelcert.context import EvalContext, used_columns
from modelcert.errors import ArtifactError, DataError, SpecError
from modelcert.evidence import DATASETS, Evidence, collect_evidence
from modelcert.safe_yaml import clip, short
from modelcert.spec import CertificationSpec, load_spec, resolve_path

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from modelcert.policy import Policy

#: Undeclared columns named in a refusal (the count is always given).
SHOWN_COLUMNS = 5


@dataclass(frozen=True)
class Preflight:
    """A spec that passed every up-front check, with what was computed on the way."""

    path: Path
    #: The effective spec (``modelcert.policy.effective``): the one stored as ``run.spec`` and judged.
    spec: CertificationSpec
    #: The spec's text as submitted (kept as evidence; its sha256 is in the evidence digest).
    text: str
    #: Hashes of everything judged, with the policy's version and sha256.
    evidence: Evidence
    #: dataset role -> (rows, columns)
    shapes: dict[str, tuple[int, int]]
    #: The spec as the submitter wrote it (before the policy transform).
    submitted: CertificationSpec
    #: The risk policy the run is judged under.
    policy: Policy
    #: The context the checks ran in, holding the datasets as read (register writes the evaluation cache from it).
    context: EvalContext


def preflight(spec_path: str | Path, *, engine: Engine | None = None) -> Preflight:
    """Run every up-front check on the spec at ``spec_path``; raise the first problem as a ModelcertError whose
    message names the field and what is allowed. With ``engine`` (registering a run) the policy file must also
    be the last one applied in that database (``modelcert.policy_store.ensure_in_force``)."""
    path = Path(spec_path).resolve()
    submitted, text = load_spec(path)
    base = path.parent
    check_paths(submitted, base)
    policy, spec = _apply_policy(submitted, engine)
    check_protected_features(spec)
    evidence = replace(collect_evidence(spec, text, base), policy=policy.identity)
    check_artifact_types(spec, base)
    ctx = EvalContext(spec=spec, base_dir=base, evidence=evidence)
    shapes = check_columns(ctx)
    check_values(ctx)
    return Preflight(path=path, spec=spec, text=text, evidence=evidence, shapes=shapes, submitted=submitted,
                     policy=policy, context=ctx)


def _apply_policy(spec: CertificationSpec, engine: Engine | None) -> tuple[Policy, CertificationSpec]:
    """The institution's bar (``modelcert.policy``): the submitter cannot choose how their model is judged. A spec
    that loosens the policy is refused; one that complies becomes the effective spec (stricter of both)."""
    from modelcert import policy as policies

    policy = policies.load_policy()
    if engine is not None:
        from modelcert.policy_store import ensure_in_force

        ensure_in_force(engine, policy)
    return policy, policies.effective(spec, policy)


def check_paths(spec: CertificationSpec, base: Path) -> None:
    """Every file the spec names resolves (symlinks too) inside an allowed root; see ``spec.resolve_path``."""
    named = {f"data.{name}": getattr(spec.data, name) for name in DATASETS}
    named["model.artifact"] = spec.model.artifact
    for field_name, value in named.items():
        if value is not None:
            resolve_path(value, base, field=field_name)


def check_protected_features(spec: CertificationSpec) -> None:
    """A protected attribute may be a model feature only with a written justification (the compliance stage's
    rule, applied before anything runs)."""
    if spec.is_audit:
        return
    features = set(spec.model.features or [])
    justified = spec.governance.protected_feature_justification
    for attr in spec.data.protected_attributes:
        if attr in features and not (justified.get(attr) or "").strip():
            raise SpecError(f"governance.protected_feature_justification.{clip(attr, 40)}: protected attribute "
                            f"{short(attr)} is a model feature (model.features) without a justification; give one, "
                            "or drop it from model.features")


def check_artifact_types(spec: CertificationSpec, base: Path) -> None:
    """A skops file may hold only types skops trusts or the spec lists under ``model.trusted_types`` (which the
    policy has reviewed). Reads the file's schema only: nothing is constructed."""
    m = spec.model
    if m.artifact is None or m.format != "skops":
        return
    import skops.io as sio

    path = resolve_path(m.artifact, base, field="model.artifact")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # noqa: BLE001 - a corrupt archive is the submitter's problem, said in one line
        raise ArtifactError(f"model.artifact: {short(str(path))} is not a readable skops file: "
                            f"{clip(f'{type(exc).__name__}: {exc}', 160)}") from None
    refused = sorted(set(untrusted) - set(m.trusted_types))
    if refused:
        raise ArtifactError(f"model.trusted_types: the skops file contains {len(refused)} type(s) skops does not trust "
                            f"by default: {short(refused[:5], 300)}; list them under model.trusted_types if the owner "
                            "vouches for them (the policy must have reviewed them)")


def check_columns(ctx: EvalContext) -> dict[str, tuple[int, int]]:
    """Each dataset is readable and non-empty, and each of its columns is used by the spec or declared under
    ``data.extra_columns``: 2,000 columns nobody declared must not ride along unseen."""
    spec = ctx.spec
    used = used_columns(spec)
    extra = list(spec.data.extra_columns)
    for column in extra:
        if column in used:
            raise SpecError(f"data.extra_columns: {short(column)} is used by the spec ({used[column]}); "
                            "extra_columns lists only columns that nothing uses")
    declared = set(used) | set(extra)
    shapes: dict[str, tuple[int, int]] = {}
    for name in DATASETS:
        if getattr(spec.data, name) is None:
            continue
        df = ctx.frame(name)
        columns = ctx.source_columns(name)  # a Parquet file's own columns: frame() reads only declared ones
        shapes[name] = (len(df), len(columns))
        undeclared = [c for c in columns if c not in declared]
        if undeclared:
            shown = ", ".join(short(c, 40) for c in undeclared[:SHOWN_COLUMNS])
            more = f", … ({len(undeclared) - SHOWN_COLUMNS} more)" if len(undeclared) > SHOWN_COLUMNS else ""
            raise DataError(f"data.extra_columns: data.{name} has {len(undeclared)} column(s) the spec neither uses "
                            f"nor declares: {shown}{more}; list columns that are present but unused under "
                            "data.extra_columns, or drop them from the file")
    return shapes


def check_values(ctx: EvalContext) -> None:
    """The label is binary with both classes and the declared positive and favorable values; each protected
    attribute has both groups; the model's inputs (or the audited predictions) are usable."""
    spec = ctx.spec
    ctx.labels("test")
    for attr, pa in spec.data.protected_attributes.items():
        if pa.privileged is not None:
            ctx.group_masks(attr, "test")
        else:  # per category or band: the groups must be buildable (a numeric column for bands)
            from modelcert import fairness_groups

            df = ctx.frame("test")
            ctx.require_columns(df, [attr], dataset="test", field_name=f"data.protected_attributes.{attr}")
            fairness_groups.attribute(df, attr, pa)
    if spec.is_audit:
        ctx.predictions("test")
        return
    ctx.feature_frame("test")
    if spec.data.train is not None:
        ctx.feature_frame("train")
