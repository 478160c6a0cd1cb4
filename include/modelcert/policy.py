"""The risk policy: the bar a spec must meet, set by the institution and never by the submitter.

The submitter writes the spec, so the spec cannot be trusted to choose how its own model is loaded or which
types skops may construct. The policy file (``include/config/policy.yaml`` or ``MODELCERT_POLICY_FILE``) is
reviewed by validators and versioned; every refusal names its ``version`` and sha256 so a decision can be
traced to the exact text in force. This is the seed of the full risk policy (mandatory checks, floors,
quorum, validity): new rules are new fields of :class:`Policy` / :class:`TierPolicy` and new lines in
:func:`enforce`, which keeps returning every problem at once.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StrictStr, ValidationError, model_validator

from modelcert.errors import ModelcertError, SpecError
from modelcert.spec import RISK_TIERS, CertificationSpec

POLICY_ENV = "MODELCERT_POLICY_FILE"
DEFAULT_POLICY_FILE = Path(__file__).resolve().parents[1] / "config" / "policy.yaml"
#: A policy is a short, human-reviewed file; anything bigger is a mistake (or an attack on the loader).
MAX_POLICY_BYTES = 256 * 1024
ArtifactFormat = Literal["skops", "joblib"]


class PolicyError(ModelcertError):
    """The policy file is missing or malformed: nothing can be certified against an unknown bar."""


def _short(value: object, limit: int = 80) -> str:
    """A user-supplied value as it may appear in a message: repr'd and bounded."""
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TierPolicy(_Strict):
    """What one risk tier demands."""

    #: Artifact formats a model of this tier may be handed over in. joblib (pickle) is always isolated.
    allowed_artifact_formats: list[ArtifactFormat] = Field(min_length=1)
    #: Reviewed skops types allowed for this tier only, on top of the global list.
    skops_trusted_types: list[StrictStr] = []


class Policy(_Strict):
    """One version of the risk policy; ``sha256`` and ``source`` identify the file it was read from."""

    version: StrictStr = Field(min_length=1, max_length=64)
    #: skops types a validator reviewed, valid for every tier.
    skops_trusted_types: list[StrictStr] = []
    tiers: dict[StrictStr, TierPolicy]
    _sha256: str = PrivateAttr(default="")
    _source: str = PrivateAttr(default="")

    @model_validator(mode="after")
    def _every_spec_tier_is_covered(self) -> "Policy":
        missing = [t for t in RISK_TIERS if t not in self.tiers]
        if missing:
            raise ValueError(f"tiers: no entry for risk tier(s) {missing}; every tier a spec can name needs one")
        return self

    @property
    def sha256(self) -> str:
        return self._sha256

    @property
    def source(self) -> str:
        return self._source

    @property
    def label(self) -> str:
        """How a message names this policy: version and the start of its hash."""
        return f"policy {self.version} (sha256 {self._sha256[:8]}…)" if self._sha256 else f"policy {self.version}"

    def tier(self, name: str) -> TierPolicy:
        try:
            return self.tiers[name]
        except KeyError:
            raise PolicyError(f"use_case.risk_tier: {_short(name)} has no entry in {self.label}; "
                              f"tiers: {', '.join(sorted(self.tiers))}") from None

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
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {_short(repr(key))}", key_node.start_mark)
        seen.add(key)
    return dict(loader.construct_pairs(node, deep=deep))


_NoDuplicateKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

_cache: dict[tuple[str, int, int], Policy] = {}


def load_policy(path: str | Path | None = None) -> Policy:
    """The policy at ``path`` (default: ``MODELCERT_POLICY_FILE`` or the shipped file), cached by path and
    mtime so each stage does not re-parse it, yet an edited file takes effect at once."""
    p = Path(path or os.environ.get(POLICY_ENV) or DEFAULT_POLICY_FILE).resolve()
    try:
        st = p.stat()
    except OSError:
        raise PolicyError(f"policy: file {_short(str(p))} does not exist (set {POLICY_ENV})") from None
    key = (str(p), st.st_mtime_ns, st.st_size)
    if key in _cache:
        return _cache[key]
    if st.st_size > MAX_POLICY_BYTES:
        raise PolicyError(f"policy: {_short(str(p))} has {st.st_size} bytes; at most {MAX_POLICY_BYTES} allowed")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
        # No aliases: a reviewed policy has no need for them, and a few hundred bytes of nested aliases expand
        # to gigabytes (checked on the event stream, before anything is constructed).
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise PolicyError(f"policy: {_short(str(p))} uses a YAML alias at line {event.start_mark.line + 1}; "
                                  "aliases are not allowed in the policy")
        data = yaml.load(text, Loader=_NoDuplicateKeys)  # noqa: S506 - a SafeLoader subclass
    except UnicodeDecodeError:
        raise PolicyError(f"policy: {_short(str(p))} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise PolicyError(f"policy: {_short(str(p))} is not valid YAML{where}: "
                          f"{_short(getattr(exc, 'problem', None) or exc)}") from None
    if not isinstance(data, dict):
        raise PolicyError(f"policy: {_short(str(p))} must be a mapping with version, skops_trusted_types, tiers")
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = "".join(f".{x}" for x in first["loc"])
        raise PolicyError(f"policy{loc}: {_short(first['msg'], 160)} (in {_short(str(p))}; "
                          f"{exc.error_count()} problem(s))") from None
    policy._sha256 = hashlib.sha256(raw).hexdigest()
    policy._source = str(p)
    _cache.clear()  # one policy in force per process; do not grow with every edit
    _cache[key] = policy
    return policy


def problems(spec: CertificationSpec, policy: Policy) -> list[str]:
    """Every way ``spec`` breaks ``policy``, one line each (empty when it complies)."""
    tier_name = spec.use_case.risk_tier
    tier = policy.tier(tier_name)
    found: list[str] = []
    m = spec.model
    if m.artifact is not None and m.format is not None and m.format not in tier.allowed_artifact_formats:
        found.append(f"model.format: {m.format} is not allowed for risk tier {tier_name} by {policy.label}; "
                     f"allowed: {', '.join(tier.allowed_artifact_formats)}")
    reviewed = policy.trusted_types(tier_name)
    for t in m.trusted_types:
        if t not in reviewed:
            found.append(f"model.trusted_types: {_short(t)} is not a reviewed skops type for risk tier {tier_name} "
                         f"in {policy.label}; a validator must add it to the policy's skops_trusted_types first")
    return found


def enforce(spec: CertificationSpec, policy: Policy | None = None) -> None:
    """Refuse a spec the policy does not allow, with one line per problem (raises SpecError)."""
    policy = policy if policy is not None else load_policy()
    found = problems(spec, policy)
    if found:
        raise SpecError(found)
