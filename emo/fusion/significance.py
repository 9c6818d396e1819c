"""Whether method A beats method B on the same splits and seeds: paired differences over runs, and McNemar's
test on the per-clip predictions of each run.

* **Paired over runs.** Runs of two methods are paired by (seed, split), since they saw the same training and
  test clips. For a metric (UA, WF1) the differences ``d_i = a_i - b_i`` give the mean difference with a
  Student-t 95% interval, the paired t-test (``scipy.stats.ttest_rel``) and the Wilcoxon signed-rank test
  (``scipy.stats.wilcoxon``, exact for small samples; with fewer than 6 runs it cannot reach p < 0.05, which
  is why the t-test is the one that marks significance). Across the pairs of a comparison the t-test p-values
  are Holm-adjusted (Holm 1979), so "significant" means significant after correcting for the number of pairs.
* **McNemar per run.** On one run's test clips, ``b`` = clips A gets right and B wrong, ``c`` = the reverse;
  the exact two-sided McNemar test is the binomial test of ``b`` successes in ``b + c`` trials at 0.5
  (``scipy.stats.binomtest``), valid for any counts (Edwards' chi-square approximation is not needed).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

ALPHA = 0.05


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """Mean of ``a - b`` (paired), its t-interval, and the paired t and Wilcoxon signed-rank p-values."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.size == 0:
        raise ValueError("no paired runs")
    mean = float(d.mean())
    out: dict[str, Any] = {"n": int(d.size), "mean_difference": mean}
    if d.size < 2:
        return out | {"ci": [mean, mean], "t_p": None, "wilcoxon_p": None}
    wilcoxon_p = float(stats.wilcoxon(d).pvalue) if np.any(d != 0) else 1.0
    sd = float(d.std(ddof=1))
    if sd == 0.0:  # the same difference in every run: no spread, and scipy's t statistic is undefined
        return out | {"ci": [mean, mean], "t_p": 1.0 if mean == 0.0 else 0.0, "wilcoxon_p": wilcoxon_p}
    half = float(stats.t.ppf((1 + confidence) / 2, d.size - 1) * sd / math.sqrt(d.size))
    t_p = float(stats.ttest_rel(a, b).pvalue)
    return out | {"ci": [mean - half, mean + half], "t_p": t_p, "wilcoxon_p": wilcoxon_p}


def corrected_paired_difference(
    a: Sequence[float], b: Sequence[float], test_train_ratio: float, confidence: float = 0.95
) -> dict[str, Any]:
    """:func:`paired_difference` with the corrected resampled t-test of Nadeau & Bengio (2003).

    Runs that re-split one set of clips (k folds x seeds) share most of their training data, so their
    differences are correlated and the plain paired t-test is too optimistic. The variance of the mean
    difference is taken as ``s^2 (1/J + n_test/n_train)`` instead of ``s^2 / J`` (J runs), with ``t`` on
    J - 1 degrees of freedom; with 4 folds (ratio 1/3) and 12 runs the standard error grows about 2.2x.
    """
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    out = paired_difference(a, b, confidence)
    if d.size < 2:
        return out | {"corrected": True}
    sd = float(d.std(ddof=1))
    se = sd * math.sqrt(1.0 / d.size + test_train_ratio)
    mean = float(d.mean())
    if se == 0.0:
        return out | {"ci": [mean, mean], "t_p": 1.0 if mean == 0.0 else 0.0, "corrected": True}
    half = float(stats.t.ppf((1 + confidence) / 2, d.size - 1) * se)
    p = float(2 * stats.t.sf(abs(mean / se), d.size - 1))
    return out | {"ci": [mean - half, mean + half], "t_p": p, "corrected": True}


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, Any]:
    """Exact McNemar test on two methods' per-clip correctness over the same test clips."""
    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    b = int(np.sum(correct_a & ~correct_b))
    c = int(np.sum(~correct_a & correct_b))
    p = float(stats.binomtest(b, b + c, 0.5).pvalue) if b + c else 1.0
    return {"a_only_correct": b, "b_only_correct": c, "p": p}


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values (None stays None and is not counted)."""
    index = [i for i, p in enumerate(pvalues) if p is not None]
    order = sorted(index, key=lambda i: pvalues[i])
    adjusted: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * float(pvalues[i])))
        adjusted[i] = running
    return adjusted


def compare_methods(
    runs: Mapping[str, Sequence[Mapping[str, Any]]], metrics: Sequence[str] = ("ua", "wf1")
) -> list[dict[str, Any]]:
    """Every pair of methods: paired differences of ``metrics`` and McNemar per run.

    ``runs[name]`` lists a method's runs as ``{"key": (seed, split), "metrics": {...}, "correct": bool array
    over the run's test clips, "test": their row indices}``. Pairs use the runs present for both methods.
    """
    pairs = []
    for a, b in itertools.combinations(runs, 2):
        by_key_a = {tuple(r["key"]): r for r in runs[a]}
        by_key_b = {tuple(r["key"]): r for r in runs[b]}
        keys = [k for k in by_key_a if k in by_key_b]
        entry: dict[str, Any] = {"a": a, "b": b, "n_runs": len(keys)}
        for metric in metrics:
            entry[metric] = paired_difference(
                [by_key_a[k]["metrics"][metric] for k in keys], [by_key_b[k]["metrics"][metric] for k in keys]
            )
        entry["mcnemar"] = []
        for k in keys:
            ra, rb = by_key_a[k], by_key_b[k]
            if not np.array_equal(ra["test"], rb["test"]):
                raise ValueError(f"runs {k} of {a} and {b} were tested on different clips")
            entry["mcnemar"].append({"run": f"seed{k[0]}-{k[1]}", **mcnemar(ra["correct"], rb["correct"])})
        pairs.append(entry)
    for metric in metrics:
        adjusted = holm([p[metric]["t_p"] for p in pairs])
        for pair, p_adj in zip(pairs, adjusted, strict=True):
            pair[metric]["t_p_holm"] = p_adj
            pair[metric]["significant"] = p_adj is not None and p_adj < ALPHA
    for pair in pairs:
        significant_runs = sum(m["p"] < ALPHA for m in pair["mcnemar"])
        pair["mcnemar_significant_runs"] = significant_runs
    return pairs
