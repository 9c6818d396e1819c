"""The extraction configuration: every option that changes a feature value, hashed into the store.

Options that only change how a run is executed (workers, scheduler, batch size, device) are not part of it,
so a store extracted on a laptop and one extracted on a GPU cluster with the same options have the same hash.
Model files are part of it by content: :func:`emo.pipeline.extractors.pin_config` fills in the sha256 of the
visual weights file and of the text model's weights before a run, so replacing a file changes the hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emo.errors import UsageError

DENOISE_METHODS = ("none", "spectral-subtraction")
NORMALIZE_METHODS = ("none", "peak", "rms")
#: Every feature token (DESIGN.md §5), the default of ``features``: audio, faces, face embeddings, the
#: summary-image embedding, text. ``emo.pipeline.extractors.EXTRACTORS`` registers one extractor for each.
FEATURE_TOKENS = ("egemaps", "face", "faces", "mel", "mfcc", "summary", "text")
#: Visual weights that are not a file path.
NAMED_WEIGHTS = ("imagenet", "random")


#: Leading and trailing audio quieter than this many dB below the clip's loudest frame is left out of the audio
#: features (``--trim-silence``): on RAVDESS about half of every clip is silence before and after the sentence.
TRIM_SILENCE_DB = 30.0
#: Field absent from configs written before trimming existed (those stores were not trimmed: read as None).
TRIM_FIELD = "trim_silence_db"

#: Fields of the opt-in ``ssl`` token: part of a config (and its hash) only when ``ssl`` is extracted.
SSL_FIELDS = ("audio_model", "audio_layer", "audio_weights_sha256")


@dataclass(frozen=True)
class ExtractionConfig:
    """What to compute and how. Defaults follow DESIGN.md §4 (25 ms / 10 ms frames, 40 MFCC, 128 mels,
    5 fps, MTCNN with facenet-pytorch's thresholds, 224x224 aligned faces, ResNet-18 ImageNet, MiniLM text),
    plus the trimming of leading and trailing silence below 30 dB under the clip's peak before audio features."""

    features: tuple[str, ...] = FEATURE_TOKENS
    sample_rate: int = 16000
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 512
    n_mfcc: int = 40
    mfcc_deltas: int = 1  # 1: coefficients + deltas; 2: + delta-deltas
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None  # None = sample_rate / 2
    align_steps: int = 32
    denoise: str = "none"  # seed 001's spectral subtraction before feature extraction
    normalize: str = "none"  # peak: to -1 dBFS; rms: to -20 dBFS (seed 001's amplitude normalisation)
    trim_silence_db: float | None = TRIM_SILENCE_DB  # None: keep the leading and trailing silence
    egemaps_lld: bool = False  # also store eGeMAPS low-level descriptors as a sequence (audio/egemaps_lld)
    # video: frame sampling, MTCNN, alignment (benchmarks/faces.py measured these defaults)
    fps: float = 5.0
    face_min_size: int = 20  # pixels, in the frame as downscaled for detection
    face_thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)  # P-, R-, O-Net score thresholds
    face_detect_size: int = 480  # longer frame side for detection; 0 = full resolution
    face_size: int = 224  # aligned crop, pixels
    # visual backbone
    visual_model: str = "resnet18"
    visual_weights: str = "imagenet"  # "imagenet", "random" (explicit only) or a state-dict file
    visual_weights_sha256: str | None = None  # of the weights file (pinned before a run); None for "random"
    # text encoder
    text_model: str = "all-MiniLM-L6-v2"  # a directory, a name in the local Hugging Face cache, or the bundled one
    text_max_length: int = 128  # tokens, [CLS] and [SEP] included
    text_weights_sha256: str | None = None  # of the text model's weights (pinned before a run)
    # speech encoder of the opt-in ``ssl`` token (recorded only when it is extracted: older hashes stay valid)
    audio_model: str = "microsoft/wavlm-base-plus"  # a directory or a name in the local Hugging Face cache
    audio_layer: str = "mean"  # "mean" of the transformer layers' hidden states, or one index (0 = input)
    audio_weights_sha256: str | None = None

    def __post_init__(self) -> None:
        # order-free: --features mfcc,mel and mel,mfcc are the same configuration (and hash)
        object.__setattr__(self, "features", tuple(sorted(dict.fromkeys(self.features))))
        object.__setattr__(self, "face_thresholds", tuple(float(t) for t in self.face_thresholds))
        weights = str(self.visual_weights)
        if weights not in NAMED_WEIGHTS:
            # a file: recorded absolute, so that workers started elsewhere and a later `emo predict` find it
            weights = str(Path(weights).expanduser().absolute())
        object.__setattr__(self, "visual_weights", weights)
        if self.denoise not in DENOISE_METHODS:
            raise UsageError(f"unknown --denoise {self.denoise!r}; choose one of: {', '.join(DENOISE_METHODS)}")
        if self.normalize not in NORMALIZE_METHODS:
            raise UsageError(f"unknown --normalize {self.normalize!r}; choose one of: {', '.join(NORMALIZE_METHODS)}")
        if self.trim_silence_db is not None:
            if not self.trim_silence_db > 0:
                raise UsageError(f"--trim-silence must be a positive number of dB or 'off', got {self.trim_silence_db}")
            object.__setattr__(self, "trim_silence_db", float(self.trim_silence_db))
        if self.mfcc_deltas not in (0, 1, 2):
            raise UsageError("mfcc_deltas must be 0, 1 or 2")
        if self.align_steps < 1:
            raise UsageError("--align-steps must be at least 1")
        if self.sample_rate < 8000:
            raise UsageError("--sample-rate must be at least 8000 Hz")
        if not self.features:
            raise UsageError("no features requested")
        if not self.fps > 0:
            raise UsageError(f"--fps must be positive, got {self.fps}")
        if len(self.face_thresholds) != 3 or not all(0.0 < t < 1.0 for t in self.face_thresholds):
            raise UsageError(f"--face-thresholds must be three numbers in (0, 1), got {list(self.face_thresholds)}")
        if self.face_min_size < 1:
            raise UsageError(f"--face-min-size must be at least 1 pixel, got {self.face_min_size}")
        if self.face_detect_size < 0:
            raise UsageError("--face-detect-size must be 0 (full resolution) or a number of pixels")
        if self.face_detect_size and self.face_detect_size < self.face_min_size:
            raise UsageError(
                f"--face-detect-size {self.face_detect_size} is smaller than --face-min-size {self.face_min_size}: "
                "no face could be found (0 detects at full resolution)"
            )
        if self.face_size < 32:
            raise UsageError(f"face_size must be at least 32 pixels, got {self.face_size}")
        if self.text_max_length < 3:
            raise UsageError(f"--text-max-length must be at least 3 tokens, got {self.text_max_length}")
        layer = str(self.audio_layer)
        if layer != "mean" and not (layer.isdigit()):
            raise UsageError(f"--audio-layer must be 'mean' or a layer index (0, 1, ...), got {layer!r}")
        object.__setattr__(self, "audio_layer", layer if layer == "mean" else str(int(layer)))  # "01" is "1"

    @property
    def win_length(self) -> int:
        return round(self.sample_rate * self.win_ms / 1000)

    @property
    def hop_length(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["features"] = list(self.features)
        d["face_thresholds"] = list(self.face_thresholds)
        if "ssl" not in self.features:
            for key in SSL_FIELDS:
                del d[key]
        if self.trim_silence_db is None:
            del d[TRIM_FIELD]  # the configs of stores written before trimming existed keep their hash
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExtractionConfig:
        """Rebuild a config recorded in a store (unknown keys are an error: they come from a newer emo)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise UsageError(f"extraction config has keys this emo does not know: {', '.join(sorted(unknown))}")
        values = dict(data)
        values.setdefault(TRIM_FIELD, None)
        if "features" in values:
            values["features"] = tuple(values["features"])
        if "face_thresholds" in values:
            values["face_thresholds"] = tuple(values["face_thresholds"])
        return cls(**values)

    def hash(self) -> str:
        """Stable identity of the configuration (sha256 of its canonical JSON, 16 hex digits)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]
