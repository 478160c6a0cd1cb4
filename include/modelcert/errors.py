"""Domain exceptions. Every message names the offending value, the field and what is allowed.

Callers at the boundary (CLI, Airflow tasks) print ``str(exc)`` without a traceback; the run is recorded
as ``error`` with that message.
"""

from __future__ import annotations


class ModelcertError(Exception):
    """Base class of every error modelcert raises on purpose."""


class SpecError(ModelcertError):
    """The certification spec is malformed or refers to something unusable."""

    #: Problems shown in the message; the rest are counted (a broken spec can have thousands).
    SHOWN = 20

    def __init__(self, problems: list[str] | str, *, source: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        head = f"invalid certification spec {_clip(source, 200)}" if source else "invalid certification spec"
        shown = [_clip(p, 600) for p in self.problems[: self.SHOWN]]
        more = len(self.problems) - len(shown)
        if more > 0:
            shown.append(f"… and {more} more problem(s)")
        # One problem is one line; several are one line each, under the head.
        text = f"{head}: {shown[0]}" if len(shown) == 1 else head + ":\n" + "\n".join(f"  - {p}" for p in shown)
        super().__init__(text)


def _clip(text: str, limit: int) -> str:
    """Bound a message part: user input must never make a message (or a stored reason) unbounded."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


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


class LifecycleError(ModelcertError):
    """A run or certificate cannot make the transition asked for from the state it is in (or its recorded
    history is not a path the lifecycle allows)."""
