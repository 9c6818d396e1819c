"""--log-to tensorboard|mlflow: what emo fuse and emo compare log, read back with each library's own reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_emo
from test_train import synthetic_store

pytest.importorskip("tensorboard")
mlflow = pytest.importorskip("mlflow")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_store(tmp_path_factory.mktemp("tracking") / "synthetic.zarr")


def test_fuse_logs_to_tensorboard_and_mlflow(store: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "attn"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = run_emo("fuse", "--store", str(store), "--method", "attention", "--epochs", "6", "--patience", "50",
                   "--seeds", "2", "--split", "speaker", "-o", str(run), "--log-to", "tensorboard",
                   "--log-to", f"mlflow={uri}")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((run / "metrics.json").read_text())["summary"]

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0}).Reload()
    tags = events.Tags()
    for name in ("seed0-speaker", "seed1-speaker"):
        for key in ("train_loss", "val_loss", "val_ua"):
            steps = [e.step for e in events.Scalars(f"{name}/{key}")]
            assert steps == [1, 2, 3, 4, 5, 6], (name, key, steps)
    assert events.Scalars("test_ua")[0].value == pytest.approx(summary["ua"]["mean"], abs=1e-6)
    assert {"confusion", "curves", "modality_weights"} <= set(tags["images"])

    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["emo"])
    assert list(runs["tags.mlflow.runName"]) == ["attn"]
    row = runs.iloc[0]
    assert row["params.method"] == "attention" and row["params.epochs"] == "6" and row["params.seeds"] == "2"
    assert row["metrics.test_ua"] == pytest.approx(summary["ua"]["mean"])
    assert row["metrics.test_ua_ci_low"] == pytest.approx(summary["ua"]["ci"][0])
    client = mlflow.MlflowClient()
    history = client.get_metric_history(row["run_id"], "seed1-speaker.val_ua")
    assert [m.step for m in history] == [1, 2, 3, 4, 5, 6]
    artifacts = {a.path for a in client.list_artifacts(row["run_id"])}
    assert {"confusion.png", "curves.png", "metrics.json", "report.html"} <= artifacts
    assert (tmp_path / "mlruns").is_dir()  # beside the database, not in the working directory


def test_compare_logs_each_method_as_a_run(store: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = run_emo("compare", "--store", str(store), "--methods", "early,late", "--epochs", "3", "--split", "speaker",
                   "-o", str(tmp_path / "cmp"), "--log-to", f"mlflow={uri}")
    assert proc.returncode == 0, proc.stderr
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["emo"])
    assert sorted(runs["tags.mlflow.runName"]) == ["cmp/early", "cmp/late"]
    assert set(runs["params.method"]) == {"early", "late"}


def test_unknown_tracker_stops_before_training(store: Path, tmp_path: Path) -> None:
    proc = run_emo("fuse", "--store", str(store), "--method", "early", "-o", str(tmp_path / "r"), "--log-to", "wandb")
    assert proc.returncode == 2 and "choose tensorboard[=DIR] or mlflow[=URI]" in proc.stderr
    assert not (tmp_path / "r").exists()
