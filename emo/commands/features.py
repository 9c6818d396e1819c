"""``emo features``: features computed from a store's own features (no media decoding)."""

from __future__ import annotations

import logging

import click

from emo.commands.options import LazyChoice, common, storage_options_option

log = logging.getLogger("emo")


@click.group()
def features() -> None:
    """Features computed from a store's own features (no media decoding)."""


@features.command("autoencoder")
@click.option("--store", "store_path", required=True, help="Feature store with audio/mel frames.")
@click.option("--bottleneck", type=int, default=64, show_default=True, help="Code size d of audio/ae.")
@click.option("--hidden", type=int, default=256, show_default=True)
@click.option("--epochs", type=int, default=30, show_default=True)
@click.option("--split", type=LazyChoice("emo.fusion.splits", "SPLITS"), default="auto",
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
