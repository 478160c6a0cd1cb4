"""Where modelcert keeps its local state, which results database a command uses, and whether it is current.

Its own module (not the CLI's) so that the CLI, the demo harness and the benchmarks share one rule without
importing each other: the CLI used to hold these and the demo harness imported the CLI back (an import cycle).

Schema changes are explicit: a command that reads or writes the results database checks its revision and
refuses a database that is behind (or ahead of) this code with one line naming ``modelcert db upgrade``,
instead of migrating whatever database it was pointed at. Only the embedded default database (under
``MODELCERT_HOME``, which modelcert itself created) may be migrated by ``modelcert run`` and ``modelcert demo``,
and they say so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from modelcert.errors import ModelcertError


def modelcert_home() -> Path:
    """``MODELCERT_HOME``, else ``.modelcert`` of a source checkout, else ``~/.modelcert``."""
    env = os.environ.get("MODELCERT_HOME")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    if (repo / "pyproject.toml").is_file():
        return repo / ".modelcert"
    return Path.home() / ".modelcert"


def evaluation_cache_dir() -> Path:
    """Where a worker keeps evaluation caches (``modelcert.evalcache``): ``MODELCERT_CACHE_DIR``, else
    ``MODELCERT_HOME/cache``. Local to each machine: a worker without a run's cache rebuilds it from the sources."""
    env = os.environ.get("MODELCERT_CACHE_DIR")
    return Path(env) if env else modelcert_home() / "cache"


class _Embedded:
    """The embedded PostgreSQL this process started, if any (one per process; stopped by whoever started it)."""

    server: Any = None


def embedded_server() -> Any:
    """The embedded PostgreSQL this process started (``modelcert.embedded.EmbeddedPostgres``), or None."""
    return _Embedded.server


def start_embedded() -> Any:
    """Start (once per process) the embedded PostgreSQL under ``MODELCERT_HOME/pgdata`` and return it."""
    if _Embedded.server is None:
        from modelcert import embedded

        _Embedded.server = embedded.start(modelcert_home() / "pgdata")
    return _Embedded.server


def stop_embedded() -> None:
    """Stop the embedded PostgreSQL this process started (no-op when it started none)."""
    server, _Embedded.server = _Embedded.server, None
    if server is not None:
        server.stop()


def explicit_database_url(explicit: str | None) -> str | None:
    """``--database-url``, else ``MODELCERT_DATABASE_URL``, normalized; None means the embedded default."""
    from modelcert.db.session import ENV_URL, normalize_url

    url = explicit or os.environ.get(ENV_URL)
    return normalize_url(url) if url else None


def resolve_database_url(explicit: str | None) -> str:
    """Explicit URL, else MODELCERT_DATABASE_URL, else the embedded PostgreSQL under MODELCERT_HOME."""
    url = explicit_database_url(explicit)
    if url:
        return url
    return start_embedded().url("modelcert")


def schema_problem(url: str) -> str | None:
    """Why the results database at ``url`` cannot be used by this code as it is, or None when it is current."""
    from modelcert.db import migrate

    current, head = migrate.current(url), migrate.head()
    if current == head:
        return None
    if current is None:
        return f"the results database has no modelcert schema yet (this code needs revision {head})"
    if current in _known_revisions():
        return f"the results database is at revision {current}, behind this code's revision {head}"
    return f"the results database is at revision {current}, which this code does not know (its head is {head})"


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    from modelcert.db import migrate

    script = ScriptDirectory.from_config(migrate.alembic_config("postgresql://unused"))
    return {rev.revision for rev in script.walk_revisions()}


def require_current_schema(url: str) -> None:
    """Refuse a results database whose schema is not this code's, in one line that says what to run."""
    problem = schema_problem(url)
    if problem is not None:
        raise ModelcertError(f"{problem}; run `modelcert db upgrade` (with the same --database-url) first")


def upgrade_if_behind(url: str) -> str | None:
    """Migrate the database at ``url`` to this code's head when it is behind (or empty); return the revision it
    was migrated to, or None when nothing was done (already current, or at a revision this code does not know,
    which :func:`require_current_schema` then refuses). Callers use this only for the embedded default database."""
    from modelcert.db import migrate

    current, head = migrate.current(url), migrate.head()
    if current == head or (current is not None and current not in _known_revisions()):
        return None
    migrate.upgrade(url)
    return head
