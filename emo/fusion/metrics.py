"""Evaluation metrics for emotion classification, and their summary over repeated runs.

Definitions (C classes, confusion matrix ``M[i, j]`` = clips of true class i predicted as j, ``n_i`` = row
sums = support, ``p_j`` = column sums = predicted counts):

* ``accuracy`` = ``trace(M) / n``.
* ``precision_c = M[c, c] / p_c``, ``recall_c = M[c, c] / n_c``, ``f1_c = 2 M[c, c] / (n_c + p_c)``; a zero
  denominator gives 0 (scikit-learn's ``zero_division=0``), so labels absent from ``y_true`` do not crash.
* ``*_macro``: unweighted mean over the classes present in ``y_true`` (support > 0); a class absent from a
  test split (which happens on speaker splits) has no recall to average, and counting it as 0 would make
  ``recall_macro`` differ from ``ua`` by an arbitrary amount. The absent classes are listed in
  ``absent_classes``. (scikit-learn's ``average="macro"`` averages over every label passed; with
  ``labels=`` the present ones it gives the same numbers.) ``*_weighted``: mean weighted by support
  ``n_c / n``, where absent classes weigh nothing.
* ``balanced_accuracy``: mean recall over the classes present in ``y_true`` (scikit-learn's definition).
* ``wa`` (weighted accuracy) = ``accuracy``, and ``ua`` (unweighted accuracy) = mean per-class recall over the
  classes present in ``y_true`` (= ``balanced_accuracy``), the speech-emotion convention used by EmoBox
  (Ma et al., "EmoBox: Multilingual Multi-corpus Speech Emotion Recognition Toolkit and Benchmark",
  Interspeech 2024) and by seed 003's WA/UA table. ``wf1`` = ``f1_weighted`` (seed 004 §4.2, MELD "WF1").
* ``wa_eq6``: seed 004 §4.2 Eq. 6 taken literally, ``WA = (TP * N/P + TN) / (2N)`` (Tong et al.'s
  binary weighted accuracy, = (recall + specificity) / 2), computed one-vs-rest per class and averaged
  over the classes with both positives and negatives. Seed 004's text also calls WA "identical to the
  mean recall across all emotion categories", i.e. our ``ua``; its published MELD numbers cannot tell
  which was used, hence all three.
* With ``y_prob`` [n, C]: ``log_loss`` (mean negative log-probability of the true class, clipped at
  1e-15) and ``roc_auc_macro`` (one-vs-rest ROC AUC averaged over the classes with both positives and
  negatives; None if there are none).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

_PER_CLASS = ("precision", "recall", "f1", "support")
#: The metrics of this module that lie in [0, 1] (with the ``precision_``/``recall_``/``f1_`` averages) and those
#: in [0, inf); a summary's interval is cut to the metric's range.
_UNIT_METRICS = frozenset(
    {"accuracy", "balanced_accuracy", "ua", "wa", "wf1", "wa_eq6", "roc_auc_macro", "precision", "recall", "f1"}
)
_UNIT_PREFIXES = ("precision_", "recall_", "f1_")
_NON_NEGATIVE_METRICS = frozenset({"log_loss", "support"})


def classification_metrics(
    y_true: Sequence[Any] | np.ndarray,
    y_pred: Sequence[Any] | np.ndarray,
    labels: list[str],
    y_prob: Sequence[Sequence[float]] | np.ndarray | None = None,
) -> dict[str, Any]:
    """All metrics of the module docstring for one evaluation, as plain JSON-serialisable values.

    ``y_true`` and ``y_pred`` are class indices into ``labels`` or label names from ``labels``.
    Returns scalar metrics, ``per_class`` ({label: {precision, recall, f1, support}}), ``confusion_matrix``
    (list of lists, rows = true class, columns = predicted, in ``labels`` order), ``labels`` and ``n``.
    """
    labels = [str(label) for label in labels]
    if len(set(labels)) != len(labels) or not labels:
        raise ValueError(f"labels must be a non-empty list of distinct names, got {labels}")
    yt = _indices(y_true, labels, "y_true")
    yp = _indices(y_pred, labels, "y_pred")
    if yt.shape != yp.shape:
        raise ValueError(f"y_true and y_pred differ in length: {yt.size} vs {yp.size}")
    if yt.size == 0:
        raise ValueError("no samples to evaluate")
    k = len(labels)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (yt, yp), 1)
    n = int(cm.sum())
    tp = np.diag(cm).astype(float)
    support = cm.sum(1).astype(float)
    predicted = cm.sum(0).astype(float)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * tp, support + predicted)
    present = support > 0
    weights = support / n
    accuracy = float(tp.sum() / n)
    mean_recall = float(recall[present].mean())
    negatives = n - support
    specificity = _safe_div(negatives - (predicted - tp), negatives)
    both = present & (negatives > 0)
    out: dict[str, Any] = {
        "accuracy": accuracy,
        "balanced_accuracy": mean_recall,
        "precision_macro": float(precision[present].mean()),
        "recall_macro": float(recall[present].mean()),
        "f1_macro": float(f1[present].mean()),
        "precision_weighted": float((precision * weights).sum()),
        "recall_weighted": float((recall * weights).sum()),
        "f1_weighted": float((f1 * weights).sum()),
        "wa": accuracy,
        "ua": mean_recall,
        "wf1": float((f1 * weights).sum()),
        "wa_eq6": float(((recall + specificity) / 2)[both].mean()) if both.any() else None,
    }
    if y_prob is not None:
        out |= _probability_metrics(yt, np.asarray(y_prob, dtype=float), k)
    out["per_class"] = {
        label: {
            "precision": float(precision[c]),
            "recall": float(recall[c]),
            "f1": float(f1[c]),
            "support": int(support[c]),
        }
        for c, label in enumerate(labels)
    }
    out["confusion_matrix"] = cm.tolist()
    out["labels"] = labels
    out["absent_classes"] = [label for c, label in enumerate(labels) if not present[c]]
    out["n"] = n
    return out


def summarize_runs(runs: Sequence[Mapping[str, Any]], confidence: float = 0.95) -> dict[str, Any]:
    """Mean, sample std, count and Student-t confidence interval of every scalar metric over runs.

    For k runs with mean m and sample standard deviation s (ddof = 1) the interval is
    ``m +- t_{(1+confidence)/2, k-1} * s / sqrt(k)``. With a single run there is no spread to estimate:
    ``std`` is 0.0, the interval is ``[m, m]`` and ``single_run`` is True. Metrics that are None in a run
    (e.g. ``roc_auc_macro`` without probabilities) are left out of that run's count; ``n`` (test-set
    size) is not a metric and is not summarised. Per-class scalars are summarised the same way under
    ``per_class``.

    The t-interval of a bounded metric can leave its range (UA 0.5 and 0.7 over two seeds give
    [-0.67, 1.87]); ``ci`` is then cut to the range (UA, accuracy, F1, precision, recall, ROC AUC: [0, 1];
    ``log_loss``, ``support``: [0, inf); other names are not cut). The metric's true value lies in its range,
    so the cut interval covers it exactly as often. ``ci_raw`` keeps the t-interval, and ``ci_truncated``
    says whether the two differ.

    Returns ``{metric: {mean, std, n, ci, ci_raw, ci_truncated, confidence, single_run}, ...,
    "per_class": {label: {metric: ...}}, "n_runs": k}``.
    """
    if not runs:
        raise ValueError("summarize_runs needs at least one run")
    out: dict[str, Any] = {}
    for key in _ordered_keys(runs):
        if key == "n":
            continue
        values = [run.get(key) for run in runs]
        if all(v is None or _is_scalar(v) for v in values):
            summary = _summary([v for v in values if v is not None], confidence, _range(key))
            if summary is not None:
                out[key] = summary
    per_class: dict[str, dict[str, Any]] = {}
    for run in runs:
        for label, entry in (run.get("per_class") or {}).items():
            per_class.setdefault(label, {})
            for metric in entry:
                per_class[label].setdefault(metric, [])
    for label, metrics in per_class.items():
        for metric in list(metrics):
            values = [
                run["per_class"][label].get(metric) for run in runs if label in (run.get("per_class") or {})
            ]
            summary = _summary([v for v in values if _is_scalar(v)], confidence, _range(metric))
            if summary is None:
                del metrics[metric]
            else:
                metrics[metric] = summary
    if per_class:
        out["per_class"] = per_class
    out["n_runs"] = len(runs)
    return out


def _range(metric: str) -> tuple[float, float] | None:
    """The values ``metric`` can take if this module computes it, else None (a caller's own metric)."""
    if metric in _UNIT_METRICS or metric.startswith(_UNIT_PREFIXES):
        return (0.0, 1.0)
    if metric in _NON_NEGATIVE_METRICS:
        return (0.0, math.inf)
    return None


def _summary(
    values: list[float], confidence: float, bounds: tuple[float, float] | None = None
) -> dict[str, Any] | None:
    if not values:
        return None
    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    if arr.size == 1:
        return {
            "mean": mean,
            "std": 0.0,
            "n": 1,
            "ci": [mean, mean],
            "ci_raw": [mean, mean],
            "ci_truncated": False,
            "confidence": confidence,
            "single_run": True,
        }
    std = float(arr.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, arr.size - 1) * std / math.sqrt(arr.size))
    raw = [mean - half, mean + half]
    ci = [max(raw[0], bounds[0]), min(raw[1], bounds[1])] if bounds else list(raw)
    return {
        "mean": mean,
        "std": std,
        "n": int(arr.size),
        "ci": ci,
        "ci_raw": raw,
        "ci_truncated": ci != raw,
        "confidence": confidence,
        "single_run": False,
    }


def _probability_metrics(yt: np.ndarray, prob: np.ndarray, k: int) -> dict[str, Any]:
    if prob.shape != (yt.size, k):
        raise ValueError(f"y_prob must have shape ({yt.size}, {k}), got {prob.shape}")
    log_loss = float(-np.log(np.clip(prob[np.arange(yt.size), yt], 1e-15, None)).mean())
    aucs = []
    for c in range(k):
        positive = yt == c
        n_pos, n_neg = int(positive.sum()), int((~positive).sum())
        if n_pos and n_neg:
            ranks = stats.rankdata(prob[:, c])
            aucs.append((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return {"log_loss": log_loss, "roc_auc_macro": float(np.mean(aucs)) if aucs else None}


def _indices(values: Sequence[Any] | np.ndarray, labels: list[str], what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {arr.shape}")
    if arr.dtype.kind in "USO":
        lookup = {label: i for i, label in enumerate(labels)}
        unknown = sorted({str(v) for v in arr if str(v) not in lookup})
        if unknown:
            raise ValueError(f"{what} contains labels not in {labels}: {unknown}")
        return np.fromiter((lookup[str(v)] for v in arr), dtype=np.int64, count=arr.size)
    if arr.dtype.kind == "f" and np.array_equal(arr, np.round(arr)):
        arr = arr.astype(np.int64)
    if arr.size and (arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() >= len(labels)):
        raise ValueError(f"{what} must hold class indices in [0, {len(labels)}) or label names")
    return arr.astype(np.int64)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=float), where=den > 0)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _ordered_keys(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for run in runs:
        seen.update(dict.fromkeys(run))
    return list(seen)
