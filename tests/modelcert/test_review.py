"""The approval summary's pure parts: which way a threshold moved, what else changed between two specs."""

from __future__ import annotations

import pytest

from modelcert.review import compare_thresholds, spec_diff, summary_lines, threshold_text, waived_checks


@pytest.mark.parametrize(("old", "new", "change"), [
    ({"min": 0.8}, {"min": 0.5}, "loosened"),
    ({"min": 0.8}, {"min": 0.9}, "tightened"),
    ({"max": 0.1}, {"max": 0.2}, "loosened"),
    ({"abs_max": 0.1}, {"abs_max": 0.05}, "tightened"),
    ({"min": 0.8, "max": 1.25}, {"min": 0.8}, "loosened"),            # a bound dropped
    ({"max": 0.1}, {"max": 0.1, "min": 0.0}, "tightened"),            # a bound added
    ({"between": [0.2, 0.8]}, {"between": [0.1, 0.9]}, "loosened"),
    ({"between": [0.2, 0.8]}, {"between": [0.3, 0.7]}, "tightened"),
    ({"min": 0.8, "max": 1.25}, {"min": 0.9, "max": 1.5}, "changed"),  # tighter below, looser above
    ({"min": 0.8, "required": True}, {"min": 0.8, "required": False}, "loosened"),
    ({"min": 0.8, "required": False}, {"min": 0.8}, "tightened"),
])
def test_direction_of_a_threshold_change(old: dict, new: dict, change: str) -> None:
    assert compare_thresholds(old, new) == change


def test_spec_diff_names_thresholds_data_model_and_other_fields() -> None:
    old = {"model": {"version": "1"}, "checks": {"fairness": {"disparate_impact": {"min": 0.8, "required": True}},
                                                 "drift": {"max_drifted_share": 0.3, "required": True}}}
    new = {"model": {"version": "2"}, "checks": {"fairness": {}, "drift": {"max_drifted_share": 0.5, "required": False}},
           "recertification": {"stages": ["drift"]}}
    ev_old = {"files": {"model": {"sha256": "a" * 64}, "test": {"sha256": "b" * 64}, "train": {"sha256": "c" * 64}}}
    ev_new = {"files": {"model": {"sha256": "d" * 64}, "test": {"sha256": "b" * 64}}}
    diff = spec_diff(old, new, ev_old, ev_new)
    changes = {t["check"]: t["change"] for t in diff["thresholds"]}
    assert changes == {"checks.fairness.disparate_impact": "removed",
                       "checks.drift.max_drifted_share": "loosened", "checks.drift.required": "loosened"}
    assert set(diff["loosened"]) == {"checks.fairness.disparate_impact", "checks.drift.max_drifted_share",
                                     "checks.drift.required"}
    assert diff["data"] == [{"dataset": "train", "old_sha256": "c" * 64, "new_sha256": None}]
    assert diff["model"] == {"old_sha256": "a" * 64, "new_sha256": "d" * 64}
    assert {"field": "model.version", "old": '"1"', "new": '"2"'} not in diff["other"]
    assert {"field": "model.version", "old": "1", "new": "2"} in diff["other"]
    assert {"field": "recertification.stages", "old": "absent", "new": '["drift"]'} in diff["other"]
    assert not diff["unchanged"]
    same = spec_diff(old, old, ev_old, ev_old)
    assert same["unchanged"] and same["thresholds"] == [] and same["model"] is None


def test_waived_checks_and_bounded_text() -> None:
    spec = {"checks": {"fairness": {"aod": {"abs_max": 0.15, "required": False}, "di": {"min": 0.8}}}}
    assert waived_checks(spec) == [{"check": "checks.fairness.aod", "threshold": {"abs_max": 0.15, "required": False},
                                    "text": "|x| ≤ 0.15 (warning only)"}]
    assert threshold_text({"between": [0.1, 0.9]}) == "in [0.1, 0.9]"
    long = spec_diff({"model": {"description": "x" * 500}}, {"model": {"description": "y"}}, {}, {})
    assert len(long["other"][0]["old"]) == 80 and long["other"][0]["old"].endswith("…")


def test_summary_lines_say_first_certification_and_policy_not_recorded() -> None:
    lines = summary_lines({"run_id": "r1", "model": "m", "version": "2", "evidence_digest": "e" * 64,
                           "warnings": [], "waived": [], "policy": None, "baseline": None, "spec_diff": None})
    assert lines[0] == "Before you sign run r1 (m 2):"
    assert "  policy: not recorded (this run did not record the policy it was judged under)" in lines
    assert "  spec diff: first certification of m (nothing to compare)" in lines
    assert lines[-1] == f"  evidence digest {'e' * 64}"
