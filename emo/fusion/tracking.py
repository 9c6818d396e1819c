"""Experiment tracking: a finished training job's parameters, per-epoch curves, final metrics and figures, logged
to TensorBoard (a log directory) or MLflow (a tracking URI), through each library's own writer.

``--log-to tensorboard[=DIR]`` (default ``RUN_DIR/tensorboard``: ``tensorboard --logdir runs/`` shows every run)
and ``--log-to mlflow[=URI]`` (default ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the working
directory; experiment ``$MLFLOW_EXPERIMENT_NAME`` or ``emo``). The packages are optional extras
(``emo[tensorboard]``, ``emo[mlflow]``); asking for one that is not installed stops before training.
Curves are logged per run (seed and split) with the epoch as step, once the job has finished.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emo.errors import UsageError
from emo.features_store.location import redact_url_secrets

if TYPE_CHECKING:
    from emo.fusion.train import TrainResult

__all__ = ["TRACKERS", "Tracking", "log_result", "parse_log_to"]

log = logging.getLogger("emo")

TRACKERS = {"tensorboard": ("torch.utils.tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}
#: the final metrics logged (mean over runs, and the 95% interval's ends)
FINAL = ("ua", "wa", "wf1", "f1_macro", "accuracy", "log_loss", "roc_auc_macro")
FIGURES = ("confusion.png", "curves.png", "modality_weights.png")


@dataclass(frozen=True)
class Tracking:
    """One destination: ``kind`` (tensorboard or mlflow) and where (a directory or a URI; None = the default)."""

    kind: str
    where: str | None = None


def parse_log_to(values: Sequence[str]) -> list[Tracking]:
    """``--log-to`` values (``tensorboard``, ``tensorboard=DIR``, ``mlflow``, ``mlflow=URI``), with the needed
    package checked now: :class:`UsageError` naming the extra to install otherwise."""
    out = []
    for value in values:
        kind, _, where = value.partition("=")
        kind = kind.strip().lower()
        if kind not in TRACKERS:
            raise UsageError(f"--log-to {value!r}: choose tensorboard[=DIR] or mlflow[=URI]")
        module, extra = TRACKERS[kind]
        try:
            __import__(module)
        except ImportError as e:
            raise UsageError(f"--log-to {kind} needs the {extra} package: pip install 'emo[{extra}]' ({e})") from e
        out.append(Tracking(kind, where.strip() or None))
    return out


def _params(result: TrainResult) -> dict[str, Any]:
    """The job's configuration as flat name -> scalar (nested values as JSON)."""
    config = json.loads(json.dumps(result.config.__dict__, default=str))
    flat: dict[str, Any] = {}
    for k, v in config.items():
        flat[k] = v if isinstance(v, (int, float, str, bool)) else json.dumps(v)
    flat["protocol"] = result.protocol
    flat["n_clips"] = int(len(result.data.y))
    flat["modalities"] = ",".join(result.data.inputs)
    return flat


def _final(result: TrainResult) -> dict[str, float]:
    out: dict[str, float] = {}
    for key in FINAL:
        s = result.summary.get(key)
        if not isinstance(s, Mapping) or s.get("mean") is None:
            continue
        out[f"test_{key}"] = float(s["mean"])
        if s.get("ci") and not s.get("single_run"):
            out[f"test_{key}_ci_low"], out[f"test_{key}_ci_high"] = (float(x) for x in s["ci"])
    return out


def _tensorboard(result: TrainResult, run_dir: Path, name: str, where: str | None) -> None:
    import numpy as np
    from matplotlib.image import imread
    from torch.utils.tensorboard import SummaryWriter

    logdir = Path(where) / name if where else run_dir / "tensorboard"
    with SummaryWriter(log_dir=str(logdir)) as writer:
        for run in result.runs:
            for key, values in run.history.items():
                for epoch, value in enumerate(values, start=1):
                    writer.add_scalar(f"{run.name}/{key}", float(value), epoch)
        for fig in FIGURES:
            path = run_dir / fig
            if path.is_file():
                image = (np.asarray(imread(path))[..., :3] * 255).astype(np.uint8)
                writer.add_image(fig.removesuffix(".png"), image, dataformats="HWC")
        final = _final(result)
        writer.add_hparams(_params(result), final, run_name=".")
        for key, value in final.items():
            writer.add_scalar(key, value, 0)
    log.info("logged to TensorBoard: %s", logdir)


def _mlflow(result: TrainResult, run_dir: Path, name: str, where: str | None) -> None:
    import mlflow

    uri = where or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    if not log.isEnabledFor(logging.DEBUG):  # its database set-up notes, unless -vv
        logging.getLogger("mlflow").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(uri)
    experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "emo"
    if uri.startswith("sqlite:///") and mlflow.get_experiment_by_name(experiment) is None:
        # artifacts beside the database, not in whatever directory the command ran from (MLflow's ./mlruns)
        artifacts = Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlruns"
        mlflow.create_experiment(experiment, artifact_location=artifacts.as_uri())
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=name) as active:
        mlflow.log_params({k: str(v)[:6000] for k, v in _params(result).items()})
        for run in result.runs:
            for key, values in run.history.items():
                for epoch, value in enumerate(values, start=1):
                    mlflow.log_metric(f"{run.name}.{key}", float(value), step=epoch)
        mlflow.log_metrics(_final(result))
        for fig in (*FIGURES, "metrics.json", "report.html"):
            if (run_dir / fig).is_file():
                mlflow.log_artifact(str(run_dir / fig))
    log.info("logged to MLflow %s: experiment %s, run %s (%s)", redact_url_secrets(uri), experiment, name,
             active.info.run_id)


def log_result(trackings: Sequence[Tracking], result: TrainResult, run_dir: str | Path, name: str) -> None:
    """Log a finished job (written to ``run_dir``) as ``name`` to every destination. A destination that fails
    (a server gone, a full disk) is a warning: the results are written already, and a comparison goes on."""
    for t in trackings:
        try:
            (_tensorboard if t.kind == "tensorboard" else _mlflow)(result, Path(run_dir), name, t.where)
        except Exception as e:  # the trackers raise their own errors (HTTP, SQL, OS)
            log.warning("could not log %s to %s: %s: %s", name, t.kind, type(e).__name__,
                        redact_url_secrets(str(e))[:500])
