"""Options ``emo fuse`` and ``emo compare`` share, and the training configuration they make."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import click

from emo.commands.options import LazyChoice, RegistryHelpOption, comma_list, storage_options_option

log = logging.getLogger("emo")


def parse_hparams(items: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def training_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by ``fuse`` and ``compare``."""
    options = [
        click.option("--store", "store_path", required=True, help="Feature store (directory, .zip or URL)."),
        click.option("--preset", type=LazyChoice("emo.fusion.presets", "PRESETS"),
                     help="A paper's configuration (head, features, front-ends, selector, epochs, batch size, "
                     "learning rate and schedule, classes, metrics); flags given explicitly override it. The README "
                     "lists what each sets and every deviation from the paper."),
        click.option("--modalities", help="Comma-separated modalities to use (audio,video,text; default: those "
                     "the method's paper fuses that the store has, named in the run summary)."),
        click.option("--features", help="Comma-separated store paths, e.g. audio/mfcc,audio/egemaps,video/summary."),
        click.option("--selector", default="none", show_default=True, cls=RegistryHelpOption,
                     registry=("emo.fusion.selection", "SELECTORS"),
                     help="Feature selection fitted on each training split: none, or one of {names} selecting once on "
                     "the concatenated vector of every modality (seed 001); per modality as "
                     "text=l1,audio=tree,video=tree (seed 002). Zebra's inner CV groups by speaker when the "
                     "split does."),
        click.option("--split", type=LazyChoice("emo.fusion.splits", "SPLITS"), default="auto",
                     show_default=True, help="auto = the dataset's own split when the store has one (MELD's "
                     "train/dev/test), else speaker-independent when speakers are known, else stratified 80/20."),
        click.option("--folds", type=int, default=1, show_default=True, help="K folds (speaker-grouped with "
                     "--split speaker)."),
        click.option("--seeds", type=int, default=1, show_default=True, help="Repeat every split with S seeds."),
        click.option("--seed", type=int, default=0, show_default=True, help="First seed."),
        click.option("--epochs", type=int, default=100, show_default=True),
        click.option("--batch-size", type=int, default=64, show_default=True),
        click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate."),
        click.option("--weight-decay", type=float, default=1e-4, show_default=True),
        click.option("--patience", type=int, default=15, show_default=True, help="Early-stopping patience (epochs)."),
        click.option("--lr-schedule", default="constant", show_default=True,
                     metavar="constant|inverse-time:DECAY|cosine",
                     help="Learning rate per optimiser step: constant; lr / (1 + DECAY * step) (Keras' decay, seed "
                     "004); or a half cosine to 0 over the run."),
        click.option("--val-fraction", type=float, default=None,
                     help="Share of the clips carved out of the training part for early stopping (default 0.1; "
                     "none with --split stratified, the papers' 80/20)."),
        click.option("--metrics", "metric_average", type=click.Choice(["macro", "weighted"]), default="macro",
                     show_default=True, help="The average the tables lead with (seed 001 and 004 report weighted)."),
        click.option("--standardize", type=LazyChoice("emo.fusion.normalize", "STANDARDIZE"), default="auto",
                     show_default=True, help="speaker: z-score each speaker's features with the statistics of "
                     "their own clips (no labels; the usual step of speaker-independent evaluation); global: by "
                     "the training split's statistics only; auto: speaker when the split holds speakers out."),
        click.option("--class-weights", is_flag=True, help="Class-weighted cross-entropy (inverse frequency)."),
        click.option("--device", default="cpu", show_default=True, help="cpu, cuda or auto."),
        click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
                     help="Training steps in fp32, or under bfloat16 autocast (weights, optimiser, loss and "
                     "evaluation stay fp32): on a CPU with AMX bilstm, bilstm-sa, hierarchical, cnn and speech-cnn "
                     "train 1.4-1.6x faster, the vector heads are not faster (README, Performance)."),
        click.option("--hparam", multiple=True, metavar="KEY=VALUE",
                     help="Head hyper-parameter, e.g. n=250, audio_encoder=speech-cnn (repeatable)."),
        click.option("--label-from", default="label", show_default=True, metavar="label|metadata:KEY",
                     help="What to classify: the store's labels, or a metadata field of the clips (MELD's "
                     "metadata:Sentiment for the 3 sentiment classes)."),
        click.option("--map-labels", metavar="OLD=NEW,...", help="Rename classes (several may map to one)."),
        click.option("--classes", help="Keep only these classes (after --map-labels), in this order; clips of "
                     "other classes are left out."),
        click.option("--mfcc-cnn", "cnn_params", multiple=True, metavar="KEY=VALUE",
                     help="With --features audio/mfcc-cnn (seed 002's MFCC CNN, trained inside every training split): "
                     "dim, epochs, batch_size, lr, max_frames (repeatable)."),
        click.option("--autoencoder", "ae_params", multiple=True, metavar="KEY=VALUE",
                     help="With --features audio/ae (seed 001's autoencoder, fitted inside every training split): "
                     "bottleneck, hidden, epochs, batch_size, lr, max_frames (repeatable)."),
        click.option("--log-to", "log_to", multiple=True, metavar="tensorboard[=DIR]|mlflow[=URI]",
                     help="Also log parameters, per-epoch curves, final metrics and figures to TensorBoard (default "
                     "RUN_DIR/tensorboard) or MLflow (default $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here); "
                     "repeatable; needs emo[tensorboard] / emo[mlflow]."),
        storage_options_option,
    ]
    for option in reversed(options):
        func = option(func)
    return func


#: TrainConfig field of each training option (for --preset: a flag given explicitly overrides the preset)
_CONFIG_FIELDS = {
    "method": "method", "modalities": "modalities", "features": "features", "selector": "selector",
    "split": "split", "folds": "folds", "seeds": "seeds", "seed": "seed", "epochs": "epochs",
    "batch_size": "batch_size", "lr": "lr", "weight_decay": "weight_decay", "patience": "patience",
    "class_weights": "class_weights", "device": "device", "precision": "precision", "hparam": "hparams",
    "ae_params": "autoencoder", "cnn_params": "mfcc_cnn",
    "label_from": "label_from", "map_labels": "map_labels", "classes": "classes", "lr_schedule": "lr_schedule",
    "val_fraction": "val_fraction", "metric_average": "metrics", "standardize": "standardize",
}


def _given(ctx: click.Context) -> list[str]:
    """TrainConfig fields the user set explicitly (command line, environment or --config file), not by default."""
    explicit = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT,
                click.core.ParameterSource.DEFAULT_MAP)  # a --config file is the user's choice too
    return [f for p, f in _CONFIG_FIELDS.items() if ctx.get_parameter_source(p) in explicit]


def train_config(method: str | None, kw: dict[str, Any]) -> Any:
    """The TrainConfig of the options: the preset's values (if any) under the flags given explicitly."""
    from emo.fusion.labels import parse_mapping
    from emo.fusion.presets import preset_config
    from emo.fusion.train_config import TrainConfig, parse_selector

    if not method and not kw.get("preset"):
        raise click.UsageError("give --method (or --preset, which names one)")
    config = _plain_config(method or "early", kw, parse_mapping, parse_selector, TrainConfig)
    if not kw.get("preset"):
        return config
    given = _given(click.get_current_context())
    if not method:
        given = [g for g in given if g != "method"]
    return preset_config(kw["preset"], config, given)


def _plain_config(method: str, kw: dict[str, Any], parse_mapping: Any, parse_selector: Any, cls: Any) -> Any:
    return cls(
        method=method,
        modalities=comma_list(kw["modalities"]),
        features=comma_list(kw["features"]),
        selector=parse_selector(kw["selector"]),
        split=kw["split"],
        folds=kw["folds"],
        seeds=kw["seeds"],
        seed=kw["seed"],
        epochs=kw["epochs"],
        batch_size=kw["batch_size"],
        lr=kw["lr"],
        weight_decay=kw["weight_decay"],
        patience=kw["patience"],
        class_weights=kw["class_weights"],
        device=kw["device"],
        precision=kw["precision"],
        hparams=parse_hparams(kw["hparam"]),
        permutation_test=kw.get("permutation_test", 0),
        autoencoder=parse_hparams(kw["ae_params"]),
        mfcc_cnn=parse_hparams(kw["cnn_params"]),
        label_from=kw["label_from"],
        map_labels=parse_mapping(kw["map_labels"]),
        classes=comma_list(kw["classes"]),
        lr_schedule=kw["lr_schedule"],
        val_fraction=kw["val_fraction"],
        metrics=kw["metric_average"],
        standardize=kw["standardize"],
    )
