"""Start and drive a real local Airflow 3 (api-server, scheduler, dag-processor, triggerer) as subprocesses.

Used by the main job (``modelcert demo``) and by the end-to-end tests. It talks to Airflow only through
its CLI and REST API v2 (no airflow import here: the core library stays Airflow-free).

Two executors: ``local`` (LocalExecutor: the scheduler runs the tasks) and ``celery`` (CeleryExecutor: Redis
as broker, the metadata PostgreSQL as result backend, and two or more ``airflow celery worker`` processes, each
with its own Celery hostname, task hostname and log server; see :class:`AirflowStack`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
PROCESSES = ("api-server", "scheduler", "dag-processor", "triggerer")
#: Where Airflow's log servers listen (the worker's, in the scheduler's LocalExecutor, and the triggerer's).
#: Airflow 3.3 binds them to every interface with no setting to change that; we start them ourselves on this
#: host instead (``--skip-serve-logs``), loopback unless configured otherwise.
LOG_SERVER_HOST_ENV = "MODELCERT_LOG_SERVER_HOST"
LOG_SERVERS = {"worker-log-server": "WORKER_LOG_SERVER_PORT", "trigger-log-server": "TRIGGER_LOG_SERVER_PORT"}
#: Airflow's own log server app (``airflow.utils.serve_logs``) on the host we choose; run in a child process so
#: the core library never imports Airflow.
_LOG_SERVER_CODE = (
    "import sys, uvicorn\n"
    "from setproctitle import setproctitle\n"
    "setproctitle('airflow serve-logs ' + sys.argv[1] + ':' + sys.argv[2])\n"
    "uvicorn.run('airflow.utils.serve_logs.log_server:get_app', factory=True, host=sys.argv[1],"
    " port=int(sys.argv[2]), log_level='warning', log_config=None, access_log=False)\n"
)
#: Executors the dev stack can run with (``modelcert demo --executor``).
EXECUTORS = ("local", "celery")
#: The Celery broker of the dev stack: $MODELCERT_CELERY_BROKER_URL, else Redis on this machine, database 5
#: (the demo's; the e2e tests use database 6 and a private queue per run, so runs side by side never share work).
CELERY_BROKER_ENV = "MODELCERT_CELERY_BROKER_URL"
DEFAULT_CELERY_BROKER = "redis://127.0.0.1:6379/5"


def worker_address(number: int) -> str:
    """The loopback address of Celery worker ``number`` (1-based): 127.0.0.2, 127.0.0.3, ... Each worker's log
    server listens there and its tasks record it as their hostname. The api-server fetches a running task's log
    from ``http://<task hostname>:<[logging] worker_log_server_port>`` with one port for all workers, so on one
    machine the workers differ by address (as they would by host name on several machines), not by port."""
    if not 1 <= number <= 250:
        raise ValueError(f"worker number {number}: allowed 1..250")
    return f"127.0.0.{number + 1}"


def worker_hostname() -> str:
    """``[core] hostname_callable`` of a dev-stack Celery worker: the address its log server listens on
    ($MODELCERT_WORKER_HOSTNAME, set per worker), so each task records which worker ran it."""
    return os.environ.get("MODELCERT_WORKER_HOSTNAME") or "localhost"


def redacted(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return parts._replace(netloc=netloc).geturl()
    except ValueError:
        return "<unparsable URL>"


def check_broker(url: str, timeout: float = 3.0) -> None:
    """Raise ModelcertError with one line naming ``url`` when the Celery broker (Redis) does not answer a PING."""
    import redis

    from modelcert.errors import ModelcertError

    if not url.startswith(("redis://", "rediss://")):
        raise ModelcertError(f"{CELERY_BROKER_ENV}: {redacted(url)!r} is not a Redis URL; allowed: "
                             "redis://HOST:PORT/DB or rediss://...")
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelcertError(f"Celery broker {redacted(url)} is unreachable ({reason}); start Redis there or set "
                           f"{CELERY_BROKER_ENV}") from exc


def result_backend(metadata_url: str) -> str:
    """Celery's result backend in the metadata PostgreSQL (``db+postgresql+psycopg2://...``)."""
    url = metadata_url
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return "db+" + url


#: Signals that stop the stack; children get their default dispositions back (a shell that starts a
#: background job makes it ignore SIGINT, and ignored dispositions survive exec).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


#: The certification DAG, whose runs are named after the model and version they certify.
CERTIFY_DAG_ID = "certify_model"
#: Where a spec given by file name lives (as the DAG's ``spec`` param resolves it).
SPEC_DIR = Path(__file__).resolve().parents[1] / "specs"


def certify_run_id(spec: str, *, now: datetime | None = None) -> str | None:
    """``<model>_<version>__<UTC timestamp>`` for a certify_model run of ``spec`` (a shipped spec's file name or a
    path), so Airflow's runs list and grid show which model a run certified; None when the spec cannot be read
    (the run is then refused by its register task, under the id Airflow gives it). The spec's name and version
    rules keep the id inside Airflow's allowed run-id characters."""
    from modelcert.spec import load_spec

    path = Path(spec) if Path(spec).is_absolute() else SPEC_DIR / spec
    try:
        parsed, _ = load_spec(path)
    except Exception:  # noqa: BLE001 - any unreadable spec: let Airflow name the run, register reports why
        return None
    when = (now or datetime.now(UTC)).astimezone(UTC)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
    return f"{parsed.model.name}_{parsed.model.version}__{stamp}"


def loopback_hostname() -> str:
    """``[core] hostname_callable`` for a stack whose log servers listen on loopback only: the api-server
    fetches a running task's log from ``http://<task hostname>:<port>``, so the hostname must reach them."""
    return "localhost"


def _default_signals() -> None:
    """``preexec_fn`` of every Airflow process: default signal dispositions, whatever the demo inherited."""
    for sig in (*STOP_SIGNALS, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)


def session_members(leaders: list[int]) -> list[Any]:
    """Every live process in the sessions these leaders started, and every descendant of theirs.

    Sessions catch what parent links miss: Airflow's task supervisor puts each task in its own process
    group, and a child whose parent died is re-parented to init — both stay in the session. Descendants catch
    a child that started its own session (e.g. a Bash task)."""
    import psutil

    found: dict[int, Any] = {}
    sessions = set(leaders)
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) in sessions:
                found[proc.pid] = proc
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    for pid in list(found) + list(leaders):
        try:
            for child in psutil.Process(pid).children(recursive=True):
                found.setdefault(child.pid, child)
        except psutil.Error:
            continue
    for pid in leaders:
        if pid not in found:
            try:
                found[pid] = psutil.Process(pid)
            except psutil.Error:
                continue
    found.pop(os.getpid(), None)  # never ourselves
    return list(found.values())


def stop_sessions(leaders: list[int], *, timeout: float = 20.0) -> None:
    """SIGTERM to every process in ``session_members(leaders)`` (each leader's group first, so Airflow's
    own shutdown runs), wait up to ``timeout`` s, then SIGKILL whatever is left — looked up again, since a
    process may have started children while stopping."""
    import psutil

    members = session_members(leaders)
    for pid in leaders:
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    for proc in members:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(members, timeout=timeout)
    for _round in range(3):
        left = {p.pid: p for p in [*alive, *session_members(leaders)] if _running(p)}
        if not left:
            return
        for proc in left.values():
            try:
                proc.kill()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(list(left.values()), timeout=5)


def _running(proc: Any) -> bool:
    import psutil

    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_free_on(addresses: list[str], tries: int = 50) -> int:
    """A port that is free on every one of ``addresses`` (picked on the first, checked on the others)."""
    for _ in range(tries):
        with socket.socket() as first:
            first.bind((addresses[0], 0))
            port = int(first.getsockname()[1])
            try:
                for address in addresses[1:]:
                    with socket.socket() as other:
                        other.bind((address, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no port free on all of {', '.join(addresses)} after {tries} tries")


@dataclass
class AirflowStack:
    home: Path
    metadata_url: str
    results_url: str
    port: int = 0
    users: str = "admin:admin,bob:viewer,dave:viewer,erin:viewer,frank:viewer,alice:user,carol:user"
    #: Safety-net poll of the sign-off trigger; approvals wake it at once through LISTEN/NOTIFY.
    signoff_poll_seconds: float = 600.0
    repo: Path = REPO
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: Host of the two log servers ($MODELCERT_LOG_SERVER_HOST, default loopback).
    log_server_host: str = field(default_factory=lambda: os.environ.get(LOG_SERVER_HOST_ENV) or "127.0.0.1")
    #: Their ports: Airflow's settings when given, else free ones (several stacks on one machine must not clash).
    log_server_ports: dict[str, int] = field(default_factory=dict)
    #: ``local`` (LocalExecutor) or ``celery`` (CeleryExecutor with ``workers`` Celery worker processes).
    executor: str = "local"
    #: Celery only: how many ``airflow celery worker`` processes, and task slots in each.
    workers: int = 2
    worker_concurrency: int = 2
    #: Celery only: the broker ($MODELCERT_CELERY_BROKER_URL, else DEFAULT_CELERY_BROKER) and the queue the
    #: stack's tasks go to and its workers read (``[operators] default_queue``).
    broker_url: str = field(default_factory=lambda: os.environ.get(CELERY_BROKER_ENV) or DEFAULT_CELERY_BROKER)
    queue: str = "modelcert"
    #: Set last in every process's environment (e.g. ``MODELCERT_RECERTIFY_SCHEDULE=none`` for a test that
    #: triggers recertification itself).
    extra_env: dict[str, str] = field(default_factory=dict)
    _token: str | None = None

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor {self.executor!r}: allowed {', '.join(EXECUTORS)}")
        if self.executor == "celery" and not 1 <= self.workers <= 250:
            raise ValueError(f"workers {self.workers}: allowed 1..250")
        if not self.port:
            self.port = free_port()
        self.home = self.home.resolve()
        for name, key in LOG_SERVERS.items():
            if name not in self.log_server_ports:
                configured = os.environ.get(f"AIRFLOW__LOGGING__{key}")
                self.log_server_ports[name] = int(configured) if configured else free_port()
        if self.executor == "celery" and not os.environ.get("AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"):
            # One port for every worker's log server (each on its own address): free on all of them.
            addresses = [self.log_server_host] + [worker_address(n) for n in range(1, self.workers + 1)]
            self.log_server_ports["worker-log-server"] = _port_free_on(addresses)

    @property
    def celery_workers(self) -> dict[str, str]:
        """Process name (``worker1``...) → Celery hostname (``worker1.<queue>@<machine>``: distinct per stack, so
        stacks sharing a broker database never see a name clash)."""
        if self.executor != "celery":
            return {}
        host = socket.gethostname()
        return {f"worker{n}": f"worker{n}.{self.queue}@{host}" for n in range(1, self.workers + 1)}

    @property
    def base_url(self) -> str:
        return f"http://localhost:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        bin_dir = str(Path(sys.executable).parent)
        env.update({
            "PATH": bin_dir + os.pathsep + env.get("PATH", ""),
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.repo / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.repo / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_url,
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": self.users,
            "AIRFLOW__API_AUTH__JWT_SECRET": self._secret("jwt"),
            "AIRFLOW__API__SECRET_KEY": self._secret("api"),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            **{f"AIRFLOW__LOGGING__{key}": str(self.log_server_ports[name]) for name, key in LOG_SERVERS.items()},
            "AIRFLOW_CONN_MODELCERT_DB": self.results_url.replace("postgresql+psycopg2://", "postgresql://"),
            "MODELCERT_DATABASE_URL": self.results_url,
            "MODELCERT_SIGNOFF_POLL_SECONDS": str(self.signoff_poll_seconds),
            "GX_ANALYTICS_ENABLED": "false",
            "PYTHONWARNINGS": "ignore",
            "NO_COLOR": "1",
        })
        loopback = self.log_server_host in ("127.0.0.1", "localhost", "::1")
        if loopback and "AIRFLOW__CORE__HOSTNAME_CALLABLE" not in os.environ:
            env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] = f"{__name__}.loopback_hostname"
        if self.executor == "celery":
            env.update({
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": result_backend(self.metadata_url),
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
                # Enough scheduler slots for every worker slot (more workers must mean more tasks at once).
                "AIRFLOW__CORE__PARALLELISM": str(max(8, self.workers * self.worker_concurrency)),
                "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.queue,
                # Redelivery after a day (Airflow's default, said explicitly so the worker does not warn).
                "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "86400",
            })
        env.update(self.extra_env)
        return env

    def worker_env(self, number: int) -> dict[str, str]:
        """A Celery worker's environment: its tasks record its own address as their hostname."""
        env = self.env()
        env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] = f"{__name__}.worker_hostname"
        env["MODELCERT_WORKER_HOSTNAME"] = worker_address(number)
        return env

    def _secret(self, name: str) -> str:
        path = self.home / f".{name}_secret"
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        return path.read_text().strip()

    def _airflow(self) -> str:
        exe = Path(sys.executable).parent / "airflow"
        return str(exe) if exe.exists() else (shutil.which("airflow") or "airflow")

    # ----------------------------------------------------------------------------- lifecycle
    def migrate(self) -> None:
        """``airflow db migrate`` in its own session, stopped with everything it started if we are."""
        self.home.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen([self._airflow(), "db", "migrate"], env=self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=_default_signals)
        try:
            stdout, stderr = proc.communicate()
        except BaseException:
            stop_sessions([proc.pid])
            raise
        if proc.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{stdout[-3000:]}\n{stderr[-3000:]}")

    def start(self, timeout: float = 180.0) -> None:
        """Each process in its own session (so a terminal's Ctrl-C reaches only the demo, which stops them in
        order, and ``stop`` can find every descendant by session), with default signal dispositions.
        With Celery, the broker is checked first (one line naming its URL when unreachable)."""
        if self.executor == "celery":
            check_broker(self.broker_url)
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        commands: dict[str, tuple[list[str], dict[str, str]]] = {}
        for name in PROCESSES:
            args = [self._airflow(), name]
            if name == "api-server":
                args += ["--port", str(self.port), "--host", "127.0.0.1"]
            if name in ("scheduler", "triggerer"):
                args += ["--skip-serve-logs"]  # served by the log servers below, on log_server_host
            commands[name] = (args, self.env())
        log_servers = dict(LOG_SERVERS)
        if self.executor == "celery":
            log_servers.pop("worker-log-server")  # the scheduler runs no task: each worker has its own below
        for name in log_servers:
            commands[name] = ([sys.executable, "-c", _LOG_SERVER_CODE, self.log_server_host,
                               str(self.log_server_ports[name])], self.env())
        port = str(self.log_server_ports["worker-log-server"])
        for number, (name, celery_name) in enumerate(self.celery_workers.items(), start=1):
            commands[name] = ([self._airflow(), "celery", "worker", "--celery-hostname", celery_name,
                               "--queues", self.queue, "--concurrency", str(self.worker_concurrency),
                               "--skip-serve-logs", "--without-mingle", "--without-gossip"],
                              self.worker_env(number))
            commands[f"{name}-log-server"] = ([sys.executable, "-c", _LOG_SERVER_CODE, worker_address(number), port],
                                              self.env())
        for name, (args, env) in commands.items():
            with open(logs / f"{name}.log", "ab") as fh:  # the child holds its own copy of the descriptor
                self.procs[name] = subprocess.Popen(args, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                                    start_new_session=True, preexec_fn=_default_signals)
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    log_file = self.home / "logs" / (name + ".log")
                    raise RuntimeError(f"airflow {name} exited with {p.returncode}; see {log_file}:\n"
                                       + self.tail(name))
            try:
                r = httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=5)
                if r.status_code == 200:
                    body = r.json()
                    if body.get("scheduler", {}).get("status") == "healthy" and \
                            body.get("triggerer", {}).get("status") == "healthy":
                        missing = self.silent_workers()
                        if not missing:
                            return
                        last = f"Celery workers not answering a ping: {', '.join(missing)}"
                    else:
                        last = json.dumps(body)
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(1)
        raise TimeoutError(f"Airflow not healthy after {timeout:.0f}s: {last}")

    def silent_workers(self, timeout: float = 2.0) -> list[str]:
        """Celery hostnames of this stack's workers that do not answer a ping through the broker (none without
        Celery)."""
        if not self.celery_workers:
            return []
        from celery import Celery

        app = Celery("modelcert-devstack", broker=self.broker_url)
        try:
            names = list(self.celery_workers.values())
            replies = app.control.ping(destination=names, timeout=timeout) or []
        except Exception:  # noqa: BLE001 - broker hiccup while starting: every worker counts as silent
            replies = []
        finally:
            app.close()
        answered = {name for reply in replies for name in reply}
        return [n for n in self.celery_workers.values() if n not in answered]

    def stop(self, timeout: float = 20.0) -> None:
        """Stop every process of the stack and everything they started: SIGTERM, then SIGKILL after
        ``timeout`` seconds for whatever is left. No orphans (see ``stop_sessions``)."""
        stop_sessions([p.pid for p in self.procs.values()], timeout=timeout)
        for p in self.procs.values():
            try:
                p.wait(timeout=5)  # reap our direct children
            except subprocess.TimeoutExpired:
                pass
        self.procs.clear()

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.home / "logs" / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # ----------------------------------------------------------------------------- REST API v2
    def password(self, user: str) -> str:
        path = self.home / "simple_auth_manager_passwords.json.generated"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if path.exists():
                data = json.loads(path.read_text() or "{}")
                if user in data:
                    return str(data[user])
            time.sleep(0.5)
        raise RuntimeError(f"no generated password for {user} in {path}")

    def token(self, user: str = "admin") -> str:
        r = httpx.post(f"{self.base_url}/auth/token", json={"username": user, "password": self.password(user)},
                       timeout=30)
        r.raise_for_status()
        return str(r.json()["access_token"])

    def api(self, method: str, path: str, *, user: str = "admin", **kwargs: Any) -> httpx.Response:
        if user == "admin":
            if self._token is None:
                self._token = self.token("admin")
            token = self._token
        else:
            token = self.token(user)
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.request(method, f"{self.base_url}{path}", headers=headers, timeout=60, **kwargs)

    def wait_dag(self, dag_id: str, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.api("GET", f"/api/v2/dags/{dag_id}")
            if r.status_code == 200:
                return
            time.sleep(2)
        errors = self.api("GET", "/api/v2/importErrors").text
        raise TimeoutError(f"DAG {dag_id} not parsed after {timeout:.0f}s; import errors: {errors[:2000]}")

    def trigger(self, dag_id: str, conf: dict[str, Any], *, run_id: str | None = None) -> str:
        """Trigger a DAG run; a ``certify_model`` run gets an id naming its model and version
        (:func:`certify_run_id`) unless ``run_id`` is given or the spec cannot be read (then Airflow names it)."""
        if run_id is None and dag_id == CERTIFY_DAG_ID and isinstance(conf.get("spec"), str):
            run_id = certify_run_id(conf["spec"])
        body: dict[str, Any] = {"logical_date": None, "conf": conf}
        if run_id is not None:
            body["dag_run_id"] = run_id
        r = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)
        if r.status_code >= 300:
            raise RuntimeError(f"trigger {dag_id} failed: {r.status_code} {r.text[:500]}")
        return str(r.json()["dag_run_id"])

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        r = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
        r.raise_for_status()
        return {ti["task_id"]: ti["state"] for ti in r.json()["task_instances"]}

    def tasks_per_host(self, dag_id: str, run_id: str) -> dict[str, int]:
        """How many of a DAG run's task instances ran on each host (``hostname``; with Celery, the worker)."""
        r = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})
        r.raise_for_status()
        out: dict[str, int] = {}
        for ti in r.json()["task_instances"]:
            if ti.get("hostname"):
                out[ti["hostname"]] = out.get(ti["hostname"], 0) + 1
        return dict(sorted(out.items()))

    def run_state(self, dag_id: str, run_id: str) -> str:
        r = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        r.raise_for_status()
        return str(r.json()["state"])

    def wait_for(self, predicate: Any, *, timeout: float, interval: float = 2.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
