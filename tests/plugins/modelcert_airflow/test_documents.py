"""Documents over the API and on the run page: the report (HTML/PDF/JSON), the regulation dossiers and the model
card, behind the same token check as every other route; the page links them and shows each stage's figures."""

from __future__ import annotations

import hashlib
from typing import Any

from modelcert.pipeline import STAGE_NAMES

API = "/modelcert/api"


def test_documents_need_a_token(client: Any, waiting: str) -> None:
    for url in (f"{API}/runs/{waiting}/report?format=html", f"{API}/runs/{waiting}/dossier/eu-ai-act",
                f"{API}/runs/{waiting}/model-card"):
        r = client.get(url)
        assert r.status_code == 401 and r.json()["code"] == "unauthenticated", url


def test_report_html_pdf_json_with_their_sha256(as_user: Any, waiting: str, engine: Any) -> None:
    from modelcert.dossier import store

    bob = as_user("bob")
    for fmt, media, magic in (("html", "text/html", b"<!DOCTYPE html>"), ("pdf", "application/pdf", b"%PDF-"),
                              ("json", "application/json", b"{")):
        r = bob.get(f"{API}/runs/{waiting}/report", params={"format": fmt})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith(media) and r.content.startswith(magic)
        assert r.headers["x-modelcert-sha256"] == hashlib.sha256(r.content).hexdigest()
        assert waiting[:8] in r.headers["content-disposition"]
    kinds = {(d["kind"], d["format"]) for d in store.history(engine, waiting)}
    assert {("report", "html"), ("report", "pdf"), ("report", "json")} <= kinds


def test_bad_format_or_framework_is_422_and_unknown_run_404(as_user: Any, waiting: str) -> None:
    bob = as_user("bob")
    r = bob.get(f"{API}/runs/{waiting}/report", params={"format": "docx"})
    assert r.status_code == 422 and "format" in r.json()["detail"]
    assert bob.get(f"{API}/runs/{waiting}/dossier/gdpr").status_code == 422
    assert bob.get(f"{API}/runs/no-such-run/report").status_code == 404


def test_dossier_and_model_card(as_user: Any, waiting: str) -> None:
    bob = as_user("bob")
    r = bob.get(f"{API}/runs/{waiting}/dossier/sr-26-2", params={"format": "md"})
    assert r.status_code == 200 and "## Completeness" in r.text and "GOV.independence" in r.text
    r = bob.get(f"{API}/runs/{waiting}/model-card")
    assert r.status_code == 200 and "# Intended use" in r.text


def test_run_page_links_the_documents_and_shows_figures_per_stage(as_user: Any, waiting: str) -> None:
    r = as_user("bob").get(f"/modelcert/ui/runs/{waiting}")
    assert r.status_code == 200
    assert f'href="/modelcert/api/runs/{waiting}/report?format=pdf"' in r.text
    assert 'id="figures"' in r.text and r.text.count('class="stage-figures"') == len(STAGE_NAMES)
