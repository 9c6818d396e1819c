"""Which labels a run trains on: the store's label column or a metadata field (MELD's ``Sentiment``), renamed
(``--map-labels``) and restricted to a subset of classes (``--classes``), as the papers' class sets need."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emo.errors import UsageError


@dataclass(frozen=True)
class LabelChoice:
    """``source``: "label" (the store's label) or "metadata:KEY" (a field of the clips' metadata JSON);
    ``mapping``: old name -> new name (several may map to one); ``classes``: the classes kept, in this order
    (clips of other classes are left out of training and evaluation)."""

    source: str = "label"
    mapping: Mapping[str, str] = field(default_factory=dict)
    classes: Sequence[str] | None = None

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "mapping": dict(self.mapping), "classes": list(self.classes or [])}


def parse_mapping(spec: str | None) -> dict[str, str]:
    """``OLD=NEW,OLD=NEW`` (``--map-labels``)."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in (spec or "").split(","))):
        old, sep, new = part.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise UsageError(f"--map-labels expects OLD=NEW pairs separated by commas, got {part!r}")
        out[old.strip()] = new.strip()
    return out


def _names(clips: Any, source: str) -> np.ndarray:
    if source == "label":
        return clips["label_name"].to_numpy().astype(str)
    kind, _, key = source.partition(":")
    if kind != "metadata" or not key:
        raise UsageError(f"--label-from must be 'label' or 'metadata:KEY', got {source!r}")
    values = []
    for text in clips.get("metadata", []):
        try:
            values.append(str(json.loads(text or "{}").get(key, "")))
        except ValueError:
            values.append("")
    if not any(values):
        raise UsageError(f"no clip of the store has a metadata field {key!r} (--label-from {source})")
    return np.asarray(values, dtype=str)


def clip_labels(clips: Any, store_labels: Sequence[str], choice: LabelChoice) -> tuple[np.ndarray, list[str]]:
    """(y [N] class index or -1, class names) for the clip table ``clips`` under ``choice``.

    Without ``classes`` the order is the store's label order (mapped names in order of first appearance),
    or, for a metadata field, sorted; only classes some clip has are kept.
    """
    names = _names(clips, choice.source)
    names = np.asarray([choice.mapping.get(n, n) if n else "" for n in names], dtype=str)
    present = [n for n in dict.fromkeys(names.tolist()) if n]
    if choice.classes:
        unknown = [c for c in choice.classes if c not in present]
        if unknown:
            raise UsageError(
                f"--classes {', '.join(unknown)}: no clip has that label; the labels are {', '.join(present)}"
            )
        order = list(choice.classes)
    elif choice.source == "label":
        order = list(dict.fromkeys(choice.mapping.get(s, s) for s in store_labels))
        order = [c for c in order if c in present] + sorted(set(present) - set(order))
    else:
        order = sorted(present)
    index = {c: i for i, c in enumerate(order)}
    y = np.asarray([index.get(n, -1) for n in names], dtype=np.int64)
    return y, order
