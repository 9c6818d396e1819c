"""The extraction configuration: every option that changes a feature value, hashed into the store.

Options that only change how a run is executed (workers, scheduler, batch size) are not part of it, so a
store extracted on a laptop and one extracted on a cluster with the same options have the same hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from emo.errors import UsageError

DENOISE_METHODS = ("none", "spectral-subtraction")
NORMALIZE_METHODS = ("none", "peak", "rms")


@dataclass(frozen=True)
class ExtractionConfig:
    """What to compute and how. Defaults follow DESIGN.md §4 (25 ms / 10 ms frames, 40 MFCC, 128 mels)."""

    features: tuple[str, ...] = ("mfcc", "mel", "egemaps")
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
    egemaps_lld: bool = False  # also store eGeMAPS low-level descriptors as a sequence (audio/egemaps_lld)

    def __post_init__(self) -> None:
        # order-free: --features mfcc,mel and mel,mfcc are the same configuration (and hash)
        object.__setattr__(self, "features", tuple(sorted(dict.fromkeys(self.features))))
        if self.denoise not in DENOISE_METHODS:
            raise UsageError(f"unknown --denoise {self.denoise!r}; choose one of: {', '.join(DENOISE_METHODS)}")
        if self.normalize not in NORMALIZE_METHODS:
            raise UsageError(f"unknown --normalize {self.normalize!r}; choose one of: {', '.join(NORMALIZE_METHODS)}")
        if self.mfcc_deltas not in (0, 1, 2):
            raise UsageError("mfcc_deltas must be 0, 1 or 2")
        if self.align_steps < 1:
            raise UsageError("--align-steps must be at least 1")
        if self.sample_rate < 8000:
            raise UsageError("--sample-rate must be at least 8000 Hz")
        if not self.features:
            raise UsageError("no features requested")

    @property
    def win_length(self) -> int:
        return round(self.sample_rate * self.win_ms / 1000)

    @property
    def hop_length(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["features"] = list(self.features)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExtractionConfig:
        """Rebuild a config recorded in a store (unknown keys are an error: they come from a newer emo)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise UsageError(f"extraction config has keys this emo does not know: {', '.join(sorted(unknown))}")
        values = dict(data)
        if "features" in values:
            values["features"] = tuple(values["features"])
        return cls(**values)

    def hash(self) -> str:
        """Stable identity of the configuration (sha256 of its canonical JSON, 16 hex digits)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]
