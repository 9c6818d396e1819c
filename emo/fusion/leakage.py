"""Leakage checks of an evaluation: what the training and test clips of a split share, and a label-permutation
test (train on shuffled training labels; the test score must then sit at chance, or test information reaches
training somewhere).

The permutation p-value is Phipson & Smyth's (2010) ``(1 + #{permuted score >= real score}) / (N + 1)``, the
exact p-value of a Monte Carlo permutation test (never 0), as in scikit-learn's ``permutation_test_score``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from emo.fusion.data import FusionData
from emo.fusion.splits import Split

EXAMPLES = 5


def _shared(a: np.ndarray, b: np.ndarray) -> list[str]:
    return sorted((set(a.tolist()) & set(b.tolist())) - {""})


def split_overlap(data: FusionData, split: Split) -> dict[str, Any]:
    """What the training and test clips of ``split`` share: speakers, dialogues (real ids only) and
    byte-identical media files (same ``source_sha256``). Counts, and the first few of each."""
    train, test = split.train, split.test
    speakers = _shared(data.speakers[train], data.speakers[test])
    dialogues = _shared(data.dialogue_ids[train], data.dialogue_ids[test])
    duplicates: list[str] = []
    if data.source_sha256 is not None:
        for sha in _shared(data.source_sha256[train], data.source_sha256[test]):
            duplicates.append(str(data.clip_ids[test][data.source_sha256[test] == sha][0]))
    return {
        "shared_speakers": len(speakers),
        "shared_dialogues": len(dialogues),
        "duplicate_media": len(duplicates),
        "examples": {
            "speakers": speakers[:EXAMPLES],
            "dialogues": dialogues[:EXAMPLES],
            "test_clips_with_a_copy_in_training": duplicates[:EXAMPLES],
        },
    }


def overlap_summary(protocol: str, overlaps: list[dict[str, Any]]) -> dict[str, Any]:
    """The largest overlap over the runs, and whether it breaks the protocol's promise (a speaker split shares
    no speaker; no split shares a media file)."""
    worst = {key: max(o[key] for o in overlaps) for key in ("shared_speakers", "shared_dialogues", "duplicate_media")}
    problems = []
    if protocol == "speaker" and worst["shared_speakers"]:
        problems.append(f"{worst['shared_speakers']} speaker(s) on both sides of a speaker-independent split")
    if worst["duplicate_media"]:
        problems.append(f"{worst['duplicate_media']} test clip(s) whose media file is also a training clip")
    if protocol == "predefined" and worst["shared_dialogues"]:
        problems.append(f"{worst['shared_dialogues']} dialogue(s) on both sides of the predefined split")
    return {"max_over_runs": worst, "problems": problems, "ok": not problems}


def permutation_test(
    data: FusionData,
    split: Split,
    n: int,
    real_score: float,
    train_once: Callable[[FusionData, int], dict[str, Any]],
    seed: int = 0,
    metric: str = "ua",
) -> dict[str, Any]:
    """Train ``n`` times on ``split`` with the labels of its training and validation clips shuffled (test labels
    untouched) and score the test clips; ``train_once(data, k)`` returns the metrics of permutation ``k``.

    Returns the permuted scores, their mean, the chance level of ``metric`` (1 / classes for UA; the share of
    the largest test class for accuracy) and the p-value of ``real_score``.
    """
    rng = np.random.default_rng(seed)
    fitted = np.concatenate([split.train, split.val])
    scores = []
    for k in range(n):
        y = data.y.copy()
        y[fitted] = rng.permutation(y[fitted])
        scores.append(float(train_once(dataclasses.replace(data, y=y), k)[metric]))
    arr = np.asarray(scores)
    test_y = data.y[split.test]
    present = np.unique(test_y)
    chance = 1.0 / present.size if metric in ("ua", "balanced_accuracy") else float(
        np.bincount(test_y).max() / test_y.size
    )
    return {
        "metric": metric,
        "n_permutations": n,
        "split": split.name,
        "real": real_score,
        "permuted": scores,
        "permuted_mean": float(arr.mean()) if n else None,
        "permuted_std": float(arr.std(ddof=1)) if n > 1 else 0.0,
        "chance": chance,
        "p_value": float((1 + np.sum(arr >= real_score)) / (n + 1)),
    }
