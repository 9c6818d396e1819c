"""The fast whole-array reader returns exactly what Zarr's own slicing returns, for every layout it decodes
itself and for the ones it hands back to Zarr."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

from emo.features_store.fastread import _decoder, read_rows

COMPRESSORS = {"none": None, "blosc": BloscCodec(cname="lz4", clevel=5), "zstd": ZstdCodec(level=3)}


def _array(root: Path | zarr.storage.MemoryStore, shape: tuple[int, ...], chunks: tuple[int, ...], **kw):
    store = root if isinstance(root, zarr.storage.MemoryStore) else str(root)
    group = zarr.open_group(store, mode="a", zarr_format=3)
    return group.create_array("x", shape=shape, chunks=chunks, dtype=kw.pop("dtype", "float32"), **kw)


@pytest.mark.parametrize("codec", sorted(COMPRESSORS))
@pytest.mark.parametrize("shape", [(103,), (103, 7), (103, 4, 3)])
def test_plain_layouts_match_zarr(tmp_path: Path, codec: str, shape: tuple[int, ...]) -> None:
    chunks = (16, *shape[1:])
    compressors = COMPRESSORS[codec]
    arr = _array(tmp_path / "s.zarr", shape, chunks, compressors=compressors, fill_value=np.nan)
    assert _decoder(arr) is not None, "a plain layout is decoded directly"
    data = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    arr[:96] = data[:96]  # rows 96..102 never written: their chunk is absent and reads as the fill value
    for stop in (0, 1, 16, 40, 96, 100, 103):
        got = read_rows(arr, stop, threads=3)
        want = np.asarray(arr[:stop])
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert np.isnan(read_rows(arr, 103)[100:]).all()


@pytest.mark.parametrize("dtype", ["int64", "uint8", "bool", "float64"])
def test_dtypes_and_single_thread(tmp_path: Path, dtype: str) -> None:
    arr = _array(tmp_path / "s.zarr", (50, 3), (8, 3), dtype=dtype)
    data = (np.arange(150).reshape(50, 3) % 7).astype(dtype)
    arr[:] = data
    np.testing.assert_array_equal(read_rows(arr, 50, threads=1), data)
    np.testing.assert_array_equal(read_rows(arr, 45, threads=4), data[:45])


def test_store_api_path_matches_zarr() -> None:
    """Stores that are not a local directory (memory here; zip and object stores alike) are read through
    Zarr's store API rather than files."""
    arr = _array(zarr.storage.MemoryStore(), (70, 5), (9, 5), compressors=COMPRESSORS["zstd"], fill_value=-1.0)
    arr[:60] = np.arange(300, dtype=np.float32).reshape(60, 5)
    np.testing.assert_array_equal(read_rows(arr, 70), np.asarray(arr[:70]))


@pytest.mark.parametrize(
    "kw",
    [
        {"shape": (40, 6), "chunks": (8, 3)},  # chunked along the second axis too
        {"shape": (40, 6), "chunks": (8, 6), "shards": (16, 6)},
        {"shape": (40, 6), "chunks": (8, 6), "dtype": "complex64"},
    ],
    ids=["2d-chunks", "sharded", "complex"],
)
def test_other_layouts_fall_back_to_zarr(tmp_path: Path, kw: dict) -> None:
    kw = dict(kw)
    shape, chunks = kw.pop("shape"), kw.pop("chunks")
    arr = _array(tmp_path / "s.zarr", shape, chunks, **kw)
    data = np.arange(240).reshape(40, 6)
    arr[:] = data.astype(arr.dtype)
    assert _decoder(arr) is None
    np.testing.assert_array_equal(read_rows(arr, 33), np.asarray(arr[:33]))


def test_a_short_uncompressed_chunk_is_an_error_that_names_it(tmp_path: Path) -> None:
    """Uncompressed chunks are read straight into the result; one cut short (a damaged copy) must not leave
    rows of uninitialised memory behind."""
    arr = _array(tmp_path / "s.zarr", (32, 4), (16, 4), compressors=None)
    assert arr.compressors == ()
    arr[:] = np.arange(128, dtype=np.float32).reshape(32, 4)
    np.testing.assert_array_equal(read_rows(arr, 32), np.asarray(arr[:]))
    (chunk,) = [p for p in (tmp_path / "s.zarr" / "x").rglob("*") if p.is_file() and p.parts[-2:] == ("1", "0")]
    chunk.write_bytes(chunk.read_bytes()[:10])
    with pytest.raises(OSError, match="10 bytes where 256 were expected"):
        read_rows(arr, 32)
