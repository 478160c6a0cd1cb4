"""Load and query an untrusted pickle/joblib model in an isolated process, never inside the certifier.

Why: a pickle runs arbitrary code when it is loaded, and the certifier holds the results database (on this
kind of host PostgreSQL even trusts local TCP and unix-socket connections without a password), so a model
that ran here could rewrite its own evidence or approve itself. The sha256 proves integrity, not safety.

How: :class:`IsolatedModel` starts ``python -I -B`` on :mod:`modelcert.sandbox_worker` with a whitelisted
environment (no variable of the certifier is passed on), cwd/HOME/TMPDIR in a fresh scratch directory, no
inherited file descriptors, in a new session; the worker locks itself down with Landlock, seccomp,
rlimits, dropped capabilities and no-new-privs (see its docstring) before it reads the artifact bytes. The
certifier sends the bytes it hashed (so the file cannot be swapped after the hash check) and then pickled
feature frames; answers come back as JSON or ``.npy`` without pickle, and are checked here for dtype, shape,
finiteness and size before a stage sees them. Fail closed: where the kernel cannot isolate (no Landlock
ABI >= 4, no libseccomp, not Linux on x86_64/aarch64) a pickle model is refused, never loaded unisolated.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import platform
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from modelcert.errors import ArtifactError

WORKER = Path(__file__).with_name("sandbox_worker.py")
#: Seconds one predict/predict_proba call may take before the model process is killed.
CALL_TIMEOUT_S = 120.0
#: Seconds for starting the process, locking it down and unpickling the model.
START_TIMEOUT_S = 120.0
ADDRESS_SPACE_BYTES = 4 << 30
CPU_SECONDS = 1800
FILE_BYTES = 64 << 20
MAX_ANSWER_BYTES = 1 << 30
STDERR_TAIL = 600
#: The whole environment of the model process: fixed values, nothing copied from the certifier's environment.
BASE_ENV = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0",
            "JOBLIB_MULTIPROCESSING": "0"}  # no semaphores/processes: they are refused in the sandbox anyway
SKOPS_HINT = "hand the model over as skops (format: skops) instead"

# Children are spawned from one long-lived thread: PR_SET_PDEATHSIG fires when the *thread* that forked
# the child exits, and a stage may first touch ctx.model from a short-lived worker thread. One per process:
# after a fork (Airflow forks task processes) the parent's thread does not exist in the child.
_spawners: dict[int, ThreadPoolExecutor] = {}
_spawners_lock = threading.Lock()


def _spawner() -> ThreadPoolExecutor:
    with _spawners_lock:
        pid = os.getpid()
        if pid not in _spawners:
            _spawners.clear()
            _spawners[pid] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelcert-sandbox-spawn")
        return _spawners[pid]


def _tail(text: str, limit: int = STDERR_TAIL) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else "…" + text[-(limit - 1):]


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def isolation_unavailable() -> str | None:
    """Why this machine cannot isolate a model process, or None when it can (checked again by the worker)."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "aarch64"):
        return f"isolation needs Linux on x86_64 or aarch64, this is {platform.system()} on {platform.machine()}"
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(ctypes.c_long(444), None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 4:
        return f"the kernel offers Landlock ABI {max(int(abi), 0)}, isolation needs >= 4 (filesystem and TCP rules)"
    try:
        ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2")
    except OSError:
        return "libseccomp (libseccomp.so.2) is not installed"
    return None


def _shutdown(proc: subprocess.Popen[bytes], scratch: str, err: Any) -> None:
    """Kill the model process and remove its scratch directory (also run by the garbage collector/at exit)."""
    try:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        pass
    for f in (proc.stdin, proc.stdout):
        try:
            if f is not None:
                f.close()
        except OSError:
            pass
    try:
        err.close()
    except OSError:
        pass
    shutil.rmtree(scratch, ignore_errors=True)


class IsolatedModel:
    """Proxy for a model living in the isolated process: ``predict``, ``predict_proba`` and ``classes_``
    exist exactly when the real model has them, so stages call it like an estimator."""

    isolated = True

    def __init__(self, data: bytes, *, source: str, call_timeout: float | None = None,
                 start_timeout: float | None = None) -> None:
        reason = isolation_unavailable()
        if reason is not None:
            raise ArtifactError(f"model.format: a joblib (pickle) model runs only in an isolated process and this "
                                f"machine cannot provide one ({reason}); refusing to load {_short(source, 80)}; "
                                f"{SKOPS_HINT}")
        self._source = _short(source, 80)
        self._call_timeout = float(call_timeout if call_timeout is not None else CALL_TIMEOUT_S)
        self._lock = threading.Lock()
        self._buf = bytearray()
        self._scratch = tempfile.mkdtemp(prefix="modelcert-model-")
        # unnamed: only the fd is shared with the child; owned by this object, the finalizer (_shutdown) closes it
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - outlives this method, see above
        cfg = {"parent_pid": os.getpid(), "scratch": self._scratch, "address_space": ADDRESS_SPACE_BYTES,
               "cpu_seconds": CPU_SECONDS, "file_bytes": FILE_BYTES, "read_paths": self._read_paths()}
        env = {**BASE_ENV, "HOME": self._scratch, "TMPDIR": self._scratch}
        argv = [sys.executable, "-I", "-B", "-c",
                "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')", str(WORKER), json.dumps(cfg)]
        try:
            self._proc = _spawner().submit(
                subprocess.Popen, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err,
                cwd=self._scratch, env=env, close_fds=True, start_new_session=True).result()
        except OSError as exc:
            shutil.rmtree(self._scratch, ignore_errors=True)
            raise ArtifactError(f"model.artifact: cannot start the isolated model process: {exc}") from None
        self._finalizer = weakref.finalize(self, _shutdown, self._proc, self._scratch, self._err)
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._out_fd, self._in_fd = self._proc.stdin.fileno(), self._proc.stdout.fileno()
        os.set_blocking(self._out_fd, False)
        self._timeout = float(start_timeout if start_timeout is not None else START_TIMEOUT_S)
        deadline = time.monotonic() + self._timeout
        kind, body = self._answer("start-up", deadline, 1 << 20)
        info = self._json(body, "start-up")
        if kind == b"E":
            self.close()
            raise ArtifactError(f"model.format: a joblib (pickle) model runs only in an isolated process and the "
                                f"kernel refused to isolate it ({_short(info.get('error', ''), 300)}); refusing to "
                                f"load {self._source}; {SKOPS_HINT}")
        self.landlock_abi = int(info.get("landlock_abi", 0))
        self._send({"op": "load", "data": data}, deadline, "loading the model")
        kind, body = self._answer("loading the model", deadline, 1 << 20)
        info = self._json(body, "loading the model")
        if kind == b"E":
            note = self._stderr_note()
            self.close()
            raise ArtifactError(f"model.artifact: the isolated process could not load {self._source}: "
                                f"{_short(info.get('error', ''), 300)}{note}")
        self.type_name = _short(str(info.get("type", "?")), 120)
        self._has = {"predict": info.get("has_predict") is True, "predict_proba": info.get("has_predict_proba") is True}
        self._classes = self._check_classes(info.get("classes"))

    # ------------------------------------------------------------------------------------ estimator face
    @property
    def classes_(self) -> list[Any]:
        if self._classes is None:
            raise AttributeError("classes_")
        return list(self._classes)

    @property
    def predict(self) -> Callable[[Any], np.ndarray]:
        if not self._has["predict"]:
            raise AttributeError("predict")
        return lambda X: self._call("predict", X)

    @property
    def predict_proba(self) -> Callable[[Any], np.ndarray]:
        if not self._has["predict_proba"]:
            raise AttributeError("predict_proba")
        return lambda X: self._call("predict_proba", X)

    def close(self) -> None:
        """Kill the model process now (it is also killed when this proxy is garbage collected)."""
        self._finalizer()

    @property
    def alive(self) -> bool:
        return self._finalizer.alive and self._proc.poll() is None

    def __repr__(self) -> str:
        return f"IsolatedModel({self.type_name}, pid={self._proc.pid}, alive={self.alive})"

    # ------------------------------------------------------------------------------------ protocol
    @staticmethod
    def _read_paths() -> list[str]:
        """What the model process may read: the Python installation (stdlib, the venv's site-packages) only —
        not the other sys.path entries (the repository, dags, plugins: beside them live the embedded
        database and Airflow's configuration)."""
        paths = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix}
        return sorted({os.path.realpath(p) for p in paths} | paths)

    def _call(self, method: str, X: Any) -> np.ndarray:
        rows = len(X)
        what = f"{method} on {rows} row(s)"
        with self._lock:
            if not self.alive:
                raise ArtifactError(f"model.artifact: the isolated model process of {self._source} is no longer running"
                                    f"{self._stderr_note()}")
            self._timeout = self._call_timeout
            deadline = time.monotonic() + self._timeout
            width = len(self._classes) if self._classes else 64
            limit = min(MAX_ANSWER_BYTES, 4096 + rows * (width * 8 if method == "predict_proba" else 1024))
            self._send({"op": "call", "method": method, "X": X}, deadline, what)
            kind, body = self._answer(what, deadline, limit)
        if kind == b"E":
            raise ArtifactError(f"model.artifact: the isolated model's {what} failed: "
                                f"{_short(self._json(body, what).get('error', ''), 300)}")
        if kind != b"A":
            self.close()
            raise ArtifactError(f"model.artifact: the isolated model answered {what} with an unknown frame; "
                                "its process was killed")
        return self._check_array(body, method, rows)

    def _check_array(self, body: bytes, method: str, rows: int) -> np.ndarray:
        """The answer as an array, or ArtifactError: numbers (or short text labels for predict), one row
        per requested row, finite scores. Never unpickled."""
        try:
            arr = np.load(io.BytesIO(body), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise ArtifactError(f"model.artifact: the isolated model's {method} answer is not a plain array: "
                                f"{_short(str(exc), 160)}") from None
        kinds = "biuf" if method == "predict_proba" else "biufU"
        if (not isinstance(arr, np.ndarray) or arr.dtype.kind not in kinds
                or (arr.dtype.kind == "U" and arr.dtype.itemsize > 1024)):
            dtype = _short(str(getattr(arr, "dtype", "?")), 40)
            allowed = "numbers" if method == "predict_proba" else "numbers or short text labels"
            raise ArtifactError(f"model.artifact: the isolated model's {method} returned dtype {dtype}; "
                                f"allowed: {allowed}")
        if method == "predict" and arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr.ravel()
        expected_ndim = 2 if method == "predict_proba" else 1
        if arr.ndim != expected_ndim or arr.shape[0] != rows or (expected_ndim == 2 and arr.shape[1] < 1):
            raise ArtifactError(f"model.artifact: the isolated model's {method} returned shape {tuple(arr.shape)} for "
                                f"{rows} row(s); allowed: {'(rows, classes)' if expected_ndim == 2 else '(rows,)'}")
        if method == "predict_proba" and self._classes is not None and arr.shape[1] != len(self._classes):
            raise ArtifactError(f"model.artifact: the isolated model's predict_proba returned {arr.shape[1]} column(s) "
                                f"but the model has {len(self._classes)} classes")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ArtifactError(f"model.artifact: the isolated model's {method} returned NaN or infinite values")
        return arr

    @staticmethod
    def _check_classes(value: Any) -> list[Any] | None:
        if value is None:
            return None
        if not isinstance(value, list) or not 1 <= len(value) <= 10000 or not all(
                isinstance(c, (str, int, float, bool)) for c in value):
            raise ArtifactError("model.artifact: the isolated model's classes_ is not a list of at most 10000 labels")
        return [c[:200] if isinstance(c, str) else c for c in value]

    def _json(self, body: bytes, what: str) -> dict[str, Any]:
        try:
            obj = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            obj = None
        if not isinstance(obj, dict):
            self.close()
            raise ArtifactError(f"model.artifact: the isolated model process answered {what} with malformed JSON; "
                                "its process was killed")
        return obj

    def _send(self, request: dict[str, Any], deadline: float, what: str) -> None:
        payload = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(struct.pack(">Q", len(payload)) + payload)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail_timeout(what)
            _, ready, _ = select.select([], [self._out_fd], [], remaining)
            if not ready:
                continue
            try:
                n = os.write(self._out_fd, view)
            except BlockingIOError:
                continue
            except (BrokenPipeError, OSError):
                self._fail_dead(what)
            view = view[n:]

    def _read(self, n: int, deadline: float, what: str) -> bytes:
        while len(self._buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail_timeout(what)
            ready, _, _ = select.select([self._in_fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self._in_fd, max(65536, min(n - len(self._buf), 1 << 24)))
            if not chunk:
                self._fail_dead(what)
            self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def _answer(self, what: str, deadline: float, limit: int) -> tuple[bytes, bytes]:
        head = self._read(9, deadline, what)
        kind, (size,) = head[:1], struct.unpack(">Q", head[1:])
        if kind not in (b"J", b"A", b"E") or size > limit:
            self.close()
            frame = "an unknown frame" if kind not in (b"J", b"A", b"E") else f"{size} bytes (at most {limit} allowed)"
            raise ArtifactError(f"model.artifact: the isolated model answered {what} with {frame}; "
                                "its process was killed")
        return kind, self._read(size, deadline, what)

    def _stderr_note(self) -> str:
        try:
            size = os.fstat(self._err.fileno()).st_size
            text = os.pread(self._err.fileno(), 4 * STDERR_TAIL,
                            max(0, size - 4 * STDERR_TAIL)).decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        text = _tail(text)
        return f"; model process stderr: {text}" if text else ""

    def _fail_timeout(self, what: str) -> None:
        note = self._stderr_note()
        self.close()
        raise ArtifactError(f"model.artifact: the isolated model did not finish {what} within {self._timeout:g} s "
                            f"(timeout); its process was killed{note}")

    def _fail_dead(self, what: str) -> None:
        try:
            code: int | None = self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        if code is not None and code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}" if code is not None else "closed its pipe"
        note = self._stderr_note()
        self.close()
        raise ArtifactError(f"model.artifact: the isolated model process {how} while {what}{note}")
