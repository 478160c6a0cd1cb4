"""The model under test is untrusted code: a pickle/joblib artifact runs only in the isolated model process.

The malicious pickle below tries what a hostile model would (write outside its scratch dir, read a secret
file and the certifier's environment, reach PostgreSQL over TCP and the unix socket, spawn a shell); a control
test proves the very same payload succeeds without the sandbox, so the isolation test can fail."""

from __future__ import annotations

import gc
import hashlib
import io
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from modelcert import pipeline, sandbox
from modelcert.context import EvalContext
from modelcert.db.models import AuditEvent, CertificationRun, StageResult
from modelcert.db.session import reader
from modelcert.errors import ArtifactError
from modelcert.spec import load_spec
from modelcert.stages import STAGE_NAMES
from tests.conftest import SPECS, write_synthetic
from tests.lifecycle import FakeStage

pytestmark = pytest.mark.skipif(sandbox.isolation_unavailable() is not None,
                                reason=f"kernel cannot isolate: {sandbox.isolation_unavailable()}")
ATTACKS = ("write_outside", "read_secret_file", "leak_env", "parent_environ", "pg_tcp", "pg_unix", "pg_own_host",
           "raw_tcp", "shell")


# ------------------------------------------------------------------------------------------------ helpers
class _Reduce:
    """Pickles as ``fn(*args)``: what a hostile artifact does on load."""

    def __init__(self, fn: Any, *args: Any) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> Any:
        return self.fn, self.args


def pickle_bytes(obj: Any) -> bytes:
    import joblib

    buf = io.BytesIO()
    joblib.dump(obj, buf)
    return buf.getvalue()


def eval_model(expr: str) -> bytes:
    """A joblib artifact whose load evaluates ``expr`` (a model object built from builtins only)."""
    return pickle_bytes(_Reduce(eval, textwrap.dedent(expr).strip()))


def attack_code(outside: Path, secret_file: Path, db_url: str, tag: str) -> str:
    url = make_url(db_url)
    own_host = url.host or url.query.get("host")  # the embedded server is a unix-socket folder in ?host=
    return textwrap.dedent(f"""
        import os, socket, sys
        results = []
        outside = {str(outside)!r}
        def write_outside():
            with open(os.path.join(outside, "written_{tag}"), "w") as f:
                f.write("pwned")
        def read_secret_file():
            data = open({str(secret_file)!r}).read()
            with open(os.path.join(outside, "secret_{tag}"), "w") as f:
                f.write(data)
        def leak_env():
            secret = os.environ.get("MODELCERT_DATABASE_URL") or os.environ.get("MC_TEST_SECRET")
            if not secret:
                raise LookupError("no secret in the environment")
            with open(os.path.join(outside, "env_{tag}"), "w") as f:
                f.write(secret)
        def parent_environ():
            data = open("/proc/%d/environ" % os.getppid(), "rb").read()
            with open(os.path.join(outside, "penv_{tag}"), "wb") as f:
                f.write(data)
        def pg(host, port, table):
            import psycopg2
            conn = psycopg2.connect(host=host, port=port, dbname={url.database!r}, user={url.username!r},
                                    connect_timeout=3)
            conn.autocommit = True
            conn.cursor().execute("CREATE TABLE " + table + " (x int)")
        def pg_tcp():
            pg("127.0.0.1", 5432, "pwned_tcp_{tag}")
        def pg_unix():
            pg("/var/run/postgresql", 5432, "pwned_unix_{tag}")
        def pg_own_host():
            pg({own_host!r}, {url.port or 5432}, "pwned_own_{tag}")
        def raw_tcp():
            socket.create_connection(("127.0.0.1", 5432), timeout=3).close()
        def shell():
            import subprocess
            subprocess.run(["/bin/sh", "-c", "echo pwned > " + os.path.join(outside, "shell_{tag}")], check=True)
        for name in {ATTACKS!r}:
            try:
                globals()[name]()
                results.append(name + "=ok")
            except BaseException as exc:
                results.append(name + "=" + type(exc).__name__)
        print("ENVKEYS " + ",".join(sorted(os.environ)), file=sys.stderr)
        print("ATTEMPTS " + " ".join(results), file=sys.stderr)
        raise RuntimeError("malicious payload finished")
    """)


def malicious_pickle(outside: Path, secret_file: Path, db_url: str, tag: str) -> bytes:
    return pickle_bytes(_Reduce(exec, attack_code(outside, secret_file, db_url, tag), {}))


def tiny_frames() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(3)
    n = 120
    df = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n), "sex": ["m", "f"] * (n // 2)})
    df["y"] = ((df.x1 + 0.5 * df.x2 + rng.normal(scale=0.5, size=n)) > 0).astype(int)
    return {"train": df.iloc[:60].reset_index(drop=True), "test": df.iloc[60:].reset_index(drop=True)}


def joblib_spec(tmp_path: Path, artifact: bytes, *, tier: str = "medium") -> Path:
    """A spec on tiny synthetic data whose joblib artifact hashes to what the spec declares."""
    (tmp_path / "model.joblib").write_bytes(artifact)
    path, _ = write_synthetic(tmp_path, tiny_frames(), {
        "model": {"artifact": "model.joblib", "format": "joblib", "features": ["x1", "x2"],
                  "sha256": hashlib.sha256(artifact).hexdigest()},
        "use_case": {"description": "sandbox test", "intended_use": "tests", "risk_tier": tier},
        "data": {"label": "y", "protected_attributes": {"sex": {"privileged": ["m"]}}},
    })
    return path


def pid_gone(pid: int, within: float = 10.0) -> bool:
    """True once ``pid`` no longer exists (or is a zombie nobody reaped yet)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


# ------------------------------------------------------------------------------------------------ hostile
@pytest.mark.slow
def test_attack_payload_works_without_the_sandbox(tmp_path: Path, db_url: str) -> None:
    """Control: the same payload, unpickled by a plain process, does damage. Without this, the isolation test
    below could pass merely because the payload is broken."""
    outside, secret = tmp_path / "outside", tmp_path / "secret.txt"
    outside.mkdir()
    secret.write_text("top secret")
    art = tmp_path / "evil.joblib"
    art.write_bytes(malicious_pickle(outside, secret, db_url, "control"))
    env = {**os.environ, "MODELCERT_DATABASE_URL": db_url, "MC_TEST_SECRET": "s3cr3t"}
    proc = subprocess.run([sys.executable, "-c", "import joblib, sys; joblib.load(sys.argv[1])", str(art)],
                          env=env, capture_output=True, text=True, timeout=120)
    attempts = dict(a.split("=") for a in proc.stderr.split("ATTEMPTS ")[1].split("\n")[0].split())
    # The test database may be the machine's server (TCP) or the embedded one (a unix socket): the payload reaches
    # it through its own host either way; raw TCP to 127.0.0.1:5432 works wherever a server listens there.
    expected = {"write_outside", "read_secret_file", "leak_env", "parent_environ", "pg_own_host", "shell"}
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=3).close()
        expected.add("raw_tcp")
    except OSError:
        pass
    assert {a for a, r in attempts.items() if r == "ok"} >= expected, attempts
    assert {p.name for p in outside.iterdir()} >= {"written_control", "secret_control", "env_control", "shell_control"}
    eng = create_engine(db_url)
    try:
        with eng.connect() as conn:
            tables = set(conn.execute(text("SELECT tablename FROM pg_tables WHERE tablename LIKE 'pwned%'")).scalars())
    finally:
        eng.dispose()
    assert "pwned_own_control" in tables


@pytest.mark.slow
def test_malicious_pickle_cannot_touch_files_database_or_secrets(tmp_path: Path, db_url: str, engine: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    secret_value = f"s3cr3t-{uuid.uuid4().hex}"
    monkeypatch.setenv("MODELCERT_DATABASE_URL", db_url)
    monkeypatch.setenv("MC_TEST_SECRET", secret_value)
    outside, secret = tmp_path / "outside", tmp_path / "secret.txt"
    outside.mkdir()
    secret.write_text(secret_value)
    work = tmp_path / "work"
    work.mkdir()
    spec_path = joblib_spec(work, malicious_pickle(outside, secret, db_url, "sbx"))
    tmp_before = set(Path(os.environ.get("TMPDIR", "/tmp")).glob("modelcert-model-*"))

    reg = pipeline.register(engine, spec_path, run_key="evil/1", triggered_by="alice")
    for name in STAGE_NAMES:
        pipeline.run_stage(engine, reg.run_id, name)
    decision = pipeline.decide(engine, reg.run_id)

    assert decision["status"] == "error"
    with reader(engine) as s:
        stages = {r.stage: (r.status, r.reason or "") for r in s.execute(select(StageResult)).scalars()}
        run = s.get(CertificationRun, reg.run_id)
        stored = " ".join([*(run.reasons or []), *(r for _, r in stages.values()),
                           *(str(e.payload) for e in s.execute(select(AuditEvent)).scalars())])
    status, reason = stages["performance"]
    assert status == "error"
    assert reason.startswith("model.artifact: the isolated process could not load ")
    assert "RuntimeError: malicious payload finished" in reason
    assert "ATTEMPTS " in reason, reason
    attempts = dict(a.split("=") for a in reason.split("ATTEMPTS ")[1].split()[: len(ATTACKS)])
    assert set(attempts) == set(ATTACKS)
    assert [a for a, r in attempts.items() if r == "ok"] == []
    assert "\n" not in reason and "Traceback" not in stored
    # nothing written outside the scratch dir, no secret anywhere, no table, no scratch dir left behind
    assert list(outside.iterdir()) == []
    assert secret_value not in stored and "MODELCERT_DATABASE_URL" not in stored
    env_keys = reason.split("ENVKEYS ")[1].split()[0].split(",")
    # whitelisted, not inherited (KMP_INIT_AT_FORK is set by scikit-learn's import inside the child itself)
    assert set(env_keys) <= set(sandbox.BASE_ENV) | {"HOME", "TMPDIR", "KMP_INIT_AT_FORK"}
    for url in (db_url, make_url(db_url).set(database="postgres").render_as_string(hide_password=False)):
        eng = create_engine(url)
        try:
            with eng.connect() as conn:
                assert list(conn.execute(text("SELECT tablename FROM pg_tables WHERE tablename LIKE 'pwned%sbx'"))) == []
        finally:
            eng.dispose()
    assert set(Path(os.environ.get("TMPDIR", "/tmp")).glob("modelcert-model-*")) - tmp_before == set()


def test_policy_refusal_on_a_machine_without_isolation_never_loads(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail closed: without kernel isolation a joblib artifact is refused, with one line suggesting skops."""
    marker = tmp_path / "ran"
    spec_path = joblib_spec(tmp_path, pickle_bytes(_Reduce(marker.write_text, "ran")))
    monkeypatch.setattr(sandbox, "isolation_unavailable", lambda: "the kernel offers Landlock ABI 0")
    spec, _ = load_spec(spec_path)
    ctx = EvalContext(spec=spec, base_dir=spec_path.parent)
    with pytest.raises(ArtifactError) as err:
        _ = ctx.model
    assert str(err.value).startswith("model.format: a joblib (pickle) model runs only in an isolated process")
    assert "Landlock ABI 0" in str(err.value) and "skops" in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------ benign
@pytest.mark.slow
def test_benign_joblib_model_certifies_through_the_sandbox(tmp_path: Path, engine: Any, demo_build: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """German credit's real model handed over as joblib in a medium-tier spec: every stage runs with the
    model in the isolated process, the run reaches sign-off, and its scores equal the in-process ones."""
    spec_file = SPECS / "german_credit.yaml"
    skops_spec, _ = load_spec(spec_file)
    skops_ctx = EvalContext(spec=skops_spec, base_dir=spec_file.parent)
    art = tmp_path / "german_credit.joblib"
    art.write_bytes(pickle_bytes(skops_ctx.model))
    raw = yaml.safe_load(spec_file.read_text())
    for role in ("train", "test", "current"):  # copied: data must live below the spec's folder
        source = (spec_file.parent / raw["data"][role]).resolve()
        (tmp_path / source.name).write_bytes(source.read_bytes())
        raw["data"][role] = source.name
    raw["model"].update(artifact=art.name, format="joblib", sha256=hashlib.sha256(art.read_bytes()).hexdigest())
    raw["use_case"]["risk_tier"] = "medium"
    raw["checks"]["robustness"]["sample_size"] = 40  # HopSkipJump through the pipe; fewer rows keep the test short
    raw.pop("recertification", None)
    path = tmp_path / "german_credit_joblib.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))

    # data_quality and drift read only the data files, never the model: stand-ins keep this test short.
    real = pipeline.get_stage
    monkeypatch.setattr(pipeline, "get_stage",
                        lambda name: FakeStage(name) if name in ("data_quality", "drift") else real(name))
    reg = pipeline.register(engine, path, run_key="joblib/1", triggered_by="alice")
    import psutil

    me = psutil.Process()
    for name in STAGE_NAMES:
        pipeline.run_stage(engine, reg.run_id, name)
        # each stage stops its model process when it ends (a long-lived worker must not collect them)
        assert not [c for c in me.children(recursive=True) if "sandbox_worker" in " ".join(c.cmdline())], name
    decision = pipeline.decide(engine, reg.run_id)
    with reader(engine) as s:
        stages = {r.stage: r for r in s.execute(select(StageResult)).scalars()}
        assert decision["status"] == "awaiting_signoff", (decision, {k: (v.status, v.reason) for k, v in stages.items()})
        rob = stages["robustness"].summary
        perf = stages["performance"].summary
    assert rob["attacks_run"] == ["hop_skip_jump"]
    assert rob["attacks_not_applicable"]["fgsm"] == ("model runs isolated (pickle artifact): "
                                                      "no gradients across the process boundary")
    assert perf["latency"]["isolated_process"] is True

    spec, _ = load_spec(path)
    ctx = EvalContext(spec=spec, base_dir=path.parent)
    assert ctx.model_isolated and not skops_ctx.model_isolated
    y_iso, s_iso = ctx.predictions("test")
    y_in, s_in = skops_ctx.predictions("test")
    assert s_iso is not None and s_in is not None and len(s_iso) == len(s_in) > 0
    assert np.max(np.abs(s_iso - s_in)) <= 1e-12
    assert (y_iso == y_in).all()
    assert ctx.model.classes_ == [int(c) for c in skops_ctx.model.classes_]
    ctx.close()


# ------------------------------------------------------------------------------------------------ misbehaving
def test_hanging_model_is_killed_at_the_call_timeout() -> None:
    model = eval_model("""
        type("Hang", (), {"classes_": [0, 1], "predict_proba": lambda self, X: __import__("time").sleep(3600)})()
    """)
    iso = sandbox.IsolatedModel(model, source="hang.joblib", call_timeout=1.5)
    pid = iso._proc.pid
    t0 = time.monotonic()
    with pytest.raises(ArtifactError, match=r"^model\.artifact: the isolated model did not finish predict_proba on "
                                            r"2 row\(s\) within 1\.5 s \(timeout\); its process was killed"):
        iso.predict_proba(pd.DataFrame({"x": [1.0, 2.0]}))
    assert time.monotonic() - t0 < 10
    assert not iso.alive and pid_gone(pid)
    with pytest.raises(ArtifactError, match="no longer running"):
        iso.predict_proba(pd.DataFrame({"x": [1.0]}))


def test_garbage_answers_are_errors_and_never_unpickled() -> None:
    """Strings, wrong shapes, NaN, objects, bytes on stdout: each is one clear error, and the process keeps
    serving well-formed answers afterwards."""
    model = eval_model("""
        type("Garbage", (), {
            "classes_": [0, 1],
            "predict_proba": lambda self, X: {
                1: __import__("numpy").array([["a", "b"]]),
                2: __import__("numpy").zeros((5, 2)),
                3: __import__("numpy").full((3, 2), float("nan")),
                4: __import__("numpy").zeros((4, 3)),
                5: [{"a": 1}] * 5,
            }.get(len(X), __import__("numpy").full((len(X), 2), 0.5)),
            "predict": lambda self, X: (__import__("os").write(1, b"garbage on stdout"), [[1, 2, 3]] * len(X))[1],
        })()
    """)
    iso = sandbox.IsolatedModel(model, source="garbage.joblib")
    try:
        def rows(n: int) -> pd.DataFrame:
            return pd.DataFrame({"x": np.arange(n, dtype=float)})

        cases = {1: r"returned dtype <U1; allowed: numbers$", 2: r"returned shape \(5, 2\) for 2 row\(s\)",
                 3: r"returned NaN or infinite values", 4: r"returned 3 column\(s\) but the model has 2 classes",
                 5: r"predict_proba on 5 row\(s\) failed: "}
        for n, pattern in cases.items():
            with pytest.raises(ArtifactError, match=r"^model\.artifact: the isolated model's .*" + pattern):
                iso.predict_proba(rows(n))
        with pytest.raises(ArtifactError, match=r"predict returned shape \(3, 3\) for 3 row\(s\)"):
            iso.predict(rows(3))
        ok = iso.predict_proba(rows(6))
        assert ok.shape == (6, 2) and ok.dtype == np.float64 and np.all(ok == 0.5)
        assert iso.alive
    finally:
        iso.close()


def test_proxy_mirrors_the_model_and_dies_with_its_owner(tmp_path: Path) -> None:
    from sklearn.svm import LinearSVC

    X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    svc = LinearSVC().fit(X, ["no", "yes", "no", "yes"])
    iso = sandbox.IsolatedModel(pickle_bytes(svc), source="svc.joblib")
    assert not hasattr(iso, "predict_proba") and hasattr(iso, "predict")
    assert iso.classes_ == ["no", "yes"] and iso.type_name == "sklearn.svm._classes.LinearSVC"
    assert list(iso.predict(X)) == list(svc.predict(X))
    pid = iso._proc.pid
    del iso
    gc.collect()
    assert pid_gone(pid)

    # no orphan when the certifier dies without cleaning up (PR_SET_PDEATHSIG)
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(sandbox.__file__).parents[1])!r})
        from modelcert.sandbox import IsolatedModel
        iso = IsolatedModel(open({str(tmp_path / 'svc.joblib')!r}, "rb").read(), source="svc.joblib")
        print(iso._proc.pid, flush=True)
        os._exit(0)
    """)
    (tmp_path / "svc.joblib").write_bytes(pickle_bytes(svc))
    # TMPDIR: the dead certifier cannot remove its model's scratch dir; keep it below tmp_path
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "TMPDIR": str(tmp_path)})
    child = int(out.stdout.split()[0])
    assert pid_gone(child)


def test_a_lockdown_step_failing_in_the_worker_refuses_the_model(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail closed inside the worker too: when one isolation step fails (here its parent check, fed a pid that
    is not its parent), the worker exits before reading the artifact and the model is refused."""
    marker = tmp_path / "ran"
    real_getpid = os.getpid
    monkeypatch.setattr(sandbox.os, "getpid", lambda: real_getpid() + 10**6)
    with pytest.raises(ArtifactError) as err:
        sandbox.IsolatedModel(pickle_bytes(_Reduce(marker.write_text, "ran")), source="m.joblib")
    monkeypatch.undo()
    message = str(err.value)
    assert message.startswith("model.format: a joblib (pickle) model runs only in an isolated process and the kernel "
                              "refused to isolate it (isolation unavailable: the certifier exited before")
    assert message.endswith("skops (format: skops) instead") and "\n" not in message
    assert not marker.exists()
