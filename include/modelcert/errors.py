"""Domain exceptions. Every message names the offending value, the field and what is allowed.

Callers at the boundary (CLI, Airflow tasks) print ``str(exc)`` without a traceback; the run is recorded
as ``error`` with that message.
"""

from __future__ import annotations


class ModelcertError(Exception):
    """Base class of every error modelcert raises on purpose."""


class SpecError(ModelcertError):
    """The certification spec is malformed or refers to something unusable."""

    def __init__(self, problems: list[str] | str, *, source: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        head = f"invalid certification spec {source}" if source else "invalid certification spec"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in self.problems))


class DataError(ModelcertError):
    """A dataset does not match what the spec declares (missing column, non-binary label, empty group…)."""


class ArtifactError(ModelcertError):
    """A model artifact is missing, does not match its sha256, or cannot be deserialized."""


class StoreError(ModelcertError):
    """The results database refused an operation or is not at the expected schema revision."""


class RunNotFound(StoreError):
    """No certification run has the given id."""


class SignoffError(ModelcertError):
    """A sign-off was refused by the governance rules (four-eyes, role, state, evidence digest)."""

    def __init__(self, message: str, *, code: str = "refused") -> None:
        self.code = code
        super().__init__(message)
