"""Arrays computed from a store's own features after extraction (e.g. ``audio/ae``, seed 001's autoencoder
bottleneck), written under the writer lock and marked ``derived`` so that adding clips later invalidates them."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import zarr

from emo.errors import StoreError
from emo.features_store.checksums import record_checksums
from emo.features_store.layout import compressors_for
from emo.features_store.location import parse_location
from emo.features_store.lock import StoreLock
from emo.features_store.store import ROWS_ATTR, check_version, members

log = logging.getLogger(__name__)

DERIVED_ATTR = "derived"


def write_derived(
    store: str,
    path: str,
    rows: np.ndarray,
    attrs: Mapping[str, Any],
    extra: Mapping[str, np.ndarray] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> None:
    """Write ``rows`` [N, ...] (one per committed clip) at ``path``, replacing an older version.

    ``extra`` arrays (e.g. the model that computed the feature) go under ``{path}_model/`` so the feature can
    be recomputed for new clips without pickle.
    """
    location = parse_location(store, storage_options)
    with StoreLock(location):
        group = zarr.open_group(location.zarr_store(read_only=False), mode="r+")
        check_version(dict(group.attrs), location.display)
        n = int(group.attrs.get(ROWS_ATTR, 0))
        if rows.shape[0] != n:
            raise StoreError(f"{path}: {rows.shape[0]} rows for a store of {n} clips")
        for name in (path, f"{path}_model"):
            if name in group:
                del group[name]
        chunk_rows = int(group.attrs.get("chunk_rows", 256))
        arr = group.create_array(
            path,
            data=rows,
            chunks=(chunk_rows, *rows.shape[1:]),
            compressors=compressors_for(rows.dtype, "rows"),
            dimension_names=["clip", *[f"d{i}" for i in range(rows.ndim - 1)]],
            attributes={**attrs, DERIVED_ATTR: True, "rows_at_creation": n},
        )
        record_checksums(arr, 0, arr.shape[0])
        for name, value in (extra or {}).items():
            model = group.create_array(
                f"{path}_model/{name}",
                data=np.ascontiguousarray(value),
                compressors=compressors_for(value.dtype),
                attributes={DERIVED_ATTR: True},
            )
            record_checksums(model, 0, model.shape[0])


def drop_derived(group: zarr.Group) -> list[str]:
    """Delete derived arrays (they no longer cover every clip once clips are added); returns what went."""
    dropped = []
    for name, node in members(group):
        if isinstance(node, zarr.Array) and node.attrs.get(DERIVED_ATTR):
            top = name.split("_model/")[0] + ("_model" if "_model/" in name else "")
            if top in group:
                del group[top]
                dropped.append(top)
    return dropped
