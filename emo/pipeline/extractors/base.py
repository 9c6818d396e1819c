"""The extractor interface and its registry: one extractor per feature token of ``emo extract --features``."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from emo.errors import UsageError
from emo.features_store.schema import FeatureSpec
from emo.pipeline.config import ExtractionConfig
from emo.pipeline.datasets import ClipRecord


@dataclass
class Clip:
    """A clip on a worker: its record, its decoded audio (None when absent) and a cache extractors share."""

    record: ClipRecord
    audio: np.ndarray | None
    sample_rate: int
    cache: dict[str, Any] = field(default_factory=dict)

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """Compute an intermediate once per clip (e.g. the mel spectrogram both MFCC and log-mel use)."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]


class Extractor(ABC):
    """Computes one feature token for a clip. Built once per worker; :meth:`setup` loads and warms up."""

    token: ClassVar[str]
    modality: ClassVar[str]

    def __init__(self, config: ExtractionConfig) -> None:
        self.config = config

    @abstractmethod
    def specs(self) -> list[FeatureSpec]:
        """The arrays this extractor writes, with their provenance attributes."""

    @functools.cached_property
    def array_specs(self) -> list[FeatureSpec]:
        """:meth:`specs`, computed once."""
        return self.specs()

    def preflight(self) -> None:  # noqa: B027 - optional hook
        """Check on the driver, before any work starts, that everything needed exists (e.g. weights)."""

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Load models and pay first-call costs once per worker (never per clip)."""

    @abstractmethod
    def extract(self, clip: Clip) -> dict[str, np.ndarray]:
        """All arrays of this clip, by store path. Raise to mark the clip's modality as failed."""


EXTRACTORS: dict[str, type[Extractor]] = {}


def register(cls: type[Extractor]) -> type[Extractor]:
    """Class decorator: make an extractor available under its token."""
    EXTRACTORS[cls.token] = cls
    return cls


def build_extractors(config: ExtractionConfig) -> list[Extractor]:
    """The extractors of a configuration, in token order, after checking every token exists."""
    unknown = [t for t in config.features if t not in EXTRACTORS]
    if unknown:
        raise UsageError(
            f"unknown feature token(s) {', '.join(map(repr, unknown))}; available: {', '.join(EXTRACTORS)}"
        )
    return [EXTRACTORS[t](config) for t in dict.fromkeys(config.features)]
