"""Store read: load every pooled feature of 100,000 clips from an emo feature store vs ``np.load`` of the same
bytes as plain ``.npy`` files.

The store is written by emo's StoreWriter (``benchmarks/stores.py``: the chunking and codecs ``emo extract``
produces) with the per-clip vectors of a full extraction: the ``pooled`` arrays of audio/mfcc (160),
audio/mel (256), video/face (1024), text/tokens (768) and the vectors audio/egemaps (88), video/summary
(512), text/cls and text/mean (384): 3,576 float32 per clip, 1.4 GB for 100,000 clips. emo reads them as a
user would, ``FeatureStore.open(store).read(path)`` for each array (opening included); the reference saves
exactly those arrays with ``np.save`` and reads them back with ``np.load``. Both read from the page cache
(a warm-up pass first; the machine cannot drop caches), so this compares decoding, not disks. Medians of
interleaved repeats; emo's figure is its throughput as a fraction of ``np.load``'s. The same clips are also
written with each other candidate codec for the per-clip rows (``layout.NUMERIC_CODECS``: how emo's choice,
``layout.CODECS["rows"]``, was made) and read in the same rounds, with their stored size. The rows also carry the
single-core decode speed and size of the chunks under Blosc-zstd (the codec of the ragged frames) and under
other zstd levels and Blosc-LZ4 (``decode_by_codec``): what bounds a compressed read on this machine.

    .venv/bin/python benchmarks/store_read.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numcodecs  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import log, measure, median, spread  # noqa: E402
from benchmarks.stores import pooled_paths, pooled_store  # noqa: E402

NAME = "store_read"
#: clips, repeats
SETTINGS = {"quick": (20_000, 3), "full": (100_000, 5)}


def read_emo(store: Path) -> tuple[float, int]:
    from emo.features_store import FeatureStore

    started = time.perf_counter()
    fs = FeatureStore.open(str(store))
    arrays = [fs.read(p) for p in pooled_paths()]
    wall = time.perf_counter() - started
    return wall, sum(a.nbytes for a in arrays)


def read_npy(directory: Path) -> tuple[float, int]:
    started = time.perf_counter()
    arrays = [np.load(directory / f"{p.replace('/', '__')}.npy") for p in pooled_paths()]
    wall = time.perf_counter() - started
    return wall, sum(a.nbytes for a in arrays)


def raw_copy(store: Path) -> Path:
    """The store's pooled arrays as .npy files next to it (rebuilt with the store)."""
    from emo.features_store import FeatureStore

    directory = store.with_suffix(".npy")
    if directory.exists() and len(list(directory.glob("*.npy"))) == len(pooled_paths()):
        return directory
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    fs = FeatureStore.open(str(store))
    for p in pooled_paths():
        np.save(directory / f"{p.replace('/', '__')}.npy", fs.read(p))
    return directory


#: The method whose figure is the row of the table: emo's store as ``emo extract`` writes it.
EMO = "emo FeatureStore.read"


def run(quick: bool) -> list[dict]:
    from emo.features_store import FeatureStore
    from emo.features_store.layout import CODECS, NUMERIC_CODECS

    n_clips, repeats = SETTINGS["quick" if quick else "full"]
    # emo's store, and the same clips with the per-clip rows under each other candidate codec
    stores = {EMO: pooled_store(n_clips)}
    stores |= {f"{EMO}, rows as {c}": pooled_store(n_clips, c) for c in NUMERIC_CODECS if c != CODECS["rows"]}
    raw = raw_copy(stores[EMO])
    described: dict[str, dict] = {}
    for method, store in stores.items():
        fs = FeatureStore.open(str(store))
        for p in pooled_paths():  # same bytes on every side
            if not np.array_equal(fs.read(p), np.load(raw / f"{p.replace('/', '__')}.npy"), equal_nan=True):
                raise RuntimeError(f"{p}: the .npy copy differs from {store.name}")
        described[method] = {
            "bytes_stored": sum(int(fs.array(p).nbytes_stored()) for p in pooled_paths()),
            "chunks": {p: list(fs.array(p).chunks) for p in pooled_paths()},
            "codecs": {p: [c.to_dict() for c in fs.array(p).compressors] for p in pooled_paths()[:1]},
        }
        del fs
        read_emo(store)  # warm-up: page cache, imports
    read_npy(raw)
    times: dict[str, list[float]] = {method: [] for method in stores} | {"np.load": []}
    nbytes = 0
    for _ in range(repeats):  # interleaved, so that the machine's drift hits every method alike
        for method in times:
            gc.collect()
            wall, nbytes = read_npy(raw) if method == "np.load" else read_emo(stores[method])
            times[method].append(wall)
    log("store_read: " + ", ".join(f"{k} {median(v):.3f} s" for k, v in times.items()))
    zstd_store = next((stores[m] for m in stores if m.endswith("blosc-zstd")), stores[EMO])
    codecs_measured = codec_rows(zstd_store, repeats)
    return [
        {
            "method": method,
            "clips": n_clips,
            "arrays": pooled_paths(),
            "bytes": nbytes,
            "bytes_stored": described[method]["bytes_stored"] if method in described else nbytes,
            "chunks": described.get(method, {}).get("chunks"),
            "codecs": described.get(method, {}).get("codecs"),
            "wall_s": spread(walls),
            "gb_per_s": round(nbytes / median(walls) / 1e9, 2),
            "repeats": [round(w, 4) for w in walls],
            "decode_by_codec": codecs_measured if method == EMO else None,
        }
        for method, walls in times.items()
    ]


#: Other codecs a store's chunks could use (DESIGN.md §5 asks for zstd or blosc-zstd; the others for comparison),
#: measured after a plain memory copy of the same bytes and the store's own codec (see ``codec_rows``).
CODECS = {
    "blosc-zstd clevel 3 + shuffle, Blosc's blocks (emo's before)": numcodecs.Blosc(
        cname="zstd", clevel=3, shuffle=numcodecs.Blosc.SHUFFLE
    ),
    "zstd level 1": numcodecs.Zstd(level=1),
    "zstd level -5 (fast mode)": numcodecs.Zstd(level=-5),
    "blosc-lz4 clevel 5 + shuffle": numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE),
}


def store_codec(arr: Any) -> dict[str, numcodecs.Blosc]:
    """The array's own Blosc compressor, named and as the numcodecs codec that encodes chunks like it; nothing
    when the array is stored uncompressed."""
    if not arr.compressors:
        return {}
    (c,) = arr.compressors
    shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[c.shuffle.value]
    blocks = f"{c.blocksize >> 10} KiB blocks" if c.blocksize else "Blosc's blocks"
    name = f"blosc-{c.cname.value} clevel {c.clevel} + {c.shuffle.value}, {blocks} (emo's ragged frames)"
    return {name: numcodecs.Blosc(cname=c.cname.value, clevel=c.clevel, shuffle=shuffle, blocksize=c.blocksize)}


def codec_rows(store: Path, repeats: int) -> list[dict]:
    """Single-thread decode speed and size of the store's own chunks under each of :data:`CODECS`, against a
    memcpy of the same bytes: what bounds ``FeatureStore.read`` on this machine's cores."""
    from emo.features_store import FeatureStore

    fs = FeatureStore.open(str(store))
    arr = fs.array("video/face/pooled")  # the widest pooled array: 1 MB chunks
    values = fs.read("video/face/pooled")
    rows_per_chunk = arr.chunks[0]
    chunks = [  # up to 64 whole chunks
        np.ascontiguousarray(values[i : i + rows_per_chunk])
        for i in range(0, min(len(values) // rows_per_chunk, 64) * rows_per_chunk, rows_per_chunk)
    ]
    nbytes = sum(c.nbytes for c in chunks)
    out = np.empty_like(chunks[0])
    rows = []
    for name, codec in {"memcpy": None, **store_codec(arr), **CODECS}.items():
        encoded = chunks if codec is None else [codec.encode(c) for c in chunks]
        walls = []
        for _ in range(repeats):
            started = time.perf_counter()
            for e in encoded:
                if codec is None:
                    np.copyto(out, e)
                else:
                    codec.decode(e, out=out)
            walls.append(time.perf_counter() - started)
        ratio = 1.0 if codec is None else sum(len(e) for e in encoded) / nbytes
        rows.append({"codec": name, "ratio": round(ratio, 3), "gb_per_s": round(nbytes / median(walls) / 1e9, 2)})
    log("store_read codecs (1 thread): " + ", ".join(f"{r['codec']} {r['gb_per_s']} GB/s" for r in rows))
    return rows


def summary(rows: list[dict]) -> list[dict]:
    by = {r["method"]: r for r in rows}
    emo, raw = by[EMO], by["np.load"]
    t_emo, t_raw = emo["wall_s"]["median"], raw["wall_s"]["median"]
    ratio = t_raw / t_emo
    others = "; ".join(
        f"rows as {m.rsplit(' ', 1)[-1]}: {r['wall_s']['median']:.2f} s ({t_raw / r['wall_s']['median']:.0%}), "
        f"{r['bytes_stored'] / 1e9:.2f} GB stored"
        for m, r in by.items()
        if m.startswith(f"{EMO}, rows as ")
    )
    codecs = ", ".join(f"{c['codec']} {c['gb_per_s']} (size {c['ratio']:.2f})" for c in emo["decode_by_codec"] or [])
    how = (
        f"every pooled feature of {emo['clips']:,} clips ({len(emo['arrays'])} arrays, {emo['bytes'] / 1e9:.2f} GB, "
        f"{emo['bytes_stored'] / 1e9:.2f} GB stored): FeatureStore.read {t_emo:.2f} s ({emo['gb_per_s']:.1f} GB/s) "
        f"vs np.load {t_raw:.2f} s ({raw['gb_per_s']:.1f} GB/s), page cache warm; the same clips with other codecs "
        f"for the per-clip rows: {others}; one core decodes the video/face/pooled chunks at (GB/s, size vs raw) "
        f"{codecs}"
    )
    return [measure("store read", how, round(ratio, 3), f"{100 * ratio:.0f}% of raw", ">= 80%", ratio >= 0.8)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    rows = run(args.quick)
    print(json.dumps({"rows": rows, "measures": summary(rows)}, indent=2))


if __name__ == "__main__":
    main()
