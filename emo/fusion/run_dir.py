"""Writing a run directory: metrics.json, predictions, figures and the checkpoint of a training job."""

from __future__ import annotations

import csv
import datetime as _dt
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import emo
from emo.errors import UsageError
from emo.features_store.location import redact_argv
from emo.fusion.checkpoint import save_checkpoint
from emo.fusion.reports import plot_confusion, plot_curves, plot_modality_weights
from emo.fusion.train import TrainResult


def _command(command: Sequence[str] | None) -> str:
    """The command line for provenance, with credentials passed as storage options masked."""
    return shlex.join(redact_argv(list(command if command is not None else sys.argv)))


def prepare_run_dir(path: str | Path) -> Path:
    """Create the run directory; refuse a file or a non-empty directory that is not a previous run."""
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / "metrics.json").exists():
        raise UsageError(f"-o {out}: the directory is not empty and holds no emo run; choose a new path")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"-o {out}: {exc.strerror or exc}") from None
    return out


def write_run(result: TrainResult, out_dir: str | Path, command: Sequence[str] | None = None) -> Path:
    """Everything a person (and ``emo predict``) needs from a training job."""
    out = prepare_run_dir(out_dir)
    data, ref = result.data, result.reference
    cmd = _command(command)
    report = {
        "emo_version": emo.__version__,
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": cmd,
        **result.to_json(),
    }
    (out / "metrics.json").write_text(json.dumps(report, indent=2, default=str))

    header = ["run", "clip_id", "speaker", "true", "pred", *[f"p_{c}" for c in data.class_names]]
    has_weights = ref.test_weights is not None
    modalities = list(ref.head.modalities)
    if has_weights:
        header += [f"w_{m}" for m in modalities]
    with open(out / "predictions.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for run in result.runs:
            for i, row in enumerate(run.split.test):
                values = [
                    run.name,
                    data.clip_ids[row],
                    data.speakers[row],
                    data.class_names[data.y[row]],
                    data.class_names[int(run.test_prob[i].argmax())],
                    *np.round(run.test_prob[i], 5),
                ]
                if has_weights:
                    values += list(np.round(run.test_weights[i], 5))
                writer.writerow(values)

    confusion = np.sum([np.asarray(r.metrics["confusion_matrix"]) for r in result.runs], axis=0)
    summary = result.summary
    plot_confusion(
        confusion,
        data.class_names,
        out / "confusion.png",
        f"{result.config.method}: test, {len(result.runs)} run(s), UA {summary['ua']['mean']:.3f}",
    )
    plot_curves({r.name: r.history for r in result.runs}, out / "curves.png", f"{result.config.method} training")

    if has_weights:
        per_clip = []
        sums = {c: np.zeros(len(modalities)) for c in data.class_names}
        counts = dict.fromkeys(data.class_names, 0)
        for run in result.runs:
            for i, row in enumerate(run.split.test):
                label = data.class_names[data.y[row]]
                per_clip.append(
                    {
                        "run": run.name,
                        "clip_id": str(data.clip_ids[row]),
                        "true": label,
                        "weights": dict(zip(modalities, map(float, run.test_weights[i]), strict=True)),
                    }
                )
                sums[label] += run.test_weights[i]
                counts[label] += 1
        means = {c: (sums[c] / counts[c]).tolist() for c in data.class_names if counts[c]}
        (out / "modality_weights.json").write_text(
            json.dumps({"modalities": modalities, "mean_by_class": means, "clips": per_clip}, indent=2)
        )
        plot_modality_weights(
            means,
            modalities,
            out / "modality_weights.png",
            f"{result.config.method}: mean modality weight by true class",
        )

    selections = {
        run.name: {
            m: {
                "method": result.config.selector.get(m) or _joint(result.config.selector),
                "n_kept": int(keep.sum()),
                "n_total": int(keep.size),
                "kept": np.flatnonzero(keep).tolist(),
                "scores": run.prep.preprocessing.selection_scores.get(m),
            }
            for m, keep in run.prep.preprocessing.selections.items()
        }
        for run in result.runs
    }
    if any(selections.values()):
        (out / "selection.json").write_text(
            json.dumps(
                {
                    "note": "fitted on each run's training clips only; the checkpoint applies the first run's masks",
                    "runs": selections,
                },
                indent=2,
            )
        )

    save_checkpoint(
        out,
        ref.head,
        ref.prep.preprocessing,
        {
            "method": result.config.method,
            "class_names": data.class_names,
            "modalities": {
                m: {"kind": i.kind, "features": i.features, "feature_dims": i.dims} for m, i in data.inputs.items()
            },
            "selection": {m: result.config.selector.get(m) or _joint(result.config.selector) for m in data.inputs},
            "store": data.store,
            "standardize": data.standardize,
            "fitted": ref.prep.preprocessing.fitted,
            "train": {"run": ref.name, **{k: v for k, v in report["config"].items() if k != "hparams"}},
            "emo_version": emo.__version__,
            "command": cmd,
        },
    )
    return out


def _joint(selector: dict[str, str]) -> str:
    """How a modality without its own selector was selected: "joint:NAME" (one selector over every modality's
    concatenated vector) or "none"."""
    return f"joint:{selector['joint']}" if selector.get("joint", "none") != "none" else "none"
