"""Improved Zebra Optimization Algorithm (IZOA) for wrapper feature selection (seed 001, DESIGN.md section 7).

Base algorithm: Trojovska, Dehghani and Trojovsky (2022), "Zebra Optimization Algorithm: A New Bio-Inspired
Optimization Algorithm for Solving Optimization Algorithm", IEEE Access 10:49445-49473. Kirar et al.
(seed 001) select their fused audio-visual features with an "Improved Zebra Algorithm" but do not spell
the improvements out; DESIGN.md fixes them as opposition-based initialisation and a Levy-flight step on
stagnation, both implemented here and each switchable.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from math import gamma, pi, sin

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.feature_selection import SelectorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data

from emo.fusion.selection._common import SELECTORS
from emo.fusion.selection.fitness import grouped_folds, make_subset_fitness, stratified_folds

# Search box of the continuous zebra positions; the S rule selects a feature when its coordinate is > 0.
LOWER, UPPER = -1.0, 1.0
# R of the lion (escape) strategy, Eq. (5) S1 of the paper (the authors' MATLAB code uses 0.1).
LION_R = 0.01
# Levy-flight exponent (Mantegna) and step scale: 1/12 of the box width per unit of the Levy variate.
LEVY_BETA = 1.5
LEVY_SCALE = (UPPER - LOWER) / 12.0
TRANSFERS = ("s", "v")


def levy_steps(rng: np.random.Generator, shape: tuple[int, ...], beta: float = LEVY_BETA) -> np.ndarray:
    """Levy-stable steps by Mantegna's algorithm: ``u / |v|^(1/beta)``, u ~ N(0, sigma_u^2), v ~ N(0, 1)."""
    sigma_u = (
        gamma(1 + beta) * sin(pi * beta / 2) / (gamma((1 + beta) / 2) * beta * 2 ** ((beta - 1) / 2))
    ) ** (1 / beta)
    u = rng.normal(0.0, sigma_u, shape)
    v = rng.normal(0.0, 1.0, shape)
    return u / np.abs(v) ** (1 / beta)


def _repair(masks: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Give every empty mask the feature with the largest coordinate (the highest transfer value)."""
    empty = ~masks.any(axis=1)
    if empty.any():
        masks[np.flatnonzero(empty), positions[empty].argmax(axis=1)] = True
    return masks


def _binarise(
    transfer: str,
    positions: np.ndarray,
    rng: np.random.Generator,
    previous_positions: np.ndarray | None = None,
    previous_masks: np.ndarray | None = None,
) -> np.ndarray:
    """Masks of candidate positions under the S (threshold) or V (flip) transfer rule, never empty."""
    if transfer == "s" or previous_masks is None:
        # S(x) = 1 / (1 + exp(-x)) > 0.5, i.e. x > 0.
        masks = positions > 0.0
    else:
        flip = rng.random(positions.shape) < np.abs(np.tanh(positions - previous_positions))
        masks = previous_masks ^ flip
    return _repair(masks, positions)


@dataclass
class ZebraResult:
    """Outcome of :func:`zebra_search`: the pioneer's mask and fitness, the final population, the curve."""

    best_mask: np.ndarray
    best_fitness: float
    positions: np.ndarray
    masks: np.ndarray
    fitness: np.ndarray
    convergence: list[float] = field(default_factory=list)
    n_evaluations: int = 0


def zebra_search(
    fitness: Callable[[np.ndarray], np.ndarray],
    n_features: int,
    rng: np.random.Generator,
    population_size: int = 20,
    n_iterations: int = 30,
    transfer: str = "s",
    opposition: bool = True,
    levy: bool = True,
    stagnation: int = 3,
    max_evaluations: int | None = None,
) -> ZebraResult:
    """Minimise ``fitness`` (boolean masks ``[n, n_features]`` -> values ``[n]``) with the (improved) ZOA.

    See :class:`ZebraSelector` for the algorithm; this function is the optimiser alone, so a benchmark can
    drive it with any batch fitness.
    """
    n, d = population_size, n_features
    budget = n * (2 * n_iterations + 1) if max_evaluations is None else max_evaluations
    spent = 0

    def evaluate(masks: np.ndarray) -> np.ndarray:
        nonlocal spent
        spent += len(masks)
        return np.asarray(fitness(masks), dtype=np.float64)

    positions = rng.uniform(LOWER, UPPER, (n, d))
    masks = _binarise(transfer, positions, rng)
    values = evaluate(masks)
    if opposition:
        # Opposition-based learning (Tizhoosh 2005; Rahnamayan et al. 2008): also score the opposite point
        # lb + ub - x of every zebra (for the S rule, the complementary mask) and keep the fittest n.
        opposite = LOWER + UPPER - positions
        opposite_masks = _binarise(transfer, opposite, rng)
        opposite_values = evaluate(opposite_masks)
        keep = np.argsort(np.concatenate([values, opposite_values]), kind="stable")[:n]
        positions = np.vstack([positions, opposite])[keep]
        masks = np.vstack([masks, opposite_masks])[keep]
        values = np.concatenate([values, opposite_values])[keep]

    def accept(candidates: np.ndarray) -> None:
        """Greedy replacement: zebra i moves only if its candidate is strictly fitter (paper Eqs. 4 and 6)."""
        nonlocal positions, masks, values
        take = min(n, budget - spent)
        if take <= 0:
            return
        candidates = np.clip(candidates, LOWER, UPPER)
        candidate_masks = _binarise(transfer, candidates, rng, positions, masks)
        rows = np.arange(take)
        new_values = evaluate(candidate_masks[rows])
        better = rows[new_values < values[rows]]
        positions[better] = candidates[better]
        masks[better] = candidate_masks[better]
        values[better] = new_values[better]

    convergence: list[float] = []
    best = float(values.min())
    stalled = 0
    for t in range(1, n_iterations + 1):
        if spent >= budget:
            break
        # Phase 1, foraging (Eq. 3): x + r (PZ - I x) towards the pioneer zebra PZ, I in {1, 2} per zebra.
        pioneer = positions[values.argmin()].copy()
        intensity = rng.integers(1, 3, (n, 1))
        accept(positions + rng.random((n, d)) * (pioneer - intensity * positions))

        if levy and stalled >= stagnation:
            # Improvement 2: after `stagnation` iterations without a better pioneer, the defence phase is
            # replaced by a Levy flight of every zebra (heavy-tailed: mostly small moves, a few long jumps).
            accept(positions + LEVY_SCALE * levy_steps(rng, (n, d)))
            stalled = 0
        else:
            # Phase 2, defence (Eq. 5): each zebra draws P_s; P_s < 0.5 is the lion attack, answered by the
            # escape x + R (2r - 1)(1 - t/T) x; otherwise the offensive move x + r (AZ - I x) towards the
            # attacked zebra AZ, one random zebra per iteration as in the authors' code.
            attacked = positions[rng.integers(n)].copy()
            lion = rng.random((n, 1)) < 0.5
            intensity = rng.integers(1, 3, (n, 1))
            escape = positions + LION_R * (2 * rng.random((n, d)) - 1) * (1 - t / n_iterations) * positions
            offence = positions + rng.random((n, d)) * (attacked - intensity * positions)
            accept(np.where(lion, escape, offence))

        current = float(values.min())
        stalled = stalled + 1 if current >= best else 0
        best = min(best, current)
        convergence.append(best)

    winner = int(values.argmin())
    return ZebraResult(
        best_mask=masks[winner].copy(),
        best_fitness=float(values[winner]),
        positions=positions,
        masks=masks,
        fitness=values,
        convergence=convergence,
        n_evaluations=spent,
    )


def _check_positive_int(name: str, value: object, minimum: int = 1) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@SELECTORS.register("zebra")
class ZebraSelector(SelectorMixin, BaseEstimator):
    """Wrapper feature selection with the Improved Zebra Optimization Algorithm (seed 001).

    A population of ``population_size`` zebras lives in the continuous box ``[-1, 1]^F``; each zebra's
    feature mask comes from its position through a transfer function, and its fitness is

        alpha * (1 - CV accuracy of ``classifier`` on the selected columns) + (1 - alpha) * |selected| / F

    (lower is better; stratified ``cv``-fold CV on the training data passed to ``fit``).

    Base ZOA (Trojovska et al. 2022, IEEE Access 10:49445-49473), one iteration ``t`` of ``T``:

    * phase 1, foraging: ``x' = x + r (PZ - I x)`` towards the pioneer zebra ``PZ`` (the best zebra at the
      start of the iteration), ``r ~ U(0, 1)`` per dimension, ``I`` drawn from {1, 2} per zebra;
    * phase 2, defence: per zebra with probability 0.5 the lion strategy ``x' = x + R (2r - 1)(1 - t/T) x``
      with ``R = 0.01`` (escape near the current position, shrinking over time), otherwise the aggressive
      strategy ``x' = x + r (AZ - I x)`` towards the attacked zebra ``AZ``, one random zebra per iteration
      (``P_s`` is drawn per zebra, as in mealpy; the authors' MATLAB code draws one for the whole population);
    * greedy acceptance after each phase: a zebra moves only if its new fitness is strictly lower.

    The signs follow the paper and the authors' MATLAB code. mealpy 3.0.2's ``OriginalZOA`` differs in the
    escape step: it computes ``(2 + r - 1)`` instead of ``(2 r - 1)``, so its escape always grows ``|x|``,
    and it uses ``R = 0.1`` (as does the MATLAB code). Each phase updates the whole population from the same
    ``PZ``/``AZ``, exactly as the sequential original does (both are fixed for the phase), so it is evaluated
    as one batch.

    Improvements (the "Improved" ZOA; each switchable, both on by default):

    * ``opposition=True`` -- opposition-based initialisation (Tizhoosh 2005): the random population and its
      opposite ``lb + ub - x`` (under the S rule, the complementary masks) are both scored and the fittest
      ``population_size`` zebras start. Lens-imaging opposition was not chosen: with lens factor 1 it is
      this same opposite point, and other factors add a parameter without a reference value.
    * ``levy=True`` -- Levy flight on stagnation: when the pioneer's fitness has not improved for
      ``stagnation`` iterations, that iteration's defence phase is replaced by ``x' = x + s L`` with ``L`` a
      Levy-stable step (Mantegna's algorithm, beta = 1.5) and ``s`` = 1/12 of the box width, again with
      greedy acceptance; the counter restarts afterwards.

    Both keep the number of fitness evaluations of the plain ZOA: the budget is ``max_evaluations``
    (default ``population_size * (2 n_iterations + 1)``, the plain ZOA's count), so the ``population_size``
    extra evaluations of the opposite population shorten the last iteration, and a Levy phase costs the same
    as the defence phase it replaces. The search stops when the budget is spent (zebras not reached in the
    last phase keep their position).

    Transfer rules (``transfer``):

    * ``"s"`` -- S-shaped sigmoid with the fixed 0.5 threshold: feature ``j`` is selected iff
      ``1 / (1 + exp(-x_j)) > 0.5``, i.e. ``x_j > 0``. The mask is a function of the position. On our data
      sets this beat the random threshold ``u < S(x)`` (Kennedy and Eberhart 1997), which re-samples masks
      at every evaluation. Note that the lion step changes ``|x|`` by at most 1 % and so never flips a sign:
      under this rule it re-proposes the zebra's own mask (a cache hit, no classifier fit).
    * ``"v"`` -- V-shaped ``|tanh|`` with flip (Mirjalili and Lewis 2013): the displacement of a move plays
      the role of a velocity, and bit ``j`` of the zebra's current mask is flipped iff
      ``u_j < |tanh(x'_j - x_j)|`` with ``u_j ~ U(0, 1)``. Initial (and opposite) masks use the S rule. On
      breast_cancer, wine and digits it reached worse fitness than ``"s"`` at the same budget; it is kept for
      comparison with the V-shaped binary metaheuristics literature.

    Every random draw (positions, ``r``, ``I``, ``P_s``, ``AZ``, Levy steps, ``u``) comes from one
    ``numpy.random.Generator`` seeded from ``random_state``, so a seed fixes the result. An empty mask is
    repaired by selecting the feature with the largest coordinate, so no zebra's mask (and never the
    result) is empty; the fitness function itself scores an empty mask 1.0, its worst value.

    Classifier: ``None`` means ``KNeighborsClassifier(n_neighbors=5)``. Any uniform-weight Euclidean
    ``KNeighborsClassifier`` is scored by the exact batched evaluator
    :class:`~emo.fusion.selection.fitness.KNNSubsetFitness` (identical accuracies up to distance ties; per
    new mask ~1 ms on ``load_breast_cancer`` and ~4 ms on ``load_digits`` against 10-20 ms for a
    single-threaded ``cross_val_score``); any other classifier goes through ``cross_val_score``. Masks
    already scored are not scored again (a third of the evaluations of a default search on those data
    sets). ``benchmarks/zebra.py`` compares the whole search with mealpy's ``OriginalZOA``.

    Parameters
    ----------
    population_size, n_iterations:
        Zebras and iterations ``T``.
    classifier:
        Classifier of the fitness (see above).
    cv:
        Folds of the stratified CV (shuffled; lowered to the smallest class size if needed). With an int
        ``random_state`` the folds are ``StratifiedKFold(cv, shuffle=True, random_state=random_state)``.
    alpha:
        Weight of the error term; ``1 - alpha`` weighs the fraction of features kept.
    transfer:
        ``"s"`` or ``"v"`` (see above).
    opposition, levy:
        Switch the two improvements; both False gives the plain ZOA.
    stagnation:
        Iterations without improvement that trigger a Levy phase.
    max_evaluations:
        Fitness-evaluation budget (cache hits included); None for the plain ZOA's count.
    n_jobs:
        Parallelism of the fitness: threads over folds for the k-NN path, joblib workers over the masks of
        a batch for other classifiers.
    random_state:
        Seed of the search and of the folds.

    Attributes
    ----------
    support_: the pioneer zebra's mask (never empty).
    scores_: fraction of the final population selecting each feature.
    best_fitness_, best_accuracy_: fitness and CV accuracy of ``support_``.
    convergence_: best fitness after each iteration (list of floats).
    n_evaluations_: fitness evaluations requested by the search (the budget used, cache hits included).
    n_cache_hits_: evaluations answered from the cache.
    n_iterations_: iterations run.
    """

    def __init__(
        self,
        population_size: int = 20,
        n_iterations: int = 30,
        classifier: ClassifierMixin | None = None,
        cv: int = 3,
        alpha: float = 0.99,
        transfer: str = "s",
        opposition: bool = True,
        levy: bool = True,
        stagnation: int = 3,
        max_evaluations: int | None = None,
        n_jobs: int | None = None,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.population_size = population_size
        self.n_iterations = n_iterations
        self.classifier = classifier
        self.cv = cv
        self.alpha = alpha
        self.transfer = transfer
        self.opposition = opposition
        self.levy = levy
        self.stagnation = stagnation
        self.max_evaluations = max_evaluations
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _validate_params(self) -> None:
        _check_positive_int("population_size", self.population_size, 2)
        _check_positive_int("n_iterations", self.n_iterations)
        _check_positive_int("cv", self.cv, 2)
        _check_positive_int("stagnation", self.stagnation)
        if self.max_evaluations is not None:
            _check_positive_int("max_evaluations", self.max_evaluations, self.population_size)
        if not isinstance(self.alpha, numbers.Real) or not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha!r}")
        if self.transfer not in TRANSFERS:
            raise ValueError(f"transfer must be one of {TRANSFERS}, got {self.transfer!r}")

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> ZebraSelector:
        """Search a feature subset of ``X`` (``[n_samples, n_features]``) for class labels ``y``.

        With ``groups`` (e.g. the speaker of each sample) the inner cross-validation keeps every group on one
        side of each fold (:func:`grouped_folds`), as the outer split does when it holds speakers out.
        """
        self._validate_params()
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], ensure_min_samples=2)
        check_classification_targets(y)
        if isinstance(self.random_state, numbers.Integral):
            fold_seed = int(self.random_state)
            rng = np.random.default_rng(fold_seed)
        else:
            seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
            fold_seed = int(seed)
            rng = np.random.default_rng(seed)
        if groups is not None and np.unique(np.asarray(groups)).size >= 2:
            groups = np.asarray(groups)
            if groups.shape[0] != X.shape[0]:
                raise ValueError(f"groups has {groups.shape[0]} entries for {X.shape[0]} samples")
            folds = grouped_folds(y, groups, self.cv, fold_seed)
            self.cv_groups_ = int(np.unique(groups).size)
        else:
            folds = stratified_folds(y, self.cv, fold_seed)
            self.cv_groups_ = 0
        fitness = make_subset_fitness(X, y, folds, self.classifier, self.alpha, self.n_jobs)
        result = zebra_search(
            fitness,
            X.shape[1],
            rng,
            population_size=self.population_size,
            n_iterations=self.n_iterations,
            transfer=self.transfer,
            opposition=self.opposition,
            levy=self.levy,
            stagnation=self.stagnation,
            max_evaluations=self.max_evaluations,
        )
        self.support_ = result.best_mask
        self.scores_ = result.masks.mean(axis=0)
        self.best_fitness_ = result.best_fitness
        self.best_accuracy_ = float(fitness.accuracy(self.support_[None, :])[0])
        self.convergence_ = [float(v) for v in result.convergence]
        self.n_evaluations_ = int(fitness.n_evaluations)
        self.n_cache_hits_ = int(fitness.n_cache_hits)
        self.n_iterations_ = len(result.convergence)
        return self

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "support_")
        return self.support_
