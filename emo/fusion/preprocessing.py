"""The preprocessing of a run's inputs, fitted on its training clips only and applied alike to every clip, at
training and at prediction: fitted features (the audio autoencoder, the MFCC CNN), standardisation, selection.

Saved in a run's checkpoint as arrays (``norm.<modality>.{mean,std}``, ``select.<modality>``, the fitted models'
``ae.*`` / ``mfcc-cnn.*``) plus the fitted models' descriptions in its config.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emo.errors import UsageError
from emo.fusion.data import FITTED_FEATURES, FusionData, ModalityInput
from emo.fusion.fitted import FITTED
from emo.fusion.normalize import Standardizer
from emo.fusion.selection import make_selector

log = logging.getLogger(__name__)

#: key of a selector spec for one selector over the concatenated vector of every modality (seed 001)
JOINT = "joint"


@dataclass
class Preprocessing:
    """What was fitted on the training clips: per modality a :class:`Standardizer` and a boolean keep-mask over
    the feature axis (with the selector's scores), and the models that compute fitted features (their arrays,
    prefixed ``ae.`` / ``mfcc-cnn.``, and descriptions by feature path)."""

    standardizers: dict[str, Standardizer]
    selections: dict[str, np.ndarray] = field(default_factory=dict)
    selection_scores: dict[str, list[float]] = field(default_factory=dict)
    models: dict[str, np.ndarray] = field(default_factory=dict)
    fitted: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def fit(
        cls,
        data: FusionData,
        train_rows: np.ndarray,
        selector: Mapping[str, str],
        seed: int,
        fitted_params: Mapping[str, Mapping[str, Any]] | None = None,
        groups: np.ndarray | None = None,
    ) -> tuple[Preprocessing, dict[str, np.ndarray]]:
        """Fit on ``train_rows`` only; returns the fitted preprocessing and every clip's inputs through it.

        ``selector`` maps a modality (or :data:`JOINT`) to a selector name or ``none``; ``fitted_params`` holds
        the parameters of each fitted feature; ``groups`` [N] (speakers, when the outer split holds them out)
        groups the inner cross-validation of a zebra selector."""
        prep = cls({})
        inner_groups = None if groups is None else groups[train_rows]
        zs: dict[str, np.ndarray] = {}
        for name, modality in data.inputs.items():
            for feature in modality.fitted:
                params = (fitted_params or {}).get(feature, {})
                modality = prep._fit_feature(data, modality, feature, train_rows, seed, params)
            std = Standardizer.fit(modality, train_rows)
            x = std.transform(modality.x, modality.mask)
            prep.standardizers[name] = std
            chooser = selector.get(name, "none")
            if chooser != "none":
                fit_x, rows_present = _selection_matrix(x[train_rows], modality.mask[train_rows])
                keep, score = fit_selection(
                    chooser,
                    fit_x,
                    data.y[train_rows][rows_present],
                    seed,
                    None if inner_groups is None else inner_groups[rows_present],
                )
                prep.selections[name], prep.selection_scores[name] = keep, score.tolist()
                x = x[..., keep]
                log.info("%s selection on %s: kept %d of %d features", chooser, name, int(keep.sum()), keep.size)
            zs[name] = x
        joint = selector.get(JOINT, "none")
        if joint != "none":
            prep._fit_joint(joint, data, zs, train_rows, seed, inner_groups)
        return prep, zs

    def transform(self, data: FusionData) -> dict[str, np.ndarray]:
        """Every clip's inputs through the fitted preprocessing, for the modalities it was fitted on."""
        out = {}
        for modality, std in self.standardizers.items():
            if modality not in data.inputs:
                continue
            inp = self._with_fitted(data, data.inputs[modality])
            x = std.transform(inp.x, inp.mask)
            if modality in self.selections:
                x = x[..., self.selections[modality]]
            out[modality] = x
        return out

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The arrays a checkpoint saves (the fitted models', then ``norm.*`` and ``select.*``)."""
        arrays = dict(self.models)
        for modality, std in self.standardizers.items():
            arrays[f"norm.{modality}.mean"] = std.mean.copy()
            arrays[f"norm.{modality}.std"] = std.std.copy()
        for modality, keep in self.selections.items():
            arrays[f"select.{modality}"] = keep.astype(np.uint8)
        return arrays

    @classmethod
    def from_state(
        cls, arrays: Mapping[str, np.ndarray], fitted: Mapping[str, dict[str, Any]], modalities: list[str]
    ) -> Preprocessing:
        """The preprocessing saved as :meth:`state_arrays` (``fitted``: the models' descriptions)."""
        standardizers = {
            m: Standardizer(arrays[f"norm.{m}.mean"], arrays[f"norm.{m}.std"])
            for m in modalities
            if f"norm.{m}.mean" in arrays
        }
        selections = {k[7:]: np.asarray(v).astype(bool) for k, v in arrays.items() if k.startswith("select.")}
        models = {k: v for k, v in arrays.items() if not k.startswith(("norm.", "select."))}
        return cls(standardizers, selections, {}, models, dict(fitted))

    def _fit_feature(
        self,
        data: FusionData,
        modality: ModalityInput,
        feature: str,
        train_rows: np.ndarray,
        seed: int,
        params: Mapping[str, Any],
    ) -> ModalityInput:
        """Fit ``feature`` (``audio/ae``: seed 001's autoencoder; ``audio/mfcc-cnn``: seed 002's MFCC CNN) on the
        training clips' frames and compute it for every clip."""
        started = time.monotonic()
        spec = FITTED[feature]
        frames = data.frames[FITTED_FEATURES[feature]]
        model = spec.fit(frames, train_rows, data.y, len(data.class_names), params, seed)
        filled = modality.with_values(feature, model.encode(frames))
        log.info(
            "%s fitted on %d training clips (%d frames) in %.1f s",
            feature, model.n_clips, model.n_frames, time.monotonic() - started,
        )
        self.models |= {f"{spec.prefix}.{k}": v for k, v in model.arrays().items()}
        self.fitted[feature] = model.describe()
        return filled

    def _with_fitted(self, data: FusionData, inp: ModalityInput) -> ModalityInput:
        """``inp`` with its fitted features computed by the saved models."""
        for feature in inp.fitted:
            description = self.fitted.get(feature)
            if description is None:
                raise UsageError(f"the model uses {feature} but its checkpoint has no fitted model for it")
            prefix = FITTED[feature].prefix + "."
            arrays = {k[len(prefix) :]: v for k, v in self.models.items() if k.startswith(prefix)}
            model = FITTED[feature].restore(arrays, description)
            inp = inp.with_values(feature, model.encode(data.frames[FITTED_FEATURES[feature]]))
        return inp

    def _fit_joint(
        self,
        joint: str,
        data: FusionData,
        zs: dict[str, np.ndarray],
        train_rows: np.ndarray,
        seed: int,
        inner_groups: np.ndarray | None,
    ) -> None:
        """One subset of the concatenated clip vector of every modality (learned frame front-ends excepted)."""
        names = [n for n, m in data.inputs.items() if m.kind != "frames"]
        if not names:
            raise UsageError(
                f"--selector {joint} selects among clip vectors, and every input of this method is learned from "
                "frames; give a per-modality selector or none"
            )
        blocks = [_clip_vectors(zs[n][train_rows], data.inputs[n].mask[train_rows]) for n in names]
        keep, score = fit_selection(joint, np.concatenate(blocks, axis=1), data.y[train_rows], seed, inner_groups)
        at = 0
        for n, block in zip(names, blocks, strict=True):
            width = block.shape[1]
            self.selections[n], self.selection_scores[n] = keep[at : at + width], score[at : at + width].tolist()
            if not self.selections[n].any():  # the subset dropped the whole modality: keep its best-scored feature
                self.selections[n] = np.zeros(width, bool)
                self.selections[n][int(np.argmax(score[at : at + width]))] = True
            zs[n] = zs[n][..., self.selections[n]]
            at += width
        log.info(
            "%s selection on %s jointly: kept %d of %d features (%s)",
            joint, "+".join(names), int(keep.sum()), keep.size,
            ", ".join(f"{n} {int(self.selections[n].sum())}" for n in names),
        )


def fit_selection(
    name: str, x: np.ndarray, y: np.ndarray, seed: int, groups: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Fit selector ``name`` on rows ``x`` (labels ``y``; ``groups`` for zebra's grouped inner CV); returns the
    keep mask and the per-feature scores."""
    sel = make_selector(name, seed)
    if name == "zebra" and groups is not None:
        sel.fit(x, y, groups=groups)
    else:
        sel.fit(x, y)
    keep = np.asarray(sel.get_support(), dtype=bool)
    return keep, np.nan_to_num(np.asarray(getattr(sel, "scores_", keep), dtype=float))


def _clip_vectors(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """One vector per clip of standardised input ``x``: vectors as they are, sequences averaged over their valid
    steps (zeros, the training mean, where a clip has none)."""
    if x.ndim == 2:
        return x
    count = mask.sum(axis=1, keepdims=True)
    return (x * mask[..., None]).sum(axis=1) / np.maximum(count, 1)


def _selection_matrix(x: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows a selector fits on: vectors as they are, sequences as their mean over valid steps."""
    if x.ndim == 2:
        return x[mask], mask
    present = mask.any(axis=1)
    summed = (x * mask[..., None]).sum(axis=1)
    return summed[present] / mask[present].sum(axis=1, keepdims=True), present
