"""``emo compare``: several methods on identical splits and seeds, tabulated."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from emo.commands.config_file import config_options, write_used_config
from emo.commands.options import RegistryHelpOption, comma_list, common
from emo.commands.report import write_report
from emo.commands.training import parse_hparams, train_config, training_options

log = logging.getLogger("emo")


@click.command()
@config_options
@training_options
@click.option("--methods", cls=RegistryHelpOption, registry=("emo.fusion.heads", "HEADS"),
              help="Comma-separated methods of {names}, e.g. early,late,attention (default with --preset: the "
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
    base = train_config(names[0] if preset is None else None, kw)
    # the preset's head hyper-parameters belong to its own head; other heads get the ones given with --hparam
    own = {base.method: base.hparams}
    hparams = {name: own.get(name, parse_hparams(kw["hparam"])) for name in (*names, unimodal_method)}
    for name in names:
        train_config(name, kw)  # validates every method name before any training
    from emo.fusion.tracking import parse_log_to

    run_compare(store_path, names, base, out_dir, comma_list(unimodal) or (), unimodal_method,
                parse_storage_options(kw["storage_option"]), ["emo", *sys.argv[1:]], hparams,
                parse_log_to(kw["log_to"]))
    write_used_config(ctx, Path(out_dir) / "compare-config.toml", "the options `emo compare` made this comparison with")
    write_report(out_dir)
    click.echo((Path(out_dir) / "compare.md").read_text())
