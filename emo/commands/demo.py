"""``emo demo``: write the synthetic demo dataset."""

from __future__ import annotations

import logging

import click

from emo.commands.options import common

log = logging.getLogger("emo")


@click.command()
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
