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

The package, one module per concern: :mod:`.space` (what may move, the sample), :mod:`.oracle` (the lock-step
query oracle), :mod:`.hop_skip_jump`, :mod:`.gradient` (FGSM/PGD), :mod:`.noise`, :mod:`.results` (what an attack
returns), :mod:`.evaluate` (all attacks on one sample), :mod:`.stage` (checks, required checks, ``STAGE``).
"""

from __future__ import annotations

from modelcert.stages.robustness.evaluate import evaluate
from modelcert.stages.robustness.oracle import LockstepOracle
from modelcert.stages.robustness.results import AttackResult, NoiseResult, RobustnessReport
from modelcert.stages.robustness.space import PerturbationSpace
from modelcert.stages.robustness.stage import LIBRARY, NAME, STAGE, RobustnessStage

__all__ = ["LIBRARY", "NAME", "STAGE", "AttackResult", "LockstepOracle", "NoiseResult", "PerturbationSpace",
           "RobustnessReport", "RobustnessStage", "evaluate"]
