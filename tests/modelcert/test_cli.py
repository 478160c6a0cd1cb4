"""The CLI end to end in-process: validate, run (no Airflow), status, report, approve, promote."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from modelcert.cli import main

pytestmark = pytest.mark.store
SPECS = Path(__file__).resolve().parents[2] / "include" / "specs"


def test_validate_shipped_specs(demo_build: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("german_credit", "adult_income", "compas_audit"):
        assert main(["validate", str(SPECS / f"{name}.yaml")]) == 0
    out = capsys.readouterr().out
    assert "evidence digest" in out and "audit of predictions" in out


def test_run_audit_in_process_then_status_and_report(demo_build: Path, db_url: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--database-url", db_url, "run", str(SPECS / "compas_audit.yaml")])
    out = capsys.readouterr().out
    assert code == 3, out  # rejected
    assert "robustness" in out and "not_applicable" in out
    assert "outcome: rejected" in out and "disparate_impact[race=African-American]" in out
    assert main(["--database-url", db_url, "--json", "status"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert len(runs) == 1 and runs[0]["status"] == "rejected"
    assert runs[0]["stages"]["robustness"] == "not_applicable" and runs[0]["stages"]["fairness"] == "failed"
    run_id = runs[0]["run_id"]
    assert main(["--database-url", db_url, "--json", "report", run_id]) == 0
    rep = json.loads(capsys.readouterr().out)
    fairness = next(s for s in rep["stages"] if s["stage"] == "fairness")
    first = fairness["checks"][0]
    assert first["passed"] is False and first["required"] is True  # failed checks first
    assert first["threshold"] and first["value"] is not None
    assert rep["evidence"]["files"]["test"]["sha256"] and len(rep["evidence_digest"]) == 64
    assert main(["--database-url", db_url, "report", run_id]) == 0
    human = capsys.readouterr().out
    assert "FAIL" in human and "disparate_impact[race=African-American]" in human
    # the group table: every race category with n and rates, the excluded ones with the reason, the verdicts
    table = human.split("fairness by group: race", 1)[1].split("fairness by group: sex", 1)[0]
    assert "reference Caucasian, declared" in table
    assert re.search(r"African-American\s+3175\s+51\.44%", table)
    assert re.search(r"Native American\s+11 .*excluded: 11 rows < data\.min_group_size 30", table)
    assert re.search(r"fail\s+false_negative_rate_difference\[African-American\] = 0\.\d+\s+95% CI \[", table)
    assert fairness["summary"]["attributes"]["race"]["reference"] == "Caucasian"  # the JSON carries the summary


def test_approve_refusal_exit_code(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--database-url", db_url, "approve", "00000000-0000-0000-0000-000000000000",
                 "--approver", "bob", "--role", "model_validator", "--evidence-digest", "f" * 64])
    assert code == 2
    assert "no certification run with id" in capsys.readouterr().err


# ------------------------------------------------------------------ the CLI as the README writes it (issue 7.9)
def _json_only(out: str) -> object:
    """stdout in --json mode must be one JSON document and nothing else."""
    return json.loads(out)


def test_flags_after_subcommand_short_ids_and_json_only_stdout(
        db_url: str, spec_path: Path, verdicts: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", str(spec_path), "--json", "--database-url", db_url])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    out = _json_only(cap.out)
    assert isinstance(out, dict) and out["status"] == "awaiting_signoff"
    assert f"run {out['run_id']}" in cap.err and "outcome" not in cap.out  # people's lines went to stderr
    run_id = out["run_id"]

    assert main(["status", "--json", "--database-url", db_url]) == 0
    listed = _json_only(capsys.readouterr().out)
    assert isinstance(listed, list) and [r["run_id"] for r in listed] == [run_id]
    assert main(["status", "--database-url", db_url]) == 0
    short = run_id[:8]
    assert short in capsys.readouterr().out  # the id people copy from the table

    assert main(["report", short, "--json", "--database-url", db_url]) == 0
    rep = _json_only(capsys.readouterr().out)
    assert isinstance(rep, dict) and rep["run_id"] == run_id and rep["status"] == "awaiting_signoff"
    assert main(["status", short.upper(), "--json", "--database-url", db_url]) == 0
    assert _json_only(capsys.readouterr().out)["run_id"] == run_id  # type: ignore[index]

    for who, role in (("bob", "model_validator"), ("dave", "risk_officer")):
        assert main(["approve", short, "--approver", who, "--role", role, "--database-url", db_url, "--json",
                     "--evidence-digest", rep["evidence_digest"]]) == 0
        assert _json_only(capsys.readouterr().out)["run_id"] == run_id  # type: ignore[index]
    assert main(["promote", short, "--database-url", db_url]) == 0
    cert = _json_only(capsys.readouterr().out)
    assert isinstance(cert, dict) and cert["run_id"] == run_id and cert["status"] == "valid"
    assert main(["decline", short, "--approver", "bob", "--role", "model_validator", "--reason", "late",
                 "--database-url", db_url, "--evidence-digest", rep["evidence_digest"]]) == 2
    assert "is certified, not awaiting sign-off" in capsys.readouterr().err


def _bare_run(run_id: str) -> object:
    from modelcert.db.models import CertificationRun

    return CertificationRun(id=run_id, run_key=f"test/{run_id}", status="error", spec={}, spec_path="x.yaml",
                            spec_base_dir=".", spec_text="", evidence={}, evidence_digest="0" * 64, submitter="alice")


def test_run_prefix_ambiguous_unknown_and_malformed(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from modelcert.db.session import get_engine, transaction

    ids = ["abcd0001-0000-4000-8000-000000000000", "abcd0002-0000-4000-8000-000000000000"]
    with transaction(get_engine(db_url)) as s:
        s.add_all([_bare_run(i) for i in ids])
    cases = {
        "abcd": f"run id prefix 'abcd' matches 2 runs: {ids[0]}, {ids[1]}; give more characters",
        "abcd9": "no certification run with id or id prefix 'abcd9'",
        "ab": "too short: give at least 4 characters",
        "x" * 500: "is not a run id",
        "abcd'; drop table x": "is not a run id",
    }
    for ref, expected in cases.items():
        assert main(["--database-url", db_url, "report", ref]) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1 and "Traceback" not in err, err
        assert len(err) < 400  # a 500-character reference is not echoed whole
    assert main(["--database-url", db_url, "status", "abcd0002", "--json"]) == 0
    assert _json_only(capsys.readouterr().out)["run_id"] == ids[1]  # type: ignore[index]


def test_pick_is_the_same_rule_for_the_api_path() -> None:
    from modelcert.errors import RunNotFound
    from modelcert.refs import AmbiguousRunRef, pick

    ids = ["abcd0001-0000-4000-8000-000000000000", "abcd0002-0000-4000-8000-000000000000"]
    assert pick("ABCD0002", ids) == ids[1]
    assert pick(ids[0], ids) == ids[0]
    with pytest.raises(AmbiguousRunRef, match="matches 2 runs"):
        pick("abcd", ids)
    with pytest.raises(RunNotFound, match="no certification run"):
        pick("ffff", ids)


def test_json_mode_keeps_stray_output_off_stdout(monkeypatch: pytest.MonkeyPatch,
                                                 capfd: pytest.CaptureFixture[str]) -> None:
    """Library prints and child processes writing to file descriptor 1 must not corrupt the JSON."""
    import subprocess
    import sys

    from modelcert import cli

    def noisy(args: object) -> int:
        print("a library says hello")
        subprocess.run([sys.executable, "-c", "print('a child process says hello')"], check=True)
        cli._print_json({"ok": True})
        return 0

    monkeypatch.setattr(cli, "cmd_certificates", noisy)
    assert main(["certificates", "--json"]) == 0
    cap = capfd.readouterr()
    assert _json_only(cap.out) == {"ok": True}
    assert "a library says hello" in cap.err and "a child process says hello" in cap.err


def test_unexpected_error_is_one_line_with_where_the_traceback_is(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from modelcert import cli

    def broken(args: object) -> int:
        raise RuntimeError("boom " + "x" * 1000)

    monkeypatch.setenv("MODELCERT_HOME", str(tmp_path))
    monkeypatch.setattr(cli, "cmd_certificates", broken)
    assert main(["certificates"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and len(err) < 400, err
    assert "unexpected error in `certificates`: RuntimeError: boom" in err and "--debug" in err
    log = tmp_path / "logs" / "cli-errors.log"
    assert str(log) in err and "Traceback" in log.read_text() and "RuntimeError" in log.read_text()
    assert main(["certificates", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.strip().splitlines()[-1].startswith("modelcert:")


def test_unreachable_database_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["certificates", "--database-url", "postgresql://postgres@127.0.0.1:1/nowhere"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "cannot use the results database" in err and "MODELCERT_DATABASE_URL" in err


def test_run_with_a_crashing_stage_ends_in_error_without_traceback(
        demo_build: Path, db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected exception inside a stage is stored as that stage's error; the other stages still run, the
    gate decides `error` (never `running` forever) and the user sees one line, not a traceback."""
    from modelcert.stages import get_stage

    drift = type(get_stage("drift"))

    def crash(self: object, ctx: object) -> object:
        raise RuntimeError("simulated crash inside the drift library")

    monkeypatch.setattr(drift, "run", crash)
    code = main(["--database-url", db_url, "--json", "run", str(SPECS / "compas_audit.yaml")])
    cap = capsys.readouterr()
    assert "Traceback" not in cap.out + cap.err
    out = json.loads(cap.out)
    assert code == 2 and out["status"] == "error", out  # EXIT_ERROR
    assert any("drift" in r and "simulated crash" in r for r in out["reasons"])
    assert {s["stage"]: s["status"] for s in out["stages"]}["fairness"] == "failed"  # later stages still ran
