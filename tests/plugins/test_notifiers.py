"""Notification texts: who must act, and what went wrong, with a link to the run's page."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(autouse=True)
def base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELCERT_UI_BASE_URL", "http://airflow.example:8080/")


def _run(status: str, reasons: list[str] | None = None) -> dict:
    spec = {"use_case": {"risk_tier": "high"}, "signoff": {"required": None}}
    return {"run_id": "r-1", "model": "credit", "version": "2.3", "status": status, "reasons": reasons or [],
            "evidence_digest": "d" * 64, "spec": None if status != "awaiting_signoff" else spec}


def test_awaiting_signoff_names_roles_and_links_the_page(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelcert_airflow import notifiers

    monkeypatch.setattr("modelcert.spec.parse_spec", lambda spec: type("S", (), {"required_approvals": {"risk_officer": 1}})())
    subject, body, level = notifiers.compose(_run("awaiting_signoff"), "awaiting_signoff")
    assert subject == "[modelcert] credit 2.3 awaits your sign-off"
    assert "{'risk_officer': 1}" in body
    assert "http://airflow.example:8080/modelcert/ui/runs/r-1" in body
    assert level == logging.INFO


@pytest.mark.parametrize("status", ["rejected", "error", "signoff_timeout", "declined"])
def test_failures_alert_ops_with_reasons(status: str) -> None:
    from modelcert_airflow import notifiers

    subject, body, level = notifiers.compose(_run(status, ["fairness: disparate_impact[sex] 0.32"]), "decision")
    assert status.replace("_", " ") in subject
    assert "disparate_impact[sex]" in body and "/modelcert/ui/runs/r-1" in body
    assert level == logging.WARNING
