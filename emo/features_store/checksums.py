"""Per-chunk checksums, recorded in each array's attributes as the array is written.

Every stored chunk object of an array is listed in its ``checksums`` attribute with its size and the sha256
of its stored (encoded, compressed) bytes; ``null`` marks a chunk that Zarr did not store because it holds
only the fill value. ``emo store verify`` compares sizes against a listing of the objects (cheap, metadata
only) or re-hashes every object (``--deep``), and a copy can be checked against them without a reference
copy. Hashing stored bytes rather than decoded values makes the check independent of codecs and exact.

The writer re-hashes the chunks an append touched (the last, partial chunk is rewritten by the next append)
and, when it trims an interrupted write, the chunk that now ends the array, so the record always describes
the bytes that are there.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import math
from dataclasses import dataclass
from typing import Any

import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

#: Array attribute holding the checksums.
CHECKSUMS_ATTR = "checksums"
ALGORITHM = "sha256"


@dataclass(frozen=True)
class ChunkRef:
    """One chunk of an array: its grid coordinates and its key relative to the array."""

    coords: tuple[int, ...]
    key: str


def digest(data: bytes) -> dict[str, Any]:
    """The record of one stored chunk object."""
    return {"bytes": len(data), ALGORITHM: hashlib.sha256(data).hexdigest()}


def chunks_for_rows(arr: zarr.Array, start: int, stop: int) -> list[ChunkRef]:
    """The chunks holding rows ``[start, stop)`` of the first axis (every chunk along the other axes)."""
    if stop <= start or arr.ndim == 0:
        return []
    rows = arr.chunks[0]
    first, last = start // rows, math.ceil(stop / rows)
    ranges = [range(first, last), *(range(n) for n in arr.cdata_shape[1:])]
    return [ChunkRef(c, arr.metadata.encode_chunk_key(c)) for c in itertools.product(*ranges)]


def recorded(arr: zarr.Array) -> dict[str, dict[str, Any] | None] | None:
    """The recorded chunk checksums of ``arr`` by chunk key, or None when it has none."""
    value = arr.attrs.get(CHECKSUMS_ATTR)
    if not isinstance(value, dict) or value.get("algorithm") != ALGORITHM:
        return None
    return dict(value.get("chunks") or {})


def read_stored(arr: zarr.Array, keys: list[str]) -> dict[str, bytes | None]:
    """The stored bytes of chunk objects of ``arr`` (None where absent), fetched concurrently."""
    store, prefix = arr.store_path.store, arr.store_path.path
    proto = default_buffer_prototype()

    async def fetch() -> list[Any]:
        return await asyncio.gather(*(store.get(f"{prefix}/{k}" if prefix else k, prototype=proto) for k in keys))

    return {k: (None if buf is None else buf.to_bytes()) for k, buf in zip(keys, sync(fetch()), strict=True)}


def record_checksums(arr: zarr.Array, start: int, stop: int, *, prune: bool = False) -> None:
    """Hash the stored chunks holding rows ``[start, stop)`` and record them in the array's attributes.

    ``prune`` also forgets chunks beyond the array's end (after it was shrunk).
    """
    entries = recorded(arr) or {}
    refs = chunks_for_rows(arr, start, stop)
    for key, data in read_stored(arr, [r.key for r in refs]).items():
        entries[key] = None if data is None else digest(data)
    if prune:
        live = {r.key for r in chunks_for_rows(arr, 0, arr.shape[0])}
        entries = {k: v for k, v in entries.items() if k in live}
    arr.update_attributes({CHECKSUMS_ATTR: {"algorithm": ALGORITHM, "chunks": entries}})


def refresh_after_trim(arr: zarr.Array) -> None:
    """After an array was cut back to its committed rows: re-hash the chunk that now ends it, drop the rest."""
    n = arr.shape[0]
    record_checksums(arr, max(n - 1, 0), n, prune=True)
