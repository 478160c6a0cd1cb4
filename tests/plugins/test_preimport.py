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


_TASK_LIKE = """
import os, sys
sys.argv = ['airflow', 'scheduler']
import airflow  # runs airflow_local_settings (the plugins folder is on the path): the pre-import
from airflow.sdk._shared.module_loading import find_path_from_directory
from airflow.dag_processing.dagbag import BundleDagBag
from modelcert_airflow.preimport import MODULES
# What the forking process has anyway: the executor (scheduler) and the supervisor with the task runner
# (a LocalExecutor worker runs supervise(), then forks the task process).
import airflow.executors.local_executor, airflow.sdk.execution_time.supervisor
import airflow.sdk.execution_time.task_runner
missing = [m for m in MODULES if m not in sys.modules]
before = set(sys.modules)
dags = os.environ['AIRFLOW__CORE__DAGS_FOLDER']
for name in sorted(os.listdir(dags)):
    if name == os.environ['DAG_FILE']:
        bag = BundleDagBag(dag_folder=os.path.join(dags, name), safe_mode=False, load_op_links=False,
                           bundle_path=dags, bundle_name='dags-folder')
        assert bag.dags and not bag.import_errors, (name, bag.import_errors)
from airflow.sdk.listener import get_listener_manager
get_listener_manager()  # what a task process does at start-up: loads the plugins
new = sorted(m for m in set(sys.modules) - before if not m.startswith('unusual_prefix_'))
from airflow.plugins_manager import get_plugin_info
scanned = sorted(os.path.relpath(p, os.environ['AIRFLOW__CORE__PLUGINS_FOLDER'])
                 for p in find_path_from_directory(os.environ['AIRFLOW__CORE__PLUGINS_FOLDER'], '.airflowignore', 'glob')
                 if p.endswith('.py'))
print('MISSING', missing)
print('NEW', new)
print('SCANNED', scanned)
print('PLUGINS', sorted(p['name'] for p in get_plugin_info()))
"""


@pytest.mark.parametrize("dag_file", sorted(p.name for p in (PLUGINS.parent / "dags").glob("*.py")))
def test_a_task_process_imports_nothing_the_scheduler_did_not_pre_import(tmp_path: Path, dag_file: str) -> None:
    """A forked task process parses its DAG file and loads the plugins (to find listeners) before our code runs:
    every module that needs is already imported by the scheduler, so no task pays for it again; and the plugin
    manager scans only plugin.py (``plugins/.airflowignore``), still finding the modelcert plugin."""
    env = {"PATH": "/usr/bin:/bin", "MODELCERT_PREIMPORT": "1", "AIRFLOW_HOME": str(tmp_path),
           "AIRFLOW__CORE__DAGS_FOLDER": str(PLUGINS.parent / "dags"), "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PYTHONPATH": str(PLUGINS), "PYTHONWARNINGS": "ignore",
           "DAG_FILE": dag_file}
    out = subprocess.run([sys.executable, "-c", _TASK_LIKE], capture_output=True, text=True, timeout=600, env=env,
                         cwd=tmp_path)
    lines = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in out.stdout.splitlines()
             if line.split(" ", 1)[0] in ("MISSING", "NEW", "SCANNED", "PLUGINS")}
    assert len(lines) == 4, out.stderr[-3000:]
    assert lines["MISSING"] == "[]"
    logged = out.stdout + out.stderr
    assert "pre-import of" not in logged and "warm-up failed" not in logged, logged[-3000:]
    assert lines["NEW"] == "['plugin']"  # plugin.py itself, executed by the plugin manager under its file name
    assert lines["SCANNED"] == "['modelcert_airflow/plugin.py']"
    assert lines["PLUGINS"] == "['modelcert']"
