"""``emo select``: fit one feature selector on a store's training split."""

from __future__ import annotations

import logging

import click

from emo.commands.options import LazyChoice, comma_list, common, storage_options_option
from emo.commands.training import parse_hparams

log = logging.getLogger("emo")


@click.command("select")
@click.option("--store", "store_path", required=True, help="Feature store (directory, .zip or URL).")
@click.option("--method", required=True, type=LazyChoice("emo.fusion.selection", "SELECTORS"), help="Selector.")
@click.option("--features", help="Comma-separated store paths (default: the pooled features of every modality).")
@click.option("--modalities", help="Comma-separated modalities (audio,video,text).")
@click.option("--split", type=LazyChoice("emo.fusion.splits", "SPLITS"), default="auto",
              show_default=True, help="The selector is fitted on this split's training clips.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--standardize", type=LazyChoice("emo.fusion.normalize", "STANDARDIZE"), default="auto",
              show_default=True,
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
                             seed, parse_hparams(params), parse_storage_options(storage_option), standardize)
    line = f"{method}: kept {result['n_selected']} of {result['n_features']} features"
    if "best_fitness" in result:
        line += f" (best fitness {result['best_fitness']:.4f}, CV accuracy {result['best_cv_accuracy']:.3f})"
    click.echo(f"{line}; written to {out_dir}/selection.json and selection.png")
