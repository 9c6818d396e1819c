"""The extractor interface and its registry: one extractor per feature token of ``emo extract --features``."""

from __future__ import annotations

import dataclasses
import functools
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np

from emo.errors import UsageError
from emo.features_store.schema import FeatureSpec
from emo.pipeline.config import ExtractionConfig
from emo.pipeline.datasets import ClipRecord
from emo.pipeline.decode import DecodeStats
from emo.registry import Registry

T = TypeVar("T")


@dataclass
class Clip:
    """A clip on a worker: its record, its decoded audio (None when absent), a cache extractors share, the
    seconds of compute spent on it by stage (``emo.pipeline.timing``) and, per media modality, how much of its
    stream decoded (``decoded``, filled by whoever decodes it)."""

    record: ClipRecord
    audio: np.ndarray | None
    sample_rate: int
    cache: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    decoded: dict[str, DecodeStats] = field(default_factory=dict)
    #: the container's duration (``clips/duration_s``): the length the common time grid divides (NaN: unknown)
    duration_s: float = float("nan")
    #: where ``audio`` starts in the clip (seconds; past 0 when leading silence was trimmed)
    audio_start_s: float = 0.0

    def grid_duration(self, own_length: float) -> float:
        """The duration the time grid of this clip divides: the container's, else the stream's own length."""
        return self.duration_s if np.isfinite(self.duration_s) and self.duration_s > 0 else own_length

    def audio_grid(self, times: np.ndarray) -> dict[str, Any]:
        """``derive``'s time-grid arguments for frames of ``audio`` at ``times`` (seconds into ``audio``): their
        clip times (trimmed leading silence added back) and the duration the grid divides."""
        if "audio" in self.decoded:  # the decoded stream's length, before any trimming
            own = self.decoded["audio"].seconds
        else:
            own = self.audio_start_s + (self.audio.size / self.sample_rate if self.audio is not None else 0.0)
        return {"times": self.audio_start_s + np.asarray(times, np.float64), "duration": self.grid_duration(own)}

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """Compute an intermediate once per clip (e.g. the mel spectrogram both MFCC and log-mel use)."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]


class Unavailable(Exception):  # noqa: N818 - a clip state, not a program error
    """Raised for a clip whose input for this modality does not exist or cannot be used.

    ``status`` becomes the clip's ``status_<modality>`` (``missing``, ``no_face`` or ``failed``) and a
    non-empty ``reason`` ("category: detail") goes to its ``error`` column; an absence that is in the nature
    of the input (a .wav has no video, a clip has no transcript) has no reason and is not a problem. The
    ``arrays`` given are written instead of empty rows (e.g. the per-frame NaN rows of a clip with no face).
    """

    def __init__(self, status: str, reason: str = "", arrays: dict[str, np.ndarray] | None = None) -> None:
        super().__init__(reason or status)
        self.status = status
        self.reason = reason
        self.arrays = arrays or {}


class Extractor(ABC):
    """Computes one feature token for a clip. Built once per worker; :meth:`setup` loads and warms up.

    ``device`` is where its models run ("cpu", "cuda"); it is a runtime choice, not part of the config.
    """

    token: ClassVar[str]
    modality: ClassVar[str]
    #: extracted when ``--features`` is not given (False for tokens that need a model download first)
    default: ClassVar[bool] = True
    #: runs a neural model (its tasks go to GPU workers in a CUDA run; librosa and openSMILE do not)
    uses_model: ClassVar[bool] = False

    def __init__(self, config: ExtractionConfig, device: str = "cpu") -> None:
        self.config = config
        self.device = device

    @abstractmethod
    def specs(self) -> list[FeatureSpec]:
        """The arrays this extractor writes, with their provenance attributes."""

    @functools.cached_property
    def array_specs(self) -> list[FeatureSpec]:
        """:meth:`specs`, computed once."""
        return self.specs()

    @classmethod
    def pin(cls, config: ExtractionConfig) -> dict[str, Any]:
        """Config fields identifying the model files this extractor reads (e.g. a weights sha256), computed on
        the driver before any work so that the config hash changes when a file does. Raises
        :class:`~emo.errors.MissingModelError` naming the file when one is missing."""
        return {}

    @classmethod
    def describe_models(cls, config: ExtractionConfig) -> dict[str, str]:
        """One line per model this extractor runs (what a run says it computed its features with), by name."""
        return {}

    def preflight(self) -> None:  # noqa: B027 - optional hook
        """Check on the driver, before any work starts, that everything needed exists (e.g. weights)."""

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Load models and pay first-call costs once per worker (never per clip)."""

    @abstractmethod
    def extract(self, clip: Clip) -> dict[str, np.ndarray]:
        """All arrays of this clip, by store path. Raise :class:`Unavailable` for a clip without usable input
        of this modality, anything else to mark the clip's modality as failed."""

    def extract_batch(self, clips: Sequence[Clip]) -> list[dict[str, np.ndarray] | BaseException]:
        """:meth:`extract` for the clips of one task, each clip's exception in its place. Extractors with
        models override this to put several clips through the model together."""
        out: list[dict[str, np.ndarray] | BaseException] = []
        for clip in clips:
            try:
                out.append(self.extract(clip))
            except Exception as exc:  # noqa: BLE001 - one clip's failure is that clip's result
                out.append(exc)
        return out


#: Every ``--features`` token: an extractor module registers its class with ``@register``.
EXTRACTORS: Registry[type[Extractor]] = Registry("feature token", "--features")


def register(cls: type[Extractor]) -> type[Extractor]:
    """Class decorator: make an extractor available under its token."""
    return EXTRACTORS.register(cls.token)(cls)


def extractor_classes(config: ExtractionConfig) -> list[type[Extractor]]:
    """The extractor classes of a configuration's tokens; a usage error naming the unknown tokens, if any."""
    unknown = [t for t in config.features if t not in EXTRACTORS]
    if unknown:
        raise UsageError(
            f"unknown feature token(s) {', '.join(map(repr, unknown))}; available: {', '.join(EXTRACTORS)}"
        )
    return [EXTRACTORS[t] for t in dict.fromkeys(config.features)]


def default_tokens() -> tuple[str, ...]:
    """The tokens ``emo extract`` computes when ``--features`` is not given."""
    return tuple(t for t, cls in EXTRACTORS.items() if cls.default)


def build_extractors(config: ExtractionConfig, device: str = "cpu") -> list[Extractor]:
    """The extractors of a configuration, in token order, after checking every token exists."""
    return [cls(config, device) for cls in extractor_classes(config)]


def pin_config(config: ExtractionConfig) -> ExtractionConfig:
    """``config`` with the identity (sha256) of every model file its extractors read filled in; a value
    already recorded must match the file (a store resumed or a model reused after its weights changed is
    refused rather than silently mixing features). Missing models raise here, before any work."""
    updates: dict[str, Any] = {}
    for cls in extractor_classes(config):
        for key, value in cls.pin(config).items():
            recorded = config.value(key)
            if recorded is not None and recorded != value:
                raise UsageError(
                    f"{key}: the extraction config records {recorded}, but the file now has {value}; the model "
                    "changed since those features were extracted (extract into another store, or --overwrite)"
                )
            updates[key] = value
    return dataclasses.replace(config, **updates) if updates else config


# Models shared by every extractor and configuration of a worker process: each model is loaded once.
_RESOURCES: dict[Hashable, Any] = {}
_RESOURCES_LOCK = threading.Lock()


def worker_resource(key: Hashable, build: Callable[[], T]) -> T:
    """This process's instance of a model identified by ``key`` (name, weights, device...), built on first use.

    Built under a lock, so the threads of a multi-threaded worker load it once; inference with the shared
    instance needs no lock (evaluation mode, no state changes).
    """
    with _RESOURCES_LOCK:
        if key not in _RESOURCES:
            _RESOURCES[key] = build()
        return _RESOURCES[key]
