"""MFCC frames with deltas (librosa), computed from the shared log-mel front-end."""

from __future__ import annotations

import numpy as np

from emo.features_store.schema import FeatureSpec, SequenceSpec
from emo.features_store.sequences import derive
from emo.pipeline.config import ExtractionConfig
from emo.pipeline.extractors.base import Clip, Extractor, register
from emo.pipeline.extractors.mel import audio_provenance, clip_log_mel, frame_grid, log_mel, mel_params

DELTA_WIDTH = 9


def mfcc_from_log_mel(log_mel_frames: np.ndarray, config: ExtractionConfig) -> np.ndarray:
    """[T, n_mfcc * (1 + deltas)]: DCT-II (ortho) of the dB mel frames, then librosa deltas along time."""
    import librosa

    coeffs = librosa.feature.mfcc(S=log_mel_frames.T, n_mfcc=config.n_mfcc, dct_type=2, norm="ortho")
    parts = [coeffs]
    n = coeffs.shape[1]
    width = min(DELTA_WIDTH, n if n % 2 else n - 1)
    for order in range(1, config.mfcc_deltas + 1):
        parts.append(librosa.feature.delta(coeffs, width=width, order=order) if width >= 3 else np.zeros_like(coeffs))
    return np.concatenate(parts, axis=0).T.astype(np.float32)


def feature_names(config: ExtractionConfig) -> list[str]:
    prefixes = ["mfcc", "delta", "delta2"][: config.mfcc_deltas + 1]
    return [f"{p}_{i}" for p in prefixes for i in range(config.n_mfcc)]


@register
class MfccExtractor(Extractor):
    """40 MFCC + deltas per 10 ms frame: ``audio/mfcc/{values,offsets,aligned,mask,pooled}``."""

    token = "mfcc"
    modality = "audio"
    path = "audio/mfcc"

    def specs(self) -> list[FeatureSpec]:
        cfg = self.config
        attrs = audio_provenance(
            cfg,
            "librosa.feature.mfcc + librosa.feature.delta",
            **mel_params(cfg),
            n_mfcc=cfg.n_mfcc,
            dct_type=2,
            norm="ortho",
            deltas=cfg.mfcc_deltas,
            delta_width=DELTA_WIDTH,
        )
        attrs["feature_names"] = feature_names(cfg)
        dim = cfg.n_mfcc * (1 + cfg.mfcc_deltas)
        return [SequenceSpec(self.path, {"values": (dim,)}, steps=cfg.align_steps, attrs=attrs)]

    def setup(self) -> None:
        noise = np.random.default_rng(0).standard_normal(self.config.sample_rate).astype(np.float32)
        mfcc_from_log_mel(log_mel(noise, self.config), self.config)

    def extract(self, clip: Clip) -> dict[str, np.ndarray]:
        frames = mfcc_from_log_mel(clip_log_mel(clip, self.config), self.config)
        return derive(self.path, frames, self.config.align_steps, **frame_grid(clip, len(frames), self.config))
