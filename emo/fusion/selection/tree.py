"""Tree-ensemble importance selection (seed 002: tree-based selection of the speech and face features)."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.feature_selection import SelectorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from emo.fusion.selection._common import SELECTORS, check_n_features, ensure_nonempty, top_k_mask

_FORESTS = {"extra_trees": ExtraTreesClassifier, "random_forest": RandomForestClassifier}


def _threshold_value(threshold: str | float, importances: np.ndarray) -> float:
    """Numeric cut-off from "mean", "median", "<factor>*mean", "<factor>*median" or a number."""
    if isinstance(threshold, numbers.Real) and not isinstance(threshold, bool):
        return float(threshold)
    if isinstance(threshold, str):
        text = threshold.strip().lower()
        factor = 1.0
        if "*" in text:
            head, text = (part.strip() for part in text.split("*", 1))
            try:
                factor = float(head)
            except ValueError:
                raise ValueError(f"cannot parse threshold {threshold!r}") from None
        if text == "mean":
            return factor * float(np.mean(importances))
        if text == "median":
            return factor * float(np.median(importances))
    raise ValueError(
        f"threshold must be a number, 'mean', 'median' or '<factor>*mean|median', got {threshold!r}"
    )


@SELECTORS.register("tree")
class TreeSelector(SelectorMixin, BaseEstimator):
    """Keep the features with the largest impurity-based importances of a tree ensemble.

    The ensemble is an extremely randomised trees classifier (``estimator="extra_trees"``, default: cheaper
    and less biased towards high-cardinality features than a random forest) or a random forest
    (``"random_forest"``). A feature is kept when its importance is at least ``threshold`` (``"mean"`` as in
    ``SelectFromModel``, ``"median"``, a scaled form such as ``"1.25*mean"``, or a number); with
    ``n_features=k`` the ``k`` most important features are kept instead (ties: lower column index) and
    ``threshold`` is ignored. If nothing reaches the threshold, the most important feature is kept, so the
    mask is never empty.

    Parameters
    ----------
    estimator:
        ``"extra_trees"`` or ``"random_forest"``.
    n_estimators:
        Number of trees.
    threshold:
        Importance cut-off (see above).
    n_features:
        Exact number of features to keep (overrides ``threshold``).
    random_state:
        Seeds the ensemble (bootstrap and split draws).
    n_jobs:
        Parallel tree building, passed to the ensemble.

    Attributes
    ----------
    support_: boolean mask of kept features. scores_: importances (sum to 1).
    threshold_: the numeric cut-off used (the k-th largest importance when ``n_features`` is set).
    estimator_: the fitted ensemble.
    """

    def __init__(
        self,
        estimator: str = "extra_trees",
        n_estimators: int = 100,
        threshold: str | float = "mean",
        n_features: int | None = None,
        random_state: int | np.random.RandomState | None = None,
        n_jobs: int | None = None,
    ) -> None:
        self.estimator = estimator
        self.n_estimators = n_estimators
        self.threshold = threshold
        self.n_features = n_features
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X: np.ndarray, y: np.ndarray) -> TreeSelector:
        """Fit the ensemble on ``X`` (``[n_samples, n_features]``) and class labels ``y``."""
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        if self.estimator not in _FORESTS:
            raise ValueError(f"estimator must be one of {tuple(_FORESTS)}, got {self.estimator!r}")
        k = check_n_features(self.n_features, X.shape[1])
        forest = _FORESTS[self.estimator](
            n_estimators=self.n_estimators, random_state=self.random_state, n_jobs=self.n_jobs
        )
        self.estimator_ = forest.fit(X, y)
        self.scores_ = np.asarray(self.estimator_.feature_importances_, dtype=np.float64)
        if k is None:
            self.threshold_ = _threshold_value(self.threshold, self.scores_)
            mask = self.scores_ >= self.threshold_
        else:
            mask = top_k_mask(self.scores_, k)
            self.threshold_ = float(self.scores_[mask].min())
        self.support_ = ensure_nonempty(mask, self.scores_)
        return self

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "support_")
        return self.support_
