"""Audio clean-up before feature extraction (seed 001 §3.2.1): spectral-subtraction denoising and
amplitude normalisation."""

from __future__ import annotations

import numpy as np

PEAK_DBFS = -1.0
RMS_DBFS = -20.0


def spectral_subtraction(
    samples: np.ndarray,
    n_fft: int = 512,
    hop_length: int = 128,
    noise_quantile: float = 0.1,
    over_subtraction: float = 2.0,
    floor: float = 0.02,
) -> np.ndarray:
    """Boll's (1979) magnitude spectral subtraction.

    The noise spectrum is the mean magnitude of the quietest ``noise_quantile`` of frames (no silent lead-in
    is assumed); ``over_subtraction`` times it is removed from every frame, and what remains is floored at
    ``floor`` times the original magnitude to limit musical noise. The phase is kept.
    """
    if samples.size < n_fft:
        return samples.copy()
    import librosa  # imported where it computes: the extract driver never does

    stft = librosa.stft(samples, n_fft=n_fft, hop_length=hop_length)
    magnitude, phase = np.abs(stft), np.angle(stft)
    energy = (magnitude**2).sum(axis=0)
    quiet = energy <= np.quantile(energy, noise_quantile)
    noise = magnitude[:, quiet].mean(axis=1, keepdims=True)
    cleaned = np.maximum(magnitude - over_subtraction * noise, floor * magnitude)
    out = librosa.istft(cleaned * np.exp(1j * phase), hop_length=hop_length, length=samples.size)
    return out.astype(np.float32)


def normalize(samples: np.ndarray, method: str) -> np.ndarray:
    """Scale to a peak of -1 dBFS (``peak``) or an RMS of -20 dBFS (``rms``); silence is left as it is."""
    if method == "none" or samples.size == 0:
        return samples
    if method == "peak":
        level, target = float(np.max(np.abs(samples))), PEAK_DBFS
    elif method == "rms":
        level, target = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))), RMS_DBFS
    else:
        raise ValueError(f"unknown normalisation {method!r}")
    if level <= 1e-9:
        return samples
    return (samples * (10 ** (target / 20) / level)).astype(np.float32)


def preprocess(samples: np.ndarray, denoise: str, normalization: str, n_fft: int) -> np.ndarray:
    """The configured clean-up chain: denoise first, then normalise."""
    if denoise == "spectral-subtraction":
        samples = spectral_subtraction(samples, n_fft=n_fft)
    return normalize(samples, normalization)
