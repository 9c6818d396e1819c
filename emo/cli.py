"""The ``emo`` command line: parses options, calls the library, prints results (logs on stderr)."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from emo import __version__
from emo.errors import EmoError

log = logging.getLogger("emo")


def _setup_logging(verbose: int, quiet: bool) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    console = Console(stderr=True)
    if console.is_terminal:
        handler: logging.Handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
    else:  # one unwrapped line per message for log files and pipes
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s emo: %(message)s"))
    root = logging.getLogger("emo")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    if verbose > 1:
        logging.getLogger("distributed").setLevel(logging.INFO)


def common(func: Callable[..., Any]) -> Callable[..., Any]:
    """-v/--verbose and -q/--quiet on every command; sets up logging before the command runs."""

    @click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
    @click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress bar.")
    @functools.wraps(func)
    def wrapper(*args: Any, verbose: int, quiet: bool, **kwargs: Any) -> Any:
        _setup_logging(verbose, quiet)
        return func(*args, quiet=quiet, **kwargs)

    return wrapper


def storage_options_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--storage-option",
        "storage_option",
        multiple=True,
        metavar="KEY=VALUE",
        help="fsspec storage option for a remote store (repeatable; e.g. endpoint_url=..., key=..., secret=...).",
    )(func)


def _comma_list(value: str | None) -> tuple[str, ...] | None:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else None


class EmoGroup(click.Group):
    """Turns emo's own errors into one line on stderr and the error's exit code (2 for usage errors)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EmoError as exc:
            click.echo(f"emo: error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=EmoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="emo")
def cli() -> None:
    """emo: multimodal emotion recognition research toolkit.

    Extract audio, face and text features from a dataset into a shared Zarr feature store, then train fusion
    heads and feature selectors on the cached tensors.
    """


# -------------------------------------------------------------------------------------------- extract
@cli.command()
@click.argument("dataset_dir", type=click.Path(path_type=str))
@click.option("-o", "--output", "store", required=True, help="Store to write: a directory or an fsspec URL.")
@click.option(
    "--dataset",
    type=click.Choice(["auto", "ravdess", "crema-d", "meld", "manifest", "folders"]),
    default="auto",
    show_default=True,
    help="Dataset layout (auto detects it and says which).",
)
@click.option("--features", help="Comma-separated feature tokens to compute (default: all available).")
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
@click.option("--egemaps-lld", is_flag=True, help="Also store eGeMAPS low-level descriptors per frame.")
@click.option("--overwrite", is_flag=True, help="Delete the store's contents and start fresh.")
@click.option("--strict", is_flag=True, help="Exit 1 if any clip failed.")
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
    egemaps_lld: bool,
    overwrite: bool,
    strict: bool,
    as_json: bool,
    storage_option: tuple[str, ...],
    quiet: bool,
) -> None:
    """Extract features of every clip in DATASET_DIR into a feature store.

    Re-running the same command resumes: clips already in the store are skipped.
    """
    from emo.features_store.location import parse_storage_options
    from emo.pipeline import ClusterOptions, ExtractionConfig
    from emo.pipeline import extract as run_extract
    from emo.pipeline.extractors import EXTRACTORS
    from emo.pipeline.progress import ExtractionProgress
    from emo.pipeline.summary import print_summary

    config = ExtractionConfig(
        features=_comma_list(features) or tuple(EXTRACTORS),
        sample_rate=sample_rate,
        win_ms=win_ms,
        hop_ms=hop_ms,
        n_mfcc=n_mfcc,
        mfcc_deltas=mfcc_deltas,
        n_mels=n_mels,
        align_steps=align_steps,
        denoise=denoise,
        normalize=normalize,
        egemaps_lld=egemaps_lld,
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
        )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        print_summary(report)
    if report.interrupted:
        sys.exit(130)
    if report.n_written and not report.n_with_features:
        sys.exit(1)
    if strict and (report.n_failed or report.skipped_files):
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


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="emo")


if __name__ == "__main__":
    main()
