"""Fusion inputs read from a feature store: one tensor per modality, its presence mask, labels and groups.

Features are addressed by their store paths (DESIGN.md §5). A sequence group such as ``audio/mfcc`` gives
its ``pooled`` vector to vector heads and its ``aligned`` + ``mask`` to sequence heads; a vector array such
as ``audio/egemaps`` is repeated over the steps of a sequence head; ragged groups without an aligned view
(``text/tokens``) are aligned on load. Media are never decoded here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from emo.errors import UsageError
from emo.features_store.layout import feature_names
from emo.features_store.schema import MODALITIES, STATUS_OK
from emo.features_store.sequences import align
from emo.features_store.store import before_time_grid
from emo.fusion.heads._common import FrameInput
from emo.fusion.labels import LabelChoice, clip_labels

#: Features fitted inside every training split from other arrays of the store (never read as stored, so that
#: no statistic of a test clip reaches training): path -> the ragged frames it is computed from.
FITTED_FEATURES = {"audio/ae": "audio/mel", "audio/mfcc-cnn": "audio/mfcc"}
#: Width of a fitted feature when the caller does not say (the autoencoder's default bottleneck).
FITTED_DIM = 64

#: Features used when only ``--modalities`` is given, by (modality, input kind); the first that exist win.
DEFAULT_FEATURES: dict[tuple[str, str], tuple[str, ...]] = {
    ("audio", "vector"): ("audio/mfcc", "audio/egemaps"),
    ("audio", "sequence"): ("audio/mfcc",),
    ("audio", "frames"): ("audio/mel", "audio/mfcc"),  # a head reading frames takes the first one present
    ("video", "vector"): ("video/face", "video/summary"),
    ("video", "sequence"): ("video/face",),
    ("text", "vector"): ("text/mean",),
    ("text", "sequence"): ("text/tokens",),
}


class FeatureSource(Protocol):
    """What training and prediction read features through: a :class:`FeatureStore`, or the results of
    extracting new clips (``emo.fusion.predict.ResultsSource``) presented the same way."""

    n_clips: int
    config: dict[str, Any]
    config_hash: str
    labels: list[str]
    location: Any  # has .display, the name messages use

    def array_paths(self) -> list[str]: ...
    def feature_paths(self) -> list[str]: ...
    def read(self, path: str) -> np.ndarray: ...
    def sequences(self, path: str) -> list[np.ndarray]: ...
    def clips(self) -> Any: ...


@dataclass
class ModalityInput:
    """One modality's input for every clip: ``x`` [N, D] or [N, T, D], ``mask`` [N] or [N, T]."""

    name: str
    kind: str  # "vector" | "sequence" (aligned steps) | "frames" (the clip's own frames, cropped or resampled)
    features: list[str]
    dims: list[int]  # width of each feature inside the last axis of x, in ``features`` order
    x: np.ndarray
    mask: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.x.shape[-1])

    @property
    def present(self) -> np.ndarray:
        """[N] True where the clip has this modality at all."""
        return self.mask if self.mask.ndim == 1 else self.mask.any(axis=1)

    @property
    def fitted(self) -> list[str]:
        """The features of this input that a run fits on its training clips (:data:`FITTED_FEATURES`)."""
        return [f for f in self.features if f in FITTED_FEATURES]

    def with_values(self, feature: str, values: np.ndarray) -> ModalityInput:
        """A copy whose columns of ``feature`` hold ``values`` [N, d] (repeated over the steps of a sequence)."""
        i = self.features.index(feature)
        start = sum(self.dims[:i])
        x = self.x.copy()
        x[..., start : start + self.dims[i]] = values if x.ndim == 2 else values[:, None, :]
        return ModalityInput(self.name, self.kind, self.features, self.dims, x, self.mask)


@dataclass
class FusionData:
    """Everything a trainer needs from a store, already in memory."""

    clip_ids: np.ndarray
    y: np.ndarray  # class index into ``class_names``; -1 = unlabelled
    class_names: list[str]
    speakers: np.ndarray
    splits: np.ndarray
    dialogue_ids: np.ndarray
    utterance_idx: np.ndarray
    inputs: dict[str, ModalityInput]
    store: dict[str, Any] = field(default_factory=dict)  # location, config, config_hash, labels
    #: sha256 of each clip's media file ("" when unknown): byte-identical clips on both sides of a split leak
    source_sha256: np.ndarray | None = None
    #: per-clip frames that fitted features are computed from (e.g. "audio/mel" -> one [T_i, 128] per clip)
    frames: dict[str, list[np.ndarray]] = field(default_factory=dict)
    #: how the inputs were standardised before training: "global" (by the training split only, later) or
    #: "speaker" (each speaker's clips by their own statistics, emo.fusion.normalize)
    standardize: str = "global"

    @property
    def n(self) -> int:
        return int(self.clip_ids.size)

    @property
    def labelled(self) -> np.ndarray:
        return np.flatnonzero(self.y >= 0)

    def dialogue_codes(self) -> np.ndarray | None:
        """[N] integer dialogue of each clip for dialogue-context heads, or None when no clip has a dialogue id.
        Only real ids group clips: a clip with an empty ``dialogue_id`` is a dialogue of its own."""
        real = self.dialogue_ids != ""
        if not real.any():
            return None
        _, codes = np.unique(self.dialogue_ids[real], return_inverse=True)
        out = np.empty(self.n, np.int64)
        out[real] = codes
        out[~real] = codes.max(initial=-1) + 1 + np.arange(int((~real).sum()))
        return out

    def subset(self, rows: np.ndarray) -> FusionData:
        """The same data restricted to ``rows`` (used to drop unlabelled clips)."""
        return FusionData(
            clip_ids=self.clip_ids[rows],
            y=self.y[rows],
            class_names=self.class_names,
            speakers=self.speakers[rows],
            splits=self.splits[rows],
            dialogue_ids=self.dialogue_ids[rows],
            utterance_idx=self.utterance_idx[rows],
            inputs={
                k: ModalityInput(m.name, m.kind, m.features, m.dims, m.x[rows], m.mask[rows])
                for k, m in self.inputs.items()
            },
            store=self.store,
            source_sha256=None if self.source_sha256 is None else self.source_sha256[rows],
            frames={k: [v[i] for i in rows] for k, v in self.frames.items()},
            standardize=self.standardize,
        )


def _group_of(fs: FeatureSource, path: str) -> tuple[str, str]:
    """(kind, resolved path): 'vector' for a plain array, 'group' for a ragged group, or an explicit sub-array."""
    paths = set(fs.array_paths())
    if path in paths:
        leaf = path.rsplit("/", 1)[-1]
        if leaf in ("pooled", "aligned"):
            return leaf, path.rsplit("/", 1)[0]
        if leaf in ("values", "offsets", "mask"):
            return "group", path.rsplit("/", 1)[0]
        return "vector", path
    if f"{path}/offsets" in paths:
        return "group", path
    raise UsageError(
        f"no feature '{path}' in {fs.location.display}; it has: "
        f"{', '.join(feature_names(fs.feature_paths())) or 'no features'}"
    )


def _status_present(fs: FeatureSource, modality: str, clips: Any) -> np.ndarray:
    column = f"status_{modality}"
    return (clips[column].to_numpy() == STATUS_OK) if column in clips else np.ones(len(clips), bool)


def _load_feature(fs: FeatureSource, path: str, kind: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """One feature as (x, valid) in the layout of ``kind``."""
    what, group = _group_of(fs, path)
    if what == "vector":
        x = fs.read(group).astype(np.float32, copy=False).reshape(fs.n_clips, -1)
        valid = np.isfinite(x).any(axis=1)
        if kind == "sequence":
            return np.repeat(x[:, None, :], steps, axis=1), np.repeat(valid[:, None], steps, axis=1)
        return x, valid
    paths = set(fs.array_paths())
    if kind == "vector":
        if f"{group}/pooled" in paths and what != "aligned":
            x = fs.read(f"{group}/pooled").astype(np.float32, copy=False)
        else:
            seqs = fs.sequences(f"{group}/values")
            width = seqs[0].reshape(len(seqs[0]), -1).shape[1] if seqs else 0
            x = np.stack([s.reshape(len(s), -1).mean(0) if len(s) else np.full(width, np.nan) for s in seqs])
            x = x.astype(np.float32)
        return x, np.isfinite(x).any(axis=1)
    if f"{group}/aligned" in paths and what != "pooled":
        aligned = fs.read(f"{group}/aligned").astype(np.float32, copy=False)
        return aligned, fs.read(f"{group}/mask").astype(bool, copy=False)
    pairs = [align(s.reshape(len(s), -1), steps) for s in fs.sequences(f"{group}/values")]
    return np.stack([a for a, _ in pairs]).astype(np.float32), np.stack([m for _, m in pairs])


def resolve_features(
    fs: FeatureSource,
    modalities: Sequence[str] | None,
    features: Sequence[str] | None,
    kinds: Mapping[str, str],
    default_modalities: Sequence[str] = MODALITIES,
) -> dict[str, list[str]]:
    """Feature paths per modality: the explicit ``features`` grouped by modality, else the default features of
    ``modalities`` (an error for one the store lacks) or of those of ``default_modalities`` the store has."""
    if modalities:
        unknown = [m for m in modalities if m not in MODALITIES]
        if unknown:
            raise UsageError(f"unknown modality {', '.join(unknown)}; choose from {', '.join(MODALITIES)}")
    chosen: dict[str, list[str]] = {}
    if features:
        for path in features:
            modality = path.split("/")[0]
            if modality not in MODALITIES:
                raise UsageError(f"feature '{path}' is not under audio/, video/ or text/")
            if path in FITTED_FEATURES:
                _fitted_source(fs, path)
            else:
                _group_of(fs, path)
            if modalities and modality not in modalities:
                continue
            chosen.setdefault(modality, []).append(path)
        missing = [m for m in (modalities or []) if m not in chosen]
        if missing:
            raise UsageError(f"--features gives nothing for modality {', '.join(missing)}")
        return chosen
    available = set(feature_names(fs.feature_paths()))
    for modality in modalities or default_modalities:
        kind = base_kind(kinds.get(modality, "vector"))
        if (modality, kind) not in DEFAULT_FEATURES:
            raise UsageError(f"this method reads {modality} as {kind}, which emo has no default features for")
        defaults = [p for p in DEFAULT_FEATURES[(modality, kind)] if p in available]
        if kind == "frames":
            defaults = defaults[:1]
        if not defaults and kind != "vector":  # no sequence: the clip vector repeated over the steps
            defaults = [p for p in DEFAULT_FEATURES[(modality, "vector")] if p in available]
        if not defaults:
            if modalities:
                raise UsageError(
                    f"the store has no {modality} features for this method (looked for "
                    f"{', '.join(DEFAULT_FEATURES[(modality, kind)])}); it has: {', '.join(sorted(available))}"
                )
            continue
        chosen[modality] = defaults
    if not chosen:
        if not modalities and tuple(default_modalities) != MODALITIES:
            raise UsageError(
                f"the store has no {' or '.join(default_modalities)} features, the modalities this method's paper "
                f"fuses (it has: {', '.join(sorted(available)) or 'none'}); choose others with --modalities"
            )
        raise UsageError(f"the store has no features to train on: {', '.join(sorted(available)) or 'none'}")
    return chosen


def base_kind(kind: str) -> str:
    """"vector", "sequence" or "frames" (for ``frames:LENGTH:MODE``)."""
    return kind.split(":", 1)[0]


def frames_view(
    seq: np.ndarray, spec: FrameInput, span: tuple[float, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One clip's frames [n, D] as ``spec.length`` frames and their mask: the first ones (``crop``, padded with
    masked zeros) or linearly interpolated over the whole clip (``resample``; a clip without frames is masked).
    ``span`` (start, end), fractions of the clip, is where the frames lie when they do not cover all of it
    (silence trimmed at extraction): ``resample`` places them there in clip time and masks the rest, so output
    frame j still describes the j-th part of the clip."""
    seq = seq.reshape(len(seq), int(np.prod(seq.shape[1:]))).astype(np.float32, copy=False)
    out = np.zeros((spec.length, seq.shape[1]), np.float32)
    mask = np.zeros(spec.length, bool)
    n = len(seq)
    if n == 0:
        return out, mask
    if spec.mode == "crop":
        k = min(n, spec.length)
        out[:k], mask[:k] = seq[:k], True
        return out, mask
    # frame j of the output sits at the centre of the j-th of ``length`` equal parts of the clip, read from the
    # n input frames spread evenly over ``span`` (the whole clip unless trimmed)
    start, end = span if span is not None else (0.0, 1.0)
    t = (np.arange(spec.length) + 0.5) / spec.length
    pos = np.clip((t - start) / max(end - start, 1e-9) * n - 0.5, 0, n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    w = (pos - lo)[:, None].astype(np.float32)
    mask[:] = (t >= start) & (t <= end)
    out[mask] = (seq[lo] * (1 - w) + seq[hi] * w)[mask]
    return out, mask


def _load_frames(fs: FeatureSource, path: str, spec: FrameInput) -> tuple[np.ndarray, np.ndarray]:
    """A ragged group's own frames of every clip as [N, length, D] with a frame mask (see :func:`frames_view`)."""
    what, group = _group_of(fs, path)
    if what != "group" and f"{group}/values" not in set(fs.array_paths()):
        raise UsageError(
            f"this method reads the frames of {path}, which is a clip vector; give a frame feature such as "
            "audio/mel or audio/mfcc"
        )
    spans = _trimmed_spans(fs) if group.startswith("audio/") and spec.mode == "resample" else None
    views = [
        frames_view(s, spec, spans[i] if spans is not None else None)
        for i, s in enumerate(fs.sequences(f"{group}/values"))
    ]
    if not views:
        return np.zeros((0, spec.length, 0), np.float32), np.zeros((0, spec.length), bool)
    return np.stack([x for x, _ in views]), np.stack([m for _, m in views])


def _trimmed_spans(fs: FeatureSource) -> list[tuple[float, float] | None] | None:
    """Per clip, the part of the clip (start, end fractions) its audio frames cover when extraction trimmed the
    silence around the speech (``--trim-silence``); None for a store extracted without trimming."""
    if fs.config.get("trim_silence_db") is None:
        return None
    clips = fs.clips()
    if "trim_start_s" not in clips:
        return None
    out: list[tuple[float, float] | None] = []
    for start, end, duration, decoded in zip(clips["trim_start_s"], clips["trim_end_s"], clips["duration_s"],
                                             clips["decoded_s_audio"], strict=True):  # fmt: skip
        length = duration if np.isfinite(duration) and duration > 0 else decoded
        if not (np.isfinite(start) and np.isfinite(end) and np.isfinite(length) and length > 0 and end > start):
            out.append(None)
        else:
            out.append((float(start) / length, min(float(end) / length, 1.0)))
    return out


def _fitted_source(fs: FeatureSource, path: str) -> str:
    source = FITTED_FEATURES[path]
    if f"{source}/values" not in set(fs.array_paths()):
        raise UsageError(
            f"{path} is fitted inside every training split from the {source} frames, and "
            f"{fs.location.display} has none: extract with --features including {source.split('/')[-1]}"
        )
    return source


def load_fusion_data(
    fs: FeatureSource,
    features: Mapping[str, Sequence[str]],
    kinds: Mapping[str, str],
    fitted_dims: Mapping[str, int] | None = None,
    labels: LabelChoice | None = None,
) -> FusionData:
    """Read the chosen features of every committed clip into memory (one contiguous read per array).

    A fitted feature (:data:`FITTED_FEATURES`) gets NaN columns of width ``fitted_dims[path]`` (default
    ``FITTED_DIM``), valid where its source has frames, and those frames in ``FusionData.frames``: a run fills
    the columns with what it fits on its training clips (``ModalityInput.with_values``). ``labels`` says which
    labels and classes to train on (default: the store's labels, every class some clip has).
    """
    clips = fs.clips()
    steps = int(fs.config.get("align_steps", 32))
    if any(kinds.get(m, "vector") != "vector" for m in features):
        reason = before_time_grid(dict(getattr(fs, "attrs", {})), fs.location.display)
        if reason is not None:
            raise UsageError(f"sequence heads read aligned steps: {reason}")
    inputs = {}
    frames: dict[str, list[np.ndarray]] = {}

    def load(path: str, kind: str) -> tuple[np.ndarray, np.ndarray]:
        if path not in FITTED_FEATURES:
            return _load_feature(fs, path, kind, steps)
        source = _fitted_source(fs, path)
        frames[source] = fs.sequences(f"{source}/values")
        has = np.array([len(f) > 0 for f in frames[source]], dtype=bool)
        width = int((fitted_dims or {}).get(path, FITTED_DIM))
        if kind == "sequence":
            return np.zeros((fs.n_clips, steps, width), np.float32), np.repeat(has[:, None], steps, axis=1)
        return np.full((fs.n_clips, width), np.nan, np.float32), has

    for modality, paths in features.items():
        kind = base_kind(kinds.get(modality, "vector"))
        if kind == "frames":
            if len(paths) != 1 or paths[0] in FITTED_FEATURES:
                raise UsageError(
                    f"this method reads one {modality} frame feature (its own frames, e.g. audio/mel); "
                    f"got {', '.join(paths)}"
                )
            x, valid = _load_frames(fs, paths[0], FrameInput.parse(kinds[modality]))
            mask = valid & _status_present(fs, modality, clips)[:, None]
            inputs[modality] = ModalityInput(modality, kind, list(paths), [x.shape[-1]], x, mask)
            continue
        parts = [load(p, kind) for p in paths]
        lengths = {x.shape[1] for x, _ in parts} if kind == "sequence" else set()
        if len(lengths) > 1:
            raise UsageError(f"{modality} sequences have different lengths {sorted(lengths)}: {', '.join(paths)}")
        x = np.concatenate([x for x, _ in parts], axis=-1)
        valid = np.logical_and.reduce([v for _, v in parts])
        present = _status_present(fs, modality, clips)
        mask = valid & (present if kind == "vector" else present[:, None])
        inputs[modality] = ModalityInput(modality, kind, list(paths), [p[0].shape[-1] for p in parts], x, mask)
    store_labels = fs.labels
    y, class_names = clip_labels(clips, store_labels, labels or LabelChoice())
    return FusionData(
        clip_ids=clips["clip_id"].to_numpy().astype(str),
        y=y,
        class_names=class_names,
        speakers=clips["speaker"].to_numpy().astype(str),
        splits=clips["split"].to_numpy().astype(str),
        dialogue_ids=clips["dialogue_id"].to_numpy().astype(str),
        utterance_idx=clips["utterance_idx"].to_numpy().astype(np.int64),
        inputs=inputs,
        source_sha256=clips["source_sha256"].to_numpy().astype(str) if "source_sha256" in clips else None,
        frames=frames,
        store={
            "location": fs.location.display,
            "config": fs.config,
            "config_hash": fs.config_hash,
            "labels": store_labels,
        },
    )
