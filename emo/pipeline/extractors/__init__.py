"""Feature extractors, one module per token, registered by importing them here."""

from emo.pipeline.extractors import egemaps, mel, mfcc  # noqa: F401  (registration)
from emo.pipeline.extractors.base import EXTRACTORS, Clip, Extractor, build_extractors, register

__all__ = ["EXTRACTORS", "Clip", "Extractor", "build_extractors", "register"]
