"""Adversarial and natural robustness with IBM ART (adversarial-robustness-toolbox 1.20.1).

What is attacked. A seeded sample of ``checks.robustness.sample_size`` test rows. Only the *allowed* features
move: numeric model features that are neither protected attributes nor listed in ``frozen_features``. Every
other column (categoricals, protected attributes, frozen features) keeps the sampled row's value, and every
allowed feature stays inside its observed range ``[min, max]`` on the training data (the test data when the
spec has no training set; widened to include the sampled values themselves, so an original row is always a
valid point). Attacks work in a normalized space where each allowed feature is scaled to [0, 1] by that
range, so ``eps`` is an L-infinity budget there: eps = 0.05 lets each allowed feature move by 5 % of its range.
Integer-valued features are treated as continuous.

Attacks.

* ``hop_skip_jump`` (black box, any classifier): ART's ``HopSkipJump`` (untargeted, L-inf) through an ART
  ``BlackBoxClassifier`` whose predict function takes the normalized allowed-feature matrix and rebuilds full
  feature rows for the model. HopSkipJump is a minimal-perturbation attack, so one run serves every eps: a
  row is robust at eps when it is correctly classified and no adversarial example was found within L-inf
  distance eps. Every adversarial example is re-checked with the real model on rebuilt input rows. With a few
  iterations HopSkipJump is approximate: its robust accuracy is an upper bound (on german_credit, white-box
  FGSM finds a few more adversarial rows at eps = 0.1).
* ``fgsm`` / ``pgd`` (white box, "where the model exposes gradients"): when the model is a scikit-learn
  Pipeline (or a bare estimator) whose final estimator ART wraps with loss gradients (e.g. LogisticRegression ->
  ``ScikitlearnLogisticRegression``), the attack runs in the pipeline's transformed space. Only the
  transformed columns that come from allowed features move (``mask``), with a per-column eps equal to eps times
  that column's transformed training range, and ``clip_values`` bounding each such column to its transformed
  training range. Before attacking we verify that each allowed feature maps one-to-one and affinely onto its
  transformed column (true for StandardScaler/MinMaxScaler; not for PCA, splines, polynomial features …), so a
  transformed adversarial example maps back to a valid input row, which is re-predicted with the full model.
  Otherwise an informational check records why the gradient attack does not apply (e.g.
  HistGradientBoostingClassifier exposes no gradients to ART) — never a failure, never silently skipped.

Natural perturbation: Gaussian noise on the allowed features with sigma = ``noise_sigma`` x the feature's
standard deviation (training data), clipped to the valid range, seeded, several noisy copies per row; the
prediction flip rate against the unperturbed predictions is judged by ``max_flip_rate``.

Things ART 1.20.1 cannot do here, and the workarounds (also at the code that does them):

1. ``HopSkipJump`` draws its first adversarial point from an *unseeded* ``np.random.RandomState()``
   (``_init_sample``), so results would change from run to run. We draw the starting points ourselves from the
   spec's seed (random points of the allowed box, one-feature extremes and, for k <= 8 allowed features, the
   box's corners; then a line search toward the row)
   and pass them as ``x_adv_init``; its other randomness (gradient estimation) uses the global numpy RNG, which
   we seed for the attack and restore afterwards.
2. ``HopSkipJump`` attacks rows strictly one after another, one model call per query: ~9 000 calls for the 75
   correctly classified rows of german_credit's sample. A scikit-learn pipeline with a ColumnTransformer costs
   ~5 ms per call whatever the batch size, i.e. ~50 s. Each row's attack therefore runs in its own thread, but
   the threads run one at a time in a fixed order (lock-step, so the run stays deterministic) and all their
   pending queries of a round are answered by one batched model call (:class:`_LockstepOracle`): ~150 model
   calls, ~3 s.
3. ART's BlackBoxClassifier sees a plain array; rows with categorical values need per-row context. Each row's
   attack gets its own predict closure holding that row (the non-allowed features), instead of encoding the
   row in extra masked input columns.
4. ART works in float32: a starting point verified in float64 right at the decision boundary can round back
   across it, and HopSkipJump then silently falls back to its unseeded random start (workaround 1 undone).
   Every point is rounded to float32 before we judge it.
5. ``SklearnClassifier`` wraps single estimators: a Pipeline gets the generic wrapper without gradients. The
   gradient attacks therefore wrap the pipeline's final estimator and attack its input (the transformed space),
   after checking that the preprocessing maps allowed features affinely onto single columns (see above).
   HistGradientBoostingClassifier has no ART wrapper with gradients at all: FGSM/PGD are reported not
   applicable for it, HopSkipJump still runs.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from modelcert.context import EvalContext
from modelcert.stages.base import Check, RequiredCheck, StageOutcome, not_applicable, outcome

NAME = "robustness"
LIBRARY = "adversarial-robustness-toolbox"

#: Random starting candidates per row for HopSkipJump (ART's own default ``init_size``).
HSJ_INIT_SIZE = 100
#: Initial number of queries per gradient estimate (HopSkipJump grows it with sqrt(iteration) up to max_eval).
HSJ_INIT_EVAL = 10
#: The box's corners are added to the starting candidates when there are at most this many (k <= 8).
HSJ_MAX_CORNERS = 256
#: Points of the line search from a random adversarial start toward the row.
HSJ_LINE_POINTS = 32
#: Rows attacked concurrently by the lock-step oracle (bounds threads for large samples).
HSJ_WAVE = 128
#: PGD iterations (step = eps / 4).
PGD_MAX_ITER = 20
#: Noisy copies per sampled row and sigma.
NOISE_REPEATS = 10
GRADIENT_ATTACKS = ("fgsm", "pgd")


class _NotApplicable(Exception):
    """Raised during preparation when the stage does not apply; the message is the reason."""


# --------------------------------------------------------------------------------------------------- ART
@contextlib.contextmanager
def _quiet_art() -> Iterator[None]:
    """ART without chatter: its import warns about PyTorch, its attacks log at INFO/WARNING (progress bars are
    off through ``verbose=False``), and sklearn warns when ART passes arrays to a model fitted on a DataFrame."""
    art_logger = logging.getLogger("art")
    level = art_logger.level
    art_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        art_logger.setLevel(level)


@contextlib.contextmanager
def _single_threaded_native() -> Iterator[None]:
    """One OpenMP/BLAS thread while attacking. The attack queries the model with small batches, many times;
    idle OpenMP workers of e.g. HistGradientBoosting spin between calls and, on few cores, starve the attack
    threads (measured on adult_income, 2 cores: HopSkipJump 6-12 s with the default pool, 2 s with one thread)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@contextlib.contextmanager
def _seeded_global_numpy(seed: int) -> Iterator[None]:
    """ART's HopSkipJump draws its gradient-estimation noise from the global numpy RNG: seed it for the attack
    and give the caller its state back afterwards."""
    state = np.random.get_state()
    np.random.seed(seed % (2**32))
    try:
        yield
    finally:
        np.random.set_state(state)


# --------------------------------------------------------------------------------------------------- space
@dataclass
class PerturbationSpace:
    """The allowed features and their valid ranges; maps rows to and from the normalized [0, 1] space."""

    features: list[str]
    lo: np.ndarray
    hi: np.ndarray
    std: np.ndarray

    @property
    def span(self) -> np.ndarray:
        return self.hi - self.lo

    def normalize(self, X: pd.DataFrame) -> np.ndarray:
        return (X[self.features].to_numpy(dtype=float) - self.lo) / self.span

    def denormalize(self, Z: np.ndarray) -> np.ndarray:
        return np.clip(self.lo + np.asarray(Z, dtype=float) * self.span, self.lo, self.hi)

    def rebuild(self, base: pd.DataFrame, raw: np.ndarray) -> pd.DataFrame:
        """``base`` rows with the allowed features replaced by ``raw`` (same number of rows); every other column
        keeps the base row's value."""
        pos = {f: j for j, f in enumerate(self.features)}
        cols = {c: (raw[:, pos[c]] if c in pos else base[c].to_numpy()) for c in base.columns}
        return pd.DataFrame(cols, columns=list(base.columns))


@dataclass
class _Setup:
    X: pd.DataFrame  # sampled feature rows, index 0..n-1, allowed features as float
    y: np.ndarray  # true labels 0/1 (1 = positive class)
    rows: np.ndarray  # positions of the sampled rows in the test data
    candidates: int  # test rows eligible for sampling
    space: PerturbationSpace
    excluded: dict[str, str]  # model feature -> why it is not perturbed
    widened: list[str]  # allowed features whose valid range was widened to include sampled test values

    def predict(self, ctx: EvalContext, X: pd.DataFrame) -> np.ndarray:
        return (ctx.score_features(X) >= 0.5).astype(np.int64)


def _prepare(ctx: EvalContext) -> _Setup:
    rc = ctx.spec.checks.robustness
    features = ctx.features
    test = ctx.feature_frame("test")
    ref_name = "train" if ctx.spec.data.train is not None else "test"
    ref = ctx.feature_frame(ref_name)
    protected = set(ctx.spec.data.protected_attributes)
    frozen = set(rc.frozen_features)
    allowed: list[str] = []
    excluded: dict[str, str] = {}
    for f in features:
        col = test[f]
        if f in protected:
            excluded[f] = "protected attribute"
        elif f in frozen:
            excluded[f] = "frozen (checks.robustness.frozen_features)"
        elif pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
            excluded[f] = "not numeric"
        elif not pd.api.types.is_numeric_dtype(ref[f]):
            excluded[f] = f"not numeric in data.{ref_name}"
        else:
            values = ref[f].to_numpy(dtype=float)
            if np.isnan(values).all():
                excluded[f] = f"no values in data.{ref_name}"
            elif np.nanmin(values) == np.nanmax(values):
                excluded[f] = f"constant in data.{ref_name} (a valid range of one point)"
            else:
                allowed.append(f)
    if not allowed:
        why = "; ".join(f"{f}: {r}" for f, r in excluded.items())
        raise _NotApplicable(
            "no feature may be perturbed: robustness attacks need at least one numeric model feature that is neither "
            f"a protected attribute nor frozen ({why})"
        )

    labels = ctx.labels("test")
    eligible = np.flatnonzero(~test[allowed].isna().any(axis=1).to_numpy())
    if eligible.size == 0:
        raise _NotApplicable(f"every test row has a null value in the perturbable features {allowed}")
    rng = np.random.default_rng(rc.seed)
    n = min(rc.sample_size, eligible.size)
    rows = np.sort(rng.choice(eligible, size=n, replace=False))
    X = test.iloc[rows].reset_index(drop=True).copy()
    X[allowed] = X[allowed].astype(float)

    ref_values = ref[allowed].to_numpy(dtype=float)
    lo, hi = np.nanmin(ref_values, axis=0), np.nanmax(ref_values, axis=0)
    std = np.nanstd(ref_values, axis=0, ddof=1) if len(ref_values) > 1 else np.zeros(len(allowed))
    sample = X[allowed].to_numpy(dtype=float)
    widened = [f for j, f in enumerate(allowed) if sample[:, j].min() < lo[j] or sample[:, j].max() > hi[j]]
    lo, hi = np.minimum(lo, sample.min(axis=0)), np.maximum(hi, sample.max(axis=0))
    space = PerturbationSpace(features=allowed, lo=lo, hi=hi, std=np.nan_to_num(std))
    return _Setup(X=X, y=labels[rows], rows=rows, candidates=int(eligible.size), space=space, excluded=excluded,
                  widened=widened)


# --------------------------------------------------------------------------------------------------- results
@dataclass
class AttackResult:
    """One attack's outcome on the sample: per eps, the adversarial rows and who stayed robust."""

    attack: str
    eps: list[float]
    correct: np.ndarray  # clean prediction == label, per sampled row
    robust: dict[float, np.ndarray]  # eps -> robust per row
    adversarial: dict[float, pd.DataFrame]  # eps -> attacked feature rows (the original row where none was found)
    runtime_s: float
    detail: dict[str, Any] = field(default_factory=dict)
    #: HopSkipJump only: L-inf distance (normalized space) to the closest adversarial example found, inf if none.
    distance: np.ndarray | None = None

    def robust_accuracy(self, eps: float) -> float:
        return float(self.robust[eps].mean()) if len(self.correct) else math.nan

    def success_rate(self, eps: float) -> float:
        n = int(self.correct.sum())
        return float((self.correct & ~self.robust[eps]).sum() / n) if n else math.nan


@dataclass
class NoiseResult:
    sigma: float
    flip_rate: float
    accuracy: float
    repeats: int


@dataclass
class RobustnessReport:
    """Everything the stage measured; also the test hook to inspect adversarial rows."""

    sample: pd.DataFrame
    labels: np.ndarray
    clean_pred: np.ndarray
    space: PerturbationSpace
    attacks: dict[str, AttackResult]
    not_applicable: dict[str, str]  # attack -> reason
    noise: list[NoiseResult]
    runtime_s: dict[str, float]
    summary: dict[str, Any]


# --------------------------------------------------------------------------------------------------- HSJ
class _Abort(BaseException):
    """Unwinds an attack thread when the oracle stops early (an error elsewhere)."""


class _Worker:
    def __init__(self, oracle: "_LockstepOracle", key: int, job: Callable[[Callable[[np.ndarray], np.ndarray]], Any]):
        self.oracle = oracle
        self.key = key
        self.job = job
        self.go = threading.Semaphore(0)
        self.request: np.ndarray | None = None
        self.response: np.ndarray | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False
        self.thread = threading.Thread(target=self._main, name=f"modelcert-hsj-{key}", daemon=True)

    def _main(self) -> None:
        self.go.acquire()
        try:
            if not self.oracle.aborted:
                self.result = self.job(self.predict)
        except _Abort:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the coordinating thread, which re-raises it
            self.error = exc
        finally:
            self.done = True
            self.oracle.back.release()

    def predict(self, z: np.ndarray) -> np.ndarray:
        self.request = np.asarray(z, dtype=float).reshape(len(z), -1)
        self.oracle.back.release()
        self.go.acquire()
        if self.oracle.aborted:
            raise _Abort()
        out, self.response = self.response, None
        assert out is not None
        return out


class _LockstepOracle:
    """Runs one job per row in its own thread, one thread at a time in a fixed order, and answers the pending
    predict calls of all threads in one batched model call per round.

    Why: ART's HopSkipJump attacks rows sequentially and queries the model one small batch at a time; the model
    call overhead (not the rows) dominates, so batching the queries of all rows cuts the runtime ~100x. Only one
    thread runs at any moment, in row order, so the global numpy RNG that HopSkipJump uses is consumed in a fixed
    order and the run is reproducible."""

    def __init__(self, answer: Callable[[np.ndarray, np.ndarray], np.ndarray]):
        #: answer(row keys per query row, query matrix) -> one-hot predictions
        self.answer = answer
        self.back = threading.Semaphore(0)
        self.aborted = False
        self.model_calls = 0
        self.queries = 0  # predict calls the attacks made (what an unbatched run would send to the model)
        self.rows_evaluated = 0

    def run(self, jobs: dict[int, Callable[[Callable[[np.ndarray], np.ndarray]], Any]]) -> dict[int, Any]:
        self.aborted = False
        workers = [_Worker(self, key, job) for key, job in jobs.items()]
        for w in workers:
            w.thread.start()
        live = list(workers)
        try:
            while live:
                for w in live:  # one at a time: w runs until it queries the model or finishes
                    w.go.release()
                    self.back.acquire()
                for w in live:
                    if w.error is not None:
                        raise w.error
                live = [w for w in live if not w.done]
                if not live:
                    break
                keys = np.concatenate([np.full(len(w.request), w.key) for w in live])  # type: ignore[arg-type]
                queries = np.concatenate([w.request for w in live])  # type: ignore[misc]
                onehot = self.answer(keys, queries)
                self.model_calls += 1
                self.queries += len(live)
                self.rows_evaluated += len(queries)
                start = 0
                for w in live:
                    n = len(w.request)  # type: ignore[arg-type]
                    w.response, w.request = onehot[start:start + n], None
                    start += n
        finally:
            pending = [w for w in workers if not w.done]
            if pending:
                self.aborted = True
                for w in pending:
                    w.go.release()
            for w in workers:  # every thread has released `back` and is about to end (or unwinding _Abort)
                w.thread.join(timeout=10)
        return {w.key: w.result for w in workers}


def _f32(a: np.ndarray) -> np.ndarray:
    """Round to float32 precision (ART's working dtype), keep float64 arithmetic."""
    return np.asarray(a, dtype=np.float32).astype(float)


def _hop_skip_jump(ctx: EvalContext, setup: _Setup, clean_pred: np.ndarray, eps_list: list[float]) -> AttackResult:
    from art.attacks.evasion import HopSkipJump
    from art.estimators.classification import BlackBoxClassifier

    rc = ctx.spec.checks.robustness
    space, X = setup.space, setup.X
    k = len(space.features)
    t0 = time.perf_counter()
    # ART works in float32 (ART_NUMPY_DTYPE): every point is rounded to float32 before it is judged, so that what
    # we verify is exactly what ART sees. A coordinate equal to the row's own (rounded) value maps back to the
    # row's exact original value, so the unperturbed point is the original row, not a rounding of it.
    raw0 = X[space.features].to_numpy(dtype=float)
    Z = _f32(space.normalize(X))
    correct = clean_pred == setup.y
    target_rows = np.flatnonzero(correct)
    model_calls = 0

    def to_raw(rows: np.ndarray, Zq: np.ndarray) -> np.ndarray:
        Zq = np.asarray(Zq, dtype=float)
        return np.where(Zq == Z[rows], raw0[rows], space.denormalize(Zq))

    def labels_for(rows: np.ndarray, Zq: np.ndarray) -> np.ndarray:
        nonlocal model_calls
        model_calls += 1
        return setup.predict(ctx, space.rebuild(X.iloc[rows], to_raw(rows, Zq)))

    # Workaround 1 (see module docstring): ART 1.20.1 HopSkipJump._init_sample draws the initial adversarial point
    # from an unseeded np.random.RandomState(); we draw seeded candidates ourselves, batched over all rows, and pass
    # the closest one after a line search toward the row as x_adv_init.
    rng = np.random.default_rng([rc.seed, 1])
    init = np.full((len(X), k), np.nan)
    if target_rows.size:
        m = len(target_rows)
        z0 = Z[target_rows]  # (m, k)
        lows = np.repeat(z0[:, None, :], k, axis=1)
        highs = lows.copy()
        lows[:, np.arange(k), np.arange(k)] = 0.0  # one allowed feature at a time to its range's ends
        highs[:, np.arange(k), np.arange(k)] = 1.0
        rand = rng.uniform(0.0, 1.0, size=(m, HSJ_INIT_SIZE, k))
        parts = [rand, lows, highs]
        if 2**k <= HSJ_MAX_CORNERS:  # every corner of the box: where a monotone model's extremes are
            corners = np.array(list(itertools.product((0.0, 1.0), repeat=k)))
            parts.append(np.broadcast_to(corners, (m, *corners.shape)))
        cand = _f32(np.concatenate(parts, axis=1))  # (m, C, k)
        c = cand.shape[1]
        cand_rows = np.repeat(target_rows, c)
        flipped = (labels_for(cand_rows, cand.reshape(-1, k)) != clean_pred[cand_rows]).reshape(m, c)
        dist = np.where(flipped, np.abs(cand - z0[:, None, :]).max(axis=2), np.inf)
        best = dist.argmin(axis=1)
        found = np.isfinite(dist[np.arange(m), best])
        init[target_rows[found]] = cand[np.arange(m), best][found]
        has_init = target_rows[found]
        if has_init.size:
            ts = np.linspace(1.0 / HSJ_LINE_POINTS, 1.0, HSJ_LINE_POINTS)
            line = _f32(Z[has_init, None, :] + ts[None, :, None] * (init[has_init, None, :] - Z[has_init, None, :]))
            line_rows = np.repeat(has_init, HSJ_LINE_POINTS)
            ok = (labels_for(line_rows, line.reshape(-1, k)) != clean_pred[line_rows]).reshape(len(has_init), -1)
            ok[:, -1] = True  # t = 1 is the verified candidate
            first = ok.argmax(axis=1)
            init[has_init] = line[np.arange(len(has_init)), first]
    attack_rows = target_rows[~np.isnan(init[target_rows, 0])] if target_rows.size else target_rows

    def onehot(rows: np.ndarray, Zq: np.ndarray) -> np.ndarray:
        lab = labels_for(rows, Zq)
        return np.stack([1 - lab, lab], axis=1).astype(np.float32)

    def job_for(r: int) -> Callable[[Callable[[np.ndarray], np.ndarray]], np.ndarray]:
        # Workaround 3: one BlackBoxClassifier per row; its predict closure carries the row (non-allowed features).
        def job(predict: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
            clf = BlackBoxClassifier(predict_fn=predict, input_shape=(k,), nb_classes=2, clip_values=(0.0, 1.0))
            hsj = HopSkipJump(clf, targeted=False, norm=np.inf, max_iter=rc.hop_skip_jump_max_iter,
                              max_eval=rc.hop_skip_jump_max_eval, init_eval=min(HSJ_INIT_EVAL, rc.hop_skip_jump_max_eval),
                              init_size=HSJ_INIT_SIZE, batch_size=max(rc.hop_skip_jump_max_eval, 64), verbose=False)
            x = Z[r][None].astype(np.float32)
            return hsj.generate(x=x, x_adv_init=init[r][None].astype(np.float32))[0]

        return job

    # Workaround 2: lock-step threads, one batched model call per round (see _LockstepOracle).
    oracle = _LockstepOracle(onehot)
    adv = Z.copy()
    with _seeded_global_numpy(rc.seed):
        for start in range(0, len(attack_rows), HSJ_WAVE):
            wave = attack_rows[start:start + HSJ_WAVE]
            results = oracle.run({int(r): job_for(int(r)) for r in wave})
            for r, x_adv in results.items():
                adv[r] = np.clip(np.asarray(x_adv, dtype=float), 0.0, 1.0)

    # Re-check every adversarial example with the real model on rebuilt input rows; keep the closer of HSJ's
    # result and its (verified) starting point.
    distance = np.full(len(X), np.inf)
    if attack_rows.size:
        both = np.concatenate([adv[attack_rows], init[attack_rows]])
        both_rows = np.concatenate([attack_rows, attack_rows])
        flips = (labels_for(both_rows, both) != clean_pred[both_rows]).reshape(2, -1)
        # Distances of the rebuilt input rows themselves (normalized), so the verdicts hold for the rows we report.
        d = (np.abs(to_raw(both_rows, both) - raw0[both_rows]) / space.span).max(axis=1).reshape(2, -1)
        d[~flips] = np.inf
        pick = d.argmin(axis=0)
        distance[attack_rows] = d[pick, np.arange(len(attack_rows))]
        chosen = np.where(pick[:, None] == 0, adv[attack_rows], init[attack_rows])
        adv[attack_rows] = np.where(np.isfinite(distance[attack_rows])[:, None], chosen, Z[attack_rows])
    robust: dict[float, np.ndarray] = {}
    adversarial: dict[float, pd.DataFrame] = {}
    for eps in eps_list:
        within = distance <= eps
        robust[eps] = correct & ~within
        Zeps = np.where(within[:, None], adv, Z)
        adversarial[eps] = space.rebuild(X, to_raw(np.arange(len(X)), Zeps))
    finite = distance[np.isfinite(distance)]
    detail = {
        "rows_attacked": int(attack_rows.size),
        "rows_without_adversarial_start": int(target_rows.size - attack_rows.size),
        "median_min_perturbation": float(np.median(finite)) if finite.size else None,
        "model_calls": int(model_calls),
        "attack_queries": int(oracle.queries),
        "rows_evaluated": int(oracle.rows_evaluated),
        "max_iter": rc.hop_skip_jump_max_iter,
        "max_eval": rc.hop_skip_jump_max_eval,
        "init_eval": min(HSJ_INIT_EVAL, rc.hop_skip_jump_max_eval),
    }
    return AttackResult(attack="hop_skip_jump", eps=list(eps_list), correct=correct, robust=robust,
                        adversarial=adversarial, runtime_s=time.perf_counter() - t0, detail=detail, distance=distance)


# --------------------------------------------------------------------------------------------------- gradients
@dataclass
class _GradientSpace:
    estimator: Any  # final sklearn estimator
    transform: Callable[[pd.DataFrame], np.ndarray]
    columns: list[int]  # transformed column per allowed feature
    slope: np.ndarray  # x_t = slope * x + intercept, per allowed feature
    intercept: np.ndarray
    names: list[str]


def _dense(a: Any) -> np.ndarray:
    if hasattr(a, "toarray"):
        a = a.toarray()
    return np.asarray(a, dtype=float)


def _gradient_space(ctx: EvalContext, setup: _Setup) -> _GradientSpace:
    """The space where ART can take gradients, or _NotApplicable with the reason."""
    from art.estimators.classification import SklearnClassifier
    from art.estimators.estimator import LossGradientsMixin
    from sklearn.pipeline import Pipeline

    model = ctx.model
    if getattr(model, "isolated", False):  # a proxy for the sandboxed pickle model (modelcert.sandbox)
        raise _NotApplicable("model runs isolated (pickle artifact): no gradients across the process boundary")
    if isinstance(model, Pipeline):
        final = model.steps[-1][1]
        pre = model[:-1] if len(model.steps) > 1 else None
    else:
        final, pre = model, None
    kind = type(final).__name__
    if type(final).__module__.split(".")[0] != "sklearn":
        raise _NotApplicable(f"{kind} is not a scikit-learn estimator; ART's gradient wrappers do not cover it")
    wrapped = SklearnClassifier(final)
    if not isinstance(wrapped, LossGradientsMixin):
        raise _NotApplicable(f"{kind} exposes no gradients to ART")

    X, space = setup.X, setup.space
    if pre is not None:
        def transform(df: pd.DataFrame) -> np.ndarray:
            return _dense(pre.transform(df))
        try:
            names = [str(n) for n in pre.get_feature_names_out()]
        except Exception:  # noqa: BLE001 - names are a convenience; the mapping is verified below anyway
            names = []
    else:
        def transform(df: pd.DataFrame) -> np.ndarray:
            return df.to_numpy(dtype=float)
        names = list(X.columns)
        if any(not pd.api.types.is_numeric_dtype(X[c]) for c in X.columns):
            raise _NotApplicable(f"{kind} takes non-numeric columns directly; there is no numeric space to attack")

    # Verify on a few sampled rows that each allowed feature moves exactly one transformed column, affinely.
    k = len(space.features)
    base = X.iloc[: min(3, len(X))]
    levels = np.stack([space.lo, (space.lo + space.hi) / 2, space.hi])  # (3, k)
    probe = []
    for i in range(len(base)):
        for j in range(k):
            for v in levels[:, j]:
                raw = base[space.features].to_numpy(dtype=float)[i:i + 1].copy()
                raw[0, j] = v
                probe.append(space.rebuild(base.iloc[i:i + 1], raw))
    t_base = transform(base)
    t_probe = transform(pd.concat(probe, ignore_index=True)).reshape(len(base), k, 3, -1)
    columns, slope, intercept = [], np.zeros(k), np.zeros(k)
    for j, f in enumerate(space.features):
        named = [c for c, n in enumerate(names) if n == f or n.endswith("__" + f)]
        changed = set()
        for i in range(len(base)):
            diff = ~np.isclose(t_probe[i, j], t_base[i][None, :], rtol=1e-9, atol=1e-12)
            changed |= set(np.flatnonzero(diff.any(axis=0)).tolist())
        if len(changed) != 1 or (named and named != sorted(changed)):
            raise _NotApplicable(
                f"the preprocessing of {type(model).__name__} does not map feature {f!r} onto one transformed column "
                f"(it moves columns {sorted(names[c] if c < len(names) else c for c in changed)}), so a gradient "
                "step there would not correspond to a valid input row"
            )
        c = changed.pop()
        t_lo, t_mid, t_hi = t_probe[:, j, 0, c], t_probe[:, j, 1, c], t_probe[:, j, 2, c]
        a = (t_hi - t_lo) / (space.hi[j] - space.lo[j])
        b = t_lo - a * space.lo[j]
        if not (np.allclose(a, a[0]) and np.allclose(b, b[0]) and np.allclose(t_mid, a * levels[1, j] + b)) or a[0] == 0:
            raise _NotApplicable(
                f"the preprocessing of {type(model).__name__} maps feature {f!r} non-affinely (or row-dependently) onto "
                f"its transformed column, so an eps budget there does not correspond to the feature's range"
            )
        columns.append(c)
        slope[j], intercept[j] = a[0], b[0]
    return _GradientSpace(estimator=final, transform=transform, columns=columns, slope=slope, intercept=intercept,
                          names=names)


def _gradient_attack(ctx: EvalContext, setup: _Setup, gs: _GradientSpace, attack: str, clean_pred: np.ndarray,
                     eps_list: list[float]) -> AttackResult:
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
    from art.estimators.classification import SklearnClassifier

    t0 = time.perf_counter()
    space, X = setup.space, setup.X
    x_t = gs.transform(X)
    d = x_t.shape[1]
    cols = np.asarray(gs.columns)
    t_lo = np.minimum(gs.slope * space.lo, gs.slope * space.hi) + gs.intercept
    t_hi = np.maximum(gs.slope * space.lo, gs.slope * space.hi) + gs.intercept
    # clip_values: the allowed columns are bounded by their transformed training range; the other columns never
    # move (mask = 0), their bounds only need to contain the sampled values so that ART's clipping leaves them be.
    cmin, cmax = x_t.min(axis=0) - 1.0, x_t.max(axis=0) + 1.0
    cmin[cols], cmax[cols] = np.minimum(t_lo, x_t[:, cols].min(axis=0)), np.maximum(t_hi, x_t[:, cols].max(axis=0))
    mask = np.zeros(d, dtype=np.float32)
    mask[cols] = 1.0
    classifier = SklearnClassifier(gs.estimator, clip_values=(cmin.astype(np.float32), cmax.astype(np.float32)))
    pos = ctx.positive_index()
    y_idx = np.where(setup.y == 1, pos, 1 - pos)
    y_onehot = np.eye(2, dtype=np.float32)[y_idx]
    correct = clean_pred == setup.y
    robust, adversarial, max_moves = {}, {}, {}
    for eps in eps_list:
        # FGSM/PGD accept an eps array broadcast per column: eps x the column's transformed training range.
        eps_t = np.zeros(d)
        eps_t[cols] = eps * (t_hi - t_lo)
        if attack == "fgsm":
            step = np.where(eps_t > 0, eps_t, 1e-12)  # unused by FGSM (it steps by eps) but must be positive
            art_attack = FastGradientMethod(classifier, norm=np.inf, eps=eps_t, eps_step=step, targeted=False,
                                            num_random_init=0, batch_size=256)
        else:
            step = np.where(eps_t > 0, eps_t / 4.0, 1e-12)
            art_attack = ProjectedGradientDescent(classifier, norm=np.inf, eps=eps_t, eps_step=step,
                                                  max_iter=PGD_MAX_ITER, targeted=False, num_random_init=0,
                                                  batch_size=256, verbose=False)
        x_adv = art_attack.generate(x=x_t.astype(np.float32), y=y_onehot, mask=mask)
        # Back to input rows (only the allowed features move), re-predicted by the full model.
        raw = (np.asarray(x_adv, dtype=float)[:, cols] - gs.intercept) / gs.slope
        # float32 rounding in ART may overshoot the budget by ~1e-7 of the range: project back exactly.
        raw0 = X[space.features].to_numpy(dtype=float)
        raw = np.clip(raw, np.maximum(space.lo, raw0 - eps * space.span), np.minimum(space.hi, raw0 + eps * space.span))
        raw = np.where(np.isclose(raw, raw0, rtol=0, atol=1e-9 * space.span), raw0, raw)
        frame = space.rebuild(X, raw)
        pred = setup.predict(ctx, frame)
        robust[eps] = correct & (pred == setup.y)
        adversarial[eps] = frame
        moved = np.abs(space.normalize(frame) - space.normalize(X))
        max_moves[eps] = float(moved.max()) if moved.size else 0.0
    detail = {"estimator": type(gs.estimator).__name__,
              "perturbed_columns": [gs.names[c] if c < len(gs.names) else str(c) for c in gs.columns],
              "max_normalized_perturbation": {f"{e:g}": v for e, v in max_moves.items()}}
    if attack == "pgd":
        detail["max_iter"] = PGD_MAX_ITER
    return AttackResult(attack=attack, eps=list(eps_list), correct=correct, robust=robust, adversarial=adversarial,
                        runtime_s=time.perf_counter() - t0, detail=detail)


# --------------------------------------------------------------------------------------------------- noise
def _noise(ctx: EvalContext, setup: _Setup, clean_pred: np.ndarray, sigma: float, index: int) -> NoiseResult:
    rc = ctx.spec.checks.robustness
    space, X = setup.space, setup.X
    rng = np.random.default_rng([rc.seed, 2, index])
    base = X.iloc[np.tile(np.arange(len(X)), NOISE_REPEATS)].reset_index(drop=True)
    raw = base[space.features].to_numpy(dtype=float)
    raw = np.clip(raw + rng.normal(0.0, 1.0, size=raw.shape) * (sigma * space.std), space.lo, space.hi)
    pred = setup.predict(ctx, space.rebuild(base, raw))
    ref = np.tile(clean_pred, NOISE_REPEATS)
    y = np.tile(setup.y, NOISE_REPEATS)
    return NoiseResult(sigma=sigma, flip_rate=float((pred != ref).mean()), accuracy=float((pred == y).mean()),
                       repeats=NOISE_REPEATS)


# --------------------------------------------------------------------------------------------------- stage
def evaluate(ctx: EvalContext) -> RobustnessReport:
    """Run every configured attack and the noise test; raises _NotApplicable when the stage does not apply."""
    rc = ctx.spec.checks.robustness
    t_start = time.perf_counter()
    setup = _prepare(ctx)
    clean_pred = setup.predict(ctx, setup.X)
    eps_list = sorted(set(float(e) for e in rc.eps))
    attacks: dict[str, AttackResult] = {}
    na: dict[str, str] = {}
    runtime: dict[str, float] = {}
    with _quiet_art(), _single_threaded_native():
        if "hop_skip_jump" in rc.attacks:
            attacks["hop_skip_jump"] = _hop_skip_jump(ctx, setup, clean_pred, eps_list)
            runtime["hop_skip_jump"] = attacks["hop_skip_jump"].runtime_s
        grads = [a for a in GRADIENT_ATTACKS if a in rc.attacks]
        if grads:
            t0 = time.perf_counter()
            try:
                gs: _GradientSpace | None = _gradient_space(ctx, setup)
            except _NotApplicable as exc:
                gs = None
                for a in grads:
                    na[a] = str(exc)
            for a in grads:
                if gs is not None:
                    attacks[a] = _gradient_attack(ctx, setup, gs, a, clean_pred, eps_list)
                    runtime[a] = attacks[a].runtime_s
                else:
                    runtime[a] = time.perf_counter() - t0
        t0 = time.perf_counter()
        noise = [_noise(ctx, setup, clean_pred, float(s), i) for i, s in enumerate(rc.noise_sigma)]
        runtime["noise"] = time.perf_counter() - t0
    runtime["total"] = time.perf_counter() - t_start
    runtime = {k: round(float(v), 3) for k, v in runtime.items()}
    space = setup.space
    frozen_unknown = sorted(set(rc.frozen_features) - set(ctx.features))
    summary: dict[str, Any] = {
        "sample_size": int(len(setup.X)),
        "sample_candidates": int(setup.candidates),
        "seed": rc.seed,
        "allowed_features": list(space.features),
        "excluded_features": dict(setup.excluded),
        "valid_ranges": {f: [float(space.lo[j]), float(space.hi[j])] for j, f in enumerate(space.features)},
        "range_source": "train" if ctx.spec.data.train is not None else "test",
        "eps": eps_list,
        "attacks_run": list(attacks),
        "attacks_not_applicable": dict(na),
        "runtime_s": runtime,
        "noise_repeats": NOISE_REPEATS,
    }
    if setup.widened:
        summary["ranges_widened_to_sample"] = list(setup.widened)
    if frozen_unknown:
        summary["frozen_features_not_in_model"] = frozen_unknown
    return RobustnessReport(sample=setup.X, labels=setup.y, clean_pred=clean_pred, space=space, attacks=attacks,
                            not_applicable=na, noise=noise, runtime_s=runtime, summary=summary)


def _required_checks(rc: Any, report: RobustnessReport) -> list[RequiredCheck]:
    """What the stage must have judged to pass (item 6): a robust accuracy from at least one attack that ran on
    the model, and a noise flip rate; with the reason when it could not (e.g. pgd on a random forest)."""
    required: list[RequiredCheck] = []
    if rc.min_robust_accuracy.required:
        if report.attacks:
            why = ""
        elif report.not_applicable:
            why = "no requested attack could run on the model (" + "; ".join(
                f"{a}: {r}" for a, r in report.not_applicable.items()) + ")"
        else:
            why = "no attack was requested (checks.robustness.attacks is empty)"
        required.append(RequiredCheck("robust_accuracy", "checks.robustness.min_robust_accuracy", why))
    if rc.max_flip_rate.required:
        required.append(RequiredCheck("noise_flip_rate", "checks.robustness.max_flip_rate",
                                      "" if report.noise else "no noise level was requested "
                                      "(checks.robustness.noise_sigma is empty)"))
    return required


class RobustnessStage:
    name = NAME
    library = LIBRARY

    def run(self, ctx: EvalContext) -> StageOutcome:
        if ctx.spec.is_audit:
            return not_applicable(NAME, "no model artifact: attacks need the model itself (predictions-only audit)",
                                  library=LIBRARY)
        try:
            report = evaluate(ctx)
        except _NotApplicable as exc:
            return not_applicable(NAME, str(exc), library=LIBRARY)
        rc = ctx.spec.checks.robustness
        checks: list[Check] = []
        clean_acc = float((report.clean_pred == report.labels).mean())
        checks.append(Check.info("clean_accuracy", clean_acc, message=f"accuracy on the {len(report.labels)} sampled "
                                 f"test rows without perturbation: {clean_acc:.4g}"))
        for name, res in report.attacks.items():
            for eps in res.eps:
                subject = f"{name} eps={eps:g}"
                n_correct = int(res.correct.sum())
                detail = {"eps": eps, "sample_size": len(res.correct), "correct": n_correct,
                          "robust": int(res.robust[eps].sum()), "clean_accuracy": clean_acc, **res.detail}
                checks.append(Check.judged("robust_accuracy", res.robust_accuracy(eps), rc.min_robust_accuracy,
                                           subject=subject, detail=detail))
                sr = res.success_rate(eps)
                checks.append(Check.info(
                    "attack_success_rate", sr, subject=subject,
                    message=(f"{name} changed the prediction of {int((res.correct & ~res.robust[eps]).sum())} of "
                             f"{n_correct} correctly classified rows within eps={eps:g}") if n_correct else
                    "no correctly classified row to attack"))
        for attack, reason in report.not_applicable.items():
            checks.append(Check.info("attack_not_applicable", None, subject=attack,
                                     message=f"{attack} not applicable: {reason}", detail={"reason": reason}))
        for nr in report.noise:
            subject = f"sigma={nr.sigma:g}"
            detail = {"sigma": nr.sigma, "repeats": nr.repeats, "sample_size": len(report.labels)}
            checks.append(Check.judged("noise_flip_rate", nr.flip_rate, rc.max_flip_rate, subject=subject, detail=detail))
            checks.append(Check.info("noise_accuracy", nr.accuracy, subject=subject, detail=detail,
                                     message=f"accuracy under Gaussian noise sigma={nr.sigma:g} x std: {nr.accuracy:.4g}"))
        return outcome(NAME, checks, library=LIBRARY, summary=report.summary, requires=_required_checks(rc, report))


STAGE = RobustnessStage()
