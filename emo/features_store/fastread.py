"""Reading the leading rows of an array whole, fast: every chunk decoded straight into the result, several at a
time on a thread pool (the decompressors release the GIL).

Zarr's own ``arr[:n]`` goes through its generic codec pipeline, which copies each chunk at least twice after
decoding it and runs the decoders one or two at a time; a training run that loads every pooled vector of a
large store spends most of its time there. The store's plain layout (what ``StoreWriter`` writes: chunks
along the first axis only, the ``bytes`` codec then at most one Blosc or Zstd compressor, no sharding) is
decoded here directly; anything else falls back to Zarr. An uncompressed chunk of a local directory is read
with ``readinto`` straight into the result; other chunks and stores through Zarr's store API.
"""

from __future__ import annotations

import itertools
import math
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numcodecs.blosc
import numcodecs.zstd
import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec, ZstdCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore

Decoder = Callable[[Any, np.ndarray], None]


def _threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def _decoder(arr: zarr.Array) -> Decoder | None:
    """How to decode one stored chunk into a contiguous destination, or None when the layout is not plain."""
    meta = arr.metadata
    if getattr(meta, "zarr_format", None) != 3 or arr.shards is not None or arr.dtype.kind not in "biuf":
        return None
    codecs = list(meta.codecs)
    if not codecs or not isinstance(codecs[0], BytesCodec) or len(codecs) > 2:
        return None
    endian = codecs[0].endian
    if arr.dtype.itemsize > 1 and endian is not None and endian.value != sys.byteorder:
        return None
    if tuple(arr.chunks[1:]) != tuple(arr.shape[1:]):
        return None  # chunks would not be contiguous row blocks of the result
    if len(codecs) == 1:
        return lambda src, dest: dest.view(np.uint8).reshape(-1).__setitem__(slice(None), np.frombuffer(src, np.uint8))
    if isinstance(codecs[1], BloscCodec):
        return lambda src, dest: numcodecs.blosc.decompress(src, dest)
    if isinstance(codecs[1], ZstdCodec) and not codecs[1].checksum:
        return lambda src, dest: numcodecs.zstd.Zstd().decode(src, out=dest)
    return None


def _local_path(arr: zarr.Array) -> Path | None:
    store = arr.store_path.store
    if isinstance(store, LocalStore):
        return Path(store.root) / arr.store_path.path if arr.store_path.path else Path(store.root)
    return None


def read_rows(arr: zarr.Array, stop: int, threads: int | None = None) -> np.ndarray:
    """``arr[:stop]`` as a numpy array (``stop`` at most the array's length)."""
    decode = _decoder(arr)
    if decode is None or stop <= 0:
        return np.asarray(arr[:stop])
    rows = arr.chunks[0]
    out = np.empty((stop, *arr.shape[1:]), dtype=arr.dtype)
    per_row = math.prod(arr.shape[1:]) if arr.ndim > 1 else 1
    fill = arr.fill_value
    root = _local_path(arr)
    raw = not arr.compressors
    n_chunks = math.ceil(stop / rows)
    zeros = (0,) * (arr.ndim - 1)

    def fetch(key: str) -> Any:
        if root is not None:
            try:
                with open(root / key, "rb") as fh:
                    return fh.read()
            except FileNotFoundError:
                return None
        buf = sync(arr.store_path.store.get(f"{arr.store_path.path}/{key}", prototype=default_buffer_prototype()))
        return None if buf is None else buf.as_numpy_array()

    def read_into(key: str, dest: np.ndarray) -> bool:
        """An uncompressed local chunk read straight into its rows of the result (one copy, as ``np.load``)."""
        try:
            with open(root / key, "rb", buffering=0) as fh:
                view = memoryview(dest.reshape(-1).view(np.uint8))
                got = 0
                while got < view.nbytes and (n := fh.readinto(view[got:])):
                    got += n
        except FileNotFoundError:
            return False
        if got != view.nbytes:
            raise OSError(f"{root / key}: chunk of {got} bytes where {view.nbytes} were expected")
        return True

    def one(i: int) -> None:
        start, end = i * rows, min((i + 1) * rows, stop)
        key = arr.metadata.encode_chunk_key((i, *zeros))
        if raw and root is not None and end - start == rows:
            if not read_into(key, out[start:end]):
                out[start:end] = fill
            return
        src = fetch(key)
        if src is None:  # never written: every value is the fill value
            out[start:end] = fill
            return
        if end - start == rows:
            decode(src, out[start:end])
            return
        chunk = np.empty((rows * per_row,), dtype=arr.dtype)  # the array ends inside this chunk
        decode(src, chunk)
        out[start:end] = chunk[: (end - start) * per_row].reshape(end - start, *arr.shape[1:])

    def run(chunks: range) -> None:
        for i in chunks:
            one(i)

    workers = min(threads or _threads(), n_chunks)
    if workers <= 1:
        run(range(n_chunks))
    else:  # one contiguous run of chunks per thread: a task per chunk would cost more than reading a small one
        bounds = [n_chunks * k // workers for k in range(workers + 1)]
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, [range(a, b) for a, b in itertools.pairwise(bounds)]))
    return out
