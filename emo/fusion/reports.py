"""Figures of a run and of a comparison: confusion matrix, learning curves, modality weights, bar chart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str], path: Path, title: str) -> None:
    """Row-normalised confusion matrix (recall on the diagonal) with the counts in each cell."""
    counts = np.asarray(matrix, dtype=float)
    norm = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 1.2 + 0.6 * len(class_names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(norm.shape[0]):
        for j in range(norm.shape[1]):
            ax.text(
                j,
                i,
                f"{norm[i, j]:.2f}\n({int(counts[i, j])})",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of the true class")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(histories: Mapping[str, Mapping[str, Sequence[float]]], path: Path, title: str) -> None:
    """Training and validation loss, and validation UA, per epoch for every run."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, h in histories.items():
        epochs = np.arange(1, len(h["train_loss"]) + 1)
        line = left.plot(epochs, h["train_loss"], label=f"{name} train")[0]
        if h.get("val_loss"):
            left.plot(epochs[: len(h["val_loss"])], h["val_loss"], "--", color=line.get_color(), label=f"{name} val")
            right.plot(epochs[: len(h["val_ua"])], h["val_ua"], color=line.get_color(), label=name)
    left.set_xlabel("epoch")
    left.set_ylabel("cross-entropy")
    right.set_xlabel("epoch")
    right.set_ylabel("validation UA (mean recall)")
    right.set_ylim(0, 1)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        if len(histories) <= 6:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_modality_weights(
    means: Mapping[str, Sequence[float]], modalities: Sequence[str], path: Path, title: str
) -> None:
    """Mean attention weight of each modality, per true class."""
    classes = list(means)
    x = np.arange(len(classes))
    width = 0.8 / max(len(modalities), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 2.5 + 0.9 * len(classes)), 4))
    for k, modality in enumerate(modalities):
        ax.bar(x + k * width - 0.4 + width / 2, [means[c][k] for c in classes], width, label=modality)
    ax.set_xticks(x, classes, rotation=30, ha="right")
    ax.set_ylabel("mean modality weight")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)  # beside the bars, never over them
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_comparison(
    rows: Sequence[Mapping[str, object]],
    path: Path,
    title: str,
    metrics: Sequence[tuple[str, str]] = (
        ("accuracy", "accuracy"),
        ("precision_macro", "precision"),
        ("recall_macro", "recall"),
        ("f1_macro", "F1"),
    ),
) -> None:
    """Grouped bars of accuracy / precision / recall / F1 per method, with 95% intervals (seed 001 Fig. 7)."""
    names = [str(r["name"]) for r in rows]
    x = np.arange(len(names))
    width = 0.8 / len(metrics)
    fig, ax = plt.subplots(figsize=(max(6.0, 2 + 1.3 * len(names)), 4.5))
    for k, (key, label) in enumerate(metrics):
        means = np.array([r[key]["mean"] for r in rows], dtype=float)
        low = np.array([r[key]["ci"][0] for r in rows], dtype=float)
        high = np.array([r[key]["ci"][1] for r in rows], dtype=float)
        ax.bar(
            x + k * width - 0.4 + width / 2,
            means,
            width,
            label=label,
            yerr=np.vstack([means - low, high - means]),
            capsize=2,
        )
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("test score (mean, 95% interval)")
    # legend above the axes, never over the bars (which reach 1.0 on an easy dataset)
    ax.legend(ncols=len(metrics), fontsize=8, loc="lower left", bbox_to_anchor=(0, 1.01), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title if len(title) <= 70 else "..." + title[-67:], fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
