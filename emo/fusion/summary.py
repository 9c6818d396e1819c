"""Printing a training result as a table: each metric's mean and 95% interval over runs."""

from __future__ import annotations

from rich.table import Table

from emo.features_store.info import result_console
from emo.fusion.train import TrainResult

METRICS = (
    ("accuracy", "accuracy (WA)"),
    ("ua", "UA (mean recall)"),
    ("f1_macro", "F1 macro"),
    ("f1_weighted", "F1 weighted (WF1)"),
    ("precision_macro", "precision macro"),
    ("recall_macro", "recall macro"),
)


def print_metrics(result: TrainResult, out_dir: str | None = None) -> None:
    console = result_console()
    sizes = result.reference.split.sizes()
    console.print(
        f"{result.config.method} on {result.data.store.get('location')}: {len(result.runs)} run(s), "
        f"{result.protocol} split (train {sizes['train']}, val {sizes['val']}, test {sizes['test']} clips), "
        f"modalities {', '.join(f'{m} ({i.kind}, {i.dim}-d)' for m, i in result.data.inputs.items())}",
        highlight=False,
    )
    table = Table(title="test metrics", title_justify="left")
    table.add_column("metric")
    table.add_column("mean", justify="right")
    table.add_column("95% interval", justify="right")
    for key, label in METRICS:
        s = result.summary[key]
        table.add_row(
            label, f"{s['mean']:.3f}", "single run" if s["single_run"] else f"{s['ci'][0]:.3f} - {s['ci'][1]:.3f}"
        )
    console.print(table)
    if out_dir:
        console.print(f"run written to {out_dir}", highlight=False)
