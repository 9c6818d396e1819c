"""``emo compare``: several methods (and unimodal baselines) on identical splits and seeds, one table and one
bar chart (seed 000 Table 2: unimodal vs early vs late vs attention fusion; seed 001 Fig. 7)."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emo.features_store import FeatureStore
from emo.fusion.heads import build_head
from emo.fusion.reports import plot_comparison
from emo.fusion.run_dir import prepare_run_dir, write_run
from emo.fusion.train import TrainConfig, input_kinds, prepare_data, train_on_data

log = logging.getLogger(__name__)

TABLE_METRICS = (
    ("accuracy", "Accuracy"),
    ("precision_macro", "Precision"),
    ("recall_macro", "Recall"),
    ("f1_macro", "F1"),
    ("ua", "UA"),
    ("f1_weighted", "WF1"),
)


def _fmt(summary: dict[str, Any]) -> str:
    if summary["single_run"]:
        return f"{summary['mean']:.3f}"
    return f"{summary['mean']:.3f} [{summary['ci'][0]:.3f}, {summary['ci'][1]:.3f}]"


def compare(
    store: str | FeatureStore,
    methods: Sequence[str],
    base: TrainConfig,
    out_dir: str | Path,
    unimodal: Sequence[str] = (),
    unimodal_method: str = "early",
    storage_options: dict[str, Any] | None = None,
    command: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Train every entry on the same splits and seeds; write compare.md, compare.csv, compare.png and runs/."""
    out = prepare_run_dir(out_dir)
    fs = store if isinstance(store, FeatureStore) else FeatureStore.open(store, storage_options)
    entries = [
        (f"{unimodal_method} ({u} only)", dataclasses.replace(base, method=unimodal_method, modalities=(u,)))
        for u in unimodal
    ]
    entries += [(m, dataclasses.replace(base, method=m)) for m in methods]
    cache: dict[str, Any] = {}
    datasets = []
    for _name, config in entries:  # read and validate everything before the first epoch
        key = json.dumps([input_kinds(config.method, config.hparams), config.modalities, config.features])
        if key not in cache:
            cache[key] = prepare_data(fs, config)
        data = cache[key]
        steps = next((i.x.shape[1] for i in data.inputs.values() if i.x.ndim == 3), None)
        build_head(
            config.method,
            {m: i.dim for m, i in data.inputs.items()},
            len(data.class_names),
            steps=steps,
            **config.hparams,
        )
        datasets.append(data)
    rows = []
    for (name, config), data in zip(entries, datasets, strict=True):
        result = train_on_data(data, config)
        run_name = name.replace(" ", "_").replace("(", "").replace(")", "")
        write_run(result, out / "runs" / run_name, command)
        row = {
            "name": name,
            "method": config.method,
            "modalities": ",".join(result.data.inputs),
            "runs": len(result.runs),
            "protocol": result.protocol,
        }
        row.update({k: result.summary[k] for k, _ in TABLE_METRICS})
        rows.append(row)
        log.info("compare: %s UA %.3f", name, result.summary["ua"]["mean"])

    with open(out / "compare.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            [
                "name",
                "method",
                "modalities",
                "runs",
                "protocol",
                *[f"{k}_{part}" for k, _ in TABLE_METRICS for part in ("mean", "ci_low", "ci_high")],
            ]
        )
        for r in rows:
            writer.writerow(
                [
                    r["name"],
                    r["method"],
                    r["modalities"],
                    r["runs"],
                    r["protocol"],
                    *[v for k, _ in TABLE_METRICS for v in (r[k]["mean"], *r[k]["ci"])],
                ]
            )
    lines = [
        f"# emo compare on {fs.location.display}",
        "",
        f"Test scores on {rows[0]['protocol']} splits, {base.seeds} seed(s) x {base.folds} fold(s) per method "
        "(mean, 95% interval over runs). Every method saw the same splits and seeds.",
        "",
        "| method | modalities | " + " | ".join(label for _, label in TABLE_METRICS) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in TABLE_METRICS) + " |",
    ]
    lines += [
        f"| {r['name']} | {r['modalities']} | " + " | ".join(_fmt(r[k]) for k, _ in TABLE_METRICS) + " |" for r in rows
    ]
    (out / "compare.md").write_text("\n".join(lines) + "\n")
    plot_comparison(rows, out / "compare.png", f"emo compare: {fs.location.display}")
    return rows
