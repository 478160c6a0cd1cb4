"""The dossier's figures, drawn by matplotlib (Agg backend) from stored stage summaries and check rows.

Deterministic on purpose: a certified run's dossier is frozen, so the same evidence must give the same bytes.
The SVG writer gets a fixed ``svg.hashsalt`` (its element ids) and no ``Date`` metadata; fonts are rendered as
paths (``svg.fonttype: path``) so the output does not depend on the reader's fonts either.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

#: Figure size in inches (at 100 dpi in the SVG's user units).
SMALL = (4.6, 3.4)
WIDE = (7.6, 3.6)
_RC = {
    "svg.hashsalt": "modelcert-dossier",
    "svg.fonttype": "path",
    "font.size": 8.5,
    "axes.titlesize": 9.5,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
PASS, FAIL, WARN, INFO, REF = "#2e7d32", "#c62828", "#ef6c00", "#1565c0", "#757575"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _svg(fig: Any) -> str:
    """The figure as an inline SVG element (no XML prolog, no DOCTYPE), then closed."""
    plt = _pyplot()
    buf = io.StringIO()
    try:
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "modelcert (matplotlib)"},
                    bbox_inches="tight")
    finally:
        plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _figure(size: tuple[float, float] = SMALL, ncols: int = 1, *, layout: str | None = None) -> tuple[Any, Any]:
    plt = _pyplot()
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(1, ncols, figsize=size, layout=layout)
    return fig, ax


def _legend_below(fig: Any, handles: list[Any], ncols: int = 4) -> None:
    """A legend under the axes (the figure must use the constrained layout): it never covers a bar or a point."""
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=min(ncols, len(handles)), fontsize=7,
                   frameon=False)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def draw(fn: Any, *args: Any, **kwargs: Any) -> str:
    """Run a drawing function under the dossier's rc settings; returns the SVG text."""
    plt = _pyplot()
    with plt.rc_context(_RC):
        return fn(*args, **kwargs)


# --------------------------------------------------------------------------------------------- performance
def roc_pr(curves: dict[str, Any], roc_auc: float | None) -> str:
    """ROC and precision-recall curves side by side (from the performance stage's downsampled curve data)."""
    def body() -> str:
        fig, (a, b) = _figure(WIDE, 2)
        roc = curves["roc"]
        a.plot(roc["fpr"], roc["tpr"], color=INFO, lw=1.6,
               label=f"model (AUC {roc_auc:.3f})" if _finite(roc_auc) else "model")
        a.plot([0, 1], [0, 1], ls="--", color=REF, lw=1, label="chance")
        a.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve", xlim=(0, 1), ylim=(0, 1.01))
        a.legend(loc="lower right")
        pr = curves["pr"]
        b.plot(pr["recall"], pr["precision"], color=INFO, lw=1.6, label="model")
        base = pr.get("positive_rate")
        if _finite(base):
            b.axhline(base, ls="--", color=REF, lw=1, label=f"base rate {base:.2f}")
        b.set(xlabel="recall", ylabel="precision", title="Precision-recall curve", xlim=(0, 1), ylim=(0, 1.01))
        b.legend(loc="lower left")
        fig.tight_layout()
        return _svg(fig)

    return draw(body)


def calibration(overall: Sequence[dict[str, Any]], by_group: dict[str, dict[str, Any]], ece: float | None,
                threshold_text: str) -> str:
    """Reliability diagram: observed rate against mean predicted probability, overall and per group."""
    def body() -> str:
        n = 1 + len(by_group)
        fig, axes = _figure((3.3 * n, 3.3), n)
        axes = list(axes) if n > 1 else [axes]
        panels = [("overall", {"all rows": {"bins": overall, "ece": ece}})] + list(by_group.items())
        colors = [INFO, WARN, PASS, FAIL, "#6a1b9a", "#00838f"]
        for ax, (title, groups) in zip(axes, panels, strict=True):
            ax.plot([0, 1], [0, 1], ls="--", color=REF, lw=1)
            for i, (g, data) in enumerate(groups.items()):
                bins = data.get("bins") or []
                xs = [b["mean_predicted"] for b in bins]
                ys = [b["observed_rate"] for b in bins]
                e = data.get("ece")
                ax.plot(xs, ys, marker="o", ms=3, lw=1.4, color=colors[i % len(colors)],
                        label=f"{g} (ECE {e:.3f})" if _finite(e) else str(g))
            ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted probability", title=f"Calibration: {title}")
            ax.legend(loc="upper left", fontsize=7)
        axes[0].set_ylabel("observed positive rate")
        if threshold_text:
            fig.suptitle(f"expected calibration error bound {threshold_text}", fontsize=8)
        fig.tight_layout()
        return _svg(fig)

    return draw(body)


# --------------------------------------------------------------------------------------------- fairness
def interval_bars(title: str, rows: Sequence[dict[str, Any]], *,
                  bound: tuple[float | None, float | None] = (None, None), xlabel: str = "value") -> str:
    """Horizontal point estimates with 95% interval error bars, the threshold drawn as lines.

    ``rows``: ``{"label", "value", "ci95": [lo, hi] | None, "verdict": "pass"|"fail"|"inconclusive"|None}``."""
    def body() -> str:
        from matplotlib.lines import Line2D

        rows_ = [r for r in rows if _finite(r.get("value"))]
        height = max(1.9, 0.34 * len(rows_) + 1.3)
        fig, ax = _figure((6.8, height), layout="constrained")
        colors = {"pass": PASS, "fail": FAIL, "inconclusive": WARN}
        for i, r in enumerate(rows_):
            c = colors.get(str(r.get("verdict")), INFO)
            ci = r.get("ci95")
            if ci and all(_finite(x) for x in ci):
                ax.errorbar([r["value"]], [i], xerr=[[r["value"] - ci[0]], [ci[1] - r["value"]]], fmt="o", color=c,
                            ecolor=c, capsize=3, ms=4)
            else:
                ax.plot([r["value"]], [i], "o", color=c, ms=4)
        lo, hi = bound
        for b in (lo, hi):
            if _finite(b):
                ax.axvline(b, color=FAIL, ls="--", lw=1)
        ax.set_yticks(range(len(rows_)), [str(r["label"]) for r in rows_])
        ax.invert_yaxis()
        ax.set(title=title, xlabel=xlabel)
        seen = [v for v in ("pass", "inconclusive", "fail") if any(str(r.get("verdict")) == v for r in rows_)]
        handles = [Line2D([], [], color=colors[v], marker="o", ms=4, label=f"{v} (95% interval)") for v in seen]
        if any(_finite(b) for b in bound):
            handles.append(Line2D([], [], color=FAIL, ls="--", lw=1, label="bound"))
        _legend_below(fig, handles)
        return _svg(fig)

    return draw(body)


def group_rates(title: str, groups: Sequence[dict[str, Any]], metrics: Sequence[str]) -> str:
    """Grouped bars of per-group rates (selection rate, TPR, FPR …)."""
    def body() -> str:
        fig, ax = _figure((6.8, 3.3), layout="constrained")
        width = 0.8 / max(1, len(metrics))
        colors = [INFO, PASS, WARN, FAIL, "#6a1b9a"]
        for j, m in enumerate(metrics):
            xs = [i + j * width for i in range(len(groups))]
            ys = [g.get(m) if _finite(g.get(m)) else 0.0 for g in groups]
            ax.bar(xs, ys, width=width, color=colors[j % len(colors)], label=m.replace("_", " "))
        ax.set_xticks([i + width * (len(metrics) - 1) / 2 for i in range(len(groups))],
                      [str(g["label"]) + (" (reference)" if g.get("is_reference") else "") for g in groups],
                      rotation=20 if len(groups) > 4 else 0, ha="right" if len(groups) > 4 else "center")
        ax.set(ylim=(0, 1.05), title=title, ylabel="rate")
        _legend_below(fig, ax.get_legend_handles_labels()[0])
        return _svg(fig)

    return draw(body)


def impact_ratios(title: str, rows: Sequence[dict[str, Any]], *, four_fifths: float = 0.8) -> str:
    """LL144 impact ratios per category, the four-fifths line drawn; excluded categories greyed."""
    def body() -> str:
        height = max(1.9, 0.32 * len(rows) + 1.3)
        fig, ax = _figure((6.8, height), layout="constrained")
        for i, r in enumerate(rows):
            v = r.get("impact_ratio")
            if not _finite(v):
                continue
            c = REF if r.get("excluded") else (PASS if v >= four_fifths else FAIL)
            ax.barh([i], [v], color=c)
        ax.axvline(four_fifths, color=FAIL, ls="--", lw=1, label=f"four-fifths rule ({four_fifths:g})")
        ax.set_yticks(range(len(rows)), [str(r["category"]) + (" (excluded)" if r.get("excluded") else "")
                                         for r in rows])
        ax.invert_yaxis()
        ax.set(xlim=(0, 1.05 * max(1.0, *[r["impact_ratio"] for r in rows if _finite(r.get("impact_ratio"))])),
               title=title, xlabel="impact ratio")
        _legend_below(fig, ax.get_legend_handles_labels()[0])
        return _svg(fig)

    return draw(body)


# --------------------------------------------------------------------------------------------- drift, robustness, data
def drift(rows: Sequence[dict[str, Any]]) -> str:
    """Per feature: the drift statistic, its threshold and verdict, grouped by method (p-values and distances
    are different scales, so each method gets its own panel)."""
    def body() -> str:
        methods: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            if _finite(r.get("score")):
                methods.setdefault(str(r.get("method")), []).append(r)
        n = max(1, len(methods))
        tallest = max([len(v) for v in methods.values()] or [1])
        fig, axes = _figure((3.6 * n, max(1.8, 0.26 * tallest + 1.0)), n)
        axes = list(axes) if n > 1 else [axes]
        for ax, (method, items) in zip(axes, sorted(methods.items()), strict=False):
            for i, r in enumerate(items):
                ax.barh([i], [r["score"]], color=FAIL if r.get("drifted") else PASS)
                if _finite(r.get("threshold")):
                    ax.plot([r["threshold"]] * 2, [i - 0.4, i + 0.4], color="black", lw=1.2)
            ax.set_yticks(range(len(items)), [str(r["column"]) for r in items])
            ax.invert_yaxis()
            ax.set(title=method, xlabel="statistic (black tick: threshold)")
        fig.suptitle("Drift per feature (red: drifted)", fontsize=9)
        fig.tight_layout()
        return _svg(fig)

    return draw(body)


def robustness(series: dict[str, list[tuple[float, float]]], bound: float | None, clean: float | None) -> str:
    """Robust accuracy against the attack budget (eps), one line per attack; the bound as a dashed line."""
    def body() -> str:
        fig, ax = _figure(SMALL)
        colors = [INFO, WARN, "#6a1b9a"]
        for i, (attack, points) in enumerate(sorted(series.items())):
            pts = sorted(points)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=colors[i % 3], label=attack)
        if _finite(bound):
            ax.axhline(bound, color=FAIL, ls="--", lw=1, label=f"bound ≥ {bound:g}")
        if _finite(clean):
            ax.axhline(clean, color=REF, ls=":", lw=1, label=f"clean accuracy {clean:.2f}")
        ax.set(xlabel="attack budget eps (share of each feature's range, L∞)", ylabel="robust accuracy",
               ylim=(0, 1.02), title="Robust accuracy against attack budget")
        ax.legend(fontsize=7)
        fig.tight_layout()
        return _svg(fig)

    return draw(body)


def data_quality(counts: dict[str, dict[str, int]]) -> str:
    """Expectations evaluated and failed, per dataset (Great Expectations)."""
    def body() -> str:
        fig, ax = _figure((4.6, 2.4))
        names = list(counts)
        ok = [counts[n].get("evaluated", 0) - counts[n].get("failed", 0) for n in names]
        bad = [counts[n].get("failed", 0) for n in names]
        ax.barh(names, ok, color=PASS, label="met")
        ax.barh(names, bad, left=ok, color=FAIL, label="failed")
        ax.set(xlabel="expectations", title="Data-quality expectations per dataset")
        ax.legend(fontsize=7)
        fig.tight_layout()
        return _svg(fig)

    return draw(body)


# --------------------------------------------------------------------------------------------- explainability
def importance(features: Sequence[dict[str, Any]], unit: str = "") -> str:
    """Feature importance (the explainability stage's top features), largest first."""
    rows = [f for f in features if _finite(f.get("importance"))][:10]

    def body() -> str:
        fig, ax = _figure((6.8, max(1.6, 0.3 * len(rows) + 1.0)))
        ax.barh(range(len(rows)), [f["importance"] for f in rows], color=INFO)
        ax.set_yticks(range(len(rows)), [str(f["feature"]) for f in rows])
        ax.invert_yaxis()
        ax.set(title="Feature importance (top features)", xlabel=unit or "importance")
        fig.tight_layout()
        return _svg(fig)

    return draw(body)
