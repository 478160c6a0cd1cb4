"""The findings register in the documents, and the documents every certified model gets, against a real
PostgreSQL with the small fake stages of ``test_findings``.

The report (HTML, text) and the SR 26-2 dossier show the register's rows — severity, verdict, key, meaning, owner,
remediation, status, who accepted with which reason — most severe first, and the risk acceptances next to the
sign-offs; a run without register rows falls back to its check rows. Issuing a certificate records the model card
and the HTML report frozen in ``dossiers``, once, without WeasyPrint, and a document that cannot be made never
fails the promote."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select

from modelcert import pipeline
from modelcert.db.models import Finding
from modelcert.db.session import reader, transaction
from modelcert.dossier import content, frameworks, modelcard, store
from modelcert.dossier.certified import CERTIFIED, record_certified
from modelcert.dossier.documents import gather, report_document
from modelcert.governance import Identity, edit_remediation
from modelcert.stages import STAGE_NAMES
from tests.lifecycle import ROLES
from tests.modelcert.test_findings import Fake, accept, approve_both, run, spec

pytestmark = pytest.mark.store
REASON = "interval straddles the bar on 40 rows; monitored monthly"


@pytest.fixture
def stages(monkeypatch: pytest.MonkeyPatch) -> dict[str, Fake]:
    table = {name: Fake(name) for name in STAGE_NAMES}
    monkeypatch.setattr(pipeline, "get_stage", lambda name: table[name])
    return table


def _ids(engine: Any, run_id: str) -> dict[str, int]:
    with reader(engine) as s:
        return {f.key: f.id for f in s.execute(select(Finding).where(Finding.run_id == run_id)).scalars()}


def _between(text: str, start: str, end: str) -> str:
    i = text.index(start)
    return text[i: text.index(end, i)]


def test_documents_show_the_register_and_the_accepted_inconclusive_finding(
        engine: Any, db_url: str, tmp_path: Path, stages: dict[str, Fake],
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    stages["drift"].verdict = "warning"                                              # low, not blocking
    stages["fairness"].verdict, stages["fairness"].check = "inconclusive", "disparate_impact"  # high, blocking
    run_id = run(engine, spec(tmp_path), "docs/1")["run_id"]
    ids = _ids(engine, run_id)
    accept(engine, run_id, finding_ids=[ids["fairness.disparate_impact[all]"]], reason=REASON)
    edit_remediation(engine, run_id, ids["drift.score[all]"], Identity("bob", "t"),
                     text_="collect a reference sample from 2026", roles=ROLES)
    approve_both(engine, run_id)

    rep = gather(engine, run_id, facts=False)
    found = content.findings(rep)
    assert [(f["check"], f["severity"], f["verdict"], f["status"], f["source"]) for f in found] == [
        ("fairness.disparate_impact[all]", "high", "inconclusive", "accepted", "register"),
        ("drift.score[all]", "low", "fail", "open", "register")]
    top = found[0]
    assert (top["accepted_by"], top["accepted_role"], top["reason"], top["owner"]) == (
        "dave", "risk_officer", REASON, "alice")
    assert top["value"] == pytest.approx(0.55) and top["threshold"].startswith("≥ 0.5")
    assert "cannot tell whether the model meets it" in top["meaning"]  # the register's words, not the check's
    assert found[1]["remediation"] == "collect a reference sample from 2026"
    [acc] = content.acceptances(rep)
    assert (acc["who"], acc["role"], acc["finding"], acc["reason"]) == (
        "dave", "risk_officer", "fairness.disparate_impact[all]", REASON)

    html = report_document(engine, run_id, "html").body.decode()
    table = _between(html, 'id="findings-table"', "</table>")
    assert table.index("fairness.disparate_impact[all]") < table.index("drift.score[all]")
    assert "by dave (risk officer)" in table and REASON in table and "collect a reference sample" in table
    assert "From the findings register" in _between(html, 'id="findings-source"', "</div>")
    signoffs = _between(html, 'id="signoffs"', 'id="audit"')
    accepted = _between(signoffs, 'id="acceptances-table"', "</table>")
    assert "dave" in accepted and REASON in accepted and "fairness.disparate_impact[all]" in accepted
    assert "fairness.disparate_impact[all] by dave (risk officer)" in _between(html, "Risk accepted", "</dd>")

    md = frameworks.dossier_document(engine, run_id, "sr-26-2", "md").body.decode()
    findings_md = _between(md, "## Findings", "## Sign-offs")
    assert findings_md.index("fairness.disparate_impact[all]") < findings_md.index("drift.score[all]")
    assert f"status accepted by dave (risk officer): {REASON}" in findings_md
    assert "remediation: collect a reference sample from 2026" in findings_md
    assert REASON in md[md.index("## Risk acceptances"):]

    from modelcert.cli import main

    monkeypatch.delenv("MODELCERT_API_URL", raising=False)
    capsys.readouterr()
    assert main(["report", run_id, "--database-url", db_url]) == 0
    text = capsys.readouterr().out
    assert "findings (2)" in text
    assert f"dave risk_officer accepted risk of finding #{ids['fairness.disparate_impact[all]']}" in text
    assert text.index("sign-offs") < text.index("accepted risk of finding")


def test_a_run_without_register_rows_falls_back_to_its_check_rows(
        engine: Any, db_url: str, tmp_path: Path, stages: dict[str, Fake],
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """As a run decided before the register existed: its rows removed, the documents read the check rows."""
    stages["performance"].verdict = "failed"
    run_id = run(engine, spec(tmp_path), "docs/old")["run_id"]
    assert _ids(engine, run_id)
    with transaction(engine) as s:
        s.execute(delete(Finding).where(Finding.run_id == run_id))
    rep = gather(engine, run_id, facts=False)
    found = content.findings(rep)
    assert [(f["check"], f["severity"], f["verdict"], f["source"]) for f in found] == [
        ("performance.score[all]", "high", "fail", "checks")]
    html = report_document(engine, run_id, "html", record=False).body.decode()
    assert "From the check rows" in html and "performance.score[all]" in _between(html, 'id="findings-table"',
                                                                                  "</table>")
    from modelcert.cli import main

    monkeypatch.delenv("MODELCERT_API_URL", raising=False)
    capsys.readouterr()
    assert main(["report", run_id, "--database-url", db_url]) == 0
    assert "findings (1, from the check rows" in capsys.readouterr().out


def test_issuing_a_certificate_records_model_card_and_report_frozen_once_without_weasyprint(
        engine: Any, tmp_path: Path, stages: dict[str, Fake], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # import weasyprint now fails: not installed
    run_id = run(engine, spec(tmp_path), "docs/cert")["run_id"]
    assert record_certified(engine, run_id) == []  # no certificate yet: nothing recorded
    approve_both(engine, run_id)
    cert = pipeline.promote(engine, run_id)
    first = record_certified(engine, run_id)
    assert [(d["kind"], d["format"]) for d in first] == list(CERTIFIED)
    assert all("error" not in d and d["frozen"] and d["version"] == 1 for d in first), first
    # Re-running promote and the recording changes nothing: same certificate, same rows.
    assert pipeline.promote(engine, run_id)["certificate_id"] == cert["certificate_id"]
    assert record_certified(engine, run_id) == first
    rows = store.history(engine, run_id)
    assert sorted((r["kind"], r["format"]) for r in rows) == sorted(CERTIFIED)
    assert {r["certificate_id"] for r in rows} == {cert["certificate_id"]}
    # The recorded sha256 is the one of the documents made again from the stored evidence.
    recorded = {(r["kind"], r["format"]): r["sha256"] for r in rows}
    assert report_document(engine, run_id, "html", record=False).sha256 == recorded[("report", "html")]
    assert modelcard.model_card_document(engine, run_id, record=False).sha256 == recorded[("model-card", "md")]
    with pytest.raises(ImportError):
        report_document(engine, run_id, "pdf", record=False)  # the PDF does need WeasyPrint


def test_a_document_that_cannot_be_made_is_reported_and_never_fails_the_promote(
        engine: Any, tmp_path: Path, stages: dict[str, Fake], monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = run(engine, spec(tmp_path), "docs/broken")["run_id"]
    approve_both(engine, run_id)

    def broken(rep: dict[str, Any]) -> Any:
        raise RuntimeError("skops.card is broken")

    monkeypatch.setattr(modelcard, "build_card", broken)
    pipeline.promote(engine, run_id)
    out = {d["kind"]: d for d in record_certified(engine, run_id)}
    assert out["model-card"]["error"] == "RuntimeError: skops.card is broken"
    assert "error" not in out["report"] and out["report"]["frozen"]
    assert [(r["kind"], r["format"]) for r in store.history(engine, run_id)] == [("report", "html")]


def test_a_certified_runs_report_keeps_its_findings_as_issued(
        engine: Any, tmp_path: Path, stages: dict[str, Fake]) -> None:
    """Closing a finding (the next version passes the check) or editing its remediation after the certificate
    changes the register, not the frozen report: it shows the findings as they stood when it was issued."""
    stages["drift"].verdict = "warning"
    v1 = run(engine, spec(tmp_path, "1"), "frozen/1")["run_id"]
    approve_both(engine, v1)
    pipeline.promote(engine, v1)
    [first] = record_certified(engine, v1)[1:]
    assert first["kind"] == "report"
    key = "drift.score[all]"
    edit_remediation(engine, v1, _ids(engine, v1)[key], Identity("bob", "t"), text_="later plan", roles=ROLES)
    stages["drift"].verdict = "passed"
    run(engine, spec(tmp_path, "2"), "frozen/2")
    with reader(engine) as s:
        closed = s.execute(select(Finding).where(Finding.run_id == v1)).scalar_one()
    assert (closed.status, closed.remediation) == ("closed", "later plan")  # the register moved on
    again = report_document(engine, v1, "html", record=False)
    assert again.sha256 == first["sha256"]
    table = _between(again.body.decode(), 'id="findings-table"', "</table>")
    assert key in table and ">open<" in table and "later plan" not in table
