"""``emo store merge``: join stores extracted by different people into one, when that is sound.

Stores are merged only when they were extracted with the same configuration (same config hash) and hold the
same label set, possibly after renaming labels (``label_map``); otherwise the refusal names the differing
config keys or labels. A clip is identified by its media (``source_sha256``): the same media in several
stores is kept once, while the same ``clip_id`` naming different media (or the same media labelled
differently) is a conflict that is reported and refused. The output is written by ``StoreWriter`` like
any extraction (chunk-aligned commits, checksums, the writer lock) and records its sources in the root
attribute ``merged_from``. Derived arrays (``derived`` attribute, e.g. ``audio/ae``) are not carried over:
they were computed from one store's clips and must be recomputed on the merged store.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emo.errors import StoreError, UsageError
from emo.features_store.checksums import CHECKSUMS_ATTR
from emo.features_store.clip_result import ClipResult
from emo.features_store.layout import DERIVED_ARRAYS, feature_specs, is_derived
from emo.features_store.location import StoreLocation, parse_location, storage_errors
from emo.features_store.resume import config_differences
from emo.features_store.schema import CLIP_COLUMNS, FeatureSpec, VectorSpec
from emo.features_store.store import FeatureStore, before_time_grid
from emo.features_store.verify import verify_store
from emo.features_store.writer import StoreWriter

log = logging.getLogger(__name__)

_SHOWN = 5
@dataclass
class MergeReport:
    """What a merge took from each source and what it left out."""

    output: str
    labels: list[str] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    n_clips: int = 0
    duplicates: list[dict[str, str]] = field(default_factory=list)
    dropped_arrays: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "n_clips": self.n_clips,
            "labels": self.labels,
            "sources": self.sources,
            "n_duplicates": len(self.duplicates),
            "duplicates": self.duplicates,
            "dropped_arrays": self.dropped_arrays,
            "seconds": round(self.seconds, 3),
        }


def parse_label_map(text: str | None) -> dict[str, str]:
    """``old=new,old2=new2`` (``--map-labels``) to a dict."""
    mapping: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        old, sep, new = (part.strip() for part in item.partition("="))
        if not sep or not old or not new:
            raise UsageError(f"--map-labels takes old=new[,old=new...], got {item.strip()!r}")
        mapping[old] = new
    return mapping


def _listed(items: Sequence[str]) -> str:
    more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return ", ".join(items[:_SHOWN]) + more


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        value = value.get(part, "<absent>") if isinstance(value, dict) else "<absent>"
    return value


def _mapped_labels(labels: Sequence[str], label_map: dict[str, str]) -> list[str]:
    out: list[str] = []
    for name in labels:
        new = label_map.get(name, name)
        if new not in out:
            out.append(new)
    return out


def _array_signature(fs: FeatureStore) -> dict[str, str]:
    sig = {}
    for path in fs.feature_paths():
        if not is_derived(fs, path):
            arr = fs.array(path)
            sig[path] = f"{tuple(arr.shape[1:])} {arr.dtype}"
    return sig


def check_mergeable(stores: Sequence[FeatureStore], label_map: dict[str, str]) -> list[str]:
    """Refuse stores that cannot be merged, naming what differs; returns the merged label order."""
    first = stores[0]
    name = {id(s): s.location.display for s in stores}
    for other in stores[1:]:
        if other.config_hash != first.config_hash:
            keys = config_differences(first.config, other.config)
            detail = "; ".join(
                f"{k}: {name[id(first)]} has {_lookup(first.config, k)!r}, {name[id(other)]} has "
                f"{_lookup(other.config, k)!r}"
                for k in keys[:8]
            )
            raise UsageError(
                f"cannot merge: the stores were extracted with different configurations "
                f"({detail or 'config hash ' + first.config_hash + ' vs ' + other.config_hash}); "
                "re-extract one of them with the other's options"
            )
    unknown = set(label_map) - {label for s in stores for label in s.labels}
    if unknown:
        raise UsageError(f"--map-labels: no store has the label(s) {_listed(sorted(unknown))}")
    labels = _mapped_labels(first.labels, label_map)
    for other in stores[1:]:
        theirs = _mapped_labels(other.labels, label_map)
        if set(theirs) != set(labels):
            only_first = [x for x in labels if x not in theirs]
            only_other = [x for x in theirs if x not in labels]
            raise UsageError(
                "cannot merge: the label sets differ: "
                f"only in {name[id(first)]}: {_listed(only_first) or '-'}; "
                f"only in {name[id(other)]}: {_listed(only_other) or '-'}; "
                "if these are the same emotions under other names, map them with --map-labels old=new,..."
            )
    signature = _array_signature(first)
    for other in stores[1:]:
        theirs = _array_signature(other)
        differ = sorted(p for p in set(signature) | set(theirs) if signature.get(p) != theirs.get(p))
        if differ:
            raise UsageError(
                f"cannot merge: the feature arrays differ between {name[id(first)]} and {name[id(other)]}: "
                + _listed([f"{p} ({signature.get(p, 'absent')} vs {theirs.get(p, 'absent')})" for p in differ])
            )
    return labels


def plan_rows(stores: Sequence[FeatureStore], label_map: dict[str, str], report: MergeReport) -> list[list[int]]:
    """The rows of each store that go into the merge; refuses clip ids naming different media."""
    by_sha: dict[str, tuple[str, str, str, int]] = {}  # sha -> (clip_id, label, store, store index)
    by_id: dict[str, tuple[str, str]] = {}  # clip_id -> (sha, store)
    conflicts: list[str] = []
    plan: list[list[int]] = []
    for index, fs in enumerate(stores):
        clips = fs.clips()
        rows: list[int] = []
        for i, (cid, sha, label) in enumerate(
            zip(clips["clip_id"], clips["source_sha256"], clips["label_name"], strict=True)
        ):
            cid, sha, label = str(cid), str(sha), label_map.get(str(label), str(label))
            where = fs.location.display
            # identical media within one store are separate clips of that dataset; across stores, one clip
            if sha and sha in by_sha and by_sha[sha][3] != index:
                kept_id, kept_label, kept_where, _ = by_sha[sha]
                if kept_label != label:
                    conflicts.append(
                        f"{cid}: the same media is labelled {kept_label!r} in {kept_where} and {label!r} in {where}"
                    )
                else:
                    report.duplicates.append({"clip_id": cid, "kept": kept_id, "store": where, "kept_from": kept_where})
                continue
            if cid in by_id:
                kept_sha, kept_where = by_id[cid]
                if kept_sha and sha:
                    conflicts.append(
                        f"{cid}: different media in {kept_where} (sha256 {kept_sha[:12]}) "
                        f"and {where} (sha256 {sha[:12]})"
                    )
                else:
                    conflicts.append(f"{cid}: in {kept_where} and {where}, with no source_sha256 to tell if same media")
                continue
            by_id[cid] = (sha, where)
            if sha and sha not in by_sha:
                by_sha[sha] = (cid, label, where, index)
            rows.append(i)
        plan.append(rows)
    if conflicts:
        raise UsageError(
            f"cannot merge: {len(conflicts)} clip(s) conflict: {'; '.join(conflicts[:_SHOWN])}"
            + (f"; and {len(conflicts) - _SHOWN} more" if len(conflicts) > _SHOWN else "")
            + " (rename the clips in one dataset, or leave one store out)"
        )
    return plan


def _results(
    fs: FeatureStore, specs: Sequence[FeatureSpec], rows: list[int], labels: list[str], label_map: dict[str, str]
) -> list[ClipResult]:
    """The clips at ``rows`` (sorted, within one block) as writer inputs, labels renamed and re-indexed."""
    start, stop = rows[0], rows[-1] + 1
    columns = {c.name: fs.array(f"clips/{c.name}")[start:stop] for c in CLIP_COLUMNS if f"clips/{c.name}" in fs.group}
    block: dict[str, Any] = {}
    ragged: dict[str, tuple[np.ndarray, int]] = {}
    for spec in specs:
        if isinstance(spec, VectorSpec):
            block[spec.path] = fs.array(spec.path)[start:stop]
            continue
        offsets = np.asarray(fs.array(f"{spec.path}/offsets")[start : stop + 1])
        ragged[spec.path] = (offsets, int(offsets[0]))
        for name in spec.fields:
            block[f"{spec.path}/{name}"] = fs.array(f"{spec.path}/{name}")[int(offsets[0]) : int(offsets[-1])]
        if spec.derived:
            for name in DERIVED_ARRAYS:
                block[f"{spec.path}/{name}"] = fs.array(f"{spec.path}/{name}")[start:stop]
    out = []
    for i in rows:
        j = i - start
        values = {name: col[j] for name, col in columns.items()}
        name = label_map.get(str(values.get("label_name", "")), str(values.get("label_name", "")))
        values["label_name"] = name
        values["label"] = labels.index(name) if name else -1
        arrays: dict[str, np.ndarray] = {}
        for spec in specs:
            if isinstance(spec, VectorSpec):
                arrays[spec.path] = np.asarray(block[spec.path][j])
                continue
            offsets, base = ragged[spec.path]
            a, b = int(offsets[j]) - base, int(offsets[j + 1]) - base
            for field_name in spec.fields:
                arrays[f"{spec.path}/{field_name}"] = np.asarray(block[f"{spec.path}/{field_name}"][a:b])
            if spec.derived:
                for derived in DERIVED_ARRAYS:
                    arrays[f"{spec.path}/{derived}"] = np.asarray(block[f"{spec.path}/{derived}"][j])
        out.append(ClipResult(values, arrays))
    return out


def merge_stores(
    sources: Sequence[str | StoreLocation],
    output: str | StoreLocation,
    *,
    label_map: dict[str, str] | None = None,
    overwrite: bool = False,
    storage_options: dict[str, Any] | None = None,
    output_options: dict[str, Any] | None = None,
) -> MergeReport:
    """Merge ``sources`` into a new store at ``output`` (see the module docstring for the rules)."""
    started = time.monotonic()
    label_map = label_map or {}
    if len(sources) < 2:
        raise UsageError("merge needs at least two stores")
    locations = [parse_location(s, storage_options) for s in sources]
    out = parse_location(output, storage_options if output_options is None else output_options)
    if out.read_only:
        raise UsageError(
            f"cannot merge into {out.display}: it is read-only; merge into a directory (or an object store) "
            "and run 'emo store pack'"
        )
    report = MergeReport(out.display)
    with storage_errors(*locations, out, action="merge failed"):
        if any(loc.same_place(out) for loc in locations):
            raise UsageError(f"{out.display} is one of the stores being merged; choose a new output")
        if out.exists() and not overwrite:
            raise UsageError(f"{out.display} already exists; use --overwrite to replace it")
        stores = [FeatureStore.open(loc) for loc in locations]
        for fs in stores:
            if (reason := before_time_grid(fs.attrs, fs.location.display)) is not None:
                raise UsageError(f"{reason}; then merge")
            checked = verify_store(fs)
            if not checked.ok:
                raise StoreError(
                    f"{fs.location.display} has problems, refusing to merge it: "
                    + "; ".join(str(p) for p in checked.problems[:3])
                    + " (see 'emo store verify')"
                )
        labels = check_mergeable(stores, label_map)
        report.labels = labels
        plan = plan_rows(stores, label_map, report)
        first = stores[0]
        specs = feature_specs(first)
        report.dropped_arrays = sorted(
            {p for fs in stores for p in fs.feature_paths() if is_derived(fs, p)} - {s.path for s in specs}
        )
        adapters = sorted({str(fs.attrs.get("dataset", {}).get("adapter", "")) for fs in stores})
        writer = StoreWriter.open(
            out,
            specs=specs,
            labels=labels,
            dataset={
                "adapter": adapters[0] if len(adapters) == 1 else "mixed",
                "root": f"merge of {len(stores)} stores (see merged_from)",
                "n_clips": sum(len(r) for r in plan),
            },
            extraction={"config": first.config, "config_hash": first.config_hash},
            software=dict(first.attrs.get("software", {})),
            chunk_rows=int(first.attrs.get("chunk_rows", 256)),
            overwrite=overwrite,
            flush_seconds=float("inf"),
        )
        try:
            for spec in specs:  # the sources' array attributes (extractor, parameters, units), not the defaults
                for path in spec.arrays():
                    attrs = {k: v for k, v in first.array(path).attrs.items() if k != CHECKSUMS_ATTR}
                    writer.group[path].update_attributes(attrs)
            merged_from = []
            for fs, rows in zip(stores, plan, strict=True):
                merged_from.append(
                    {
                        "store": fs.location.display,
                        "n_clips": fs.n_clips,
                        "n_taken": len(rows),
                        "created_at": fs.attrs.get("created_at"),
                        "emo_version": fs.attrs.get("emo_version"),
                        "dataset": fs.attrs.get("dataset", {}),
                        "labels": fs.labels,
                    }
                )
                chunk = int(fs.attrs.get("chunk_rows", 256))
                for _, block in itertools.groupby(rows, key=lambda r, c=chunk: r // c):  # one source chunk at a time
                    for result in _results(fs, specs, list(block), labels, label_map):
                        writer.add(result)
            writer.flush()
            writer.group.attrs.update(
                {
                    "merged_from": merged_from,
                    "label_map": label_map,
                    "merged_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                }
            )
        except BaseException:
            writer.abort()
            raise
        writer.close()
        report.sources = merged_from
        report.n_clips = writer.rows
    report.seconds = time.monotonic() - started
    log.debug("merged %d stores into %s: %d clips", len(stores), out.display, report.n_clips)
    return report
