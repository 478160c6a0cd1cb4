"""The bad-input corpus: every hostile or broken input ends as one line naming the field, from ``validate`` and from
``run`` alike (they share modelcert.preflight), and a ``run`` of it is recorded as ``error`` — never passed.

Each case builds a small project (specs/, data/, models/) from a valid base, breaks one thing, then drives the CLI
in-process (``modelcert.cli.main``, the argparse entry point the console script calls). A few cases run the real
``.venv/bin/modelcert`` executable to prove the entry point itself prints no traceback.
"""

from __future__ import annotations

import copy
import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sqlalchemy import select

from modelcert.cli import main
from modelcert.db.models import CertificationRun
from modelcert.db.session import get_engine

pytestmark = pytest.mark.store

NEVER = ("passed", "awaiting_signoff", "certified")
#: A message longer than this echoes something unbounded.
MAX_MESSAGE = 1200


# ------------------------------------------------------------------------------------------------ the base project
def _frame(n: int = 80, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n).round(4)
    x2 = rng.integers(0, 10, n)
    y = ((x1 + rng.normal(scale=0.5, size=n)) > 0).astype(int)
    pred = (x1 > 0).astype(int)
    return pd.DataFrame({"x1": x1, "x2": x2, "sex": ["m", "f"] * (n // 2), "y": y, "pred": pred,
                         "score": (1 / (1 + np.exp(-x1))).round(4)})


@pytest.fixture(scope="module")
def models() -> dict[str, bytes]:
    """A plain logistic regression (skops defaults trust it) and a HistGradientBoosting (needs trusted types)."""
    import skops.io as sio
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    df = _frame()
    X, y = df[["x1", "x2"]], df["y"]
    return {"lr": sio.dumps(LogisticRegression().fit(X, y)),
            "hgb": sio.dumps(HistGradientBoostingClassifier(max_iter=3).fit(X, y))}


@dataclass
class Project:
    """specs/spec.yaml + data/*.csv + models/model.skops under ``root``; the default data root is ``root``."""

    root: Path
    spec: dict[str, Any]
    frames: dict[str, pd.DataFrame]
    model: bytes | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def spec_path(self) -> Path:
        return self.root / "specs" / "spec.yaml"

    def set_model(self, data: bytes, name: str = "model.skops") -> None:
        self.model = data
        self.spec["model"]["artifact"] = f"../models/{name}"
        self.spec["model"]["sha256"] = hashlib.sha256(data).hexdigest()
        self.extra["model_name"] = name


def _base(root: Path, models: dict[str, bytes], *, audit: bool) -> Project:
    df = _frame()
    spec: dict[str, Any] = {
        "spec_version": 1,
        "model": {"name": "corpus-model", "version": "1.0.0", "owner": "alice"},
        "use_case": {"description": "bad-input corpus", "intended_use": "tests", "risk_tier": "high"},
        "governance": {"data_retention_days": 30, "consent_basis": "synthetic data"},
        "data": {"train": "../data/train.csv", "test": "../data/test.csv", "label": "y",
                 "protected_attributes": {"sex": {"privileged": ["m"]}}},
        "signoff": {"required": {"model_validator": 1, "risk_officer": 1}},
    }
    if audit:
        spec["predictions"] = {"column": "pred", "positive": [1], "score_column": "score"}
        spec["data"]["extra_columns"] = ["x1", "x2"]
        project = Project(root, spec, {"train": df, "test": _frame(seed=1)}, None)
    else:
        spec["model"]["features"] = ["x1", "x2"]
        spec["data"]["extra_columns"] = ["pred", "score"]
        project = Project(root, spec, {"train": df, "test": _frame(seed=1)}, None)
        project.set_model(models["lr"])
    return project


def _write(project: Project, raw: str | bytes | None) -> Path:
    (project.root / "specs").mkdir(parents=True, exist_ok=True)
    (project.root / "data").mkdir(exist_ok=True)
    (project.root / "models").mkdir(exist_ok=True)
    for role, frame in project.frames.items():
        frame.to_csv(project.root / "data" / f"{role}.csv", index=False)
    if project.model is not None:
        (project.root / "models" / project.extra.get("model_name", "model.skops")).write_bytes(project.model)
    if raw is None:
        raw = yaml.safe_dump(project.spec, sort_keys=False, allow_unicode=True)
    if isinstance(raw, bytes):
        project.spec_path.write_bytes(raw)
    else:
        project.spec_path.write_text(raw, encoding="utf-8")
    return project.spec_path


# ------------------------------------------------------------------------------------------------ the cases
Build = Callable[[Project], "str | bytes | None"]


@dataclass(frozen=True)
class Case:
    id: str
    #: What the one-line message must contain: the field, and where useful what is wrong.
    expect: tuple[str, ...]
    build: Build
    audit: bool = False


def spec_edit(fn: Callable[[dict[str, Any]], None]) -> Build:
    def build(p: Project) -> None:
        fn(p.spec)

    return build


def text_edit(fn: Callable[[str], str | bytes]) -> Build:
    def build(p: Project) -> str | bytes:
        return fn(yaml.safe_dump(p.spec, sort_keys=False))

    return build


def data_edit(fn: Callable[[pd.DataFrame], pd.DataFrame], role: str = "test") -> Build:
    def build(p: Project) -> None:
        p.frames[role] = fn(p.frames[role].copy())

    return build


def setitem(path: str, value: Any) -> Build:
    """spec[a][b][c] = value for path "a.b.c" (missing levels created)."""

    def fn(spec: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = spec
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return spec_edit(fn)


def delitem(path: str) -> Build:
    def fn(spec: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = spec
        for key in parents:
            node = node[key]
        del node[last]

    return spec_edit(fn)


def _bomb(text: str) -> str:
    lines = ['  a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    prev = "a"
    for name in "bcdefghi":
        lines.append(f"  {name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
        prev = name
    return text + "bomb:\n" + "\n".join(lines) + "\n"


def _deep(text: str) -> str:
    return text + "deep: " + "[" * 60 + "]" * 60 + "\n"


def _symlink_data(p: Project) -> None:
    outside = p.root.parent / "outside"
    outside.mkdir(exist_ok=True)
    p.frames["test"].to_csv(outside / "secret.csv", index=False)
    (p.root / "data").mkdir(parents=True, exist_ok=True)
    (p.root / "data" / "link.csv").symlink_to(outside / "secret.csv")
    p.spec["data"]["test"] = "../data/link.csv"


def _symlink_artifact(p: Project) -> None:
    outside = p.root.parent / "outside"
    outside.mkdir(exist_ok=True)
    assert p.model is not None
    (outside / "model.skops").write_bytes(p.model)
    (p.root / "models").mkdir(parents=True, exist_ok=True)
    (p.root / "models" / "link.skops").symlink_to(outside / "model.skops")
    p.spec["model"]["artifact"] = "../models/link.skops"


def _other_root(p: Project) -> None:
    p.extra["env"] = {"MODELCERT_DATA_ROOTS": str(p.root.parent / "approved-data")}


def _corrupt_model(p: Project) -> None:
    p.set_model(b"this is not a zip archive")


def _hgb_model(p: Project) -> None:
    p.set_model(p.extra["models"]["hgb"])


def _joblib_model(p: Project) -> None:
    p.set_model(b"\x80\x04joblib bytes that must never be unpickled", name="model.joblib")


def _header_only(df: pd.DataFrame) -> pd.DataFrame:
    return df.iloc[0:0]


def _nan_feature(df: pd.DataFrame) -> pd.DataFrame:
    df.loc[3, "x1"] = np.nan
    return df


def _string_in_numeric(df: pd.DataFrame) -> pd.DataFrame:
    df["x1"] = df["x1"].astype(object)
    df.loc[5, "x1"] = "twelve"
    return df


def _many_columns(df: pd.DataFrame) -> pd.DataFrame:
    extra = pd.DataFrame(np.zeros((len(df), 2000), dtype=np.int8), columns=[f"c{i}" for i in range(2000)])
    return pd.concat([df, extra], axis=1)


def _single_class(df: pd.DataFrame) -> pd.DataFrame:
    df["y"] = 1
    return df


CASES: list[Case] = [
    # ---- spec syntax
    Case("malformed_yaml", ("spec: malformed YAML at line",), lambda p: "model: [a, b\nuse_case: {\n"),
    Case("not_a_mapping", ("(top level)", "mapping"), lambda p: "- model\n- data\n"),
    Case("empty_file", ("(top level)", "empty"), lambda p: ""),
    Case("latin1_file", ("spec: the file is not UTF-8", "byte 0xe9"),
         text_edit(lambda t: t.replace("bad-input corpus", "Crédit").encode("latin-1"))),
    Case("nul_character", ("spec: character #x0000",), text_edit(lambda t: t + "\0\n")),
    Case("over_one_mib", ("spec: the file has", "1 MiB"), text_edit(lambda t: t + "#" * (1 << 20) + "\n")),
    Case("duplicate_top_level_key", ("model: duplicate key at line",),
         text_edit(lambda t: t + "model:\n  name: other\n")),
    Case("duplicate_nested_key", ("model.owner: duplicate key at line",),
         text_edit(lambda t: t.replace("  owner: alice\n", "  owner: alice\n  owner: mallory\n"))),
    # ---- spec schema
    Case("unknown_top_level_key", ("colour: unknown key",), setitem("colour", "red")),
    Case("unknown_nested_key", ("model.artifcat: unknown key",), setitem("model.artifcat", "x.skops")),
    Case("missing_section", ("use_case: required field is missing",), delitem("use_case")),
    Case("bad_risk_tier", ("use_case.risk_tier", "'extreme' is not allowed"), setitem("use_case.risk_tier", "extreme")),
    Case("unknown_metric", ("checks.performance", "unknown metric", "'auc'"),
         setitem("checks.performance", {"auc": {"min": 0.7}})),
    Case("spec_version_2", ("spec_version",), setitem("spec_version", 2)),
    Case("float_version", ("model.version", "quote the version"), setitem("model.version", 1.1)),
    Case("version_1_10", ("model.version", "1.1"), text_edit(lambda t: t.replace("version: 1.0.0", "version: 1.10"))),
    Case("int_version", ("model.version", "quote"), setitem("model.version", 2)),
    Case("artifact_and_predictions", ("model.artifact or predictions, not both",),
         setitem("predictions", {"column": "pred", "positive": [1]})),
    Case("artifact_without_sha256", ("model", "sha256"), delitem("model.sha256")),
    # ---- YAML bombs and tags
    Case("alias_bomb", ("bomb.", "expands to more than 20000 YAML nodes"), text_edit(_bomb)),
    Case("recursive_alias", ("loop.0: recursive alias",), text_edit(lambda t: t + "loop: &x [*x]\n")),
    Case("deep_nesting", ("deep.", "nested more than 40 levels"), text_edit(_deep)),
    Case("python_object_apply", ("model.owner: tag '!!python/object/apply:os.system'",),
         text_edit(lambda t: t.replace("owner: alice", 'owner: !!python/object/apply:os.system ["touch pwned"]'))),
    Case("python_name_tag", ("use_case.description: tag '!!python/name:os.system'",),
         text_edit(lambda t: t.replace("description: bad-input corpus", "description: !!python/name:os.system ''"))),
    Case("custom_tag", ("model.name: tag '!evil'",),
         text_edit(lambda t: t.replace("name: corpus-model", "name: !evil corpus-model"))),
    Case("binary_tag", ("governance.consent_basis: tag '!!binary'",),
         text_edit(lambda t: t.replace("consent_basis: synthetic data", "consent_basis: !!binary aGVsbG8="))),
    Case("huge_scalar", ("use_case.description: a value of 5000 characters",),
         setitem("use_case.description", "d" * 5000)),
    # ---- thresholds
    Case("threshold_nan", ("checks.performance.roc_auc.min", "finite number"),
         setitem("checks.performance", {"roc_auc": {"min": float("nan")}})),
    Case("threshold_inf", ("checks.performance.expected_calibration_error.max", "finite number"),
         setitem("checks.performance", {"expected_calibration_error": {"max": float("inf")}})),
    Case("threshold_minus_inf", ("checks.fairness.disparate_impact.min", "finite number"),
         setitem("checks.fairness", {"disparate_impact": {"min": float("-inf")}})),
    Case("threshold_between_reversed", ("checks.fairness.disparate_impact", "lower bound is above"),
         setitem("checks.fairness", {"disparate_impact": {"between": [1.25, 0.8]}})),
    Case("threshold_negative_abs_max", ("checks.fairness.equal_opportunity_difference", "negative"),
         setitem("checks.fairness", {"equal_opportunity_difference": {"abs_max": -0.1}})),
    Case("threshold_without_bound", ("checks.performance.roc_auc", "at least one of"),
         setitem("checks.performance", {"roc_auc": {"required": False}})),
    Case("threshold_text", ("checks.performance.roc_auc.min",),
         setitem("checks.performance", {"roc_auc": {"min": "high"}})),
    Case("eps_zero", ("checks.robustness.eps.0",), setitem("checks.robustness", {"eps": [0]})),
    Case("drift_share_above_one", ("checks.drift.max_drifted_share",), setitem("checks.drift", {"max_drifted_share": 2})),
    Case("privileged_nan", ("data.protected_attributes.sex.privileged.0", "nan"),
         setitem("data.protected_attributes", {"sex": {"privileged": [float("nan")]}})),
    # ---- durations
    Case("valid_for_overflow", ("certificate.valid_for", "longer than 3650 days"),
         setitem("certificate.valid_for", "99999999999999d")),
    Case("valid_for_negative", ("certificate.valid_for", "not a positive duration"),
         setitem("certificate.valid_for", -86400)),
    Case("valid_for_inf", ("certificate.valid_for",), setitem("certificate.valid_for", float("inf"))),
    Case("timeout_words", ("signoff.timeout", "not a duration"), setitem("signoff.timeout", "forever")),
    Case("timeout_zero", ("signoff.timeout", "not a positive duration"), setitem("signoff.timeout", "0h")),
    # ---- names: length, SQL and HTML metacharacters, unicode
    Case("owner_200_chars", ("model.owner", "1-128 ASCII"), setitem("model.owner", "o" * 200)),
    Case("owner_sql", ("model.owner", "is not allowed"), setitem("model.owner", "alice'); DROP TABLE certification_runs;--")),
    Case("owner_html", ("model.owner", "is not allowed"), setitem("model.owner", "<script>alert(1)</script>")),
    Case("owner_cyrillic_lookalike", ("model.owner", "ASCII"), setitem("model.owner", "\u0430lice")),
    Case("name_html", ("model.name", "is not allowed"), setitem("model.name", '<img src=x onerror="alert(1)">')),
    Case("name_unicode", ("model.name", "ASCII"), setitem("model.name", "modèle-crédit")),
    Case("name_bidi_override", ("model.name",), setitem("model.name", "model\u202egnp.exe")),
    Case("version_sql", ("model.version", "is not allowed"), setitem("model.version", "1.0'; DELETE FROM signoffs;--")),
    Case("signoff_role_html", ("signoff.required", "<b>boss</b>"),
         setitem("signoff.required", {"<b>boss</b>": 1, "risk_officer": 1})),
    # ---- files, paths, symlinks
    Case("missing_test_file", ("data.test: file", "does not exist"), setitem("data.test", "../data/nope.csv")),
    Case("missing_artifact", ("model.artifact: file", "does not exist"), setitem("model.artifact", "../models/nope.skops")),
    Case("artifact_hash_mismatch", ("model.sha256", "refusing to load it"), setitem("model.sha256", "0" * 64)),
    Case("data_hash_mismatch", ("data.sha256.test",), setitem("data.sha256", {"test": "1" * 64})),
    Case("path_traversal", ("data.test", "outside the allowed data roots"),
         setitem("data.test", "../../../../../../../../etc/passwd")),
    Case("absolute_path", ("data.train", "outside the allowed data roots"), setitem("data.train", "/etc/hostname")),
    Case("symlink_data_outside", ("data.test", "outside the allowed data roots"), _symlink_data),
    Case("symlink_artifact_outside", ("model.artifact", "outside the allowed data roots"), _symlink_artifact),
    Case("data_roots_exclude_project", ("data.train", "MODELCERT_DATA_ROOTS"), _other_root),
    Case("wrong_suffix", ("data.test", "allowed: .csv, .parquet"), lambda p: _rename_test(p, "test.xlsx")),
    Case("header_only_data", ("data.test", "has no rows"), data_edit(_header_only)),
    # ---- artifacts
    Case("corrupt_skops", ("model.artifact", "not a readable skops file"), _corrupt_model),
    Case("untrusted_skops_types", ("model.trusted_types", "TreePredictor"), _hgb_model),
    Case("joblib_for_high_tier", ("model.format", "joblib is not allowed for risk tier high"), _joblib_model),
    Case("protected_feature_unjustified", ("governance.protected_feature_justification.sex",),
         setitem("model.features", ["x1", "x2", "sex"])),
    # ---- data values and columns
    Case("nan_in_numeric_feature", ("model.features", "'x1'", "null value"), data_edit(_nan_feature)),
    Case("string_in_numeric_feature", ("model.features", "'x1'", "non-numeric", "'twelve'"),
         data_edit(_string_in_numeric)),
    Case("two_thousand_extra_columns", ("data.extra_columns", "2000 column(s)", "'c0'", "1995 more"),
         data_edit(_many_columns)),
    Case("extra_column_also_used", ("data.extra_columns", "'x1'", "model.features"),
         setitem("data.extra_columns", ["pred", "score", "x1"])),
    Case("feature_missing", ("model.features", "'x2'", "missing from data.test"), data_edit(lambda d: d.drop(columns=["x2"]))),
    # ---- labels
    Case("label_missing", ("data.label", "missing from data.test"), data_edit(lambda d: d.drop(columns=["y"]))),
    Case("label_nulls", ("data.label", "null value"), data_edit(lambda d: d.assign(y=d["y"].where(d.index != 2)))),
    Case("label_three_classes", ("data.label", "not binary"), data_edit(lambda d: d.assign(y=d.index % 3))),
    Case("label_single_class", ("data.label", "single class"), data_edit(_single_class)),
    Case("positive_label_absent", ("data.positive_label", "'yes'"), setitem("data.positive_label", "yes")),
    Case("favorable_label_absent", ("data.favorable_label", "7"), setitem("data.favorable_label", 7)),
    # ---- groups
    Case("protected_column_missing", ("data.protected_attributes.sex", "missing from data.test"),
         data_edit(lambda d: d.drop(columns=["sex"]))),
    Case("privileged_group_empty", ("data.protected_attributes.sex", "privileged group is empty"),
         setitem("data.protected_attributes", {"sex": {"privileged": ["x"]}})),
    Case("unprivileged_group_empty", ("data.protected_attributes.sex", "unprivileged group is empty"),
         data_edit(lambda d: d.assign(sex="m"))),
    Case("range_on_text_column", ("data.protected_attributes.sex", "numeric"),
         setitem("data.protected_attributes", {"sex": {"privileged": {"min": 1}}})),
    Case("bands_on_text_column", ("data.protected_attributes.sex", "bands needs a numeric column"),
         setitem("data.protected_attributes", {"sex": {"bands": [1], "reference": "max_rate"}})),
    Case("reference_and_privileged", ("data.protected_attributes.sex", "privileged or reference, not both"),
         setitem("data.protected_attributes", {"sex": {"privileged": ["m"], "reference": "max_rate"}})),
    Case("band_reference_unknown", ("data.protected_attributes.sex", "<1, 1-2, >=2"),
         setitem("data.protected_attributes", {"sex": {"bands": [1, 2], "reference": "1-3"}})),
    Case("intersection_undeclared", ("data: intersections.0", "'race'", "not among protected_attributes"),
         setitem("data.intersections", [["sex", "race"]])),
    Case("min_group_share_above_one", ("data.min_group_share",), setitem("data.min_group_share", 1.5)),
    # ---- third-party audits (predictions only)
    Case("audit_predictions_column_missing", ("predictions.column", "'pred'"),
         data_edit(lambda d: d.drop(columns=["pred"])), audit=True),
    Case("audit_positive_absent", ("predictions.positive",), setitem("predictions.positive", ["High"]), audit=True),
    Case("audit_score_not_numeric", ("predictions.score_column",),
         data_edit(lambda d: d.assign(score="high")), audit=True),
]


def _rename_test(p: Project, name: str) -> None:
    p.extra["rename_test"] = name
    p.spec["data"]["test"] = f"../data/{name}"


def _prepare(tmp_path: Path, models: dict[str, bytes], case: Case, monkeypatch: pytest.MonkeyPatch) -> Path:
    project = _base(tmp_path / "proj", models, audit=case.audit)
    project.extra["models"] = models
    raw = case.build(project)
    path = _write(project, raw)
    if "rename_test" in project.extra:
        (project.root / "data" / "test.csv").rename(project.root / "data" / project.extra["rename_test"])
    for key, value in project.extra.get("env", {}).items():
        monkeypatch.setenv(key, value)
    return path


@pytest.fixture(scope="module")
def corpus_db(pg_admin_url: str, migrated_template: str) -> Any:
    """One results database for the whole corpus: each case finds its own run by its spec path."""
    from tests.conftest import _scratch_db

    yield from _scratch_db(pg_admin_url, "mc_corpus", migrated_template)


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{err[:2000]}"
    assert "Traceback" not in err
    assert len(lines[0]) < MAX_MESSAGE, f"unbounded message ({len(lines[0])} characters): {lines[0][:300]}…"
    return lines[0]


def test_corpus_is_large_and_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) >= 50 and len(set(ids)) == len(ids)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, models: dict[str, bytes], corpus_db: str,
                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _prepare(tmp_path, models, case, monkeypatch)

    code = main(["validate", str(spec)])
    out = capsys.readouterr()
    assert code != 0, f"validate accepted it:\n{out.out}"
    line = _one_line(out.err)
    for part in case.expect:
        assert part in line, f"{part!r} not in: {line}"
    assert "valid" not in out.out

    code = main(["--database-url", corpus_db, "run", str(spec)])
    out = capsys.readouterr()
    assert code != 0
    assert _one_line(out.err) == line, "run and validate disagree"
    with get_engine(corpus_db).connect() as conn:
        runs = conn.execute(select(CertificationRun.status, CertificationRun.reasons)
                            .where(CertificationRun.spec_path == str(spec.resolve()))).all()
    assert [r.status for r in runs] == ["error"], runs
    assert not [r for r in runs if r.status in NEVER]
    assert all(part in runs[0].reasons[0] for part in case.expect), runs[0].reasons


def test_valid_base_projects_pass(tmp_path: Path, models: dict[str, bytes], capsys: pytest.CaptureFixture[str]) -> None:
    """The corpus breaks one thing each: the unbroken projects validate (so each case fails for its own reason)."""
    for audit in (False, True):
        project = _base(tmp_path / f"ok-{audit}", models, audit=audit)
        path = _write(project, None)
        assert main(["validate", str(path)]) == 0, capsys.readouterr().err
        assert "valid" in capsys.readouterr().out


def test_database_refusal_is_recorded_as_error(tmp_path: Path, models: dict[str, bytes], db_url: str) -> None:
    """A value the database refuses (here a 300-character trigger name) still leaves an ``error`` run behind."""
    from modelcert import pipeline
    from modelcert.errors import StoreError

    path = _write(_base(tmp_path / "proj", models, audit=True), None)
    engine = get_engine(db_url)
    with pytest.raises(StoreError, match="register: the results database refused the run"):
        pipeline.register(engine, path, run_key="corpus/db-refusal", triggered_by="t" * 300)
    with engine.connect() as conn:
        run = conn.execute(select(CertificationRun).where(CertificationRun.run_key == "corpus/db-refusal")).one()
    assert run.status == "error" and "refused the run" in run.reasons[0]
    assert run.triggered_by is not None and len(run.triggered_by) == 128


def test_decide_failure_ends_the_run_in_error(tmp_path: Path, models: dict[str, bytes], db_url: str) -> None:
    """A run that started always ends: a gate that cannot read the stored spec marks the run ``error`` in its own
    transaction instead of leaving it ``running``."""
    from sqlalchemy import update

    from modelcert import pipeline
    from modelcert.errors import ModelcertError

    path = _write(_base(tmp_path / "proj", models, audit=True), None)
    engine = get_engine(db_url)
    reg = pipeline.register(engine, path, run_key="corpus/decide", triggered_by="alice")
    with engine.begin() as conn:
        spec = conn.execute(select(CertificationRun.spec).where(CertificationRun.id == reg.run_id)).scalar_one()
        broken = copy.deepcopy(spec)
        broken["certificate"]["valid_for"] = "-P1D"
        conn.execute(update(CertificationRun).where(CertificationRun.id == reg.run_id).values(spec=broken))
    with pytest.raises(ModelcertError, match="certificate.valid_for"):
        pipeline.decide(engine, reg.run_id)
    with engine.connect() as conn:
        status, reasons = conn.execute(select(CertificationRun.status, CertificationRun.reasons)
                                       .where(CertificationRun.id == reg.run_id)).one()
    assert status == "error" and "certificate.valid_for" in reasons[0]


SUBPROCESS = ["alias_bomb", "latin1_file", "python_object_apply", "two_thousand_extra_columns"]


@pytest.mark.parametrize("case", [c for c in CASES if c.id in SUBPROCESS], ids=SUBPROCESS)
def test_entry_point_prints_no_traceback(case: Case, tmp_path: Path, models: dict[str, bytes],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The installed ``modelcert`` script, as a user runs it: exit 2, one line on stderr, nothing else."""
    exe = Path(sys.executable).with_name("modelcert")
    if not exe.is_file():
        pytest.skip(f"no modelcert entry point next to {sys.executable}")
    spec = _prepare(tmp_path, models, case, monkeypatch)
    proc = subprocess.run([str(exe), "validate", str(spec)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    line = _one_line(proc.stderr)
    assert all(part in line for part in case.expect), line


def test_entry_point_run_records_error_without_traceback(tmp_path: Path, models: dict[str, bytes], corpus_db: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """``modelcert run`` of an alias bomb, as a user runs it: one line, exit 2, and a run in ``error``."""
    exe = Path(sys.executable).with_name("modelcert")
    if not exe.is_file():
        pytest.skip(f"no modelcert entry point next to {sys.executable}")
    case = next(c for c in CASES if c.id == "alias_bomb")
    spec = _prepare(tmp_path, models, case, monkeypatch)
    proc = subprocess.run([str(exe), "--database-url", corpus_db, "run", str(spec)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "expands to more than 20000 YAML nodes" in _one_line(proc.stderr)
    with get_engine(corpus_db).connect() as conn:
        statuses = conn.execute(select(CertificationRun.status)
                                .where(CertificationRun.spec_path == str(spec.resolve()))).scalars().all()
    assert statuses == ["error"]
