"""Run references as people type them: a full run id, or the short prefix that ``modelcert status`` prints.

One resolver for every command that takes a run id (report, status RUN, approve, decline, promote), so a
prefix means the same run everywhere, an ambiguous prefix is refused (never "the first match": approving the
wrong run is worse than typing four more characters), and the messages are the same one line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import Engine, func, select

from modelcert.errors import ModelcertError, RunNotFound

#: Run ids are lowercase UUIDs (36 characters); a reference is a prefix of one.
RUN_ID_LENGTH = 36
#: Shorter prefixes match too much by accident; ``status`` prints 8 characters.
MIN_PREFIX = 4
_REF = re.compile(r"^[0-9a-f-]+$")
_SHOWN_CANDIDATES = 5


class AmbiguousRunRef(ModelcertError):
    """A run-id prefix that matches more than one run."""


def shorten(value: str, limit: int = 80) -> str:
    """User input echoed in a message, cut to ``limit`` characters (never an unbounded echo)."""
    return value if len(value) <= limit else value[: limit - 1] + "…"


def normalize_ref(ref: str) -> str:
    """The reference in canonical form, or one line saying what a run reference may be."""
    cleaned = ref.strip().lower()
    if not cleaned or len(cleaned) > RUN_ID_LENGTH or not _REF.match(cleaned):
        raise RunNotFound(f"RUN {shorten(ref)!r} is not a run id: give the id or its first {MIN_PREFIX}+ characters "
                          f"as `modelcert status` prints them (hex digits and '-', at most {RUN_ID_LENGTH})")
    if len(cleaned) < MIN_PREFIX:
        raise RunNotFound(f"RUN {cleaned!r} is too short: give at least {MIN_PREFIX} characters of the run id")
    return cleaned


def pick(ref: str, candidates: Iterable[str]) -> str:
    """The one candidate id that ``ref`` names (exactly, or as a unique prefix)."""
    cleaned = normalize_ref(ref)
    ids = sorted({c for c in candidates if c.startswith(cleaned)})
    return _choose(cleaned, ids, len(ids))


def resolve_run_id(engine: Engine, ref: str) -> str:
    """The full id of the run ``ref`` names in the results database (exact id or unique prefix)."""
    from modelcert.db.models import CertificationRun
    from modelcert.db.session import reader

    cleaned = normalize_ref(ref)
    matching = CertificationRun.id.startswith(cleaned, autoescape=True)
    with reader(engine) as s:
        ids = list(s.execute(select(CertificationRun.id).where(matching).order_by(CertificationRun.id)
                             .limit(_SHOWN_CANDIDATES)).scalars())
        total = len(ids) if len(ids) < _SHOWN_CANDIDATES else int(
            s.execute(select(func.count()).select_from(CertificationRun).where(matching)).scalar_one())
    return _choose(cleaned, ids, total)


def _choose(cleaned: str, ids: list[str], total: int) -> str:
    """``ids``: the first (sorted) matches of the prefix; ``total``: how many runs match in all."""
    if cleaned in ids:
        return cleaned
    if not ids:
        raise RunNotFound(f"no certification run with id or id prefix {cleaned!r} (list runs with `modelcert status`)")
    if total > 1:
        shown = ", ".join(ids[:_SHOWN_CANDIDATES])
        more = f" and {total - _SHOWN_CANDIDATES} more" if total > _SHOWN_CANDIDATES else ""
        raise AmbiguousRunRef(f"run id prefix {cleaned!r} matches {total} runs: {shown}{more}; give more characters")
    return ids[0]
