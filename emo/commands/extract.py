"""``emo extract``: decode a dataset's media and compute its features into a store."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from emo.commands.config_file import config_options, write_used_config
from emo.commands.options import (
    LazyChoice,
    RegistryHelpOption,
    comma_list,
    common,
    own_process,
    storage_options_option,
)
from emo.pipeline.config import TRIM_SILENCE_DB

log = logging.getLogger("emo")


def section_options() -> list[click.Option]:
    """One option per field of every registered extractor section (``emo.pipeline.config.Section``): its flag,
    help, type and default come from the field, so an extractor's options need no line here."""
    from emo.pipeline.config import section_classes

    out = []
    for cls in section_classes():
        for f in dataclasses.fields(cls):
            meta = f.metadata
            if meta.get("cli", True) is False:
                continue
            kwargs: dict[str, Any] = {"help": meta.get("help", "")}
            if meta.get("is_flag"):
                kwargs["is_flag"] = True
            else:
                kwargs["show_default"] = True
                if "parse" in meta:  # given as text (the default shown as it is typed), parsed by the command
                    kwargs["default"] = ",".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
                elif "choices" in meta:
                    kwargs["type"], kwargs["default"] = click.Choice(meta["choices"]), f.default
                elif "range" in meta:
                    kwargs["type"], kwargs["default"] = click.IntRange(*meta["range"]), f.default
                else:
                    kwargs["type"], kwargs["default"] = type(f.default), f.default
                if "metavar" in meta:
                    kwargs["metavar"] = meta["metavar"]
            out.append(click.Option([meta.get("flag") or "--" + f.name.replace("_", "-"), f.name], **kwargs))
    return out


def parse_section_options(values: dict[str, Any]) -> dict[str, Any]:
    """The section options' values as the config takes them (text parsed by each field's ``parse``)."""
    from emo.pipeline.config import section_classes

    fields = [f for cls in section_classes() for f in dataclasses.fields(cls)]
    parsers = {f.name: f.metadata["parse"] for f in fields if "parse" in f.metadata}
    out = dict(values)
    for name, parse in parsers.items():
        if isinstance(out.get(name), str):
            try:
                out[name] = parse(out[name])
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--" + name.replace("_", "-")) from None
    return out


class ExtractCommand(click.Command):
    """``emo extract``: its extractor options (:func:`section_options`) are added when click first asks for its
    parameters (parsing, help, completion), not when the CLI is built (listing them imports the extractors,
    about 2 s that every other command would pay)."""

    _sections_added = False

    def _add_sections(self) -> None:
        if not self._sections_added:
            self._sections_added = True
            at = next(i for i, p in enumerate(self.params) if p.name == "trim_silence") + 1
            self.params[at:at] = section_options()

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        self._add_sections()
        return super().get_params(ctx)


@click.command(cls=ExtractCommand)
@config_options
@click.argument("dataset_dir", type=click.Path(path_type=str))
@click.option("-o", "--output", "store", required=True, help="Store to write: a directory or an fsspec URL.")
@click.option(
    "--dataset",
    type=LazyChoice("emo.pipeline.datasets", "ADAPTERS", extra=("auto",)),
    default="auto",
    show_default=True,
    help="Dataset layout (auto detects it and says which).",
)
@click.option("--features", cls=RegistryHelpOption, registry=("emo.pipeline.extractors", "EXTRACTORS"),
              help="Comma-separated feature tokens to compute, of {names} (default: every token but ssl, the "
              "pretrained speech encoder, which is opt-in).")
@click.option("--workers", type=int, help="Workers of the embedded LocalCluster (default: the machine's cores).")
@click.option("--scheduler", metavar="ADDRESS", help="Use an existing Dask scheduler (tcp://HOST:PORT).")
@click.option("--batch-size", type=int, help="Clips per Dask task (default: about 4 tasks per worker, max 32).")
@click.option("--chunk-clips", type=int, default=256, show_default=True, help="Clips per chunk along the clip axis.")
@click.option("--align-steps", type=int, default=32, show_default=True, help="Steps T of the aligned sequences.")
@click.option("--sample-rate", type=int, default=16000, show_default=True, help="Audio sample rate (Hz).")
@click.option("--win-ms", type=float, default=25.0, show_default=True, help="Analysis window (ms).")
@click.option("--hop-ms", type=float, default=10.0, show_default=True, help="Frame hop (ms).")
@click.option(
    "--denoise",
    type=LazyChoice("emo.pipeline.config", "DENOISE_METHODS"),
    default="none",
    show_default=True,
    help="Audio denoising before features (seed 001).",
)
@click.option(
    "--normalize",
    type=LazyChoice("emo.pipeline.config", "NORMALIZE_METHODS"),
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
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the models run; cuda sends their tasks to workers advertising a GPU resource "
              "(auto: cuda if the cluster has such workers with CUDA).")
@click.option("--offline", is_flag=True,
              help="Never download weights (as HF_HUB_OFFLINE=1), here or on the workers of a --scheduler cluster: a "
              "model missing here stops the run before any work, one missing on a worker when it loads its models; "
              "the message names `emo models fetch`.")
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
    denoise: str,
    normalize: str,
    trim_silence: str,
    device: str,
    offline: bool,
    overwrite: bool,
    strict: bool,
    strict_partial: bool,
    as_json: bool,
    storage_option: tuple[str, ...],
    quiet: bool,
    **options: Any,
) -> None:
    """Extract features of every clip in DATASET_DIR into a feature store.

    Re-running the same command resumes: clips already in the store are skipped.
    """
    if offline:  # before the hub client is imported (it reads the variable once); extract() tells the workers
        os.environ["HF_HUB_OFFLINE"] = "1"
    from emo.features_store.location import parse_storage_options
    from emo.pipeline import ClusterOptions, ExtractionConfig
    from emo.pipeline import extract as run_extract
    from emo.pipeline.extract_report import print_summary
    from emo.pipeline.extractors import default_tokens
    from emo.pipeline.heap import unmap_large_blocks
    from emo.pipeline.progress import ExtractionProgress

    if own_process():  # this process drives the run: its chunk buffers go back to the OS once written
        unmap_large_blocks()
    if trim_silence.strip().lower() in ("off", "none"):
        trim_db = None
    else:
        try:
            trim_db = float(trim_silence)
        except ValueError:
            raise click.BadParameter(f"expected a number of dB or 'off', got {trim_silence!r}",
                                     param_hint="--trim-silence") from None
    section_values = parse_section_options(options)
    if not overwrite:  # resuming: `auto` is what the store was extracted with
        from emo.features_store.location import parse_location
        from emo.features_store.resume import recorded_config
        from emo.pipeline.config import resume_choices

        location = parse_location(store, parse_storage_options(storage_option))
        section_values, notes = resume_choices(section_values, recorded_config(location))
        for note in notes:
            log.info("resuming %s: %s", location.display, note)
    config = ExtractionConfig(
        features=comma_list(features) or default_tokens(),
        sample_rate=sample_rate,
        win_ms=win_ms,
        hop_ms=hop_ms,
        align_steps=align_steps,
        denoise=denoise,
        normalize=normalize,
        trim_silence_db=trim_db,
        **section_values,
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
            offline=offline,
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
