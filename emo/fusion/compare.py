"""``emo compare``: several methods (and unimodal baselines) on identical splits and seeds, one table and one
bar chart (seed 000 Table 2: unimodal vs early vs late vs attention fusion; seed 001 Fig. 7)."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from emo.features_store import FeatureStore
from emo.fusion.heads import build_head, input_kinds, paper_modalities
from emo.fusion.report_page import write_report
from emo.fusion.reports import plot_comparison
from emo.fusion.run_dir import prepare_run_dir, write_run
from emo.fusion.significance import compare_methods
from emo.fusion.tracking import Tracking, log_result
from emo.fusion.train import apply_preset, prepare_data, train_on_data
from emo.fusion.train_config import TrainConfig

log = logging.getLogger(__name__)

TABLE_METRICS = (
    ("accuracy", "Accuracy"),
    ("precision_macro", "Precision"),
    ("recall_macro", "Recall"),
    ("f1_macro", "F1"),
    ("ua", "UA"),
    ("f1_weighted", "WF1"),
)
#: The table when the run reports weighted averages (``--metrics weighted``: seed 001, seed 004)
WEIGHTED_TABLE_METRICS = (
    ("accuracy", "Accuracy"),
    ("precision_weighted", "Precision (weighted)"),
    ("recall_weighted", "Recall (weighted)"),
    ("f1_weighted", "WF1"),
    ("ua", "UA"),
    ("f1_macro", "F1 macro"),
)
#: The CSV has macro and weighted averages both (papers report one or the other).
CSV_METRICS = (*TABLE_METRICS, ("precision_weighted", "Precision (weighted)"), ("recall_weighted", "Recall (weighted)"))
#: Metrics whose paired differences are tested.
TESTED = (("ua", "UA"), ("wf1", "WF1"))


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
    method_hparams: Mapping[str, dict[str, Any]] | None = None,
    log_to: Sequence[Tracking] = (),
) -> list[dict[str, Any]]:
    """Train every entry on the same splits and seeds; write compare.md, compare.csv, compare.png and runs/.

    ``method_hparams`` gives each method its own head hyper-parameters (default: ``base.hparams`` for all).
    The table leads with the averages ``base.metrics`` names (macro, or weighted as seeds 001 and 004 report).
    Each method's run is also logged to ``log_to`` (TensorBoard, MLflow) as ``OUT_DIR_NAME/METHOD``.
    """
    out = prepare_run_dir(out_dir)
    fs = store if isinstance(store, FeatureStore) else FeatureStore.open(store, storage_options)
    base = apply_preset(fs, base)

    def hp(method: str) -> dict[str, Any]:
        return dict((method_hparams or {}).get(method, base.hparams))

    entries = [
        (
            f"{unimodal_method} ({u} only)",
            dataclasses.replace(
                base, method=unimodal_method, modalities=(u,), hparams=hp(unimodal_method),
                features=tuple(f for f in base.features or () if f.startswith(f"{u}/")) or None,
            ),
        )
        for u in unimodal
    ]
    entries += [(m, dataclasses.replace(base, method=m, hparams=hp(m))) for m in methods]
    cache: dict[str, Any] = {}
    datasets = []
    for _name, config in entries:  # read and validate everything before the first epoch
        modalities = config.modalities or (None if config.features else paper_modalities(config.method))
        key = json.dumps([input_kinds(config.method, config.hparams), modalities, config.features])
        if key not in cache:
            cache[key] = prepare_data(fs, config)
        data = cache[key]
        steps = next((i.x.shape[1] for i in data.inputs.values() if i.kind == "sequence"), None)
        build_head(
            config.method,
            {m: i.dim for m, i in data.inputs.items()},
            len(data.class_names),
            steps=steps,
            **config.hparams,
        )
        datasets.append(data)
    rows = []
    paired: dict[str, list[dict[str, Any]]] = {}
    for (name, config), data in zip(entries, datasets, strict=True):
        result = train_on_data(data, config)
        paired[name] = [
            {
                "key": (r.seed, r.split.name),
                "metrics": r.metrics,
                "correct": r.test_prob.argmax(1) == data.y[r.split.test],
                "test": data.clip_ids[r.split.test],
            }
            for r in result.runs
        ]
        run_name = name.replace(" ", "_").replace("(", "").replace(")", "")
        write_run(result, out / "runs" / run_name, command)
        if log_to:
            write_report(out / "runs" / run_name)  # logged with the run
            log_result(log_to, result, out / "runs" / run_name, f"{out.resolve().name}/{run_name}")
        row = {
            "name": name,
            "method": config.method,
            "modalities": ",".join(result.data.inputs),
            "runs": len(result.runs),
            "protocol": result.protocol,
        }
        row.update({k: result.summary[k] for k, _ in CSV_METRICS})
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
                *[f"{k}_{part}" for k, _ in CSV_METRICS for part in ("mean", "ci_low", "ci_high")],
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
                    *[v for k, _ in CSV_METRICS for v in (r[k]["mean"], *r[k]["ci"])],
                ]
            )
    table = WEIGHTED_TABLE_METRICS if base.metrics == "weighted" else TABLE_METRICS
    lines = [
        f"# emo compare on {fs.location.display}",
        "",
        f"Test scores on {rows[0]['protocol']} splits, {base.seeds} seed(s) x {base.folds} fold(s) per method "
        "(mean, 95% interval over runs). Every method saw the same splits and seeds.",
        "",
        *(
            [f"Preset `{base.preset}`: the paper's configuration for its own head; deviations in metrics.json and "
             "the README.", ""]
            if base.preset else []
        ),
        "| method | modalities | " + " | ".join(label for _, label in table) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in table) + " |",
    ]
    lines += [f"| {r['name']} | {r['modalities']} | " + " | ".join(_fmt(r[k]) for k, _ in table) + " |" for r in rows]
    pairs = compare_methods(paired, [k for k, _ in TESTED]) if len(paired) > 1 else []
    (out / "significance.json").write_text(json.dumps(pairs, indent=2))
    lines += _significance_lines(pairs, rows[0]["runs"])
    (out / "compare.md").write_text("\n".join(lines) + "\n")
    plot_comparison(rows, out / "compare.png", f"emo compare: {fs.location.display}")
    return rows


def _p(value: float | None) -> str:
    return "-" if value is None else ("< 0.001" if value < 0.001 else f"{value:.3f}")


def _significance_lines(pairs: list[dict[str, Any]], n_runs: int) -> list[str]:
    """compare.md's table of paired differences (A - B) between every two methods."""
    if not pairs:
        return []
    lines = [
        "",
        "## Is the difference real?",
        "",
        f"Paired over the {n_runs} run(s) both methods share (same seed and split): mean difference A - B with a "
        "95% t-interval, the paired t-test's p-value Holm-adjusted over the pairs of this table (significant: "
        "adjusted p < 0.05, marked **yes**) and the Wilcoxon signed-rank p-value (it cannot go below 0.05 with "
        "fewer than 6 runs); McNemar: runs whose per-clip predictions differ significantly (exact test, "
        "p < 0.05). Details in significance.json.",
        "",
        "| A | B | " + " | ".join(f"{label} A - B | t p (Holm) | Wilcoxon p | significant" for _, label in TESTED)
        + " | McNemar |",
        "| --- | --- | " + " | ".join("---: | ---: | ---: | :---:" for _ in TESTED) + " | ---: |",
    ]
    for pair in pairs:
        cells = []
        for key, _ in TESTED:
            d = pair[key]
            cells += [
                f"{d['mean_difference']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]",
                _p(d.get("t_p_holm")),
                _p(d["wilcoxon_p"]),
                "**yes**" if d["significant"] else "no",
            ]
        mcnemar = f"{pair['mcnemar_significant_runs']} of {len(pair['mcnemar'])}"
        lines.append(f"| {pair['a']} | {pair['b']} | " + " | ".join(cells) + f" | {mcnemar} |")
    return lines
