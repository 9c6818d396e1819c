"""``emo store verify``: is this store whole and what its writer recorded, without a reference copy?

Checks, in order: the schema (format version, root attributes, the clip table's columns, trusted codecs);
that every array's committed rows agree with ``clips/clip_id`` (ragged arrays with their group's offsets,
which must start at 0 and never decrease); and the recorded chunk checksums. By default the checksums are
checked against one listing of the stored objects (every chunk present, of the recorded size, none
unrecorded): cheap on an object store, and it catches missing, truncated and extra chunks. ``deep`` reads
every chunk, compares its sha256 and decodes it, which catches any changed byte.

Rows an interrupted writer appended but never committed are not an error (readers ignore them and the next
writer trims them): they are reported as warnings, and the chunk they share with committed rows, which
the interrupted write rewrote, is decoded but not compared with its checksum.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr
from zarr.core.buffer import default_buffer_prototype

from emo.errors import StoreError
from emo.features_store.checksums import ALGORITHM, ChunkRef, chunks_for_rows, digest, recorded
from emo.features_store.location import StoreLocation, parse_location, storage_errors
from emo.features_store.objects import StoreObjects
from emo.features_store.schema import CLIP_COLUMNS, MODALITIES
from emo.features_store.store import ROWS_ATTR, FeatureStore

#: Root attributes every emo store has.
REQUIRED_ROOT_ATTRS = ("emo_store_version", "labels", "extraction", "dataset", "chunk_rows", ROWS_ATTR)
_SHOWN = 5


@dataclass
class Finding:
    """One problem or warning, attached to an array or group path ("" = the store itself)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


@dataclass
class VerifyReport:
    """What ``verify_store`` found."""

    store: str
    deep: bool
    problems: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    n_clips: int = 0
    n_arrays: int = 0
    n_chunks: int = 0
    bytes_hashed: int = 0
    seconds: float = 0.0
    #: recorded digest of every committed chunk that could be checked, by store key (for copies)
    digests: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, path: str, message: str) -> None:
        self.problems.append(Finding(path, message))

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(Finding(path, message))

    def lines(self) -> list[str]:
        """The human-readable report: a verdict, then every problem and warning with its array path."""
        what = f"{self.n_clips} clips, {self.n_arrays} arrays, {self.n_chunks} chunk checksums checked"
        how = (
            f"every chunk read, hashed and decoded ({self.bytes_hashed} bytes)"
            if self.deep
            else "sizes against the stored objects; --deep re-hashes every chunk"
        )
        verdict = "OK" if self.ok else f"FAILED: {len(self.problems)} problem(s)"
        out = [f"{self.store}: {verdict} ({what}; {how}; {self.seconds:.1f} s)"]
        out += [f"  problem  {f}" for f in self.problems]
        out += [f"  warning  {f}" for f in self.warnings]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "ok": self.ok,
            "deep": self.deep,
            "n_clips": self.n_clips,
            "n_arrays": self.n_arrays,
            "n_chunks_checked": self.n_chunks,
            "bytes_hashed": self.bytes_hashed,
            "seconds": round(self.seconds, 3),
            "problems": [{"path": f.path, "message": f.message} for f in self.problems],
            "warnings": [{"path": f.path, "message": f.message} for f in self.warnings],
        }


def _listed(items: list[str]) -> str:
    more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return ", ".join(items[:_SHOWN]) + more


def verify_store(
    store: str | StoreLocation | FeatureStore,
    storage_options: dict[str, Any] | None = None,
    *,
    deep: bool = False,
    objects: StoreObjects | None = None,
) -> VerifyReport:
    """Check a store's schema, row counts and recorded checksums (``deep``: every chunk re-hashed and decoded).

    ``objects`` reuses a listing of the stored objects that the caller made already.
    """
    started = time.monotonic()
    location = store.location if isinstance(store, FeatureStore) else parse_location(store, storage_options)
    report = VerifyReport(location.display, deep)
    with storage_errors(location, action="cannot verify the store"):
        try:
            fs = store if isinstance(store, FeatureStore) else FeatureStore.open(location)
        except StoreError as exc:
            report.problem("", str(exc))
            return report
        report.n_clips = fs.n_clips
        arrays = _check_schema(fs, report)
        report.n_arrays = len(arrays)
        lengths = _check_rows(fs, arrays, report)
        _check_chunks(objects or StoreObjects(location), arrays, lengths, report, deep)
    report.seconds = time.monotonic() - started
    return report


def _check_schema(fs: FeatureStore, report: VerifyReport) -> dict[str, zarr.Array]:
    """Root attributes, clip columns and codecs; returns the arrays that are safe to read."""
    for key in REQUIRED_ROOT_ATTRS:
        if key not in fs.attrs:
            report.problem("", f"root attribute '{key}' is missing")
    labels = fs.attrs.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        report.problem("", "root attribute 'labels' is not a list of names")
    if not fs.config_hash:
        report.problem("", "root attribute 'extraction' has no config_hash")
    arrays: dict[str, zarr.Array] = {}
    for path in fs.array_paths():
        try:
            arrays[path] = fs.array(path)
        except StoreError as exc:
            report.problem(path, str(exc))
        if path.split("/")[0] not in ("clips", *MODALITIES):
            report.warn(path, "not part of the emo schema (rows are not checked against clips/clip_id)")
    for column in CLIP_COLUMNS:
        if column.required and f"clips/{column.name}" not in arrays:
            report.problem(f"clips/{column.name}", "column of the clip table is missing")
    return arrays


def _check_rows(fs: FeatureStore, arrays: dict[str, zarr.Array], report: VerifyReport) -> dict[str, int]:
    """Committed length of every array (rows, or frames of ragged ones), checked against what is stored."""
    n = fs.n_clips
    ends: dict[str, int] = {}  # ragged group -> offsets[n]
    committed: dict[str, int] = {}
    axes = {path: _row_axis(path, arr) for path, arr in arrays.items()}
    for path, arr in arrays.items():
        if axes[path] != "clip_edge":
            continue
        group = path.rsplit("/", 1)[0]
        if arr.shape[0] < n + 1:
            report.problem(path, f"has {arr.shape[0]} entries, {n + 1} expected for {n} committed clips")
            continue
        offsets = np.asarray(arr[: n + 1])
        if offsets[0] != 0:
            report.problem(path, f"starts at {offsets[0]}, not 0")
        if (bad := np.flatnonzero(np.diff(offsets) < 0)).size:
            report.problem(path, f"decreases after clip(s) {_listed([str(i) for i in bad])}")
        ends[group] = int(offsets[-1])
    for path, arr in arrays.items():
        physical = arr.shape[0] if arr.ndim else 0
        group = path.rsplit("/", 1)[0]
        if axes[path] == "clip_edge":
            expected, unit = n + 1, "entries"
        elif axes[path] == "frame":
            if f"{group}/offsets" not in arrays:
                report.problem(path, f"ragged array without {group}/offsets")
                continue
            if group not in ends:
                continue  # its offsets are already reported
            expected, unit = ends[group], "frames"
        elif axes[path] == "clip":
            expected, unit = n, "rows"
        else:  # not along the clip axis (e.g. the weights of a model that computed a derived feature)
            committed[path] = physical
            continue
        committed[path] = min(expected, physical)
        if physical < expected:
            what = f"{group}/offsets say {expected}" if unit == "frames" else f"clips/clip_id has {n} committed clips"
            report.problem(path, f"has {physical} {unit}, but {what}")
        elif physical > expected:
            report.warn(
                path,
                f"holds {physical - expected} uncommitted {unit} after the committed {expected} "
                "(an interrupted write; readers ignore them, the next writer trims them)",
            )
    if "clips/clip_id" in arrays and arrays["clips/clip_id"].shape[0] >= n:
        ids = np.array([str(x) for x in arrays["clips/clip_id"][:n]], dtype=object)
        unique, counts = np.unique(ids, return_counts=True)
        if (dup := unique[counts > 1]).size:
            report.problem("clips/clip_id", f"duplicate clip ids: {_listed(dup.tolist())}")
        if empty := int((ids == "").sum()):
            report.problem("clips/clip_id", f"{empty} empty clip id(s)")
    if {"clips/label", "clips/label_name"} <= arrays.keys() and arrays["clips/label"].shape[0] >= n:
        labels = list(fs.attrs.get("labels", []))
        index = np.asarray(arrays["clips/label"][:n]).astype(np.int64)
        names = [str(x) for x in arrays["clips/label_name"][:n]]
        out_of_range = [str(i) for i in np.flatnonzero((index < -1) | (index >= len(labels)))]
        if out_of_range:
            report.problem("clips/label", f"index outside the {len(labels)} labels at row(s) {_listed(out_of_range)}")
        else:
            expected = [labels[k] if k >= 0 else "" for k in index]
            wrong = [str(i) for i, (e, name) in enumerate(zip(expected, names, strict=True)) if e != name]
            if wrong:
                rows = _listed(wrong)
                report.problem("clips/label_name", f"disagrees with labels[label] at row(s) {rows}")
    return committed


def _shared_chunk(arr: zarr.Array, length: int) -> int | None:
    """Index along the first axis of the chunk holding both committed rows and uncommitted ones, if any."""
    rows = arr.chunks[0] if arr.ndim else 1
    return length // rows if arr.ndim and arr.shape[0] > length and length % rows else None


def _row_axis(path: str, arr: zarr.Array) -> str:
    """What the first axis of an array counts: "clip", "frame" (ragged), "clip_edge" (offsets) or "" (other).

    Read from the array's dimension names, which the writer sets; older arrays fall back on the layout.
    """
    names = getattr(arr.metadata, "dimension_names", None)
    if names and names[0] in ("clip", "frame", "clip_edge"):
        return str(names[0])
    if names and names[0]:
        return ""
    if path.endswith("/offsets"):
        return "clip_edge"
    if arr.attrs.get("ragged", False):
        return "frame"
    return "clip" if path.split("/")[0] in ("clips", *MODALITIES) and not arr.attrs.get("derived") else ""


def _check_chunks(
    objects: StoreObjects,
    arrays: dict[str, zarr.Array],
    committed: dict[str, int],
    report: VerifyReport,
    deep: bool,
) -> None:
    sizes = objects.sizes()
    for path, arr in arrays.items():
        if path not in committed:
            continue
        length = committed[path]
        refs = chunks_for_rows(arr, 0, length)
        rec = recorded(arr)
        if rec is None:
            report.warn(
                path,
                "no chunk checksums recorded (not written by emo's store writer, or by an emo before checksums); "
                "only --deep decoding checks its chunks",
            )
        shared = _shared_chunk(arr, length)
        missing, unrecorded, wrong_size, extra, changed, undecodable = [], [], [], [], [], []
        to_read: list[ChunkRef] = []
        for ref in refs:
            full = f"{path}/{ref.key}"
            present = full in sizes
            if present:
                to_read.append(ref)
            if rec is None or ref.coords[0] == shared:
                continue
            report.n_chunks += 1
            if ref.key not in rec:
                unrecorded.append(ref.key)
            elif rec[ref.key] is None:
                if present:
                    extra.append(ref.key)
            elif not present:
                missing.append(ref.key)
            elif sizes[full] != rec[ref.key].get("bytes"):
                wrong_size.append(f"{ref.key} ({sizes[full]} bytes, recorded {rec[ref.key].get('bytes')})")
            else:
                report.digests[full] = rec[ref.key]
        if deep and to_read:
            changed, undecodable = _deep_check(objects, path, arr, to_read, rec, shared, sizes, report)
        for keys, message in (
            (missing, "chunk object(s) missing"),
            (wrong_size, "chunk object(s) of the wrong size"),
            (changed, f"chunk(s) whose {ALGORITHM} differs from the recorded one"),
            (undecodable, "chunk(s) that cannot be decoded"),
            (extra, "chunk object(s) present where the writer recorded none (fill value only)"),
            (unrecorded, "chunk(s) without a recorded checksum"),
        ):
            if keys:
                report.problem(path, f"{len(keys)} {message}: {_listed(keys)}")


def _deep_check(
    objects: StoreObjects,
    path: str,
    arr: zarr.Array,
    refs: list[ChunkRef],
    rec: dict[str, Any] | None,
    shared: int | None,
    sizes: dict[str, int],
    report: VerifyReport,
) -> tuple[list[str], list[str]]:
    """Hash and decode every stored chunk of ``refs``; returns the keys that differ and that do not decode."""
    proto = default_buffer_prototype()
    (_, meta), *_ = objects.read([f"{path}/zarr.json"])
    by_key = {r.key: r for r in refs}
    changed, undecodable = [], []
    for full, data in objects.read([f"{path}/{r.key}" for r in refs], sizes):
        ref = by_key[full[len(path) + 1 :]]
        report.bytes_hashed += len(data)
        entry = (rec or {}).get(ref.key)
        checkable = rec is not None and ref.coords[0] != shared and entry is not None
        if checkable and digest(data)[ALGORITHM] != entry.get(ALGORITHM):
            changed.append(ref.key)
        # decode exactly the bytes that were hashed, in a one-chunk in-memory copy of the array
        memory = zarr.storage.MemoryStore(
            {"zarr.json": proto.buffer.from_bytes(meta), ref.key: proto.buffer.from_bytes(data)}
        )
        try:
            zarr.open_array(memory, mode="r").get_block_selection(ref.coords)
        except Exception as exc:  # any codec failure means the chunk is unreadable
            undecodable.append(f"{ref.key} ({type(exc).__name__})")
    return changed, undecodable
