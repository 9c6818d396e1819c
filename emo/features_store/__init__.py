"""The Zarr feature store: schema, writer, reader and provenance (DESIGN.md §5)."""

from emo.features_store.location import StoreLocation, parse_location
from emo.features_store.schema import CLIP_COLUMNS, STORE_VERSION, SequenceSpec, VectorSpec
from emo.features_store.store import FeatureStore
from emo.features_store.writer import ClipResult, StoreWriter

__all__ = [
    "CLIP_COLUMNS",
    "STORE_VERSION",
    "ClipResult",
    "FeatureStore",
    "SequenceSpec",
    "StoreLocation",
    "StoreWriter",
    "VectorSpec",
    "parse_location",
]
