"""The spec reader refuses hostile YAML (tested in the bad-input corpus) without refusing what a real spec
does: anchors and merge keys within bounds, the same key in different mappings, quoted versions, long but
bounded durations."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from modelcert import safe_yaml
from modelcert.spec import MAX_DURATION, load_spec, parse_duration

SPECS = Path(__file__).resolve().parents[2] / "include" / "specs"


def test_anchors_and_merge_keys_within_bounds_load() -> None:
    data = safe_yaml.load("base: &b {min: 0.8, required: true}\n"
                          "a: *b\n"
                          "c: {<<: *b, min: 0.9}\n"
                          "list: &l [1, 2, 3]\n"
                          "twice: [*l, *l]\n")
    assert data["a"] == {"min": 0.8, "required": True}
    assert data["c"] == {"min": 0.9, "required": True}
    assert data["twice"] == [[1, 2, 3], [1, 2, 3]]


def test_same_key_in_different_mappings_is_not_a_duplicate() -> None:
    assert safe_yaml.load("a: {min: 1}\nb: {min: 2}\n") == {"a": {"min": 1}, "b": {"min": 2}}


def test_a_string_and_a_number_key_are_different_keys() -> None:
    assert safe_yaml.load("'1': a\n1: b\n") == {"1": "a", 1: "b"}


def test_expansion_bound_is_exact() -> None:
    """A list of MAX-1 scalars is one node short of the bound once its own node is counted: it loads; one more
    item (through an alias, so the file stays small) is refused."""
    n = safe_yaml.MAX_EXPANDED_NODES - 2  # the list, its items, and the top-level mapping with one key
    items = ", ".join(["x"] * (n - 1))
    assert len(safe_yaml.load(f"k: [{items}]\n")["k"]) == n - 1
    with pytest.raises(safe_yaml.YamlProblem, match="expands to more than"):
        safe_yaml.load(f"k: &a [{items}]\nm: *a\n")


def test_quoted_version_is_kept_verbatim() -> None:
    from modelcert.spec import parse_spec

    text = (SPECS / "compas_audit.yaml").read_text().replace('version: "2013-2014"', 'version: "1.10"')
    assert parse_spec(safe_yaml.load(text)).model.version == "1.10"


@pytest.mark.parametrize(("value", "expected"), [("3650d", timedelta(days=3650)), ("12h", timedelta(hours=12)),
                                                 (86400, timedelta(days=1)), ("P90D", timedelta(days=90))])
def test_durations_within_bounds(value: object, expected: timedelta) -> None:
    assert parse_duration(value) == expected <= MAX_DURATION


@pytest.mark.parametrize("value", ["3651d", "-P1D", "P99999999D", -1, 0, float("nan"), True, "7 days"])
def test_durations_out_of_bounds_are_refused(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_shipped_specs_load() -> None:
    for path in sorted(SPECS.glob("*.yaml")):
        spec, text = load_spec(path)
        assert spec.model.name and text.startswith("#")
