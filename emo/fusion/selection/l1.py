"""L1-penalised linear selection (seed 002: L1-based selection of the BERT text features)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import LabelBinarizer, StandardScaler
from sklearn.svm import LinearSVC, l1_min_c
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from emo.fusion.selection._common import SELECTORS, check_n_features, ensure_nonempty, top_k_mask

_ESTIMATORS = ("logistic", "svm")
# Bisection steps on log C when searching the regularisation path for a target subset size.
_PATH_STEPS = 10
# The path search gives up widening C after this factor above the smallest useful C.
_PATH_MAX_FACTOR = 1e6


@SELECTORS.register("l1")
class L1Selector(SelectorMixin, BaseEstimator):
    """Keep the features an L1-penalised linear classifier gives a non-zero weight (for any class).

    The model is either a logistic regression (``estimator="logistic"``, liblinear solver) or a linear
    SVM with squared hinge loss (``estimator="svm"``, ``LinearSVC(penalty="l1", dual=False)``). Both are
    one-vs-rest for more than two classes, so every class has its own sparse weight vector and a feature
    survives if any class uses it. ``scores_`` is the largest absolute weight of each feature over the
    classes.

    Subset size: with ``n_features=None`` the sparsity follows from ``C`` (smaller is sparser). With
    ``n_features=k`` the selector walks the regularisation path instead of ranking a single fit: a
    bisection on ``log C`` between :func:`sklearn.svm.l1_min_c` (no feature enters) and the first decade
    with at least ``k`` non-zero features finds the smallest ``C`` (within 0.3%) whose model
    has at least ``k`` non-zero features, and the ``k`` largest ``|weight|`` of that model are kept. So
    the ``k`` features are those the L1 path lets in first, which ranking the coefficients of a single,
    weakly regularised fit does not guarantee. ``C`` is then ignored and ``C_`` holds the value used.

    Never empty: if the penalty zeroes every weight, the feature that enters the L1 path first is kept,
    i.e. the one with the largest ``|X_std^T (Y - mean(Y))|`` over the one-vs-rest targets (the gradient of
    the loss at zero weights, up to a per-loss constant).

    Standardisation: with ``standardize=True`` (default) the linear model is fitted on internally
    standardised columns, so the penalty treats every feature alike and ``scores_`` are comparable across
    features; ``transform`` still returns the original, unscaled columns. The trainer already feeds
    standardised features, for which this is a no-op; it matters when the selector is used on raw
    features, where an L1 penalty otherwise favours large-variance columns.

    Parameters
    ----------
    estimator:
        ``"logistic"`` or ``"svm"``.
    C:
        Inverse regularisation strength (used when ``n_features`` is None).
    n_features:
        Exact number of features to keep, chosen along the regularisation path (see above).
    standardize:
        Fit the linear model on standardised columns.
    max_iter, tol:
        Solver iteration cap and tolerance.
    random_state:
        Seeds liblinear's coordinate shuffling.

    Attributes
    ----------
    support_: boolean mask of kept features. scores_: max absolute weight per feature.
    coef_: weights ``[n_classes or 1, n_features_in_]`` of the final model. C_: the ``C`` of that model.
    n_iter_: solver iterations of that model (the largest over its one-vs-rest parts).
    """

    def __init__(
        self,
        estimator: str = "logistic",
        C: float = 1.0,
        n_features: int | None = None,
        standardize: bool = True,
        max_iter: int = 1000,
        tol: float = 1e-4,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.estimator = estimator
        self.C = C
        self.n_features = n_features
        self.standardize = standardize
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def _coef(self, X: np.ndarray, y: np.ndarray, C: float) -> tuple[np.ndarray, int]:
        """Weights ``[n_models, n_features]`` of the one-vs-rest L1 model(s) at ``C``; solver iterations."""
        if self.estimator == "svm":
            model = LinearSVC(
                penalty="l1",
                dual=False,
                C=C,
                max_iter=self.max_iter,
                tol=self.tol,
                random_state=self.random_state,
            ).fit(X, y)
            return model.coef_, int(np.max(model.n_iter_))
        logistic = LogisticRegression(
            l1_ratio=1.0,
            solver="liblinear",
            C=C,
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=self.random_state,
        )
        if len(self.classes_) <= 2:
            logistic.fit(X, y)
            return logistic.coef_, int(np.max(logistic.n_iter_))
        ovr = OneVsRestClassifier(logistic).fit(X, y)
        n_iter = max(int(np.max(est.n_iter_)) for est in ovr.estimators_)
        return np.vstack([est.coef_ for est in ovr.estimators_]), n_iter

    def fit(self, X: np.ndarray, y: np.ndarray) -> L1Selector:
        """Fit the L1 model(s) on ``X`` (``[n_samples, n_features]``) and class labels ``y``."""
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        if self.estimator not in _ESTIMATORS:
            raise ValueError(f"estimator must be one of {_ESTIMATORS}, got {self.estimator!r}")
        if not self.C > 0:
            raise ValueError(f"C must be positive, got {self.C!r}")
        k = check_n_features(self.n_features, X.shape[1])
        self.classes_ = np.unique(y)
        Xs = StandardScaler().fit_transform(X) if self.standardize else np.asarray(X, dtype=np.float64)

        targets = LabelBinarizer().fit_transform(y).astype(np.float64)
        entry = np.abs(Xs.T @ (targets - targets.mean(axis=0))).max(axis=1)

        if len(self.classes_) < 2:
            # One class: there is nothing to discriminate, every weight is zero by definition.
            self.C_, self.coef_, self.n_iter_ = float(self.C), np.zeros((1, X.shape[1])), 0
        elif k is None:
            self.C_ = float(self.C)
            self.coef_, self.n_iter_ = self._coef(Xs, y, self.C_)
        else:
            self.C_, self.coef_, self.n_iter_ = self._path_search(Xs, y, k)
        self.scores_ = np.abs(self.coef_).max(axis=0)
        mask = self.scores_ > 0 if k is None else top_k_mask(self.scores_, k, tie_break=entry)
        self.support_ = ensure_nonempty(mask, self.scores_, tie_break=entry)
        return self

    def _path_search(self, X: np.ndarray, y: np.ndarray, k: int) -> tuple[float, np.ndarray, int]:
        """Smallest ``C`` (bisection on log C) whose model has at least ``k`` non-zero features."""
        loss = "squared_hinge" if self.estimator == "svm" else "log"
        if np.ptp(X, axis=0).max() == 0:
            return float(self.C), np.zeros((1, X.shape[1])), 0
        c_first = c_low = float(l1_min_c(X, y, loss=loss))
        c_high = 10.0 * c_low
        high = self._coef(X, y, c_high)
        while np.count_nonzero(np.abs(high[0]).max(axis=0)) < k and c_high < _PATH_MAX_FACTOR * c_first:
            c_low, c_high = c_high, 10.0 * c_high
            high = self._coef(X, y, c_high)
        for _ in range(_PATH_STEPS):
            c_mid = float(np.sqrt(c_low * c_high))
            mid = self._coef(X, y, c_mid)
            if np.count_nonzero(np.abs(mid[0]).max(axis=0)) >= k:
                c_high, high = c_mid, mid
            else:
                c_low = c_mid
        return c_high, high[0], high[1]

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "support_")
        return self.support_
