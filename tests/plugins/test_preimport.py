"""Import once per worker: which Airflow processes pre-import the stage libraries, and that doing so imports them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modelcert_airflow.preimport import is_task_forking_process, preimport_if_worker

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


@pytest.mark.parametrize(("argv", "forks"), [
    (["airflow", "scheduler"], True),
    (["airflow", "scheduler", "--skip-serve-logs"], True),
    (["airflow", "celery", "worker", "-q", "default"], True),
    (["airflow", "api-server", "--port", "8080"], False),
    (["airflow", "dag-processor"], False),
    (["airflow", "triggerer"], False),
    (["airflow", "celery", "flower"], False),
    (["pytest"], False),
])
def test_only_processes_that_fork_tasks_pre_import(argv: list[str], forks: bool) -> None:
    assert is_task_forking_process(argv) is forks


def test_switched_off_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELCERT_PREIMPORT", "0")
    assert preimport_if_worker(["airflow", "scheduler"]) is None


def test_the_local_settings_hook_imports_the_stage_libraries_in_a_scheduler() -> None:
    code = ("import sys; sys.argv = ['airflow', 'scheduler']; sys.path.insert(0, sys.argv_plugins)\n"
            "import airflow_local_settings\n"
            "print(all(m in sys.modules for m in ('evidently', 'great_expectations', 'aif360.metrics', "
            "'art.attacks.evasion', 'modelcert.stages.drift')))")
    code = code.replace("sys.argv_plugins", repr(str(PLUGINS)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         env={"PATH": "/usr/bin:/bin", "MODELCERT_PREIMPORT": "1"})
    assert out.stdout.strip().splitlines()[-1] == "True", out.stderr[-2000:]


def test_a_task_forked_from_a_scheduler_gets_one_native_thread() -> None:
    """The forking process limits OpenMP/BLAS to one thread and a forked task inherits it; the api-server does not."""
    code = ("import os, sys; sys.argv = ['airflow', sys.argv_role]; sys.path.insert(0, sys.argv_plugins)\n"
            "import airflow_local_settings, numpy, sklearn.ensemble\n"
            "from threadpoolctl import threadpool_info\n"
            "def most(): return max(p['num_threads'] for p in threadpool_info())\n"
            "r, w = os.pipe()\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    os.write(w, str(most()).encode()); os._exit(0)\n"
            "os.waitpid(pid, 0); print(most(), os.read(r, 16).decode(), os.environ.get('OMP_NUM_THREADS'))")
    results = {}
    for role in ("scheduler", "api-server"):
        src = code.replace("sys.argv_plugins", repr(str(PLUGINS))).replace("sys.argv_role", repr(role))
        out = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, timeout=600,
                             env={"PATH": "/usr/bin:/bin", "MODELCERT_PREIMPORT": "1"})
        results[role] = out.stdout.strip().splitlines()[-1].split() if out.stdout.strip() else out.stderr[-2000:]
    assert results["scheduler"] == ["1", "1", "1"], results
    # Not a forking process: the native libraries keep their own default (this machine's cores; 1 on one core).
    assert results["api-server"][2] == "None", results


def test_native_threads_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelcert_airflow.preimport import native_threads

    monkeypatch.setenv("MODELCERT_TASK_NATIVE_THREADS", "2")
    assert native_threads() == 2
    monkeypatch.setenv("MODELCERT_TASK_NATIVE_THREADS", "zero")
    assert native_threads() == 1
    monkeypatch.delenv("MODELCERT_TASK_NATIVE_THREADS")
    assert native_threads() == 1
