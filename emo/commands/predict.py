"""``emo predict``: the emotion of new media files or of a store's clips, with a trained run."""

from __future__ import annotations

import json
import logging

import click

from emo.commands.options import common, storage_options_option

log = logging.getLogger("emo")


@click.command()
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
