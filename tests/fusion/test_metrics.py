"""Evaluation metrics against scikit-learn, WA/UA definitions, and the confidence intervals over runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from emo.fusion.metrics import classification_metrics, summarize_runs

LABELS = ["angry", "happy", "neutral", "sad"]


def predictions(seed: int = 0, n: int = 200, k: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, n)
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, k, n))
    logits = rng.normal(size=(n, k)) + 2.0 * np.eye(k)[y_pred]
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y_true, y_pred, prob


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_scikit_learn(seed: int) -> None:
    y_true, y_pred, prob = predictions(seed)
    out = classification_metrics(y_true, y_pred, LABELS, y_prob=prob)
    idx = list(range(len(LABELS)))
    assert out["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert out["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))
    for average in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=idx, average=average, zero_division=0
        )
        assert out[f"precision_{average}"] == pytest.approx(p)
        assert out[f"recall_{average}"] == pytest.approx(r)
        assert out[f"f1_{average}"] == pytest.approx(f)
    assert out["confusion_matrix"] == skm.confusion_matrix(y_true, y_pred, labels=idx).tolist()
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=idx, zero_division=0)
    for c, label in enumerate(LABELS):
        assert out["per_class"][label] == pytest.approx(
            {"precision": p[c], "recall": r[c], "f1": f[c], "support": s[c]}
        )
    assert out["log_loss"] == pytest.approx(skm.log_loss(y_true, prob, labels=idx))
    assert out["roc_auc_macro"] == pytest.approx(
        skm.roc_auc_score(y_true, prob, multi_class="ovr", labels=idx)
    )
    assert out["n"] == len(y_true)
    assert out["labels"] == LABELS


def test_wa_ua_wf1_definitions() -> None:
    y_true, y_pred, _ = predictions(3)
    out = classification_metrics(y_true, y_pred, LABELS)
    recalls = [np.mean(y_pred[y_true == c] == c) for c in range(len(LABELS))]
    assert out["wa"] == pytest.approx(np.mean(y_true == y_pred))
    assert out["ua"] == pytest.approx(np.mean(recalls))
    assert out["ua"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))
    assert out["wf1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="weighted"))
    # seed 004 Eq. 6 one-vs-rest: (TP * N/P + TN) / (2N) per class, averaged
    eq6 = []
    for c in range(len(LABELS)):
        pos, neg = y_true == c, y_true != c
        tp, tn = np.sum(pos & (y_pred == c)), np.sum(neg & (y_pred != c))
        big_p, big_n = pos.sum(), neg.sum()
        eq6.append((tp * big_n / big_p + tn) / (2 * big_n))
    assert out["wa_eq6"] == pytest.approx(np.mean(eq6))


def test_hand_computed_example() -> None:
    # seed 002 Table 2: 10 clips, class 0 support 3 (precision .75, recall 1), class 2 recall 2/3
    y_true = [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    y_pred = [0, 0, 0, 1, 1, 1, 1, 2, 2, 0]
    out = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    assert out["accuracy"] == pytest.approx(0.9)
    assert out["per_class"]["a"] == pytest.approx(
        {"precision": 0.75, "recall": 1.0, "f1": 6 / 7, "support": 3}
    )
    assert out["per_class"]["c"]["recall"] == pytest.approx(2 / 3)
    assert out["precision_macro"] == pytest.approx(0.9167, abs=1e-4)
    assert out["recall_macro"] == pytest.approx(0.8889, abs=1e-4)
    assert out["f1_macro"] == pytest.approx(0.8857, abs=1e-4)
    assert out["precision_weighted"] == pytest.approx(0.925)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_absent_labels_and_names() -> None:
    y_true = ["happy", "happy", "sad", "sad"]
    y_pred = ["happy", "sad", "sad", "angry"]
    out = classification_metrics(y_true, y_pred, LABELS)
    assert out["per_class"]["neutral"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert out["per_class"]["angry"]["support"] == 0
    idx = [LABELS.index(v) for v in y_true], [LABELS.index(v) for v in y_pred]
    present = sorted(set(idx[0]))  # macro averages run over the classes of the test split only
    for name in ("precision", "recall", "f1"):
        reference = getattr(skm, f"{name}_score")(*idx, labels=present, average="macro", zero_division=0)
        assert out[f"{name}_macro"] == pytest.approx(reference), name
    assert out["absent_classes"] == ["angry", "neutral"]
    assert out["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(*idx))
    assert out["ua"] == pytest.approx(0.5) == out["recall_macro"]  # UA is the macro recall, as defined
    assert json.loads(json.dumps(out)) == out
    with pytest.raises(ValueError, match="not in"):
        classification_metrics(["joy"], ["happy"], LABELS)
    with pytest.raises(ValueError, match="class indices"):
        classification_metrics([0, 7], [0, 1], LABELS)


def test_outputs_are_plain_json() -> None:
    y_true, y_pred, prob = predictions(4)
    out = classification_metrics(y_true, y_pred, LABELS, y_prob=prob)
    assert json.loads(json.dumps(out)) == out
    assert all(type(v) in (float, int, list, dict, type(None)) for v in out.values())
    summary = summarize_runs([out, classification_metrics(*predictions(5)[:2], LABELS)])
    assert json.loads(json.dumps(summary)) == summary


def test_confidence_interval_on_known_numbers() -> None:
    runs = [{"log_loss": v, "n": 10} for v in (1.0, 2.0, 3.0, 4.0, 5.0)]
    s = summarize_runs(runs)["log_loss"]
    t_975_4 = 2.7764451051977987  # Student t quantile, 4 degrees of freedom
    half = t_975_4 * math.sqrt(2.5) / math.sqrt(5)
    assert s["mean"] == pytest.approx(3.0)
    assert s["std"] == pytest.approx(math.sqrt(2.5))
    assert s["n"] == 5
    assert s["ci"] == s["ci_raw"] == pytest.approx([3.0 - half, 3.0 + half])
    assert s["ci_truncated"] is False
    assert s["single_run"] is False
    assert "n" not in summarize_runs(runs)


def test_interval_of_a_bounded_metric_stays_in_its_range() -> None:
    two = summarize_runs([{"f1_macro": 0.5, "log_loss": 0.1, "mine": 0.5}, {"f1_macro": 0.7, "log_loss": 0.3,
                                                                            "mine": 0.7}])
    t_975_1 = 12.706204736174698  # Student t quantile, 1 degree of freedom
    raw = [0.6 - t_975_1 * 0.1, 0.6 + t_975_1 * 0.1]
    assert two["f1_macro"]["ci_raw"] == pytest.approx(raw)
    assert two["f1_macro"]["ci"] == [0.0, 1.0]
    assert two["f1_macro"]["ci_truncated"] is True
    assert two["log_loss"]["ci"] == pytest.approx([0.0, 0.2 + t_975_1 * 0.1])  # no upper bound
    assert two["mine"]["ci"] == pytest.approx(raw) and two["mine"]["ci_truncated"] is False  # not emo's metric
    runs = [classification_metrics(*predictions(seed)[:2], LABELS) for seed in range(2)]
    for metrics in [summarize_runs(runs)] + list(summarize_runs(runs)["per_class"].values()):
        for name, summary in metrics.items():
            if isinstance(summary, dict) and "ci" in summary and name != "support":
                assert 0.0 <= summary["ci"][0] <= summary["mean"] <= summary["ci"][1] <= 1.0, name


def test_single_run_and_missing_values() -> None:
    s = summarize_runs([{"accuracy": 0.8, "roc_auc_macro": None}])
    assert s["accuracy"] == {
        "mean": 0.8,
        "std": 0.0,
        "n": 1,
        "ci": [0.8, 0.8],
        "ci_raw": [0.8, 0.8],
        "ci_truncated": False,
        "confidence": 0.95,
        "single_run": True,
    }
    assert "roc_auc_macro" not in s
    assert s["n_runs"] == 1
    mixed = summarize_runs([{"roc_auc_macro": 0.7}, {"roc_auc_macro": None}, {"roc_auc_macro": 0.9}])
    assert mixed["roc_auc_macro"]["n"] == 2


def test_per_class_summary() -> None:
    runs = [classification_metrics(*predictions(seed)[:2], LABELS) for seed in range(3)]
    s = summarize_runs(runs)
    f1s = [run["per_class"]["sad"]["f1"] for run in runs]
    assert s["per_class"]["sad"]["f1"]["mean"] == pytest.approx(np.mean(f1s))
    assert s["per_class"]["sad"]["f1"]["std"] == pytest.approx(np.std(f1s, ddof=1))
    assert s["accuracy"]["n"] == 3
    assert "confusion_matrix" not in s and "labels" not in s
