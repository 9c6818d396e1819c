"""Log-mel spectrogram frames (librosa), the audio front-end of the spectral features.

librosa (and scipy, which it loads) is imported where features are computed, on the workers: the extract
driver only describes the arrays.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass

import numpy as np

from emo.features_store.schema import FeatureSpec, SequenceSpec
from emo.features_store.sequences import derive, grid_description
from emo.pipeline.config import ExtractionConfig, Section, option, register_section
from emo.pipeline.extractors.base import Clip, Extractor, register

#: Floor of the power spectrum before taking dB (-100 dB).
AMIN = 1e-10


@register_section
@dataclass(frozen=True)
class MelOptions(Section):
    """The mel filterbank of the log-mel front-end that ``mel`` and ``mfcc`` share."""

    name = "mel"
    n_mels: int = option(128, "Log-mel bands.")
    fmin: float = option(0.0, cli=False)
    fmax: float | None = option(None, cli=False)  # None = sample_rate / 2


def mel_params(config: ExtractionConfig) -> dict[str, object]:
    """The exact librosa.feature.melspectrogram arguments for a configuration."""
    mel = config.section(MelOptions)
    return {
        "sr": config.sample_rate,
        "n_fft": config.n_fft,
        "win_length": config.win_length,
        "hop_length": config.hop_length,
        "window": "hann",
        "center": True,
        "power": 2.0,
        "n_mels": mel.n_mels,
        "fmin": mel.fmin,
        "fmax": mel.fmax if mel.fmax is not None else config.sample_rate / 2,
    }


def log_mel(samples: np.ndarray, config: ExtractionConfig) -> np.ndarray:
    """[T, n_mels] log-mel power in dB re 1.0 (absolute, so loudness differences between clips survive)."""
    import librosa

    mel = librosa.feature.melspectrogram(y=samples, **mel_params(config))
    return librosa.power_to_db(mel, ref=1.0, amin=AMIN, top_db=None).T.astype(np.float32)


def clip_log_mel(clip: Clip, config: ExtractionConfig) -> np.ndarray:
    return clip.cached("log_mel", lambda: log_mel(clip.audio, config))


def cleanup_params(config: ExtractionConfig) -> dict[str, object]:
    """The audio clean-up before any audio feature (``emo.pipeline.audio.preprocess``), for provenance."""
    from emo.pipeline.audio import TRIM_FRAME_LENGTH, TRIM_HOP_LENGTH

    out: dict[str, object] = {"denoise": config.denoise, "normalize": config.normalize}
    if config.trim_silence_db is not None:
        out["trim_silence"] = {
            "method": "librosa.effects.trim (leading and trailing frames only)",
            "top_db": config.trim_silence_db,
            "ref": "the clip's loudest frame",
            "frame_length": TRIM_FRAME_LENGTH,
            "hop_length": TRIM_HOP_LENGTH,
            "times": "frame times are clip times: clips/trim_start_s is added to every audio frame's time",
        }
    return out


def audio_provenance(config: ExtractionConfig, extractor: str, **params: object) -> dict[str, object]:
    """Attributes shared by the audio feature arrays (librosa frames are centred: frame k at k * hop)."""
    return {
        "extractor": extractor,
        "extractor_version": f"librosa {importlib.metadata.version('librosa')}",
        "params": {**params, **cleanup_params(config)},
        "sample_rate_hz": config.sample_rate,
        "frame_rate_hz": config.sample_rate / config.hop_length,
        "frame_offset_s": 0.0,
        "time_grid": grid_description(config.align_steps),
    }


def frame_grid(clip: Clip, n_frames: int, config: ExtractionConfig) -> dict[str, object]:
    """``derive``'s time-grid arguments for ``n_frames`` centred librosa frames of the clip's audio."""
    return clip.audio_grid(np.arange(n_frames) * config.hop_length / config.sample_rate)


@register
class MelExtractor(Extractor):
    """128-band log-mel frames: ``audio/mel/{values,offsets,aligned,mask,pooled}``."""

    token = "mel"
    modality = "audio"
    path = "audio/mel"

    def specs(self) -> list[FeatureSpec]:
        attrs = audio_provenance(
            self.config,
            "librosa.feature.melspectrogram + power_to_db",
            **mel_params(self.config),
            ref=1.0,
            amin=AMIN,
        )
        attrs["units"] = "dB re 1.0 (power)"
        n_mels = self.config.section(MelOptions).n_mels
        return [SequenceSpec(self.path, {"values": (n_mels,)}, steps=self.config.align_steps, attrs=attrs)]

    def setup(self) -> None:
        log_mel(np.random.default_rng(0).standard_normal(self.config.sample_rate).astype(np.float32), self.config)

    def extract(self, clip: Clip) -> dict[str, np.ndarray]:
        frames = clip_log_mel(clip, self.config)
        return derive(self.path, frames, self.config.align_steps, **frame_grid(clip, len(frames), self.config))
