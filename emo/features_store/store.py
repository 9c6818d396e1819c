"""Reading a feature store: the clip table, feature arrays, provenance and a summary of what is inside."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from emo.errors import StoreError, UsageError
from emo.features_store.fastread import read_rows
from emo.features_store.location import StoreLocation, parse_location, storage_errors
from emo.features_store.schema import (
    CLIP_COLUMN_NAMES,
    GRID_STORE_VERSION,
    MODALITIES,
    STORE_VERSION,
    partly_decoded_clips,
)

if TYPE_CHECKING:
    import pandas as pd

#: Root attribute holding the number of committed rows; arrays may hold more after an interrupted write.
ROWS_ATTR = "rows"

#: Codecs a store may use: pure data transforms. Anything else (a pickle-based or unknown codec that a
#: plugin might register) is refused before a chunk is decoded, since a store can come from anyone.
SAFE_CODECS = frozenset(
    {"bytes", "blosc", "zstd", "gzip", "crc32c", "transpose", "vlen-utf8", "vlen-bytes", "sharding_indexed"}
    | {f"numcodecs.{n}" for n in ("blosc", "zstd", "gzip", "zlib", "lz4", "bz2", "lzma", "crc32", "crc32c")}
    | {f"numcodecs.{n}" for n in ("adler32", "fletcher32", "shuffle", "delta", "bitround", "packbits")}
)


def unsafe_codecs(arr: zarr.Array) -> list[str]:
    """Names of the codecs of ``arr`` (sharding's inner codecs included) that are not in SAFE_CODECS."""

    def names(codecs: Any) -> list[str]:
        out = []
        for codec in codecs or ():
            spec = codec if isinstance(codec, dict) else codec.to_dict()
            out.append(str(spec.get("name")))
            config = spec.get("configuration") or {}
            out += names(config.get("codecs")) + names(config.get("index_codecs"))
        return out

    return [n for n in names(arr.metadata.to_dict().get("codecs")) if n not in SAFE_CODECS]


def members(group: zarr.Group) -> list[tuple[str, Any]]:
    """Every node below ``group`` (paths relative to it), without Zarr's warning about the writer's lock file."""
    with warnings.catch_warnings():
        # the writer's lock file sits at the root of a directory store; it is not a Zarr node
        warnings.filterwarnings("ignore", message="Object at .* is not recognized", category=UserWarning)
        return list(group.members(max_depth=None))


class StoreVersionError(UsageError):
    """The store was written by a newer emo with a format this version cannot read."""


def before_time_grid(attrs: dict[str, Any], display: str) -> str | None:
    """Why a store's ``aligned`` views cannot be used as one time grid (None when they can)."""
    version = int(attrs.get("emo_store_version", STORE_VERSION))
    if version >= GRID_STORE_VERSION:
        return None
    return (
        f"{display} was extracted before emo put every modality on one time grid (store format {version}): step i "
        "of its audio and video aligned views describes different moments; run 'emo store realign "
        f"{display}' (recomputes aligned and mask from values and offsets) or extract it again"
    )


def check_version(attrs: dict[str, Any], display: str) -> None:
    """Refuse stores of a newer format, and groups that are not emo stores at all."""
    version = attrs.get("emo_store_version")
    if version is None:
        raise StoreError(f"{display} is a Zarr group but not an emo feature store (no 'emo_store_version')")
    if int(version) > STORE_VERSION:
        raise StoreVersionError(
            f"{display} was written by emo {attrs.get('emo_version', '?')} (store format {version}); "
            f"this emo reads formats up to {STORE_VERSION}: upgrade emo"
        )


class FeatureStore:
    """A read-only view of an emo feature store (directory, .zip or fsspec URL).

    Only committed rows are visible: after an interrupted write an array may physically hold more rows
    than the store's ``rows`` attribute, and those are ignored here. Array metadata is read once, when the
    arrays are first listed (one round trip per array matters on an object store).
    """

    def __init__(self, group: zarr.Group, location: StoreLocation) -> None:
        self.group = group
        self.location = location
        self.attrs: dict[str, Any] = dict(group.attrs)
        check_version(self.attrs, location.display)
        self.n_clips: int = int(self.attrs.get(ROWS_ATTR, 0))
        self._arrays: dict[str, zarr.Array] | None = None
        self._opened: dict[str, zarr.Array] = {}  # arrays looked up one by one before (or without) a listing

    @classmethod
    def open(cls, store: str | StoreLocation, storage_options: dict[str, Any] | None = None) -> FeatureStore:
        """Open an existing store for reading."""
        location = parse_location(store, storage_options)
        with storage_errors(location, action="cannot open the store"):
            if not location.exists():
                raise UsageError(f"no feature store at {location.display}")
            try:
                group = zarr.open_group(location.zarr_store(read_only=True), mode="r")
            except (FileNotFoundError, ValueError, KeyError) as exc:
                raise StoreError(f"cannot open the store at {location.display}: {location.redact(str(exc))}") from None
            return cls(group, location)

    # -- provenance -------------------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        return list(self.attrs.get("labels", []))

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.attrs.get("extraction", {}).get("config", {}))

    @property
    def config_hash(self) -> str:
        return str(self.attrs.get("extraction", {}).get("config_hash", ""))

    # -- arrays -----------------------------------------------------------------------------------------
    def array_paths(self) -> list[str]:
        """Every array in the store (clip table included), sorted by path."""
        if self._arrays is None:
            self._arrays = {name: node for name, node in sorted(members(self.group)) if isinstance(node, zarr.Array)}
        return list(self._arrays)

    def feature_paths(self) -> list[str]:
        """The feature arrays (everything outside ``clips/``)."""
        return [p for p in self.array_paths() if p.split("/")[0] in MODALITIES]

    def array(self, path: str) -> zarr.Array:
        try:
            if self._arrays is not None and path in self._arrays:
                node = self._arrays[path]
            else:
                node = self._opened[path] if path in self._opened else self.group[path]
        except KeyError:
            raise UsageError(
                f"no array '{path}' in {self.location.display}; "
                f"it has: {', '.join(self.feature_paths()) or 'no feature arrays'}"
            ) from None
        if not isinstance(node, zarr.Array):
            raise UsageError(f"'{path}' in {self.location.display} is a group, not an array")
        self._opened[path] = node
        if unsafe := unsafe_codecs(node):
            raise StoreError(
                f"'{path}' in {self.location.display} uses codec(s) {', '.join(unsafe)} that emo does not decode "
                "(only plain compression and byte codecs are trusted in a shared store)"
            )
        return node

    def is_ragged(self, path: str) -> bool:
        """True for per-frame arrays that share the ``offsets`` of their group."""
        return bool(self.array(path).attrs.get("ragged", False))

    def offsets(self, group_path: str) -> np.ndarray:
        """The [N+1] row offsets of a ragged group."""
        return np.asarray(self.array(f"{group_path}/offsets")[: self.n_clips + 1])

    def committed_length(self, path: str) -> int:
        """Length along the first axis that committed rows occupy (frames for ragged fields)."""
        arr = self.array(path)
        if arr.attrs.get("ragged", False):
            return int(self.array(f"{path.rsplit('/', 1)[0]}/offsets")[self.n_clips])
        if path.endswith("/offsets"):
            return self.n_clips + 1
        return self.n_clips

    def read(self, path: str) -> np.ndarray:
        """The committed contents of one array (all rows, or all frames of a ragged field)."""
        return read_rows(self.array(path), self.committed_length(path))

    def sequences(self, path: str) -> list[np.ndarray]:
        """A ragged field split into one array per clip."""
        values = self.read(path)
        offsets = self.offsets(path.rsplit("/", 1)[0])
        return [values[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]

    def clips(self) -> pd.DataFrame:
        """The clip table, one row per clip in store order."""
        import pandas as pd  # not at module level: the extraction driver opens stores without needing it

        data = {name: self.read(f"clips/{name}") for name in CLIP_COLUMN_NAMES if f"clips/{name}" in self.group}
        df = pd.DataFrame(data)
        for name, col in df.items():
            if col.dtype.kind in "OUT":
                df[name] = col.astype(object)
        return df

    def iter_arrays(self) -> Iterator[tuple[str, zarr.Array]]:
        for path in self.array_paths():
            yield path, self.array(path)

    # -- summary ----------------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Everything ``emo store info`` shows, as JSON-able data."""
        clips = self.clips()
        by_status = {m: dict(Counter(clips[f"status_{m}"].tolist())) for m in MODALITIES if f"status_{m}" in clips}
        partial = {}
        for modality in ("audio", "video"):
            ids = clips["clip_id"][partly_decoded_clips(clips, modality)].tolist() if len(clips) else []
            partial[modality] = {"count": len(ids), "clip_ids": ids}
        arrays = []
        for path, arr in self.iter_arrays():
            arrays.append(
                {
                    "path": path,
                    "shape": [self.committed_length(path), *arr.shape[1:]],
                    "dtype": str(arr.metadata.data_type) if arr.dtype.kind == "T" else str(arr.dtype),
                    "chunks": list(arr.chunks),
                    "bytes_stored": int(arr.nbytes_stored()),
                    "extractor": arr.attrs.get("extractor", ""),
                }
            )
        extraction = self.attrs.get("extraction", {})
        return {
            "store": self.location.display,
            "emo_store_version": self.attrs.get("emo_store_version"),
            "emo_version": self.attrs.get("emo_version"),
            "created_at": self.attrs.get("created_at"),
            "updated_at": self.attrs.get("updated_at"),
            "dataset": self.attrs.get("dataset", {}),
            "n_clips": self.n_clips,
            "labels": self.labels,
            "clips_by_label": dict(Counter(clips["label_name"].replace("", "(unknown)").tolist()))
            if len(clips)
            else {},
            "clips_by_status": by_status,
            "partly_decoded": partial,
            "arrays": arrays,
            "bytes_stored": sum(a["bytes_stored"] for a in arrays),
            "extraction": {"config_hash": extraction.get("config_hash"), "config": extraction.get("config")},
            "software": self.attrs.get("software", {}),
            **({"merged_from": self.attrs["merged_from"]} if "merged_from" in self.attrs else {}),
        }
