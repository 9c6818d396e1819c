"""``emo fuse``: train one fusion head on a store's cached features."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from emo.commands.config_file import config_options, write_used_config
from emo.commands.options import LazyChoice, common
from emo.commands.report import write_report
from emo.commands.training import train_config, training_options

log = logging.getLogger("emo")


@click.command()
@config_options
@training_options
@click.option("--method", type=LazyChoice("emo.fusion.heads", "HEADS"),
              help="Fusion head (default: the one --preset names).")
@click.option("-o", "--output", "out_dir", required=True, help="Run directory to write.")
@click.option("--permutation-test", type=int, default=0, show_default=True, metavar="N",
              help="Leakage check: train N more times on the reference split with shuffled training labels; "
              "reports their test UA (it must sit at chance) and the p-value of the real result.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics summary as JSON.")
@common
def fuse(store_path: str, method: str | None, out_dir: str, as_json: bool, quiet: bool, **kw: Any) -> None:
    """Train a fusion head on a store's cached features and write metrics, figures and a checkpoint."""
    from emo.features_store.location import parse_storage_options
    from emo.fusion.metrics_table import print_metrics
    from emo.fusion.tracking import log_result, parse_log_to
    from emo.fusion.train import train

    trackings = parse_log_to(kw["log_to"])
    config = train_config(method, kw)
    result = train(store_path, config, out_dir, parse_storage_options(kw["storage_option"]), ["emo", *sys.argv[1:]])
    write_used_config(click.get_current_context(), Path(out_dir) / "fuse-config.toml",
                      "the options `emo fuse` made this run with")
    write_report(out_dir)
    log_result(trackings, result, out_dir, Path(out_dir).resolve().name)
    if as_json:
        click.echo(json.dumps(result.summary, indent=2))
    else:
        print_metrics(result, out_dir)
