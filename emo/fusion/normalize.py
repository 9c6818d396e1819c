"""Feature standardisation fitted on the training clips only (and saved with the model)."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import numpy as np

from emo.fusion.data import FusionData, ModalityInput


@dataclass
class Standardizer:
    """Per-dimension mean and standard deviation of one modality over its present training rows / steps.

    Values of absent rows or steps are left at zero after transform (heads mask them anyway); a NaN inside a
    present row (e.g. an openSMILE descriptor undefined for that clip) becomes the training mean, i.e. 0.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, modality: ModalityInput, rows: np.ndarray) -> Standardizer:
        values = modality.x[rows][modality.mask[rows]]  # [n_valid, D] for vectors ([N] mask) and sequences ([N, T])
        if values.size == 0:
            return cls(np.zeros(modality.dim, np.float32), np.ones(modality.dim, np.float32))
        mean = np.nanmean(values, axis=0)
        std = np.nanstd(values, axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.where(np.isfinite(std) & (std > 1e-8), std, 1.0)
        return cls(mean.astype(np.float32), std.astype(np.float32))

    def transform(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / self.std
        z = np.where(np.isfinite(z) & mask[..., None], z, 0.0)
        return z.astype(np.float32)


#: ``--standardize`` choices: ``speaker`` z-scores every clip's features with the statistics of its speaker's
#: clips (no labels), ``global`` leaves that to the training split's :class:`Standardizer`; ``auto`` is
#: ``speaker`` when the split is speaker-independent, the protocol this step is standard for.
STANDARDIZE = ("auto", "speaker", "global")
#: fewer clips of one speaker than this make per-speaker statistics unreliable (one clip per RAVDESS class)
MIN_SPEAKER_CLIPS = 8


def resolve_standardize(choice: str, protocol: str) -> str:
    """What ``--standardize choice`` means under split ``protocol`` (``speaker`` or ``global``)."""
    if choice not in STANDARDIZE:
        from emo.errors import UsageError

        raise UsageError(f"unknown --standardize {choice!r}; choose one of {', '.join(STANDARDIZE)}")
    if choice == "auto":
        return "speaker" if protocol == "speaker" else "global"
    return choice


def standardize_per_speaker(modality: ModalityInput, speakers: np.ndarray) -> ModalityInput:
    """``modality`` with each speaker's present rows / steps z-scored by that speaker's own mean and standard
    deviation (clips without a speaker id form one group).

    Per-speaker normalisation is the usual first step of speaker-independent emotion recognition: it removes
    what a voice (or face) has by itself and keeps how it changes. It reads features only, never labels, so a
    held-out speaker is normalised by statistics of their own clips, as a deployed system would after hearing
    a speaker for a while. Columns with no finite value (fitted features, filled later) are left as they are.
    """
    x = modality.x.copy()
    for speaker in np.unique(speakers):
        rows = speakers == speaker
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: fitted features, kept as NaN
            std = Standardizer.fit(modality, rows)  # mean 0 / std 1 where a column has no finite value
        block = x[rows]
        z = (block - std.mean) / std.std
        x[rows] = np.where(modality.mask[rows][..., None], z, block).astype(np.float32)
    return ModalityInput(modality.name, modality.kind, modality.features, modality.dims, x, modality.mask)


def few_clip_speakers(speakers: np.ndarray) -> dict[str, int]:
    """Speakers (``""``: clips without a speaker id) with fewer than ``MIN_SPEAKER_CLIPS`` clips, and their counts."""
    names, counts = np.unique(speakers, return_counts=True)
    return {str(s): int(n) for s, n in zip(names, counts, strict=True) if n < MIN_SPEAKER_CLIPS}


def speaker_standardized(data: FusionData) -> FusionData:
    """``data`` with every input standardised per speaker (:func:`standardize_per_speaker`)."""
    inputs = {name: standardize_per_speaker(m, data.speakers) for name, m in data.inputs.items()}
    return dataclasses.replace(data, inputs=inputs, standardize="speaker")
