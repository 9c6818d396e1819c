"""From media to prediction: extract a demo store, train seed 001's autoencoder, fuse, predict new clips."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_emo

from emo.features_store import FeatureStore


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory, small_demo_dir: Path, scheduler: str) -> Path:
    store = tmp_path_factory.mktemp("predict") / "demo.zarr"
    proc = run_emo(
        "extract",
        str(small_demo_dir),
        "-o",
        str(store),
        "--scheduler",
        scheduler,
        "--features",
        "mfcc,mel,egemaps",
        "-q",
    )
    assert proc.returncode == 0, proc.stderr
    return store


def test_autoencoder_fuse_and_predict(demo_store: Path, small_demo_dir: Path, tmp_path: Path) -> None:
    proc = run_emo(
        "features",
        "autoencoder",
        "--store",
        str(demo_store),
        "--bottleneck",
        "16",
        "--epochs",
        "5",
        "--split",
        "stratified",
    )
    assert proc.returncode == 0, proc.stderr
    fs = FeatureStore.open(demo_store)
    ae = fs.read("audio/ae")
    assert ae.shape == (6, 16) and np.isfinite(ae).all()
    attrs = fs.array("audio/ae").attrs
    assert attrs["source"] == "audio/mel" and attrs["trained_on"]["split_protocol"] == "stratified"
    assert len(attrs["weights"]["sha256"]) == 64 and attrs["derived"]

    run = tmp_path / "run"
    proc = run_emo(
        "fuse",
        "--store",
        str(demo_store),
        "--method",
        "early",
        "--features",
        "audio/ae,audio/egemaps",
        "--autoencoder",
        "bottleneck=12",
        "--autoencoder",
        "epochs=3",
        "--split",
        "stratified",
        "--seeds",
        "2",
        "--epochs",
        "10",
        "-o",
        str(run),
        "-q",
    )
    assert proc.returncode == 0, proc.stderr
    # fuse fitted its own autoencoder inside each training split (12 values, not the stored 16)
    config = json.loads((run / "config.json").read_text())
    assert config["modalities"]["audio"]["feature_dims"] == [12, 88]
    fitted = config["fitted"]["audio/ae"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert fitted["n_clips"] == metrics["runs"][0]["sizes"]["train"] and fitted["params"]["epochs"] == 3
    clips = sorted(small_demo_dir.rglob("*.mp4"))[:2]
    proc = run_emo("predict", "--model", str(run), *map(str, clips), "--json")
    assert proc.returncode == 0, proc.stderr
    from_media = json.loads(proc.stdout)
    assert [p["clip_id"] for p in from_media] == [str(c) for c in clips]
    for p in from_media:
        assert p["emotion"] in ("neutral", "happy", "angry")
        assert abs(sum(p["probabilities"].values()) - 1) < 1e-3
    # the same clips read from the store give the same probabilities: features, autoencoder and
    # normalisation are reproduced exactly from the checkpoint
    proc = run_emo(
        "predict",
        "--model",
        str(run),
        "--store",
        str(demo_store),
        "--json",
        *[a for c in clips for a in ("--clip-id", c.stem)],
    )
    from_store = {p["clip_id"]: p for p in json.loads(proc.stdout)}
    for p in from_media:
        assert p["probabilities"] == pytest.approx(from_store[Path(p["clip_id"]).stem]["probabilities"], abs=2e-3)
    table = run_emo("predict", "--model", str(run), str(clips[0])).stdout
    assert "p(neutral)" in table and clips[0].name in table


def test_predict_refuses_mismatches(demo_store: Path, tmp_path: Path, small_demo_dir: Path, scheduler: str) -> None:
    run = tmp_path / "run"
    assert (
        run_emo(
            "fuse",
            "--store",
            str(demo_store),
            "--method",
            "attention",
            "--features",
            "audio/mfcc",
            "--split",
            "stratified",
            "--epochs",
            "3",
            "-o",
            str(run),
            "-q",
        ).returncode
        == 0
    )
    other = tmp_path / "other.zarr"
    assert (
        run_emo(
            "extract",
            str(small_demo_dir),
            "-o",
            str(other),
            "--scheduler",
            scheduler,
            "--features",
            "mfcc",
            "--n-mfcc",
            "20",
            "-q",
        ).returncode
        == 0
    )
    proc = run_emo("predict", "--model", str(run), "--store", str(other))
    assert proc.returncode == 2 and "n_mfcc" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_emo("predict", "--model", str(tmp_path), str(next(small_demo_dir.rglob("*.mp4"))))
    assert proc.returncode == 2 and "not a run directory" in proc.stderr
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    proc = run_emo("predict", "--model", str(run), str(notes))
    assert proc.returncode == 2 and "not a media file" in proc.stderr


def test_adding_clips_removes_stale_derived_features(
    demo_store: Path, tmp_path: Path, small_demo_dir: Path, scheduler: str
) -> None:
    store = tmp_path / "s.zarr"
    shutil.copytree(demo_store, store)
    if "audio/ae" not in FeatureStore.open(store).array_paths():
        assert (
            run_emo(
                "features", "autoencoder", "--store", str(store), "--epochs", "2", "--split", "stratified"
            ).returncode
            == 0
        )
    data = tmp_path / "data"
    shutil.copytree(small_demo_dir, data)
    extra = next(data.rglob("*.mp4"))
    parts = extra.stem.split("-")
    parts[5] = "02"  # a second repetition of the same recording: a new clip id
    shutil.copy(extra, extra.with_name("-".join(parts) + ".mp4"))
    proc = run_emo(
        "extract", str(data), "-o", str(store), "--scheduler", scheduler, "--features", "mfcc,mel,egemaps", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["n_written"] == 1
    assert "audio/ae" in proc.stderr and "removed" in proc.stderr
    assert not any(p.startswith("audio/ae") for p in FeatureStore.open(store).array_paths())
