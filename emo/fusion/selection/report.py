"""``emo select``: fit one selector on a store's training split and write its mask, scores and (zebra)
convergence curve as JSON and a figure."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emo.errors import UsageError
from emo.features_store import FeatureStore
from emo.fusion.normalize import Standardizer
from emo.fusion.run_dir import prepare_run_dir
from emo.fusion.selection import SELECTORS, make_selector
from emo.fusion.splits import make_splits, resolve_protocol
from emo.fusion.train import prepare_data
from emo.fusion.train_config import TrainConfig


def feature_names(fs: FeatureStore, path: str, width: int) -> list[str]:
    """Readable names of the columns a feature path contributes (``mean_mfcc_3``, ``F0semitone...``)."""
    paths = set(fs.array_paths())
    base = path.rsplit("/", 1)[0] if path.endswith(("/pooled", "/aligned")) else path
    names: list[str] | None = None
    if base in paths:
        names = fs.array(base).attrs.get("feature_names")
    elif f"{base}/values" in paths:
        inner = fs.array(f"{base}/values").attrs.get("feature_names")
        if inner and 2 * len(inner) == width:
            names = [f"mean_{n}" for n in inner] + [f"std_{n}" for n in inner]
    if not names or len(names) != width:
        names = [f"{i}" for i in range(width)]
    return [f"{base}:{n}" for n in names]


def select_features(
    store: str | FeatureStore,
    method: str,
    out_dir: str | Path,
    features: Sequence[str] | None = None,
    modalities: Sequence[str] | None = None,
    split: str = "auto",
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    storage_options: dict[str, Any] | None = None,
    standardize: str = "auto",
) -> dict[str, Any]:
    """Fit ``method`` on the training clips of the first ``split`` (pooled features, standardised on those
    clips, after per-speaker standardisation when ``standardize`` resolves to it, as ``emo fuse`` does) and write
    ``selection.json`` and ``selection.png`` into ``out_dir``."""
    SELECTORS.lookup(method)
    out = prepare_run_dir(out_dir)
    fs = store if isinstance(store, FeatureStore) else FeatureStore.open(store, storage_options)
    config = TrainConfig(method="early", modalities=tuple(modalities) if modalities else None,
                         features=tuple(features) if features else None, split=split, seed=seed,
                         standardize=standardize)
    data = prepare_data(fs, config)
    protocol = resolve_protocol(data, split)
    split_ = next(make_splits(data, protocol, 1, seed))
    train = split_.train
    groups = data.speakers[train] if split_.grouped_by == "speaker" and method == "zebra" else None
    blocks, names = [], []
    for modality in data.inputs.values():
        z = Standardizer.fit(modality, train).transform(modality.x, modality.mask)
        blocks.append(z[train])
        for path, width in zip(modality.features, modality.dims, strict=True):
            names += feature_names(fs, path, width)
    x, y = np.concatenate(blocks, axis=1), data.y[train]
    selector = make_selector(method, seed)
    try:
        selector.set_params(**(params or {}))
    except ValueError as exc:
        raise UsageError(f"--param: {exc}") from None
    if groups is not None:
        selector.fit(x, y, groups=groups)
    else:
        selector.fit(x, y)
    support = np.asarray(selector.get_support(), dtype=bool)
    scores = np.nan_to_num(np.asarray(getattr(selector, "scores_", support), dtype=float))
    result: dict[str, Any] = {
        "method": method,
        "params": {k: v for k, v in selector.get_params().items() if isinstance(v, str | int | float | bool | None)},
        "store": {"location": fs.location.display, "config_hash": fs.config_hash},
        "features": {m: i.features for m, i in data.inputs.items()},
        "standardize": data.standardize,
        "split": {"protocol": protocol, "seed": seed, "n_train": int(train.size),
                  "inner_cv_grouped_by": "speaker" if groups is not None else "",
                  "clip_ids": sorted(str(c) for c in data.clip_ids[train])},
        "n_features": int(support.size),
        "n_selected": int(support.sum()),
        "support": support.tolist(),
        "selected": [n for n, keep in zip(names, support, strict=True) if keep],
        "scores": {n: float(s) for n, s in zip(names, scores, strict=True)},
    }
    if method == "zebra":
        result |= {"best_fitness": float(selector.best_fitness_), "best_cv_accuracy": float(selector.best_accuracy_),
                   "convergence": [float(v) for v in selector.convergence_],
                   "n_evaluations": int(selector.n_evaluations_)}
    (out / "selection.json").write_text(json.dumps(result, indent=2))
    _plot(result, names, scores, support, out / "selection.png")
    return result


def _plot(result: dict[str, Any], names: list[str], scores: np.ndarray, support: np.ndarray, path: Path) -> None:
    from emo.fusion.reports import plt

    panels = 2 if "convergence" in result else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), squeeze=False)
    ax = axes[0][0]
    order = np.argsort(-scores)[:40]
    ax.barh(range(order.size), scores[order], color=["tab:blue" if support[i] else "tab:gray" for i in order])
    ax.set_yticks(range(order.size), [names[i][-32:] for i in order], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("score (blue: selected)")
    ax.set_title(f"{result['method']}: {result['n_selected']} of {result['n_features']} features")
    if panels == 2:
        ax = axes[0][1]
        ax.plot(range(1, len(result["convergence"]) + 1), result["convergence"], marker=".")
        ax.set_xlabel("iteration")
        ax.set_ylabel("best fitness  a(1 - CV acc) + (1 - a)|S|/|F|")
        ax.set_title("zebra convergence")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
