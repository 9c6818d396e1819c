"""The selector registry and helpers shared by the selectors: top-k masks, the never-empty rule, argument checks."""

from __future__ import annotations

import numbers

import numpy as np

from emo.registry import Registry

#: Every ``--selector`` / ``emo select --method``: a scikit-learn ``SelectorMixin`` class taking ``random_state``,
#: registered by its module with ``@SELECTORS.register("name")``.
SELECTORS: Registry[type] = Registry("feature selector", "--selector")


def top_k_mask(scores: np.ndarray, k: int, tie_break: np.ndarray | None = None) -> np.ndarray:
    """Mask of the ``k`` highest ``scores``; ties go to the higher ``tie_break``, then the lower index."""
    scores = np.asarray(scores, dtype=np.float64)
    keys = [np.arange(len(scores))]
    if tie_break is not None:
        keys.append(-np.asarray(tie_break, dtype=np.float64))
    keys.append(-scores)
    order = np.lexsort(keys)
    mask = np.zeros(len(scores), dtype=bool)
    mask[order[:k]] = True
    return mask


def ensure_nonempty(mask: np.ndarray, scores: np.ndarray, tie_break: np.ndarray | None = None) -> np.ndarray:
    """``mask`` itself, or only the top-scoring feature when ``mask`` selects nothing."""
    if mask.any():
        return mask
    return top_k_mask(scores, 1, tie_break)


def check_n_features(n_features: int | None, n_total: int) -> int | None:
    """Validate a requested subset size against the number of input features."""
    if n_features is None:
        return None
    if not isinstance(n_features, numbers.Integral) or isinstance(n_features, bool) or n_features < 1:
        raise ValueError(f"n_features must be a positive integer or None, got {n_features!r}")
    if n_features > n_total:
        raise ValueError(
            f"n_features={n_features} exceeds the number of input features (X has n_features={n_total})"
        )
    return int(n_features)
