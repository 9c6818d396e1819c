"""Printing a training result as a table: each metric's mean and 95% interval over runs."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from emo.features_store.info import result_console
from emo.fusion.heads import paper_modalities
from emo.fusion.train import TrainResult
from emo.fusion.train_config import TrainConfig

METRICS = (
    ("accuracy", "accuracy (WA)"),
    ("ua", "UA (mean recall)"),
    ("f1_macro", "F1 macro"),
    ("f1_weighted", "F1 weighted (WF1)"),
    ("precision_macro", "precision macro"),
    ("recall_macro", "recall macro"),
)
#: with ``--metrics weighted`` (seeds 001 and 004 report support-weighted averages)
WEIGHTED_METRICS = (
    ("accuracy", "accuracy (WA)"),
    ("f1_weighted", "F1 weighted (WF1)"),
    ("precision_weighted", "precision weighted"),
    ("recall_weighted", "recall weighted"),
    ("ua", "UA (mean recall)"),
    ("f1_macro", "F1 macro"),
)


def _default_modalities(config: TrainConfig, used: list[str]) -> str:
    """Where the modalities came from when the user did not choose them."""
    if config.modalities or config.features:
        return ""
    paper = paper_modalities(config.method)
    lacking = [m for m in paper if m not in used]
    return (f" (no --modalities: those {config.method}'s paper fuses, {', '.join(paper)}"
            f"{'; the store has no ' + ', '.join(lacking) if lacking else ''})")  # fmt: skip


def print_metrics(result: TrainResult, out_dir: str | None = None) -> None:
    console = result_console()
    sizes = result.reference.split.sizes()
    console.print(
        f"{result.config.method} on {result.data.store.get('location')}: {len(result.runs)} run(s), "
        f"{result.protocol} split ({result.protocol_reason}; train {sizes['train']}, val {sizes['val']}, "
        f"test {sizes['test']} clips), "
        f"modalities {', '.join(f'{m} ({i.kind}, {i.dim}-d)' for m, i in result.data.inputs.items())}"
        f"{_default_modalities(result.config, list(result.data.inputs))}, "
        f"standardised {'per speaker' if result.data.standardize == 'speaker' else 'on the training split'}",
        highlight=False,
    )
    table = Table(title="test metrics", title_justify="left")
    table.add_column("metric")
    table.add_column("mean", justify="right")
    table.add_column("95% interval", justify="right")
    for key, label in WEIGHTED_METRICS if result.config.metrics == "weighted" else METRICS:
        s = result.summary[key]
        table.add_row(
            label, f"{s['mean']:.3f}", "single run" if s["single_run"] else f"{s['ci'][0]:.3f} - {s['ci'][1]:.3f}"
        )
    console.print(table)
    if result.config.preset:
        lacks = "; ".join(result.config.preset_notes)
        console.print(
            f"--preset {result.config.preset}: the paper's configuration (its deviations are listed in the README "
            f"and metrics.json){'; this store ' + lacks if lacks else ''}",
            highlight=False,
        )
    for line in leakage_lines(result.leakage):
        console.print(line, highlight=False)
    if out_dir:
        console.print(f"run written to {out_dir}", highlight=False)


def leakage_lines(leakage: dict[str, Any]) -> list[str]:
    """The leakage alarm as printed: what train and test shared (worst run), and the permutation check."""
    lines = []
    overlap = leakage.get("overlap")
    if overlap:
        worst = overlap["max_over_runs"]
        shared = (
            f"train/test share {worst['shared_speakers']} speaker(s), {worst['shared_dialogues']} dialogue(s), "
            f"{worst['duplicate_media']} identical media file(s) (worst run)"
        )
        alarm = "" if overlap["ok"] else " - LEAK: " + "; ".join(overlap["problems"])
        lines.append(f"leakage check: {shared}{alarm}")
    perm = leakage.get("permutation")
    if perm:
        lines.append(
            f"permutation check: {perm['n_permutations']} trainings on shuffled labels, test {perm['metric'].upper()} "
            f"{perm['permuted_mean']:.3f} +- {perm['permuted_std']:.3f} (chance {perm['chance']:.3f}); real "
            f"{perm['real']:.3f}, p = {perm['p_value']:.3f}"
        )
    return lines
