"""The layout of a feature store, in one place: which arrays a feature group has, how each is created (shape,
chunks, codec, attributes), and reading the feature specs back from a store that exists.

DESIGN.md §5 is the contract: ``clips/<column>`` (one row per clip), a vector feature is one ``[N, ...]`` array,
a sequence feature is a group of ragged per-frame fields with ``offsets`` (N+1) and, when derived, the
``aligned`` / ``mask`` / ``pooled`` rows computed from them.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

import emo
from emo.features_store.checksums import CHECKSUMS_ATTR
from emo.features_store.schema import CLIP_COLUMNS, STORE_VERSION, Column, FeatureSpec, SequenceSpec, VectorSpec
from emo.features_store.store import ROWS_ATTR

if TYPE_CHECKING:
    from emo.features_store.store import FeatureStore

#: Target uncompressed size of one chunk of a ragged (per-frame) array.
FRAME_CHUNK_BYTES = 4 << 20


#: Blosc block size. Blosc's own choice for zstd is a few tens of KiB: every block then starts a fresh zstd
#: stream over a sliver of each shuffled byte plane. Whole-MiB blocks (still within a core's L2 cache) compress
#: float32 features better and decode 1.2-3x faster (``benchmarks/store_read.py`` lists both).
BLOSC_BLOCK_BYTES = 1 << 20

#: The codecs a numeric array can be written with (DESIGN.md §5: only codecs plain ``zarr`` decodes).
NUMERIC_CODECS = ("none", "blosc-lz4", "blosc-zstd")
#: The codec of each kind of numeric array, chosen by measurement (``benchmarks/store_read.py``, README
#: Performance; DESIGN.md §5):
#: - ``rows``: the per-clip vectors every training run reads whole (vector features, ``pooled``, ``mask``,
#:   derived rows). Float features barely compress (Blosc-zstd keeps 0.82 of the bytes, Blosc-LZ4 0.89) while
#:   even LZ4 decodes 4x slower than a memory copy: stored as they are, read with one copy as ``np.load`` does.
#: - ``aligned``: the T-step views sequence heads read; shorter clips are zero-padded, which LZ4 removes at
#:   several GB/s per core.
#: - ``frames``: ragged per-frame arrays, offsets and the clip table's numbers, the bulk of a store, where size
#:   matters more than speed: Blosc-zstd level 1.
CODECS = {"rows": "none", "aligned": "blosc-lz4", "frames": "blosc-zstd"}


def compressors_for(dtype: Any, kind: str = "frames") -> list[Any]:
    """The compressors of an array of ``dtype`` and ``kind`` (a key of :data:`CODECS`): zstd for strings; for
    numbers the kind's codec over byte-shuffled values (bit-shuffled for 1-byte types) in 1 MiB blocks."""
    if dtype is str:
        return [zarr.codecs.ZstdCodec(level=3)]
    name = CODECS[kind]
    if name not in NUMERIC_CODECS:
        raise ValueError(f"unknown codec {name!r}; choose one of {', '.join(NUMERIC_CODECS)}")
    if name == "none":
        return []
    itemsize = np.dtype(dtype).itemsize
    return [
        BloscCodec(
            cname=name.removeprefix("blosc-"),
            clevel=1 if name == "blosc-zstd" else 5,
            shuffle="shuffle" if itemsize > 1 else "bitshuffle",
            typesize=itemsize,
            blocksize=BLOSC_BLOCK_BYTES,
        )
    ]


#: The per-clip rows a derived sequence group holds besides its ragged fields and ``offsets``.
DERIVED_ARRAYS = ("aligned", "mask", "pooled")


def now() -> str:
    """The time stamp of ``created_at`` / ``updated_at``."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def feature_array_paths(specs: Iterable[FeatureSpec]) -> list[str]:
    """Every array of the features ``specs`` describe (a sequence group's ``offsets`` included), sorted."""
    paths: set[str] = set()
    for spec in specs:
        paths |= set(spec.arrays())
        if isinstance(spec, SequenceSpec):
            paths.add(f"{spec.path}/offsets")
    return sorted(paths)


def array_paths(specs: Iterable[FeatureSpec]) -> list[str]:
    """Every array of a store holding ``specs``: the clip table's columns, then the features' arrays."""
    return [f"clips/{col.name}" for col in CLIP_COLUMNS] + feature_array_paths(specs)


def feature_names(paths: Iterable[str]) -> list[str]:
    """The features among a store's array paths, as ``--features`` names them: a sequence group by its group
    path (``video/faces``, whose fields and ``offsets`` are its arrays), a vector by its own path."""
    paths = list(paths)
    groups = {p.rsplit("/", 1)[0] for p in paths if p.endswith("/offsets")}
    return list(dict.fromkeys(p.rsplit("/", 1)[0] if p.rsplit("/", 1)[0] in groups else p for p in paths))


def create_column(group: zarr.Group, col: Column, chunk_rows: int, length: int) -> None:
    """The clip table's column ``col``, ``length`` rows of its fill value."""
    group.create_array(
        f"clips/{col.name}",
        shape=(length,),
        dtype=col.dtype,
        chunks=(chunk_rows,),
        compressors=compressors_for(col.dtype),
        fill_value=col.fill,
        dimension_names=["clip"],
        attributes={"description": col.description},
    )


def add_missing_columns(group: zarr.Group) -> None:
    """Columns added to the clip table since the store was created, filled with "unknown" for its rows."""
    length = group["clips/clip_id"].shape[0]
    for col in CLIP_COLUMNS:
        if f"clips/{col.name}" not in group:
            create_column(group, col, int(group.attrs["chunk_rows"]), length)


def create_store(
    zstore: Any,
    specs: Iterable[FeatureSpec],
    labels: Sequence[str],
    dataset: dict[str, Any],
    extraction: dict[str, Any],
    software: dict[str, str],
    chunk_rows: int,
) -> zarr.Group:
    created = now()
    # mode "a", not "w": "w" would wipe the directory, lock file included
    group = zarr.open_group(
        zstore,
        mode="a",
        attributes={
            "emo_store_version": STORE_VERSION,
            "emo_version": emo.__version__,
            "created_at": created,
            "updated_at": created,
            "description": "emo multimodal emotion feature store; rows of every array follow clips/clip_id",
            "dataset": dataset,
            "labels": list(labels),
            "extraction": extraction,
            "software": software,
            "chunk_rows": chunk_rows,
            ROWS_ATTR: 0,
        },
    )
    for col in CLIP_COLUMNS:
        create_column(group, col, chunk_rows, 0)
    for spec in specs:
        if isinstance(spec, VectorSpec):
            group.create_array(
                spec.path,
                shape=(0, *spec.shape),
                dtype=spec.dtype,
                chunks=(chunk_rows, *spec.shape),
                compressors=compressors_for(spec.dtype, "rows"),
                fill_value=np.nan,
                dimension_names=["clip", *[f"d{i}" for i in range(len(spec.shape))]],
                attributes=spec.attrs,
            )
            continue
        sub = group.require_group(spec.path)
        sub.attrs.update(spec.attrs)
        for name, shape in spec.fields.items():
            row_bytes = int(np.prod(shape)) * np.dtype(spec.dtype).itemsize
            frames = 1 << max(10, (FRAME_CHUNK_BYTES // max(row_bytes, 1)).bit_length() - 1)
            sub.create_array(
                name,
                shape=(0, *shape),
                dtype=spec.dtype,
                chunks=(frames, *shape),
                compressors=compressors_for(spec.dtype),
                fill_value=np.nan,
                dimension_names=["frame", *[f"d{i}" for i in range(len(shape))]],
                attributes={
                    **spec.attrs,
                    "ragged": True,
                    "description": f"frames of all clips; clip i is rows "
                    f"offsets[i]:offsets[i+1] of {spec.path}/offsets",
                },
            )
        sub.create_array(
            "offsets",
            data=np.zeros(1, dtype=np.int64),
            chunks=(max(chunk_rows, 4096),),
            compressors=compressors_for(np.int64),
            dimension_names=["clip_edge"],
            attributes={**spec.attrs, "description": "N+1 row offsets into the ragged arrays of this group"},
        )
        if spec.derived:
            d, steps = spec.dim, spec.steps
            sub.create_array(
                "aligned",
                shape=(0, steps, d),
                dtype=spec.dtype,
                chunks=(chunk_rows, steps, d),
                compressors=compressors_for(spec.dtype, "aligned"),
                fill_value=0.0,
                dimension_names=["clip", "step", "d0"],
                attributes={
                    **spec.attrs,
                    "description": f"each clip resampled to {steps} steps (segment means; "
                    "shorter clips zero-padded, see mask)",
                    "steps": steps,
                },
            )
            sub.create_array(
                "mask",
                shape=(0, steps),
                dtype=bool,
                chunks=(chunk_rows, steps),
                compressors=compressors_for(bool, "rows"),
                fill_value=False,
                dimension_names=["clip", "step"],
                attributes={**spec.attrs, "description": "True where aligned holds data"},
            )
            sub.create_array(
                "pooled",
                shape=(0, 2 * d),
                dtype=spec.dtype,
                chunks=(chunk_rows, 2 * d),
                compressors=compressors_for(spec.dtype, "rows"),
                fill_value=np.nan,
                dimension_names=["clip", "d0"],
                attributes={
                    **spec.attrs,
                    "description": f"mean over frames (first {d}) then standard deviation "
                    f"(last {d}); NaN when the clip has no frames"
                },
            )
    return group


def is_derived(fs: FeatureStore, path: str) -> bool:
    """Whether ``path`` was computed from a store's own features after extraction (``emo features``, fitted
    models) rather than written by the extraction."""
    return bool(fs.array(path).attrs.get("derived")) or "_model/" in path


def feature_specs(fs: FeatureStore) -> list[FeatureSpec]:
    """The specs a writer would create a store's extracted feature arrays from (derived arrays left out)."""
    arrays = {p: fs.array(p) for p in fs.feature_paths() if not is_derived(fs, p)}
    groups = sorted({p.rsplit("/", 1)[0] for p in arrays if p.endswith("/offsets")})
    specs: list[FeatureSpec] = []
    covered: set[str] = set()
    for group in groups:
        members = {p.rsplit("/", 1)[1]: a for p, a in arrays.items() if p.rsplit("/", 1)[0] == group}
        fields = {name: tuple(a.shape[1:]) for name, a in members.items() if a.attrs.get("ragged", False)}
        if not fields:
            continue
        derived = all(name in members for name in DERIVED_ARRAYS) and len(fields) == 1
        first = members[next(iter(fields))]
        specs.append(
            SequenceSpec(
                group,
                fields,
                steps=int(members["aligned"].shape[1]) if derived else 0,
                derived=derived,
                dtype=str(first.dtype),
                attrs=dict(fs.group[group].attrs),
            )
        )
        covered |= {f"{group}/{n}" for n in [*fields, "offsets", *(DERIVED_ARRAYS if derived else ())]}
    for path, arr in arrays.items():
        if path not in covered:
            attrs = {k: v for k, v in arr.attrs.items() if k != CHECKSUMS_ATTR}
            specs.append(VectorSpec(path, tuple(arr.shape[1:]), dtype=str(arr.dtype), attrs=attrs))
    return specs
