"""The Zarr feature store: schema, writer, reader and provenance (DESIGN.md §5).

The names below load their modules on first use (``lazy_loader``): a Dask worker imports the schema and
:class:`ClipResult` from here without paying for Zarr and pandas, which only the driver and readers need.
"""

from typing import TYPE_CHECKING

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "clip_result": ["ClipResult"],
        "location": ["StoreLocation", "parse_location"],
        "schema": ["CLIP_COLUMNS", "STORE_VERSION", "SequenceSpec", "VectorSpec"],
        "store": ["FeatureStore"],
        "writer": ["StoreWriter"],
    },
)

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from emo.features_store.clip_result import ClipResult as ClipResult
    from emo.features_store.location import StoreLocation as StoreLocation
    from emo.features_store.location import parse_location as parse_location
    from emo.features_store.schema import CLIP_COLUMNS as CLIP_COLUMNS
    from emo.features_store.schema import STORE_VERSION as STORE_VERSION
    from emo.features_store.schema import SequenceSpec as SequenceSpec
    from emo.features_store.schema import VectorSpec as VectorSpec
    from emo.features_store.store import FeatureStore as FeatureStore
    from emo.features_store.writer import StoreWriter as StoreWriter
