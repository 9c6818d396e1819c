"""Audio clean-up before feature extraction: spectral-subtraction denoising and amplitude normalisation (seed 001
§3.2.1), and the trimming of leading and trailing silence."""

from __future__ import annotations

import numpy as np

PEAK_DBFS = -1.0
RMS_DBFS = -20.0
#: librosa.effects.trim's framing for the silence decision (its defaults: 128 ms frames every 32 ms at 16 kHz);
#: the frame is a whole number of hops
TRIM_FRAME_LENGTH = 2048
TRIM_HOP_LENGTH = 512


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


def _frame_power(samples: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """Mean square of each centred, zero-padded frame: ``librosa.feature.rms(center=True) ** 2``, in memory
    proportional to the number of frames (librosa frames the signal first: 4x the audio for a long recording)."""
    per_frame = frame_length // hop_length
    full = samples.size // hop_length
    blocks = samples[: full * hop_length].reshape(full, hop_length)
    sums = np.einsum("ij,ij->i", blocks, blocks, dtype=np.float64)
    tail = samples[full * hop_length :].astype(np.float64)
    if tail.size:
        sums = np.append(sums, np.dot(tail, tail))
    cumulative = np.concatenate([[0.0], np.cumsum(sums)])
    k = np.arange(1 + samples.size // hop_length)
    lo = np.clip(k - per_frame // 2, 0, sums.size)
    hi = np.clip(k + per_frame - per_frame // 2, 0, sums.size)
    return (cumulative[hi] - cumulative[lo]) / frame_length


def trim_silence(samples: np.ndarray, top_db: float) -> tuple[np.ndarray, int]:
    """``samples`` without the leading and trailing frames quieter than ``top_db`` below the loudest frame, and
    the index of the first sample kept: ``librosa.effects.trim`` (same frames, reference and edges; tested
    against it) without its framed copy of the signal. A clip with nothing above the threshold, or too short to
    frame, is kept whole."""
    if samples.size < TRIM_FRAME_LENGTH:
        return samples, 0
    power = _frame_power(samples, TRIM_FRAME_LENGTH, TRIM_HOP_LENGTH)
    amin = 1e-10  # librosa.power_to_db's floor
    db = 10 * np.log10(np.maximum(power, amin)) - 10 * np.log10(max(float(power.max()), amin))
    loud = np.flatnonzero(db > -top_db)
    if loud.size == 0:
        return samples, 0
    start = int(loud[0]) * TRIM_HOP_LENGTH
    stop = min(samples.size, (int(loud[-1]) + 1) * TRIM_HOP_LENGTH)
    return samples[start:stop], start


def preprocess(
    samples: np.ndarray, denoise: str, normalization: str, n_fft: int, trim_db: float | None = None
) -> tuple[np.ndarray, int]:
    """The configured clean-up chain: denoise (its noise estimate needs the quiet frames), trim the silence
    around the speech, then normalise (an RMS level is the speech's, not diluted by silence). Returns the
    samples and the index in ``samples`` of the first one kept."""
    if denoise == "spectral-subtraction":
        samples = spectral_subtraction(samples, n_fft=n_fft)
    start = 0
    if trim_db is not None:
        samples, start = trim_silence(samples, trim_db)
    return normalize(samples, normalization), start
