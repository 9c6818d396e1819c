"""``emo predict``: apply a trained run to new clips (extracted with the run's recorded extraction config) or
to clips already in a store, with the run's normalisation and feature selection."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import torch

from emo.errors import UsageError
from emo.features_store import ClipResult, FeatureStore
from emo.features_store.layout import feature_array_paths
from emo.features_store.resume import config_differences
from emo.features_store.schema import CLIP_COLUMNS, SequenceSpec
from emo.fusion.checkpoint import Checkpoint, load_checkpoint
from emo.fusion.data import load_fusion_data
from emo.fusion.fitted import FITTED
from emo.fusion.labels import LabelChoice
from emo.fusion.normalize import MIN_SPEAKER_CLIPS, few_clip_speakers, speaker_standardized
from emo.fusion.train import Prepared, predict_proba, tensors


class ResultsSource:
    """Freshly extracted clips presented with the reading interface of a FeatureStore (for load_fusion_data)."""

    def __init__(
        self,
        results: Sequence[ClipResult],
        specs: Sequence[Any],
        config: dict[str, Any],
        config_hash: str,
        labels: list[str],
    ) -> None:
        self.results = list(results)
        self.n_clips = len(self.results)
        self.config = config
        self.config_hash = config_hash
        self.labels = labels
        self.location = SimpleNamespace(display="the given clips")
        self._ragged = {f"{s.path}/{f}" for s in specs if isinstance(s, SequenceSpec) for f in s.fields}
        self._paths = feature_array_paths(specs)

    def array_paths(self) -> list[str]:
        return self._paths

    def feature_paths(self) -> list[str]:
        return self._paths

    def read(self, path: str) -> np.ndarray:
        if path in self._ragged:
            return np.concatenate([r.arrays[path] for r in self.results])
        return np.stack([r.arrays[path] for r in self.results])

    def sequences(self, path: str) -> list[np.ndarray]:
        return [r.arrays[path] for r in self.results]

    def clips(self) -> pd.DataFrame:
        rows = [{c.name: r.columns.get(c.name, c.fill) for c in CLIP_COLUMNS} for r in self.results]
        return pd.DataFrame(rows)


@dataclass
class Prediction:
    clip_id: str
    emotion: str
    probabilities: dict[str, float]
    modality_weights: dict[str, float] | None
    present: dict[str, bool]
    true_label: str = ""

    def to_json(self) -> dict[str, Any]:
        return self.__dict__


def _check_dims(ckpt: Checkpoint, data: Any) -> None:
    for modality, spec in ckpt.config["modalities"].items():
        if modality not in data.inputs:
            raise UsageError(f"the model needs {modality} features ({', '.join(spec['features'])}), which are missing")
        got = data.inputs[modality].dims
        if list(got) != list(spec["feature_dims"]):
            detail = ", ".join(
                f"{p}: model {a}, clips {b}"
                for p, a, b in zip(spec["features"], spec["feature_dims"], got, strict=False)
                if a != b
            )
            raise UsageError(f"{modality} features do not match the model's dimensions ({detail})")


def _speaker_standardized(ckpt: Checkpoint, data: Any) -> Any:
    """``data`` standardised per speaker when the model was trained so (clips without a speaker id are one
    group). A group of fewer than ``MIN_SPEAKER_CLIPS`` clips is refused: one clip standardised by itself is all
    zeros, and a handful give statistics that say little about the speaker."""
    if ckpt.config.get("standardize", "global") != "speaker":
        return data
    few = few_clip_speakers(data.speakers)
    if few:
        named = ", ".join(f"{s or 'clips without a speaker id'} ({n})" for s, n in sorted(few.items())[:5])
        raise UsageError(
            f"this model standardises each speaker's features by the statistics of their own clips (trained with "
            f"--standardize speaker), and needs at least {MIN_SPEAKER_CLIPS} clips of every speaker: {named}; "
            "give more clips of each speaker (clips without a speaker id count as one speaker), or use a model "
            "trained with --standardize global"
        )
    return speaker_standardized(data)


def _apply(ckpt: Checkpoint, data: Any) -> list[Prediction]:
    _check_dims(ckpt, data)
    xs = ckpt.preprocessing.transform(data)
    prep = Prepared(ckpt.preprocessing, *tensors({m: xs[m] for m in ckpt.head.modalities}, data, torch.device("cpu")))
    rows = np.arange(data.n)
    dialogues = data.dialogue_codes() if ckpt.head.accepts_dialogue else None
    prob, weights = predict_proba(ckpt.head, prep, rows, torch.device("cpu"), 256, dialogues, data.utterance_idx)
    classes = ckpt.class_names
    out = []
    for i in rows:
        out.append(
            Prediction(
                clip_id=str(data.clip_ids[i]),
                emotion=classes[int(prob[i].argmax())],
                probabilities={c: round(float(p), 5) for c, p in zip(classes, prob[i], strict=True)},
                modality_weights=None
                if weights is None
                else {m: round(float(w), 5) for m, w in zip(ckpt.head.modalities, weights[i], strict=True)},
                present={m: bool(data.inputs[m].present[i]) for m in ckpt.head.modalities},
                true_label=data.class_names[data.y[i]] if data.y[i] >= 0 else "",
            )
        )
    return out


def _features(ckpt: Checkpoint) -> dict[str, list[str]]:
    return {m: spec["features"] for m, spec in ckpt.config["modalities"].items()}


def _fitted_dims(ckpt: Checkpoint) -> dict[str, int]:
    return {f: FITTED[f].width(d["params"]) for f, d in ckpt.config.get("fitted", {}).items()}


def _kinds(ckpt: Checkpoint) -> dict[str, str]:
    """Input kinds as the model was trained: a model written before the frame inputs (its modality recorded as
    "sequence") keeps reading the aligned steps it was trained on."""
    from emo.fusion.heads import input_kinds

    kinds = input_kinds(ckpt.config["method"], ckpt.config["hparams"])
    for modality, spec in ckpt.config["modalities"].items():
        if spec.get("kind") == "sequence" and kinds.get(modality, "").startswith("frames"):
            kinds[modality] = "sequence"
    return kinds


def predict_clips(run_dir: str | Path, clips: Sequence[str | Path]) -> list[Prediction]:
    """Extract the run's features from media files (in this process) and predict their emotions."""
    from emo.pipeline.config import ExtractionConfig
    from emo.pipeline.datasets import MEDIA_EXTENSIONS, ClipRecord
    from emo.pipeline.process import process_clip
    from emo.pipeline.runner import worker_extractors

    ckpt = load_checkpoint(run_dir)
    recorded = ckpt.config["store"]
    config = ExtractionConfig.from_dict(recorded["config"])
    if config.to_dict() != recorded["config"]:
        diffs = config_differences(recorded["config"], config.to_dict())
        raise UsageError(f"this emo cannot reproduce the model's extraction config (differs in {', '.join(diffs)})")
    records = []
    for clip in clips:
        path = Path(clip).expanduser()
        if not path.is_file():
            raise UsageError(f"clip {path} does not exist")
        if path.suffix.lower() not in MEDIA_EXTENSIONS:
            raise UsageError(f"{path} is not a media file ({', '.join(MEDIA_EXTENSIONS)})")
        records.append(ClipRecord(clip_id=str(path), path=path))
    extractors = worker_extractors(config)
    results = [process_clip(r, extractors, config) for r in records]
    specs = [s for ex in extractors for s in ex.array_specs]
    source = ResultsSource(results, specs, recorded["config"], recorded["config_hash"], ckpt.class_names)
    data = load_fusion_data(source, _features(ckpt), _kinds(ckpt), _fitted_dims(ckpt))  # type: ignore[arg-type]
    predictions = _apply(ckpt, _speaker_standardized(ckpt, data))
    for p, r in zip(predictions, results, strict=True):
        if not any(p.present.values()):
            raise UsageError(f"{p.clip_id}: none of the model's modalities could be extracted ({r.columns['error']})")
    return predictions


def predict_store(
    run_dir: str | Path,
    store: str,
    clip_ids: Sequence[str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> list[Prediction]:
    """Predict clips already in a store extracted with the same configuration as the model's training store."""
    ckpt = load_checkpoint(run_dir)
    fs = FeatureStore.open(store, storage_options)
    recorded = ckpt.config["store"]
    if fs.config_hash != recorded["config_hash"]:
        diffs = config_differences(recorded["config"], fs.config)
        raise UsageError(
            f"{fs.location.display} was extracted with another configuration than the model's store "
            f"(differs in {', '.join(diffs) or 'the config hash'})"
        )
    train = ckpt.config.get("train", {})
    choice = LabelChoice(train.get("label_from", "label"), train.get("map_labels") or {})
    missing = [c for c in ckpt.class_names if c not in fs.labels]
    if missing and choice == LabelChoice():
        raise UsageError(
            f"the model's classes {', '.join(missing)} are not labels of {fs.location.display} "
            f"(it has {', '.join(fs.labels)})"
        )
    data = load_fusion_data(fs, _features(ckpt), _kinds(ckpt), _fitted_dims(ckpt), choice)
    # the store's labels, named as the model names its classes (true_label of each prediction)
    index = {c: i for i, c in enumerate(ckpt.class_names)}
    data.y = np.asarray([index.get(data.class_names[k], -1) if k >= 0 else -1 for k in data.y], dtype=np.int64)
    data.class_names = list(ckpt.class_names)
    data = _speaker_standardized(ckpt, data)  # each speaker's statistics from all of their clips in the store
    if clip_ids:
        wanted = set(clip_ids)
        unknown = wanted - set(data.clip_ids)
        if unknown:
            raise UsageError(f"clip ids not in the store: {', '.join(sorted(unknown)[:5])}")
        data = data.subset(np.flatnonzero(np.isin(data.clip_ids, list(wanted))))
    return _apply(ckpt, data)
