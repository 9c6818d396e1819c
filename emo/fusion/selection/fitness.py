"""Wrapper fitness for feature-subset search: cross-validated accuracy traded against subset size.

The fitness of a boolean mask ``m`` over ``F`` features is

    fitness(m) = alpha * (1 - CV accuracy of the classifier on X[:, m]) + (1 - alpha) * |m| / F

(lower is better), the usual wrapper objective of binary metaheuristics and the one DESIGN.md section 7
fixes for the Improved Zebra Optimization Algorithm of seed 001.

Two evaluators compute it for a whole batch of masks at once:

* :class:`KNNSubsetFitness` is an exact fast path for a uniform-weight Euclidean k-NN. The distance between
  samples ``i`` and ``j`` restricted to a mask is ``||a_i o m||^2 + ||b_j o m||^2 - 2 (a_i o m) . b_j``;
  the first term is constant along a test row and does not change the neighbour order, so the neighbours
  of every test sample come from one matrix product per fold and mask over the selected columns only,
  followed by a top-k. It returns the same accuracy as
  ``cross_val_score(KNeighborsClassifier(k), X[:, m], y, cv=folds)`` except when two training samples are
  at the same distance from a test sample at the k-th place (which of them sklearn keeps depends on its
  search order) or closer than rounding can separate.
* :class:`SklearnSubsetFitness` calls ``cross_val_score`` for any scikit-learn classifier (slow, generic).

Both remember every mask they have scored (keyed by its packed bits), so a search that revisits a mask
pays nothing for it.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import ClassifierMixin, clone
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from threadpoolctl import ThreadpoolController

Folds = Sequence[tuple[np.ndarray, np.ndarray]]

# Upper bound on the float64 distance block (batch x n_test x n_train) held at once, in elements.
_BLOCK_ELEMENTS = 2_000_000


def stratified_folds(y: np.ndarray, cv: int, random_state: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``(train, test)`` index pairs of ``StratifiedKFold(cv, shuffle=True, random_state)`` on ``y``.

    ``cv`` is lowered to the size of the smallest class (at least 2) so tiny data sets still split; the
    folds are exactly those ``cross_val_score`` uses when given the same splitter.
    """
    _, counts = np.unique(y, return_counts=True)
    n_splits = max(2, min(int(cv), int(counts.min()))) if counts.size > 1 else int(cv)
    if n_splits > len(y):
        raise ValueError(f"cannot cross-validate with {len(y)} sample(s); at least {n_splits} are needed")
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    return [(train, test) for train, test in splitter.split(np.zeros((len(y), 1)), y)]


def grouped_folds(
    y: np.ndarray, groups: np.ndarray, cv: int, random_state: int | None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``StratifiedGroupKFold(cv, shuffle=True, random_state)`` folds: no group (speaker) on both sides of a fold,
    so a subset is not rewarded for cues that identify a speaker when the outer split holds speakers out.
    ``cv`` is lowered to the number of groups (at least 2 are needed)."""
    n_groups = np.unique(groups).size
    if n_groups < 2:
        raise ValueError(f"grouped cross-validation needs at least 2 groups, got {n_groups}")
    splitter = StratifiedGroupKFold(n_splits=min(int(cv), n_groups), shuffle=True, random_state=random_state)
    folds = [(train, test) for train, test in splitter.split(np.zeros((len(y), 1)), y, groups)]
    return [(train, test) for train, test in folds if train.size and test.size]


def is_fast_knn(classifier: ClassifierMixin) -> bool:
    """Whether ``classifier`` is a k-NN that :class:`KNNSubsetFitness` reproduces exactly."""
    if not isinstance(classifier, KNeighborsClassifier):
        return False
    params = classifier.get_params()
    euclidean = params["metric"] == "euclidean" or (params["metric"] == "minkowski" and params["p"] == 2)
    return bool(euclidean and params["weights"] == "uniform" and not params["metric_params"])


def _vote_rows(dist: np.ndarray, train_y: np.ndarray, k: int, n_classes: int) -> np.ndarray:
    """k-NN prediction for every row of ``dist`` (distances to the training samples), compiled by numba.

    One pass per row keeps the ``k`` smallest distances in a sorted buffer (a strictly smaller value is
    needed to enter, so among equal distances the lower training index wins), then a vote in which ties go
    to the smallest label, as in ``KNeighborsClassifier``. About 2.5x faster than ``torch.topk`` plus a
    NumPy vote, whose per-row overhead dominates on rows of a few hundred samples.
    """
    n_rows, n_train = dist.shape
    predicted = np.empty(n_rows, dtype=np.int64)
    best_value = np.empty(k)
    best_index = np.empty(k, dtype=np.int64)
    counts = np.empty(n_classes, dtype=np.int64)
    for r in range(n_rows):
        best_value[:] = np.inf
        best_index[:] = 0
        worst = np.inf
        for j in range(n_train):
            value = dist[r, j]
            if value < worst:
                q = k - 1
                while q > 0 and best_value[q - 1] > value:
                    best_value[q] = best_value[q - 1]
                    best_index[q] = best_index[q - 1]
                    q -= 1
                best_value[q] = value
                best_index[q] = j
                worst = best_value[k - 1]
        counts[:] = 0
        for q in range(k):
            counts[train_y[best_index[q]]] += 1
        winner = 0
        for c in range(1, n_classes):
            if counts[c] > counts[winner]:
                winner = c
        predicted[r] = winner
    return predicted


@functools.cache
def _compiled_vote() -> Callable[[np.ndarray, np.ndarray, int, int], np.ndarray] | None:
    """:func:`_vote_rows` compiled by numba (cached on disk), or None without numba (torch.topk is used)."""
    try:
        import numba
    except ImportError:
        return None
    return numba.njit(nogil=True, cache=True)(_vote_rows)


class _SubsetFitnessBase:
    """Shared bookkeeping: the objective, the per-mask cache and the evaluation counters."""

    def __init__(self, n_features: int, alpha: float) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        self.n_features = n_features
        self.alpha = float(alpha)
        self._cache: dict[bytes, float] = {}
        self.n_evaluations = 0
        self.n_cache_hits = 0

    def _accuracies(self, masks: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def accuracy(self, masks: np.ndarray) -> np.ndarray:
        """Mean CV accuracy of each mask (rows of a boolean ``[n_masks, n_features]`` array); uncached."""
        masks = np.atleast_2d(np.asarray(masks, dtype=bool))
        return self._accuracies(masks)

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        """Fitness of each mask (lower is better); an empty mask scores 1.0, the worst possible value."""
        masks = np.atleast_2d(np.asarray(masks, dtype=bool))
        if masks.shape[1] != self.n_features:
            raise ValueError(f"masks have {masks.shape[1]} columns, expected {self.n_features}")
        self.n_evaluations += len(masks)
        keys = [np.packbits(m).tobytes() for m in masks]
        out = np.empty(len(masks))
        todo: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key in self._cache:
                out[i] = self._cache[key]
                self.n_cache_hits += 1
            elif key in todo:
                self.n_cache_hits += 1
            else:
                todo[key] = i
        if todo:
            rows = np.array(list(todo.values()))
            new = masks[rows]
            sizes = new.sum(axis=1)
            fitness = np.ones(len(rows))
            nonempty = sizes > 0
            if nonempty.any():
                acc = self._accuracies(new[nonempty])
                fitness[nonempty] = (
                    self.alpha * (1.0 - acc) + (1.0 - self.alpha) * sizes[nonempty] / self.n_features
                )
            for key, value in zip(todo, fitness, strict=True):
                self._cache[key] = float(value)
        for i, key in enumerate(keys):
            out[i] = self._cache[key]
        return out


class KNNSubsetFitness(_SubsetFitnessBase):
    """Exact, batched k-NN (uniform votes, Euclidean) cross-validated accuracy of many feature masks.

    For each fold and mask the ranking distances ``||b_j o m||^2 - 2 (a_i o m) . b_j`` are one matrix
    product ``[-2 a_S, 1] @ [b_S; ||b o m||^2]`` over the selected columns ``S`` (so a mask costs in
    proportion to its size). Masks of one population batch overlap a lot, so when it saves work a mask is
    computed from the batch's majority mask instead, with a product over only the columns it adds or drops
    (about 2.5x fewer multiply-adds on ``load_digits`` during a search). The ``k`` nearest training samples
    and the vote (ties to the smallest label, as in ``KNeighborsClassifier``) come from a small numba
    kernel, :func:`_vote_rows` (numba is installed with librosa); without numba, or with
    ``compiled = False``, from ``torch.topk`` and a NumPy vote (2-3x slower, same results up to ties). BLAS
    and torch run single-threaded inside an evaluation: on these small products their own threads cost
    more than they give, badly so on a busy machine; ``n_jobs`` parallelises over (fold, block of masks)
    work items instead.

    Parameters
    ----------
    X, y:
        Training data (``y`` any labels; encoded internally).
    folds:
        ``(train, test)`` index pairs, e.g. from :func:`stratified_folds`.
    n_neighbors:
        ``k``; capped at the size of the smallest training fold so tiny data sets still score.
    alpha:
        Weight of the error term in the fitness.
    n_jobs:
        Worker threads; ``None`` or 1 evaluates serially, ``-1`` uses every core.
    """

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        folds: Folds,
        n_neighbors: int = 5,
        alpha: float = 0.99,
        n_jobs: int | None = None,
    ) -> None:
        import torch  # the package depends on torch; imported here to keep `import emo` light

        self._torch = torch
        X = np.ascontiguousarray(X, dtype=np.float64)
        super().__init__(X.shape[1], alpha)
        classes, codes = np.unique(np.asarray(y), return_inverse=True)
        self.n_classes = len(classes)
        self.n_jobs = n_jobs
        self._folds = []
        for train, test in folds:
            train_xt = np.ascontiguousarray(X[train].T)
            self._folds.append(
                {
                    "test_m2": -2.0 * X[test],
                    "ones": np.ones((len(test), 1)),
                    "train_xt": train_xt,
                    "train_sq": train_xt**2,
                    "train_y": codes[train],
                    "test_y": codes[test],
                }
            )
        self.n_neighbors = int(min(n_neighbors, *(len(f["train_y"]) for f in self._folds)))
        self._controller = ThreadpoolController()
        self._buffers = threading.local()
        #: use the numba neighbour search when numba is importable (False: always torch.topk)
        self.compiled = True

    def _reference(self, fold: dict, reference: np.ndarray) -> tuple[object, np.ndarray]:
        """Ranking distances of one fold under the reference mask, and its training norms."""
        cols = np.flatnonzero(reference)
        norm = fold["train_sq"][cols].sum(axis=0)
        left = np.hstack([fold["test_m2"][:, cols], fold["ones"]])
        return self._torch.from_numpy(left @ np.vstack([fold["train_xt"][cols], norm])), norm

    def _fold_correct(
        self,
        fold: dict,
        masks: np.ndarray,
        incremental: np.ndarray,
        reference: np.ndarray,
        base: tuple[object, np.ndarray] | None,
    ) -> np.ndarray:
        """Number of correctly classified test samples of one fold for each mask of a block."""
        torch = self._torch
        lhs, rhs, ones = fold["test_m2"], fold["train_xt"], fold["ones"]
        n_test, n_train = lhs.shape[0], rhs.shape[1]
        norms = masks.astype(np.float64) @ fold["train_sq"]
        # A per-thread buffer: a fresh 10-20 MB block per call costs page faults on every evaluation.
        size = len(masks) * n_test * n_train
        buffer = getattr(self._buffers, "dist", None)
        if buffer is None or buffer.numel() < size:
            buffer = self._buffers.dist = torch.empty(size, dtype=torch.float64)
        dist = buffer[:size].view(len(masks), n_test, n_train)
        for p, mask in enumerate(masks):
            # Direct: [-2 a_S, 1] @ [b_S; ||b o m||^2] with S the mask's columns. Incremental: the reference's
            # distances plus the same product over the added and (negated) dropped columns.
            if base is not None and incremental[p]:
                added, dropped = np.flatnonzero(mask & ~reference), np.flatnonzero(reference & ~mask)
                left = np.hstack([lhs[:, added], -lhs[:, dropped], ones])
                right = np.vstack([rhs[added], rhs[dropped], norms[p] - base[1]])
                torch.addmm(base[0], torch.from_numpy(left), torch.from_numpy(right), out=dist[p])
            else:
                cols = np.flatnonzero(mask)
                left = np.hstack([lhs[:, cols], ones])
                right = np.vstack([rhs[cols], norms[p]])
                torch.mm(torch.from_numpy(left), torch.from_numpy(right), out=dist[p])
        rows = dist.view(-1, n_train)
        if self.compiled and _compiled_vote() is not None:
            predicted = _compiled_vote()(rows.numpy(), fold["train_y"], self.n_neighbors, self.n_classes)
        else:
            neighbours = torch.topk(rows, self.n_neighbors, dim=1, largest=False, sorted=False).indices
            labels = fold["train_y"][neighbours.numpy()]
            votes = np.zeros((len(labels), self.n_classes), dtype=np.int32)
            for c in range(self.n_classes):
                votes[:, c] = (labels == c).sum(axis=1)
            # argmax keeps the first of tied classes, i.e. the smallest label, as KNeighborsClassifier does.
            predicted = votes.argmax(axis=1)
        return (predicted.reshape(len(masks), n_test) == fold["test_y"][None, :]).sum(axis=1)

    def _accuracies(self, masks: np.ndarray) -> np.ndarray:
        torch = self._torch
        # Masks of one population batch overlap a lot: from the batch's majority mask, a mask costs a product
        # over only the columns it adds or drops, when that is fewer than the columns it has and the saving
        # pays for the reference's own product.
        sizes = masks.sum(axis=1)
        reference = masks.mean(axis=0) > 0.5
        moved = (masks ^ reference).sum(axis=1)
        incremental = moved < sizes
        use_reference = (sizes - moved)[incremental].sum() > reference.sum()
        items = []
        for f, fold in enumerate(self._folds):
            per_mask = len(fold["test_y"]) * fold["train_xt"].shape[1]
            step = max(1, _BLOCK_ELEMENTS // per_mask)
            items += [(f, start, min(start + step, len(masks))) for start in range(0, len(masks), step)]
        correct = np.zeros((len(self._folds), len(masks)))
        bases: list[tuple[object, np.ndarray] | None] = [None] * len(self._folds)

        def work(item: tuple[int, int, int]) -> None:
            f, start, stop = item
            correct[f, start:stop] = self._fold_correct(
                self._folds[f], masks[start:stop], incremental[start:stop], reference, bases[f]
            )

        n_jobs = 1 if self.n_jobs is None else self.n_jobs
        if n_jobs < 0:
            n_jobs = max(1, (os.cpu_count() or 1) + 1 + n_jobs)
        torch_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with self._controller.limit(limits=1, user_api="blas"):
                if use_reference:
                    bases = [self._reference(fold, reference) for fold in self._folds]
                if n_jobs == 1 or len(items) == 1:
                    for item in items:
                        work(item)
                else:
                    with ThreadPoolExecutor(min(n_jobs, len(items))) as pool:
                        list(pool.map(work, items))
        finally:
            torch.set_num_threads(torch_threads)
        sizes = np.array([len(fold["test_y"]) for fold in self._folds], dtype=np.float64)
        # cross_val_score averages the per-fold accuracies, not the pooled count.
        return (correct / sizes[:, None]).mean(axis=0)


class SklearnSubsetFitness(_SubsetFitnessBase):
    """The same fitness through ``cross_val_score`` for any classifier (one fit per fold and mask).

    ``n_jobs`` parallelises over the masks of a batch with joblib.
    """

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        folds: Folds,
        classifier: ClassifierMixin,
        alpha: float = 0.99,
        n_jobs: int | None = None,
    ) -> None:
        self.X = np.asarray(X)
        super().__init__(self.X.shape[1], alpha)
        self.y = np.asarray(y)
        self.folds = list(folds)
        self.classifier = classifier
        self.n_jobs = n_jobs

    def _one(self, mask: np.ndarray) -> float:
        scores = cross_val_score(clone(self.classifier), self.X[:, mask], self.y, cv=self.folds)
        return float(np.mean(scores))

    def _accuracies(self, masks: np.ndarray) -> np.ndarray:
        if self.n_jobs is None or self.n_jobs == 1 or len(masks) == 1:
            return np.array([self._one(m) for m in masks])
        return np.array(Parallel(n_jobs=self.n_jobs)(delayed(self._one)(m) for m in masks))


def make_subset_fitness(
    X: np.ndarray,
    y: np.ndarray,
    folds: Folds,
    classifier: ClassifierMixin | None = None,
    alpha: float = 0.99,
    n_jobs: int | None = None,
) -> KNNSubsetFitness | SklearnSubsetFitness:
    """The fastest exact evaluator for ``classifier`` (None: 5-NN): k-NN fast path or cross_val_score."""
    if classifier is None:
        classifier = KNeighborsClassifier(n_neighbors=5)
    if is_fast_knn(classifier):
        return KNNSubsetFitness(X, y, folds, classifier.get_params()["n_neighbors"], alpha, n_jobs)
    return SklearnSubsetFitness(X, y, folds, classifier, alpha, n_jobs)
