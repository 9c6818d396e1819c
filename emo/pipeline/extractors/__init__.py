"""Feature extractors, one module per token (the video tokens share one), registered by importing them here."""

from emo.pipeline.extractors import egemaps, faces, mel, mfcc, ssl, text  # noqa: F401  (registration)
from emo.pipeline.extractors.base import (
    EXTRACTORS,
    Clip,
    Extractor,
    Unavailable,
    build_extractors,
    default_tokens,
    extractor_classes,
    pin_config,
    register,
    worker_resource,
)

__all__ = [
    "EXTRACTORS",
    "Clip",
    "Extractor",
    "Unavailable",
    "build_extractors",
    "default_tokens",
    "extractor_classes",
    "pin_config",
    "register",
    "worker_resource",
]
