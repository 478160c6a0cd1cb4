"""Trigger that waits, in the triggerer, for a run's sign-off to resolve (frees the worker slot).

Two properties matter more than speed here, because a lost wake-up costs a human approver the safety-net
poll (minutes) and a lost connection costs every later approval the same:

* **Listen, then read, with no window.** The wake-up flag is cleared *before* the state is read, and
  notifications that psycopg2 buffered while executing ``LISTEN`` are handled right after the reader is
  attached. A NOTIFY is sent at commit, so any approval either committed before the read (the read sees it)
  or notifies after the flag was cleared (the wait sees it).
* **A lost LISTEN connection is noticed and restored.** A reader error, a failing ``poll()`` and a periodic
  cheap liveness check (``SELECT 1``) each mark the connection lost; the trigger reconnects with backoff,
  LISTENs again and then re-reads the state. A state read that fails during an outage is retried with
  backoff for ``outage_timeout`` seconds before the wait ends with an error naming the real cause.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

#: libpq options for the LISTEN connection unless the URL sets them: fail a hung connect, and let the kernel
#: notice a silently dead peer (the socket then turns readable with an error, which the reader sees).
_LISTEN_CONNECT_DEFAULTS = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30,
                            "keepalives_interval": 10, "keepalives_count": 3}


def _one_line(exc: BaseException, limit: int = 200) -> str:
    """``Type: first line of the message``, bounded (driver messages can be long and multi-line)."""
    text = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}".rstrip(": ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _transient(exc: BaseException) -> bool:
    """A failure of the database connection (worth retrying), as opposed to a real answer such as
    "no such run" (which retrying cannot change)."""
    import psycopg2
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError,
                        sa_exc.TimeoutError, psycopg2.OperationalError, psycopg2.InterfaceError, OSError)):
        return True
    return bool(getattr(exc, "connection_invalidated", False))


class _Backoff:
    """Exponential delays ``first, 2·first, …`` capped at ``cap``; reset after a success."""

    def __init__(self, first: float, cap: float) -> None:
        self.first = first
        self.cap = cap
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self.cap, self._next * 2)
        return delay

    def reset(self) -> None:
        self._next = self.first


class _Listener:
    """One psycopg2 connection LISTENing on the sign-off channel, watched by the event loop.

    It sets ``woken`` for a notification about ``run_id`` and also when the connection is lost (so the
    waiting loop reconnects at once instead of at its next timeout)."""

    def __init__(self, trigger: SignoffTrigger, loop: asyncio.AbstractEventLoop, woken: asyncio.Event) -> None:
        self.trigger = trigger
        self.loop = loop
        self.woken = woken
        self.conn: Any = None
        self._fd: int | None = None

    @property
    def connected(self) -> bool:
        return self.conn is not None

    def _open(self) -> Any:
        """Blocking: connect and LISTEN (runs in a worker thread)."""
        import psycopg2
        from sqlalchemy.engine import make_url

        from modelcert.governance import SIGNOFF_CHANNEL
        from modelcert_airflow.connection import results_db_url

        url = make_url(results_db_url(self.trigger.conn_id))
        args: dict[str, Any] = {**_LISTEN_CONNECT_DEFAULTS, **url.translate_connect_args(username="user",
                                                                                          database="dbname")}
        args.update(dict(url.query))
        conn = psycopg2.connect(**args)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"LISTEN {SIGNOFF_CHANNEL}")
        except BaseException:
            conn.close()
            raise
        return conn

    async def connect(self) -> None:
        """Connect, LISTEN, attach the reader; raises when the database cannot be reached."""
        conn = await asyncio.to_thread(self._open)
        self.conn = conn
        self._attach()

    def _attach(self) -> None:
        """Watch the socket and handle what is already buffered: notifications that arrived with the reply to
        ``LISTEN`` (or to a liveness check) were read off the socket already, so the reader would not fire."""
        try:
            self._fd = self.conn.fileno()
            self.loop.add_reader(self._fd, self._on_readable)
        except Exception as exc:  # noqa: BLE001 - a connection that cannot be watched is a lost one
            self.lost(f"cannot watch the LISTEN connection ({_one_line(exc)})")
            return
        self._drain()

    def _detach(self) -> None:
        if self._fd is not None:
            try:
                self.loop.remove_reader(self._fd)
            except Exception:  # noqa: BLE001 - the descriptor may already be closed
                pass
            self._fd = None

    def _on_readable(self) -> None:
        try:
            self.conn.poll()
        except Exception as exc:  # noqa: BLE001 - e.g. the backend was terminated or the server restarted
            self.lost(f"LISTEN connection lost ({_one_line(exc)})")
            return
        if self.conn.closed:
            self.lost("LISTEN connection closed by the server")
            return
        self._drain()

    def _drain(self) -> None:
        if self.conn is None:
            return
        if any(n.payload == self.trigger.run_id for n in self.conn.notifies):
            self.woken.set()
        del self.conn.notifies[:]

    async def ping(self, timeout: float) -> bool:
        """The cheap liveness check: ``SELECT 1`` on the LISTEN connection itself (reader detached meanwhile,
        so only one party talks to the connection). False (and the connection marked lost) on failure."""
        conn = self.conn
        self._detach()

        def select_one() -> None:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchone()

        try:
            await asyncio.wait_for(asyncio.to_thread(select_one), timeout=timeout)
        except TimeoutError:
            # The server does not answer but the socket is open (a hung backend, a half-open network path):
            # shut the socket down so the thread blocked in SELECT 1 returns instead of hanging forever.
            _shutdown_socket(conn)
            self.lost(f"liveness check got no answer within {timeout:g}s")
            return False
        except Exception as exc:  # noqa: BLE001
            self.lost(f"liveness check failed ({_one_line(exc)})")
            return False
        self._attach()
        return True

    def lost(self, why: str) -> None:
        """Forget the connection (closed in a worker thread: a hung socket must not block the event loop) and
        wake the waiting loop so it reconnects now."""
        if self.conn is None:
            return
        self.trigger.log.warning("run %s: %s; reconnecting", self.trigger.run_id, why)
        self._detach()
        conn, self.conn = self.conn, None
        self.loop.run_in_executor(None, _close_quietly, conn)
        self.woken.set()

    def close(self) -> None:
        self._detach()
        if self.conn is not None:
            _close_quietly(self.conn)
            self.conn = None


def _shutdown_socket(conn: Any) -> None:
    """Shut down the connection's socket under libpq (a duplicate descriptor, so libpq still owns and closes
    its own): any read blocked on it returns at once."""
    import os
    import socket

    try:
        sock = socket.socket(fileno=os.dup(conn.fileno()))
    except Exception:  # noqa: BLE001 - already closed: nothing can block on it
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - closing a broken connection may fail; nothing is left to release
        pass


async def _wait(event: asyncio.Event, timeout: float) -> bool:
    """True when ``event`` was set within ``timeout`` seconds."""
    try:
        await asyncio.wait_for(event.wait(), timeout=max(0.0, timeout))
    except TimeoutError:
        return False
    return True


class SignoffTrigger(BaseTrigger):
    """Fires exactly once: when the run is approved (quorum for its evidence digest), declined, timed out,
    or no longer awaiting sign-off; or with ``state: error`` when the state cannot be read (after retrying
    for ``outage_timeout`` seconds when the database is unreachable).

    It does not poll fast: it LISTENs on the Postgres channel ``modelcert_signoff`` (every sign-off NOTIFYs
    at commit) and re-reads the state when woken; ``poll_interval`` is only a safety net, and it never sleeps
    past the sign-off deadline."""

    #: First and largest delay between reconnection attempts / state reads while the database is unreachable.
    reconnect_first: float = 0.5
    reconnect_max: float = 5.0
    #: How often an idle LISTEN connection is checked with ``SELECT 1``, and how long that check may take.
    liveness_interval: float = 30.0
    ping_timeout: float = 10.0

    def __init__(self, *, run_id: str, poll_interval: float = 300.0, conn_id: str = "modelcert_db",
                 outage_timeout: float = 300.0) -> None:
        super().__init__()
        self.run_id = run_id
        self.poll_interval = float(poll_interval)
        self.conn_id = conn_id
        self.outage_timeout = float(outage_timeout)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "modelcert_airflow.triggers.SignoffTrigger",
            {"run_id": self.run_id, "poll_interval": self.poll_interval, "conn_id": self.conn_id,
             "outage_timeout": self.outage_timeout},
        )

    def _check(self) -> dict[str, Any]:
        from modelcert.pipeline import signoff_state
        from modelcert_airflow.connection import results_engine

        return signoff_state(results_engine(self.conn_id), self.run_id).as_dict()

    def _delay(self, state: dict[str, Any]) -> float:
        """Seconds until the safety-net re-read: the poll interval, but never past the sign-off deadline."""
        delay = self.poll_interval
        if state.get("deadline"):
            remaining = (datetime.fromisoformat(state["deadline"]) - datetime.now(UTC)).total_seconds()
            delay = max(0.5, min(delay, remaining + 0.5))
        return delay

    async def run(self) -> AsyncIterator[TriggerEvent]:
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()
        listener = _Listener(self, loop, woken)
        backoff = _Backoff(self.reconnect_first, self.reconnect_max)
        failing_since: float | None = None
        try:
            while True:
                if not listener.connected:
                    try:
                        await listener.connect()
                    except Exception as exc:  # noqa: BLE001 - retried with backoff below; the read decides
                        self.log.warning("run %s: LISTEN failed (%s); retrying", self.run_id, _one_line(exc))
                # Clear BEFORE reading: a NOTIFY landing during or after the read must still wake the wait.
                woken.clear()
                try:
                    state = await asyncio.to_thread(self._check)
                except Exception as exc:  # noqa: BLE001 - classified: outage (retry) or a real answer (report)
                    if not _transient(exc):
                        yield TriggerEvent({"state": "error", "run_id": self.run_id, "retryable": False,
                                            "detail": _one_line(exc)})
                        return
                    now = time.monotonic()
                    failing_since = now if failing_since is None else failing_since
                    if now - failing_since >= self.outage_timeout:
                        yield TriggerEvent({"state": "error", "run_id": self.run_id, "retryable": True,
                                            "detail": f"results database unreachable for {now - failing_since:.0f}s: "
                                                      f"{_one_line(exc)}"})
                        return
                    pause = backoff.next()
                    self.log.warning("run %s: cannot read the sign-off state (%s); retrying in %.1fs",
                                     self.run_id, _one_line(exc), pause)
                    await _wait(woken, pause)
                    continue
                failing_since = None
                if state["state"] != "waiting":
                    yield TriggerEvent({"run_id": self.run_id, **state})
                    return
                delay = self._delay(state)
                self.log.info("run %s waits for approvals %s%s; next check on notification or in %.0fs",
                              self.run_id, state["missing"],
                              f" and {state['detail']}" if state.get("findings_open") else "", delay)
                await self._idle(listener, woken, backoff, delay)
        finally:
            listener.close()

    async def _idle(self, listener: _Listener, woken: asyncio.Event, backoff: _Backoff, delay: float) -> None:
        """Wait up to ``delay`` seconds for a notification; meanwhile check the LISTEN connection every
        ``liveness_interval`` seconds, or, without one, return after the next backoff step to reconnect."""
        until = time.monotonic() + delay
        while True:
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            if not listener.connected:
                await _wait(woken, min(remaining, backoff.next()))
                return
            backoff.reset()
            if await _wait(woken, min(remaining, self.liveness_interval)):
                return
            if time.monotonic() < until and not await listener.ping(self.ping_timeout):
                return
