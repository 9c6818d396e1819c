"""Training and evaluating a fusion head on a store's cached features (DESIGN.md §6).

For every seed and fold: standardisation and feature selection are fitted on the training clips only, the
head is trained with Adam and cross-entropy (optionally class-weighted) with early stopping on the
validation loss, and the best epoch is evaluated on the test clips. Metrics are summarised over all runs
(mean and 95% interval); the first run's model is saved as the run's checkpoint.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from emo.errors import UsageError
from emo.features_store import FeatureStore
from emo.fusion.data import FusionData, load_fusion_data, resolve_features
from emo.fusion.fitted import FITTED
from emo.fusion.heads import FusionHead, build_head, input_kinds, paper_modalities
from emo.fusion.leakage import overlap_summary, permutation_test, split_overlap
from emo.fusion.metrics import classification_metrics, summarize_runs
from emo.fusion.normalize import (
    MIN_SPEAKER_CLIPS,
    few_clip_speakers,
    resolve_standardize,
    speaker_standardized,
)
from emo.fusion.preprocessing import Preprocessing
from emo.fusion.splits import Split, explain_protocol, make_splits
from emo.fusion.train_config import TrainConfig, lr_schedule

log = logging.getLogger(__name__)


def torch_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available on this machine")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise UsageError(f"unknown --device {device!r}; choose cpu, cuda or auto")
    return torch.device(device)


def apply_preset(fs: FeatureStore, config: TrainConfig) -> TrainConfig:
    """Check the store against ``config.preset``'s extraction needs (refused with what to re-extract) and
    resolve what depends on the dataset (the paper's class set, unless ``--classes`` was given)."""
    import dataclasses

    from emo.fusion.presets import check_extraction, get_preset, preset_classes

    if not config.preset:
        return config
    preset = get_preset(config.preset)
    notes = check_extraction(preset, fs.config, fs.location.display)
    for note in notes:
        log.warning("--preset %s: %s (a deviation from the paper)", preset.name, note)
    changes: dict[str, Any] = {"preset_notes": tuple(notes)}
    adapter = str(dict(getattr(fs, "attrs", {}).get("dataset", {}) or {}).get("adapter", ""))
    classes = preset_classes(preset, adapter)
    if config.classes is None and classes and not config.map_labels and config.label_from == "label":
        present = set(fs.clips()["label_name"].astype(str))
        kept = tuple(c for c in classes if c in present)
        if len(kept) < len(classes):
            missing = ", ".join(c for c in classes if c not in present)
            notes.append(f"no clip of the paper's class(es) {missing}")
            log.warning("--preset %s: the store has no clip of the paper's class(es) %s", preset.name, missing)
        changes["classes"] = kept
        changes["preset_notes"] = tuple(notes)
        log.info("--preset %s: the paper's classes on %s: %s", preset.name, adapter, ", ".join(kept))
    return dataclasses.replace(config, **changes)


def prepare_data(fs: FeatureStore, config: TrainConfig) -> FusionData:
    """The store's features for this method, labelled clips only; standardised per speaker when
    ``config.standardize`` resolves to it (``data.standardize`` says which)."""
    kinds = input_kinds(config.method, config.hparams)
    features = resolve_features(fs, config.modalities, config.features, kinds, paper_modalities(config.method))
    widths = {f: FITTED[f].width(config.fitted_params(f)) for f in FITTED}
    data = load_fusion_data(fs, features, kinds, fitted_dims=widths, labels=config.labels)
    labelled = data.subset(data.labelled)
    if len(labelled.class_names) < 2:
        raise UsageError(f"the store has {len(labelled.class_names)} labelled class(es); fusion needs at least 2")
    protocol = explain_protocol(labelled, config.split)[0]
    if resolve_standardize(config.standardize, protocol) == "speaker":
        # statistics of all of a speaker's clips, labelled or not: no label is read
        labelled = speaker_standardized(data).subset(data.labelled)
        log.info("features standardised per speaker (%d speakers)", np.unique(data.speakers).size)
        few = few_clip_speakers(data.speakers)
        if few:
            log.warning(
                "per-speaker standardisation: %s have fewer than %d clips (statistics of few clips are unreliable; "
                "emo predict refuses such speakers)",
                ", ".join(f"{s or 'no speaker id'} ({n})" for s, n in few.items()), MIN_SPEAKER_CLIPS,
            )
    if config.method == "speech-cnn" and set(labelled.inputs) != {"audio"}:
        raise UsageError("--method speech-cnn is an audio-only head: use --modalities audio")
    return labelled


# -------------------------------------------------------------------------------------------- prepared run
@dataclass
class Prepared:
    """One run's preprocessing, fitted on its training clips, and the model-ready tensors of every clip."""

    preprocessing: Preprocessing
    xs: dict[str, Tensor]
    masks: dict[str, Tensor]

    @property
    def dims(self) -> dict[str, int]:
        return {m: int(x.shape[-1]) for m, x in self.xs.items()}


def tensors(
    xs: Mapping[str, np.ndarray], data: FusionData, device: torch.device
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Model inputs and masks of every clip on ``device``, from preprocessed inputs ``xs``."""
    return (
        {m: torch.from_numpy(np.ascontiguousarray(x)).to(device) for m, x in xs.items()},
        {m: torch.from_numpy(data.inputs[m].mask).to(device) for m in xs},
    )


# -------------------------------------------------------------------------------------------- batches
def _batches(
    rows: np.ndarray, batch_size: int, rng: np.random.Generator | None, dialogues: np.ndarray | None, order: np.ndarray
) -> list[np.ndarray]:
    """Index batches; with dialogues, whole dialogues in utterance order (seed 004's context BiGRU)."""
    if dialogues is None:
        rows = rng.permutation(rows) if rng is not None else rows
        return [rows[i : i + batch_size] for i in range(0, rows.size, batch_size)]
    groups: dict[int, list[int]] = {}
    for r in rows[np.argsort(order[rows], kind="stable")]:
        groups.setdefault(int(dialogues[r]), []).append(int(r))
    keys = list(groups)
    if rng is not None:
        keys = [keys[i] for i in rng.permutation(len(keys))]
    batches, current = [], []
    for key in keys:
        current += groups[key]
        if len(current) >= batch_size:
            batches.append(np.array(current))
            current = []
    if current:
        batches.append(np.array(current))
    return batches


def _forward(
    head: FusionHead,
    prep: Prepared,
    idx: np.ndarray,
    dialogues: np.ndarray | None,
    device: torch.device,
    index: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    if index is None:
        index = torch.from_numpy(idx).to(device)
    xs = {m: x.index_select(0, index) for m, x in prep.xs.items()}
    masks = {m: x.index_select(0, index) for m, x in prep.masks.items()}
    kwargs = {}
    if head.accepts_dialogue and dialogues is not None:
        kwargs["dialogue"] = torch.from_numpy(dialogues[idx]).to(device)
    if head.has_modality_weights:
        return head.forward_with_weights(xs, masks, **kwargs)
    return head(xs, masks, **kwargs), None


# -------------------------------------------------------------------------------------------- one run
@dataclass
class RunOutcome:
    """What one (seed, fold) produced."""

    name: str
    seed: int
    split: Split
    metrics: dict[str, Any]
    history: dict[str, list[float]]
    best_epoch: int
    test_prob: np.ndarray
    test_weights: np.ndarray | None
    head: FusionHead
    prep: Prepared
    seconds: float
    overlap: dict[str, Any] = field(default_factory=dict)  # what train and test share (emo.fusion.leakage)


def run_once(
    data: FusionData,
    split: Split,
    config: TrainConfig,
    seed: int,
    device: torch.device,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> RunOutcome:
    """Train on ``split.train``, stop early on ``split.val``, evaluate on ``split.test``."""
    started = time.monotonic()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    groups = data.speakers if split.grouped_by == "speaker" else None
    params = {f: config.fitted_params(f) for f in FITTED}
    preprocessing, xs = Preprocessing.fit(data, split.train, config.selector, seed, params, groups)
    prep = Prepared(preprocessing, *tensors(xs, data, device))
    steps = next((int(x.shape[1]) for m, x in prep.xs.items() if data.inputs[m].kind == "sequence"), None)
    head = build_head(config.method, prep.dims, len(data.class_names), steps=steps, **config.hparams).to(device)
    y = torch.from_numpy(data.y).to(device)
    weight = None
    if config.class_weights:
        counts = np.bincount(data.y[split.train], minlength=len(data.class_names)).astype(np.float64)
        weight = torch.tensor(
            np.where(counts > 0, counts.sum() / (len(counts) * np.maximum(counts, 1)), 0.0),
            dtype=torch.float32,
            device=device,
        )
    criterion = nn.CrossEntropyLoss(weight=weight)
    # the fused kernel (CPU and CUDA): one pass over each parameter instead of a dozen tensor ops per step
    fused = {"fused": True} if device.type in ("cpu", "cuda") else {}
    optimizer = torch.optim.Adam(head.parameters(), lr=config.lr, weight_decay=config.weight_decay, **fused)
    factor = lr_schedule(config.lr_schedule)
    dialogues = data.dialogue_codes() if head.accepts_dialogue else None
    steps_per_epoch = len(_batches(split.train, config.batch_size, None, dialogues, data.utterance_idx))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: factor(step, config.epochs * steps_per_epoch)
    )
    # --precision bf16: the steps' products in bfloat16 (AMX on recent x86 CPUs, tensor cores on GPUs), the
    # parameters, their gradients, Adam's state and the loss in fp32; evaluation below runs in fp32 throughout
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")
    history: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "val_ua": []}
    best = (np.inf, 0, copy.deepcopy(head.state_dict()))
    for epoch in range(1, config.epochs + 1):
        head.train()
        total, seen = 0.0, 0
        for idx in _batches(split.train, config.batch_size, rng, dialogues, data.utterance_idx):
            index = torch.from_numpy(idx).to(device)
            with autocast:
                logits, _ = _forward(head, prep, idx, dialogues, device, index)
            loss = criterion(logits.float(), y.index_select(0, index))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * idx.size
            seen += idx.size
        history["train_loss"].append(total / seen)
        if split.val.size:
            prob = predict_proba(head, prep, split.val, device, config.batch_size, dialogues, data.utterance_idx)[0]
            val_loss = float(
                nn.functional.nll_loss(
                    torch.log(torch.from_numpy(prob).clamp_min(1e-12)),
                    torch.from_numpy(data.y[split.val]),
                    weight=None if weight is None else weight.cpu(),
                )
            )
            recall = [np.mean(prob.argmax(1)[data.y[split.val] == c] == c) for c in np.unique(data.y[split.val])]
            history["val_loss"].append(val_loss)
            history["val_ua"].append(float(np.mean(recall)))
            if val_loss < best[0] - 1e-6:
                best = (val_loss, epoch, copy.deepcopy(head.state_dict()))
            elif epoch - best[1] >= config.patience:
                break
        else:
            best = (np.inf, epoch, copy.deepcopy(head.state_dict()))
        if on_epoch is not None:
            on_epoch(epoch, {k: v[-1] for k, v in history.items() if v})
    head.load_state_dict(best[2])
    prob, weights = predict_proba(head, prep, split.test, device, config.batch_size, dialogues, data.utterance_idx)
    metrics = classification_metrics(data.y[split.test], prob.argmax(1), data.class_names, prob)
    metrics["best_epoch"] = best[1]
    return RunOutcome(
        f"seed{seed}-{split.name}",
        seed,
        split,
        metrics,
        history,
        best[1],
        prob,
        weights,
        head,
        prep,
        time.monotonic() - started,
        split_overlap(data, split),
    )


@torch.inference_mode()
def predict_proba(
    head: FusionHead,
    prep: Prepared,
    rows: np.ndarray,
    device: torch.device,
    batch_size: int = 256,
    dialogues: np.ndarray | None = None,
    order: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Class probabilities (and modality weights, for heads that have them) of ``rows``, in their order."""
    head.eval()
    position = {int(r): i for i, r in enumerate(rows)}
    prob = np.zeros((rows.size, head.n_classes), np.float32)
    weights = np.zeros((rows.size, len(head.modalities)), np.float32) if head.has_modality_weights else None
    for idx in _batches(rows, max(batch_size, 256), None, dialogues, order):
        logits, w = _forward(head, prep, idx, dialogues, device)
        at = [position[int(r)] for r in idx]
        prob[at] = torch.softmax(logits, dim=-1).cpu().numpy()
        if weights is not None and w is not None:
            weights[at] = w.cpu().numpy()
    return prob, weights


# -------------------------------------------------------------------------------------------- all runs
@dataclass
class TrainResult:
    """All runs of a training job, their summary, and the data they used."""

    config: TrainConfig
    protocol: str
    data: FusionData
    runs: list[RunOutcome]
    summary: dict[str, Any]
    seconds: float
    protocol_reason: str = ""
    #: ``overlap``: what train and test shared, worst over runs; ``permutation``: the label-permutation check
    leakage: dict[str, Any] = field(default_factory=dict)

    @property
    def reference(self) -> RunOutcome:
        """The run whose model is saved as the checkpoint (first seed, first fold)."""
        return self.runs[0]

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.config.method,
            "config": asdict(self.config),
            "split_protocol": self.protocol,
            "split_reason": self.protocol_reason,
            "class_names": self.data.class_names,
            "modalities": {
                m: {"kind": i.kind, "features": i.features, "dim": i.dim} for m, i in self.data.inputs.items()
            },
            "n_clips": self.data.n,
            "standardize": self.data.standardize,
            "store": {k: v for k, v in self.data.store.items() if k != "config"},
            "runs": [
                {
                    "name": r.name,
                    "seed": r.seed,
                    "split": r.split.name,
                    "sizes": r.split.sizes(),
                    "best_epoch": r.best_epoch,
                    "seconds": round(r.seconds, 3),
                    "overlap": r.overlap,
                    "metrics": r.metrics,
                }
                for r in self.runs
            ],
            "summary": self.summary,
            "leakage": self.leakage,
            "preset": _preset_record(self.config),
            "seconds": round(self.seconds, 3),
        }


def _preset_record(config: TrainConfig) -> dict[str, Any] | None:
    """The preset a run used: what the paper sets, leaves open and where emo deviates, and what its store lacks."""
    if not config.preset:
        return None
    from emo.fusion.presets import get_preset

    return get_preset(config.preset).describe() | {"store_lacks": list(config.preset_notes)}


def train_on_data(
    data: FusionData, config: TrainConfig, on_run: Callable[[RunOutcome], None] | None = None
) -> TrainResult:
    """Every seed x fold of ``config`` on already loaded data (so ``compare`` can share one read)."""
    started = time.monotonic()
    device = torch_device(config.device)
    protocol, reason = explain_protocol(data, config.split)
    log.info("%s split (%s)", protocol, reason)
    if protocol == "stratified" and not config.val_fraction:
        log.info(
            "stratified 80/20 without a validation part: every run trains the full %d epochs (--patience does "
            "not apply; --val-fraction 0.1 carves a validation part out of the 80%%)", config.epochs,
        )
    runs = []
    for s in range(config.seeds):
        seed = config.seed + s
        for split in make_splits(data, protocol, config.folds, seed, config.val_fraction):
            if not split.train.size or not split.test.size:
                raise UsageError(f"split {split.name} leaves an empty partition: {split.sizes()}")
            outcome = run_once(data, split, config, seed, device)
            log.info(
                "%s %s: test UA %.3f, accuracy %.3f (best epoch %d, %.1f s)",
                config.method,
                outcome.name,
                outcome.metrics["ua"],
                outcome.metrics["accuracy"],
                outcome.best_epoch,
                outcome.seconds,
            )
            runs.append(outcome)
            if on_run is not None:
                on_run(outcome)
    summary = summarize_runs([r.metrics for r in runs])
    leakage: dict[str, Any] = {"overlap": overlap_summary(protocol, [r.overlap for r in runs])}
    for problem in leakage["overlap"]["problems"]:
        log.warning("leakage: %s", problem)
    if config.permutation_test:
        reference = runs[0]

        def permuted(shuffled: FusionData, k: int) -> dict[str, Any]:
            return run_once(shuffled, reference.split, config, reference.seed, device).metrics

        leakage["permutation"] = permutation_test(
            data, reference.split, config.permutation_test, reference.metrics["ua"], permuted, seed=config.seed
        )
    return TrainResult(config, protocol, data, runs, summary, time.monotonic() - started, reason, leakage)


def train(
    store: str | FeatureStore,
    config: TrainConfig,
    out_dir: str | None = None,
    storage_options: dict[str, Any] | None = None,
    command: Sequence[str] | None = None,
) -> TrainResult:
    """Load the store's features, train every run of ``config``, and write the run directory if asked."""
    from emo.fusion.run_dir import prepare_run_dir, write_run

    if out_dir is not None:
        prepare_run_dir(out_dir)  # fail before training, not after
    fs = store if isinstance(store, FeatureStore) else FeatureStore.open(store, storage_options)
    config = apply_preset(fs, config)
    data = prepare_data(fs, config)
    result = train_on_data(data, config)
    if out_dir is not None:
        write_run(result, out_dir, command)
    return result
