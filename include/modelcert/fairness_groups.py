"""Protected groups as integer codes: one code per row per attribute (or intersection), built with pandas
factorize/searchsorted in vectorised form (a million rows in tens of milliseconds), plus labels and the declared
reference group.

Group labels (stable, documented in the README "Fairness"):

- categorical: the value as text; the ``privileged`` values together form one reference group labelled with the
  values joined by `` | `` (``Caucasian``; ``married | cohabiting``).
- numeric bands ``[25, 40, 60]``: ``<25``, ``25-40``, ``40-60``, ``>=60`` (lower edge included, upper excluded).
- numeric privileged range: ``>=25`` and ``<25`` for ``{min: 25}``, ``<60`` / ``>=60`` for ``{max: 60}``,
  ``25-60`` / ``not 25-60`` for both.
- intersection ``[sex, race]``: name ``sex×race``, groups ``Female × Black``.
- a missing value (null, empty or blank text, a non-number in a numeric attribute) — in any component of an
  intersection — is the group ``unknown``: counted and reported, never judged, never dropped.

Which groups are judged (size and share) and which group is the reference under ``max_rate`` depend on the
outcomes, so the fairness stage decides them from the per-group counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from modelcert.errors import DataError
from modelcert.safe_yaml import short
from modelcert.spec import MAX_RATE, GroupRange, ProtectedAttribute, band_labels

UNKNOWN = "unknown"
CROSS = " × "
INTERSECTION_SEP = "×"
Kind = Literal["categorical", "bands", "privileged_range", "intersection"]


@dataclass(frozen=True)
class Grouping:
    """The groups of one attribute or intersection over the rows of a dataset."""

    name: str
    kind: Kind
    columns: tuple[str, ...]
    #: Group code per row, in [0, len(labels)); the last code is always ``unknown`` (it may have no rows).
    codes: np.ndarray
    labels: tuple[str, ...]
    #: Code of the declared reference group, or None under ``reference: max_rate``.
    reference: int | None
    #: How the spec defines the groups, for the summary.
    definition: dict[str, Any] = field(default_factory=dict)

    @property
    def reference_rule(self) -> Literal["declared", "max_rate"]:
        return "max_rate" if self.reference is None else "declared"

    @property
    def unknown(self) -> int:
        return len(self.labels) - 1


def _text_label(value: Any) -> str:
    """A category as text; a whole float (a numeric code read as float) without its ".0"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def categorical(name: str, col: pd.Series, pa: ProtectedAttribute, *, field_name: str) -> Grouping:
    codes, uniques = pd.factorize(col, sort=False, use_na_sentinel=True)
    labels = np.array([_text_label(u).strip() for u in uniques], dtype=object)
    known = labels != ""
    privileged = None if pa.privileged is None else {str(v) for v in pa.privileged}  # type: ignore[union-attr]
    if privileged is not None:
        is_priv = np.array([str(u) in privileged or lab in privileged for u, lab in zip(uniques, labels, strict=True)],
                           dtype=bool)
        if not (is_priv & known).any():
            raise DataError(f"{field_name}: the privileged group is empty in the data ({len(col)} rows): none of "
                            f"{short(sorted(privileged), 160)} occurs in column {short(name)}; check the privileged "
                            "values against the column's values")
        ref_label = " | ".join(sorted({str(lab) for lab in labels[is_priv & known]}))
        labels = np.where(is_priv, ref_label, labels)
    group_labels = sorted({str(lab) for lab in labels[known]})
    if UNKNOWN in group_labels:
        group_labels.remove(UNKNOWN)  # a literal "unknown" value joins the unknown group
    index = {lab: i for i, lab in enumerate(group_labels)}
    unknown = len(group_labels)
    per_unique = np.array([index.get(str(lab), unknown) if k else unknown for lab, k in zip(labels, known,
                                                                                          strict=True)],
                          dtype=np.int64)
    row_codes = np.where(codes >= 0, per_unique[np.maximum(codes, 0)] if len(per_unique) else unknown, unknown)
    reference = index[ref_label] if privileged is not None else None
    definition = ({"privileged": sorted(privileged)} if privileged is not None else {"reference": MAX_RATE})
    return Grouping(name=name, kind="categorical", columns=(name,), codes=row_codes.astype(np.int64),
                    labels=(*group_labels, UNKNOWN), reference=reference, definition=definition)


def _numeric(name: str, col: pd.Series, *, field_name: str, what: str) -> np.ndarray:
    num = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
    if np.isnan(num).all() and col.notna().any():
        raise DataError(f"{field_name}: {what} needs a numeric column; {short(name)} has no numbers "
                        f"(e.g. {short(col.dropna().iloc[0], 40)}); use privileged: [values] or reference: max_rate "
                        "for a categorical attribute")
    return num


def bands(name: str, col: pd.Series, pa: ProtectedAttribute, *, field_name: str) -> Grouping:
    edges = np.asarray(pa.bands, dtype=float)
    num = _numeric(name, col, field_name=field_name, what="bands")
    labels = band_labels(list(pa.bands or []))
    codes = np.searchsorted(edges, num, side="right").astype(np.int64)
    codes[~np.isfinite(num)] = len(labels)
    reference = None if pa.reference == MAX_RATE else labels.index(str(pa.reference))
    return Grouping(name=name, kind="bands", columns=(name,), codes=codes, labels=(*labels, UNKNOWN),
                    reference=reference, definition={"bands": list(pa.bands or []), "reference": pa.reference})


def privileged_range(name: str, col: pd.Series, rng: GroupRange, *, field_name: str) -> Grouping:
    num = _numeric(name, col, field_name=field_name, what="a privileged range")
    lo, hi = rng.min, rng.max
    inside_label = (f"{lo:g}-{hi:g}" if lo is not None and hi is not None else
                    f">={lo:g}" if lo is not None else f"<{hi:g}")
    outside_label = (f"not {lo:g}-{hi:g}" if lo is not None and hi is not None else
                     f"<{lo:g}" if lo is not None else f">={hi:g}")
    inside = np.ones(len(num), dtype=bool)
    with np.errstate(invalid="ignore"):
        if lo is not None:
            inside &= num >= lo
        if hi is not None:
            inside &= num < hi
    codes = np.where(inside, 0, 1).astype(np.int64)
    codes[~np.isfinite(num)] = 2
    if not (codes == 0).any():
        raise DataError(f"{field_name}: the privileged group ({short(name)} {inside_label}) is empty in the data "
                        f"({len(col)} rows); check the range against the column's values")
    return Grouping(name=name, kind="privileged_range", columns=(name,), codes=codes,
                    labels=(inside_label, outside_label, UNKNOWN), reference=0,
                    definition={"privileged": rng.model_dump(exclude_none=True)})


def attribute(df: pd.DataFrame, name: str, pa: ProtectedAttribute) -> Grouping:
    """The groups of one declared protected attribute (the column must exist)."""
    field_name = f"data.protected_attributes.{name}"
    col = df[name]
    if pa.kind == "bands":
        return bands(name, col, pa, field_name=field_name)
    if pa.kind == "privileged_range":
        assert isinstance(pa.privileged, GroupRange)
        return privileged_range(name, col, pa.privileged, field_name=field_name)
    return categorical(name, col, pa, field_name=field_name)


def intersection(parts: list[Grouping]) -> Grouping:
    """Every combination of the parts' known groups is a group; unknown in any part is unknown. The reference is
    the combination of the parts' declared references, or max_rate when one part uses max_rate."""
    sizes = [len(p.labels) - 1 for p in parts]
    codes = np.zeros(len(parts[0].codes), dtype=np.int64)
    unknown = np.zeros(len(codes), dtype=bool)
    for p, k in zip(parts, sizes, strict=True):
        unknown |= p.codes == p.unknown
        codes = codes * k + np.minimum(p.codes, k - 1)
    total = int(np.prod(sizes))
    codes[unknown] = total
    labels: list[str] = [""]
    for p in parts:
        labels = [f"{a}{CROSS}{b}" if a else b for a in labels for b in p.labels[:-1]]
    reference: int | None = None
    if all(p.reference is not None for p in parts):
        reference = 0
        for p, k in zip(parts, sizes, strict=True):
            reference = reference * k + int(p.reference)  # type: ignore[arg-type]
    return Grouping(name=INTERSECTION_SEP.join(p.name for p in parts), kind="intersection",
                    columns=tuple(c for p in parts for c in p.columns), codes=codes,
                    labels=(*labels, UNKNOWN), reference=reference,
                    definition={"intersection": [p.name for p in parts],
                                "reference": "combination of the declared references" if reference is not None
                                else MAX_RATE})


def groupings(df: pd.DataFrame, protected: dict[str, ProtectedAttribute],
              intersections: list[list[str]]) -> list[Grouping]:
    """Every declared attribute, then every declared intersection, in the spec's order."""
    singles = {name: attribute(df, name, pa) for name, pa in protected.items()}
    out = list(singles.values())
    out += [intersection([singles[c] for c in combo]) for combo in intersections]
    return out


def counts_by_group(codes: np.ndarray, n_groups: int, y_fav: np.ndarray, p_fav: np.ndarray) -> np.ndarray:
    """Confusion counts [TP, FP, FN, TN] relative to the favorable outcome, per group: shape (n_groups, 4).
    One bincount over group x cell (cell 0 TP, 1 FP, 2 FN, 3 TN)."""
    cell = (~y_fav).astype(np.int64) + 2 * (~p_fav).astype(np.int64)
    return np.bincount(codes * 4 + cell, minlength=n_groups * 4).reshape(n_groups, 4)
