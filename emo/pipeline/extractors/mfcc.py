"""MFCC frames with deltas (librosa), computed from the shared log-mel front-end."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emo.errors import UsageError
from emo.features_store.schema import FeatureSpec, SequenceSpec
from emo.features_store.sequences import derive
from emo.pipeline.config import ExtractionConfig, Section, option, register_section
from emo.pipeline.extractors.base import Clip, Extractor, register
from emo.pipeline.extractors.mel import audio_provenance, clip_log_mel, frame_grid, log_mel, mel_params

DELTA_WIDTH = 9


@register_section
@dataclass(frozen=True)
class MfccOptions(Section):
    """How many cepstral coefficients, and how many orders of deltas after them."""

    name = "mfcc"
    n_mfcc: int = option(40, "MFCC coefficients.")
    mfcc_deltas: int = option(1, "Delta orders.", range=(0, 2))  # 1: coefficients + deltas; 2: + delta-deltas

    def __post_init__(self) -> None:
        if self.mfcc_deltas not in (0, 1, 2):
            raise UsageError("mfcc_deltas must be 0, 1 or 2")


def mfcc_from_log_mel(log_mel_frames: np.ndarray, config: ExtractionConfig) -> np.ndarray:
    """[T, n_mfcc * (1 + deltas)]: DCT-II (ortho) of the dB mel frames, then librosa deltas along time."""
    import librosa

    options = config.section(MfccOptions)
    coeffs = librosa.feature.mfcc(S=log_mel_frames.T, n_mfcc=options.n_mfcc, dct_type=2, norm="ortho")
    parts = [coeffs]
    n = coeffs.shape[1]
    width = min(DELTA_WIDTH, n if n % 2 else n - 1)
    for order in range(1, options.mfcc_deltas + 1):
        parts.append(librosa.feature.delta(coeffs, width=width, order=order) if width >= 3 else np.zeros_like(coeffs))
    return np.concatenate(parts, axis=0).T.astype(np.float32)


def feature_names(config: ExtractionConfig) -> list[str]:
    options = config.section(MfccOptions)
    prefixes = ["mfcc", "delta", "delta2"][: options.mfcc_deltas + 1]
    return [f"{p}_{i}" for p in prefixes for i in range(options.n_mfcc)]


@register
class MfccExtractor(Extractor):
    """40 MFCC + deltas per 10 ms frame: ``audio/mfcc/{values,offsets,aligned,mask,pooled}``."""

    token = "mfcc"
    modality = "audio"
    path = "audio/mfcc"

    def specs(self) -> list[FeatureSpec]:
        cfg = self.config
        options = cfg.section(MfccOptions)
        attrs = audio_provenance(
            cfg,
            "librosa.feature.mfcc + librosa.feature.delta",
            **mel_params(cfg),
            n_mfcc=options.n_mfcc,
            dct_type=2,
            norm="ortho",
            deltas=options.mfcc_deltas,
            delta_width=DELTA_WIDTH,
        )
        attrs["feature_names"] = feature_names(cfg)
        dim = options.n_mfcc * (1 + options.mfcc_deltas)
        return [SequenceSpec(self.path, {"values": (dim,)}, steps=cfg.align_steps, attrs=attrs)]

    def setup(self) -> None:
        noise = np.random.default_rng(0).standard_normal(self.config.sample_rate).astype(np.float32)
        mfcc_from_log_mel(log_mel(noise, self.config), self.config)

    def extract(self, clip: Clip) -> dict[str, np.ndarray]:
        frames = mfcc_from_log_mel(clip_log_mel(clip, self.config), self.config)
        return derive(self.path, frames, self.config.align_steps, **frame_grid(clip, len(frames), self.config))
