"""What defines a training run (``emo fuse`` / ``emo compare`` options as one dataclass, recorded with every run),
and the parsing of its ``--selector`` and ``--lr-schedule`` specs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emo.errors import UsageError
from emo.features_store.schema import MODALITIES
from emo.fusion.heads import HEADS
from emo.fusion.labels import LabelChoice
from emo.fusion.normalize import resolve_standardize
from emo.fusion.preprocessing import JOINT
from emo.fusion.selection import SELECTORS

#: numerics of the training steps (``--precision``)
PRECISIONS = ("fp32", "bf16")


@dataclass
class TrainConfig:
    """Everything that defines a training run (recorded in metrics.json and config.json)."""

    method: str = "attention"
    modalities: tuple[str, ...] | None = None
    features: tuple[str, ...] | None = None
    selector: dict[str, str] = field(default_factory=dict)  # modality (or JOINT) -> none | l1 | tree | zebra
    split: str = "auto"
    folds: int = 1
    seeds: int = 1
    seed: int = 0
    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 15
    class_weights: bool = False
    device: str = "cpu"
    #: numerics of the training steps: "fp32", or "bf16" (forward and backward under bfloat16 autocast; weights,
    #: optimiser, loss and every evaluation stay fp32)
    precision: str = "fp32"
    hparams: dict[str, Any] = field(default_factory=dict)
    permutation_test: int = 0  # label permutations of the reference split (leakage check); 0 = none
    autoencoder: dict[str, Any] = field(default_factory=dict)  # AutoencoderConfig overrides for audio/ae
    mfcc_cnn: dict[str, Any] = field(default_factory=dict)  # MfccCnnConfig overrides for audio/mfcc-cnn
    label_from: str = "label"  # or "metadata:KEY" (e.g. MELD's metadata:Sentiment)
    map_labels: dict[str, str] = field(default_factory=dict)
    classes: tuple[str, ...] | None = None  # keep only these classes, in this order
    lr_schedule: str = "constant"  # or "inverse-time:DECAY" (lr / (1 + DECAY * step), Keras' decay) or "cosine"
    #: validation share of the clips carved from the training part; None = the protocol's default (0.1, and
    #: none for ``stratified``: the papers' 80/20 trains on 80% for the fixed epochs, without early stopping)
    val_fraction: float | None = None
    metrics: str = "macro"  # the average the tables lead with: "macro" or "weighted" (as the paper reports)
    #: "auto" (per speaker when the split is speaker-independent), "speaker" or "global" (emo.fusion.normalize)
    standardize: str = "auto"
    preset: str = ""  # the --preset these values came from (emo.fusion.presets)
    #: what this run's store lacks of the preset's extraction (named deviations, filled by apply_preset)
    preset_notes: tuple[str, ...] = ()

    def fitted_params(self, feature: str) -> dict[str, Any]:
        """The parameters of a fitted feature (``--autoencoder``, ``--mfcc-cnn``)."""
        return dict({"audio/ae": self.autoencoder, "audio/mfcc-cnn": self.mfcc_cnn}.get(feature, {}))

    @property
    def labels(self) -> LabelChoice:
        return LabelChoice(self.label_from, self.map_labels, self.classes)

    def __post_init__(self) -> None:
        if self.method not in HEADS:
            raise UsageError(f"unknown --method {self.method!r}; choose one of {', '.join(HEADS)}")
        for modality, name in self.selector.items():
            if modality not in (*MODALITIES, JOINT):
                raise UsageError(f"selector for unknown modality {modality!r}")
            if name != "none" and name not in SELECTORS:
                raise UsageError(
                    f"unknown selector {name!r} for {modality}; choose one of none, {', '.join(SELECTORS)}"
                )
        lr_schedule(self.lr_schedule)  # validates
        resolve_standardize(self.standardize, "")  # validates
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.metrics not in ("macro", "weighted"):
            raise UsageError(f"--metrics must be macro or weighted, got {self.metrics!r}")
        if self.val_fraction is not None and not 0.0 <= self.val_fraction < 0.5:
            raise UsageError(f"--val-fraction must be in [0, 0.5), got {self.val_fraction}")
        for name, value, low in (
            ("--folds", self.folds, 1),
            ("--seeds", self.seeds, 1),
            ("--epochs", self.epochs, 1),
            ("--batch-size", self.batch_size, 1),
            ("--permutation-test", self.permutation_test, 0),
        ):
            if value < low:
                raise UsageError(f"{name} must be at least {low}")


def lr_schedule(spec: str) -> Callable[[int, int], float]:
    """``factor(step, total_steps)`` multiplying the initial learning rate after ``step`` optimiser steps.

    ``constant``; ``inverse-time:D``: 1 / (1 + D * step), the time-based decay of Keras' ``decay=D`` that seed
    004 means by "an initial learning rate of 0.0005, which decayed at a rate of 0.0001"; ``cosine``: half a
    cosine from 1 to 0 over the run's steps.
    """
    kind, _, arg = spec.partition(":")
    if kind == "constant" and not arg:
        return lambda step, total: 1.0
    if kind == "inverse-time":
        try:
            decay = float(arg)
        except ValueError:
            decay = -1.0
        if decay < 0:
            raise UsageError(f"--lr-schedule inverse-time:DECAY needs a non-negative number, got {spec!r}")
        return lambda step, total: 1.0 / (1.0 + decay * step)
    if kind == "cosine" and not arg:
        return lambda step, total: 0.5 * (1.0 + float(np.cos(np.pi * min(step, total) / max(total, 1))))
    raise UsageError(f"unknown --lr-schedule {spec!r}; choose constant, inverse-time:DECAY or cosine")


def parse_selector(spec: str | None) -> dict[str, str]:
    """``zebra`` (one selector over the concatenated vector of every modality, as seed 001 selects on the fused
    audio-visual vector) or ``text=l1,audio=tree,video=tree`` (one per modality, seed 002)."""
    if not spec or spec == "none":
        return {}
    if "=" not in spec:
        return {JOINT: spec}
    out = {}
    for part in spec.split(","):
        modality, _, name = part.partition("=")
        if modality.strip() not in MODALITIES:
            raise UsageError(f"--selector: unknown modality {modality.strip()!r} in {spec!r}")
        out[modality.strip()] = name.strip()
    return out
