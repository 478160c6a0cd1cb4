"""Spec fields for per-category fairness: reference groups, bands, intersections, min_group_share; every refusal
names the field and what is allowed, and today's specs stay valid."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelcert.errors import SpecError
from modelcert.spec import band_labels, parse_spec

BASE: dict[str, Any] = {
    "model": {"name": "m", "version": "1", "owner": "alice"},
    "predictions": {"column": "pred", "positive": [1]},
    "use_case": {"description": "d", "risk_tier": "high"},
    "data": {"test": "t.csv", "label": "y", "protected_attributes": {"sex": {"privileged": ["m"]}}},
}


def with_data(**data: Any) -> dict[str, Any]:
    spec = copy.deepcopy(BASE)
    spec["data"].update(data)
    return spec


def refused(spec: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(spec)
    return str(info.value)


def test_todays_attributes_and_defaults_stay_valid() -> None:
    spec = parse_spec(with_data(protected_attributes={"sex": {"privileged": ["m"]}, "age": {"privileged": {"min": 25}}}))
    assert spec.data.protected_attributes["sex"].kind == "categorical"
    assert spec.data.protected_attributes["age"].kind == "privileged_range"
    assert spec.data.min_group_share == 0.02 and spec.data.intersections == []


def test_new_attribute_forms() -> None:
    spec = parse_spec(with_data(protected_attributes={
        "race": {"reference": "max_rate"},
        "age": {"bands": [25, 40, 60], "reference": "25-40"},
        "age2": {"bands": [25], "reference": "max_rate"},
        "sex": {"privileged": ["m"]},
    }, intersections=[["sex", "race"], ["sex", "race", "age"]], min_group_share=0.05))
    pa = spec.data.protected_attributes
    assert pa["race"].kind == "categorical" and pa["race"].reference == "max_rate"
    assert pa["age"].kind == "bands" and pa["age"].bands == [25.0, 40.0, 60.0]
    assert spec.data.intersections == [["sex", "race"], ["sex", "race", "age"]]
    assert spec.data.min_group_share == 0.05
    # a stored spec parses back to the same thing
    assert parse_spec(spec.model_dump(mode="json")) == spec


def test_band_labels_are_stable() -> None:
    assert band_labels([25, 40, 60]) == ["<25", "25-40", "40-60", ">=60"]
    assert band_labels([0.5]) == ["<0.5", ">=0.5"]


@pytest.mark.parametrize(("attr", "expected"), [
    ({}, "give privileged (the reference values, or a {min, max} range), reference: max_rate, or bands"),
    ({"privileged": ["m"], "reference": "max_rate"}, "give privileged or reference, not both"),
    ({"reference": "m"}, "reference 'm' is not allowed without bands; allowed: max_rate"),
    ({"bands": [40, 25], "reference": "max_rate"}, "bands [40.0, 25.0] must be strictly increasing"),
    ({"bands": [25]}, "bands need reference: max_rate or one of the band labels <25, >=25"),
    ({"bands": [25, 40], "reference": "20-30"}, "one of the band labels <25, 25-40, >=40 (got '20-30')"),
    ({"bands": [25], "privileged": {"min": 25}, "reference": "max_rate"}, "give bands (with reference) or privileged"),
    ({"bands": ["x"], "reference": "max_rate"}, "data.protected_attributes.sex.bands.0"),
    ({"privileged": ["m"], "refrence": "max_rate"}, "data.protected_attributes.sex.refrence: unknown key"),
])
def test_attribute_refusals_name_the_field(attr: dict[str, Any], expected: str) -> None:
    msg = refused(with_data(protected_attributes={"sex": attr}))
    assert "data.protected_attributes.sex" in msg and expected in msg, msg


@pytest.mark.parametrize(("intersections", "expected"), [
    ([["sex", "race"]], "intersections.0: ['race'] not among protected_attributes (sex)"),
    ([["sex"]], "data.intersections.0: List should have at least 2 items"),
    ([["sex", "sex"]], "intersections.0: ['sex', 'sex'] names an attribute twice"),
    ([["sex", "a", "b", "c"]], "data.intersections.0: List should have at most 3 items"),
])
def test_intersection_refusals(intersections: list[list[str]], expected: str) -> None:
    msg = refused(with_data(intersections=intersections))
    assert expected in msg, msg


def test_intersection_listed_twice_is_refused() -> None:
    msg = refused(with_data(protected_attributes={"sex": {"privileged": ["m"]}, "race": {"reference": "max_rate"}},
                            intersections=[["sex", "race"], ["race", "sex"]]))
    assert "intersections.1: ['race', 'sex'] is listed twice" in msg, msg


@pytest.mark.parametrize("share", [-0.1, 1, 1.5])
def test_min_group_share_bounds(share: float) -> None:
    assert "data.min_group_share" in refused(with_data(min_group_share=share))
