"""The pages: the Airflow UI cookie authenticates; buttons only for a holder of a required role who did not
submit the run (the API refuses everyone else anyway); evidence with failed checks first; the ops view."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelcert import pipeline
from modelcert.pipeline import STAGE_NAMES
from tests.lifecycle import run_all
from tests.plugins.modelcert_airflow.conftest import digest_of

pytestmark = pytest.mark.store
UI = "/modelcert/ui"


@pytest.fixture
def page(client: Any, token: Callable[..., str]) -> Callable[..., Any]:
    """page("bob", url) -> the response, authenticated by the Airflow UI cookie as the browser sends it."""

    def get(user: str | None, url: str) -> Any:
        client.cookies.clear()
        if user:
            client.cookies.set("_token", token(user))
        try:
            return client.get(url, follow_redirects=False)
        finally:
            client.cookies.clear()

    return get


def has_buttons(text: str) -> bool:
    return 'id="approve-button"' in text and 'id="decline-button"' in text


def test_without_a_login_a_page_is_401_with_a_link_to_airflows_login(page: Callable[..., Any], waiting: str) -> None:
    r = page(None, f"{UI}/runs/{waiting}")
    assert r.status_code == 401 and r.headers["content-type"].startswith("text/html")
    assert "Please log in to Airflow" in r.text
    link = re.search(r'<a href="([^"]+)" id="login-link"', r.text)
    assert link is not None, r.text
    assert html.unescape(link.group(1)) == f"/auth/login?next=http%3A%2F%2Ftestserver%2Fmodelcert%2Fui%2Fruns%2F{waiting}"
    r = page(None, f"{UI}/models")
    assert r.status_code == 401 and "Log in to Airflow" in r.text


def test_an_invalid_cookie_is_401(client: Any, waiting: str) -> None:
    client.cookies.set("_token", "expired-or-forged")
    try:
        r = client.get(f"{UI}/runs")
    finally:
        client.cookies.clear()
    assert r.status_code == 401 and "does not accept this token" in html.unescape(r.text)


def test_a_required_role_holder_sees_the_buttons_bound_to_the_evidence(page: Callable[..., Any], token: Any,
                                                                       engine: Any, waiting: str) -> None:
    r = page("bob", f"{UI}/runs/{waiting}")
    assert r.status_code == 200 and has_buttons(r.text)
    digest = digest_of(engine, waiting)
    assert f'data-digest="{digest}"' in r.text and digest in r.text
    options = re.findall(r'<option value="([^"]+)"', r.text)
    assert options == ["model_validator"]  # only the user's roles that the run requires
    assert "signed in as <strong>bob</strong>" in r.text


def test_no_buttons_without_a_required_role_and_the_api_refuses(page: Callable[..., Any], as_user: Any,
                                                                 engine: Any, waiting: str) -> None:
    r = page("carol", f"{UI}/runs/{waiting}")
    assert r.status_code == 200 and not has_buttons(r.text)
    assert "carol holds no certification role; this run needs sign-off by: model_validator, risk_officer" in r.text
    refused = as_user("carol").post(f"/modelcert/api/runs/{waiting}/approve",
                                    json={"role": "model_validator", "evidence_digest": digest_of(engine, waiting)})
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    erin = page("erin", f"{UI}/runs/{waiting}")  # holds legal, which this run does not require
    assert not has_buttons(erin.text)


def test_no_buttons_for_the_submitter_even_with_the_role(page: Callable[..., Any], roles_file: Path,
                                                         waiting: str) -> None:
    roles_file.write_text("roles:\n  model_validator: [alice, bob]\n  risk_officer: [dave]\n")
    r = page("alice", f"{UI}/runs/{waiting}")
    assert not has_buttons(r.text) and "four-eyes rule" in r.text


def test_after_approving_the_buttons_go_and_the_approval_shows(page: Callable[..., Any], as_user: Any,
                                                               engine: Any, waiting: str) -> None:
    r = as_user("bob").post(f"/modelcert/api/runs/{waiting}/approve",
                            json={"role": "model_validator", "evidence_digest": digest_of(engine, waiting),
                                  "comment": "<script>alert('x')</script> looks fine"})
    assert r.status_code == 201
    bob = page("bob", f"{UI}/runs/{waiting}")
    assert not has_buttons(bob.text) and "one person counts once" in bob.text
    assert "<script>alert('x')</script>" not in bob.text  # user text is escaped
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; looks fine" in bob.text
    assert "api:airflow-token" in bob.text
    dave = page("dave", f"{UI}/runs/{waiting}")
    assert has_buttons(dave.text) and re.findall(r'<option value="([^"]+)"', dave.text) == ["risk_officer"]


def test_evidence_lists_failed_checks_first(page: Callable[..., Any], engine: Any, spec_path: Path,
                                            verdicts: dict[str, str]) -> None:
    verdicts["fairness"] = "failed"
    run_id = run_all(engine, spec_path, key="rejected/2")
    r = page("bob", f"{UI}/runs/{run_id}")
    assert r.status_code == 200 and not has_buttons(r.text)
    checks = r.text.split('id="checks"', 1)[1].split("</table>", 1)[0]
    verdict_cells = re.findall(r'<span class="badge [a-z]+">(FAIL|warn|pass|info)</span>', checks)
    assert verdict_cells[0] == "FAIL" and verdict_cells.count("FAIL") == 1
    assert verdict_cells == sorted(verdict_cells, key=["FAIL", "warn", "pass", "info"].index)
    assert "≥ 0.5" in checks  # the threshold that judged the value, next to it
    assert "This run was rejected by its checks; it cannot be signed off." in r.text
    files = r.text.split('id="files"', 1)[1].split("</table>", 1)[0]
    assert "<td>test</td>" in files and re.search(r"[0-9a-f]{64}", files)  # every file with its sha256


def test_a_run_whose_spec_never_parsed_still_renders(page: Callable[..., Any], as_user: Any, engine: Any,
                                                     tmp_path: Path) -> None:
    from modelcert import report
    from modelcert.errors import ModelcertError

    bad = tmp_path / "broken.yaml"
    bad.write_text("model: {name: x}\nunknown_key: 1\n")
    with pytest.raises(ModelcertError):
        pipeline.register(engine, bad, run_key="broken/1", triggered_by="alice")
    (run,) = report.list_runs(engine)
    assert run["status"] == "error"
    r = page("bob", f"{UI}/runs/{run['run_id']}")
    assert r.status_code == 200 and not has_buttons(r.text)
    assert "This run ended in an error; it cannot be signed off." in r.text and "unknown_key" in r.text
    assert as_user("bob").get(f"/modelcert/api/runs/{run['run_id']}").json()["you"]["allowed_roles"] == []
    assert page("bob", f"{UI}/runs").status_code == 200


def test_runs_list_shows_each_stage_verdict(page: Callable[..., Any], waiting: str) -> None:
    r = page("carol", f"{UI}/runs")
    assert r.status_code == 200
    row = r.text.split(f'data-run-id="{waiting}"', 1)[1].split("</tr>", 1)[0]
    assert row.count(">passed</span>") == len(STAGE_NAMES) and "awaiting signoff" in row


def test_the_dag_run_tab_finds_its_certification_run(page: Callable[..., Any], engine: Any, spec_path: Path,
                                                     verdicts: dict[str, str]) -> None:
    airflow_run = "manual__2026-11-30T16:17:57.631316+00:00"
    reg = pipeline.register(engine, spec_path, run_key=f"certify_model/{airflow_run}", triggered_by="admin",
                            dag_id="certify_model", airflow_run_id=airflow_run)
    # The Airflow UI fills {DAG_ID}/{RUN_ID} with encodeURIComponent.
    r = page("bob", f"{UI}/airflow/certify_model/manual__2026-11-30T16%3A17%3A57.631316%2B00%3A00")
    assert r.status_code == 303 and r.headers["location"] == f"{UI}/runs/{reg.run_id}"
    missing = page("bob", f"{UI}/airflow/certify_model/manual__nothing")
    assert missing.status_code == 404 and "has not recorded a certification run" in missing.text


def test_models_page_highlights_attention_and_renders_unknown_fields(page: Callable[..., Any], engine: Any,
                                                                     waiting: str, monkeypatch: Any) -> None:
    from modelcert import report

    real = report.model_overview(engine)
    assert real and real[0]["latest_run"]["run_id"] == waiting

    def extended(engine: Any, **kw: Any) -> list[dict[str, Any]]:
        rows = report_real(engine)
        rows[0]["attention"] = ["certificate suspended"]
        rows[0]["recertification"] = {"last_recertified_at": "2026-11-30T10:00:00+00:00", "drift_share": 0.42,
                                      "suspended_by": ["drift"], "run_id": waiting}
        rows[0]["next_due"] = None
        return rows

    report_real = report.model_overview
    monkeypatch.setattr(report, "model_overview", extended)
    r = page("carol", f"{UI}/models")
    assert r.status_code == 200, r.text
    assert '<tr class="attention"' in r.text and "certificate suspended" in r.text
    assert "<th>recertification</th>" in r.text and "drift share" in r.text and "0.42" in r.text
    assert "<th>next due</th>" in r.text
    assert r.text.count(f'href="/modelcert/ui/runs/{waiting}"') == 2  # latest run, and run_id inside an extra field
    assert "2026-11-30 10:00" in r.text  # timestamps inside extra fields are formatted too


def test_plugin_registers_the_app_and_external_views_in_airflows_format() -> None:
    from airflow.api_fastapi.core_api.datamodels.plugins import ExternalViewResponse
    from airflow.plugins_manager import is_valid_plugin

    from modelcert_airflow.api import app
    from modelcert_airflow.plugin import ModelcertPlugin

    assert is_valid_plugin(ModelcertPlugin) and ModelcertPlugin.name == "modelcert"
    assert ModelcertPlugin.fastapi_apps == [{"app": app, "url_prefix": "/modelcert", "name": "modelcert"}]
    views = [ExternalViewResponse.model_validate(v) for v in ModelcertPlugin.external_views]
    assert {(v.name, v.destination, v.href) for v in views} == {
        ("Certification", "nav", "/modelcert/ui/runs"),
        ("Model certificates", "nav", "/modelcert/ui/models"),
        ("Certification", "dag_run", "/modelcert/ui/airflow/{DAG_ID}/{RUN_ID}"),
    }
    assert len({v.url_route for v in views}) == 3


def test_nav_icon_is_public(client: Any) -> None:
    r = client.get(f"{UI}/static/seal.svg")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")


# ---------------------------------------------------------------------------------------------- the review
def test_the_summary_sits_above_the_buttons(page: Callable[..., Any], engine: Any, reviewed: dict[str, str]) -> None:
    from modelcert import report

    r = page("bob", f"{UI}/runs/{reviewed['waiting']}")
    assert r.status_code == 200 and has_buttons(r.text)
    text = r.text
    assert text.index('id="review"') < text.index('id="review-warnings"') < text.index('id="review-diff"') \
        < text.index('id="signoff-form"') < text.index('id="approve-button"')
    diff = text.split('id="review-thresholds"', 1)[1].split("</table>", 1)[0]
    row = diff.split("checks.fairness.disparate_impact", 1)[1].split("</tr>", 1)[0]
    assert ">loosened</span>" in row and "≥ 0.9 and ≤ 1.25" in row and "≥ 0.8 and ≤ 1.25" in row
    assert row.index("≥ 0.9") < row.index("≥ 0.8")  # certified → this run
    warnings = text.split('id="review-warnings"', 1)[1].split("</dd>", 1)[0]
    assert "fairness.average_odds_difference" in warnings and "0.31" in warnings
    assert "checks.fairness.average_odds_difference" in text.split('id="review-waived"', 1)[1].split("</dd>", 1)[0]
    recorded = report.run_report(engine, reviewed["waiting"])["evidence"].get("policy")
    policy_cell = text.split('id="review-policy"', 1)[1].split("</dd>", 1)[0]
    assert (f"<strong>{recorded['version']}</strong>" if recorded else "not recorded") in policy_cell
    assert f'href="/modelcert/ui/runs/{reviewed["certified"]}"' in text  # the certified run compared with


def test_a_recertification_page_has_no_signoff_and_no_airflow_link_for_the_cli(
        page: Callable[..., Any], engine: Any, reviewed: dict[str, str]) -> None:
    from modelcert.db.models import CertificationRun
    from modelcert.db.session import transaction

    with transaction(engine) as s:
        certified = s.get(CertificationRun, reviewed["certified"])
        recert = CertificationRun(
            run_key="cli/recertify__2026-12-01/synthetic/1", kind="recertification", status="passed",
            model_version_id=certified.model_version_id, spec=certified.spec, spec_path=certified.spec_path,
            spec_base_dir=certified.spec_base_dir, spec_text=certified.spec_text, evidence=certified.evidence,
            evidence_digest=certified.evidence_digest, submitter=certified.submitter, triggered_by="ops",
            airflow_dag_id="cli", airflow_run_id="recertify__2026-12-01", certificate_id=reviewed["certificate"])
        s.add(recert)
        s.flush()
        recert_id = recert.id
    r = page("bob", f"{UI}/runs/{recert_id}")
    assert r.status_code == 200
    assert 'id="recertification-note"' in r.text and reviewed["certificate"] in r.text
    for absent in ('id="quorum"', 'id="signoffs"', 'id="review"', "approve-button", 'id="no-signoff"',
                   'class="airflow-link"'):
        assert absent not in r.text, absent


def test_only_runs_made_by_airflow_link_to_airflow(page: Callable[..., Any], engine: Any, spec_path: Path,
                                                   verdicts: dict[str, str], waiting: str) -> None:
    assert 'class="airflow-link"' not in page("bob", f"{UI}/runs/{waiting}").text  # `modelcert run`: no DAG run
    reg = pipeline.register(engine, spec_path, run_key="certify_model/manual__1", triggered_by="admin",
                            dag_id="certify_model", airflow_run_id="manual__1")
    links = re.findall(r'<a class="airflow-link" href="([^"]+)"', page("bob", f"{UI}/runs/{reg.run_id}").text)
    assert links == ["/dags/certify_model/runs/manual__1"]


def test_a_superseded_certificate_reads_superseded(page: Callable[..., Any], engine: Any,
                                                   reviewed: dict[str, str]) -> None:
    from sqlalchemy import update

    from modelcert.db.models import Certificate
    from modelcert.db.session import transaction

    with transaction(engine) as s:
        s.execute(update(Certificate).where(Certificate.id == reviewed["certificate"])
                  .values(status="superseded", status_reason="superseded by version 2"))
    text = page("bob", f"{UI}/runs/{reviewed['certified']}").text
    status = re.search(r'id="certificate-status">([^<]+)<', text)
    assert status is not None and status.group(1) == "superseded"
    assert "superseded by version 2" in text and "revoked" not in text


def _fairness_run(engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str) -> str:
    """A run whose fairness stage is the real one (the others faked as passed) on three categories, a 1%-share
    group and unknown values; disparate impact is judged."""
    import numpy as np
    import pandas as pd

    from modelcert.stages.fairness import STAGE
    from tests.conftest import write_synthetic

    fake = pipeline.get_stage
    monkeypatch.setattr(pipeline, "get_stage", lambda name: STAGE if name == "fairness" else fake(name))

    def block(tp: int, fp: int, fn: int, tn: int, g: Any) -> pd.DataFrame:
        return pd.DataFrame({"g": g, "y": [1] * tp + [0] * fp + [1] * fn + [0] * tn,
                             "pred": [1] * (tp + fp) + [0] * (fn + tn)})

    df = pd.concat([block(1000, 200, 200, 600, "a"), block(500, 300, 300, 860, "b"),
                    block(10, 10, 10, 10, "tiny<i>"), block(5, 5, 5, 5, np.nan)], ignore_index=True)
    path, _ = write_synthetic(tmp_path, {"test": df}, {
        "predictions": {"column": "pred", "positive": [1]},
        "data": {"label": "y", "protected_attributes": {"g": {"privileged": ["a"]}}},
        "checks": {"fairness": {"disparate_impact": {"min": 0.8, "max": 1.25}}},
    })
    return run_all(engine, path, key=key)


def _fairness_section(text: str) -> str:
    assert 'class="fairness-table"' in text, "no fairness group table on the page"
    return text.split("Fairness by group", 1)[1].split('<h2>Checks', 1)[0]


def test_run_page_shows_the_fairness_group_table(page: Callable[..., Any], engine: Any, tmp_path: Path,
                                                 verdicts: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = _fairness_run(engine, tmp_path, monkeypatch, "fairness/1")
    section = _fairness_section(page("bob", f"{UI}/runs/{run_id}").text)
    groups = section.split('class="compact fairness-groups"', 1)[1].split("</table>", 1)[0]
    rows = [html.unescape(re.sub(r"<[^>]+>", " ", r.split(">", 1)[1])) for r in groups.split("<tr")[2:]]
    rows = [" ".join(r.split()) for r in rows]
    assert rows[0].startswith("a reference 2000 ") and rows[1].startswith("b 1960 ")
    assert rows[2].startswith("tiny<i> 40 1.0% 0.5") and "excluded share 1.00% < data.min_group_share 0.02" in rows[2]
    assert rows[3].startswith("unknown 20 ") and "excluded unknown value" in rows[3]
    assert "<i>" not in groups  # a category is data: escaped
    comparisons = section.split('class="compact fairness-comparisons"', 1)[1].split("</table>", 1)[0]
    cells = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", comparisons)).split())
    assert "fail b disparate_impact 0.6803 [0.638, 0.7254] katz_log" in cells and "≥ 0.8" in cells
    assert "tiny" not in comparisons  # excluded: never judged
    assert re.search(r"Holm over \d+ comparisons, alpha 0.05", section)


def test_recertification_page_shows_the_same_fairness_table(page: Callable[..., Any], engine: Any, tmp_path: Path,
                                                            verdicts: dict[str, str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from modelcert.db.models import CertificationRun
    from modelcert.db.session import transaction

    source = _fairness_run(engine, tmp_path, monkeypatch, "fairness/2")
    with transaction(engine) as s:
        run = s.get(CertificationRun, source)
        recert = CertificationRun(
            run_key="cli/recertify__2026-12-02/synthetic/1", kind="recertification", status="running",
            model_version_id=run.model_version_id, spec=run.spec, spec_path=run.spec_path,
            spec_base_dir=run.spec_base_dir, spec_text=run.spec_text, evidence=run.evidence,
            evidence_digest=run.evidence_digest, submitter=run.submitter, triggered_by="ops",
            airflow_dag_id="cli", airflow_run_id="recertify__2026-12-02")
        s.add(recert)
        s.flush()
        recert_id = recert.id
    pipeline.run_stage(engine, recert_id, "fairness")
    text = page("bob", f"{UI}/runs/{recert_id}").text
    assert 'id="recertification-note"' in text
    section = _fairness_section(text)
    assert "tiny&lt;i&gt;" in section and "share 1.00% &lt; data.min_group_share 0.02" in section
    assert ">fail</span>" in section
def test_explainability_evidence_is_a_table_per_section(page: Callable[..., Any], engine: Any,
                                                         spec_path: Path) -> None:
    """The real explainability stage on the tiny audit: proxies and slices as tables, importance and comparison
    with the reason they did not apply."""
    reg = pipeline.register(engine, spec_path, run_key="explain/1", triggered_by="alice")
    pipeline.run_stage(engine, reg.run_id, "explainability")
    r = page("bob", f"{UI}/runs/{reg.run_id}")
    assert r.status_code == 200
    proxies = r.text.split('id="explain-proxies"', 1)[1].split("</table>", 1)[0]
    assert "<td>sex</td>" in proxies and "<td>x" in proxies  # the attribute and its strongest proxy, column x
    assert 'id="explain-slices"' in r.text or "weak of" in r.text
    assert "no model to explain" in html.unescape(r.text)  # importance: not applicable, with why
    assert "nothing to compare with" in html.unescape(r.text)  # no champion, no benchmark
