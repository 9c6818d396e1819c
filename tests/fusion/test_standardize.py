"""Per-speaker standardisation (``--standardize``): what it computes, when ``auto`` picks it, and that a trained
model applies it again at predict time."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_emo

from emo.errors import UsageError
from emo.features_store import ClipResult, StoreWriter, VectorSpec
from emo.fusion.data import ModalityInput
from emo.fusion.normalize import resolve_standardize, standardize_per_speaker
from emo.fusion.predict import predict_store
from emo.fusion.train import train
from emo.fusion.train_config import TrainConfig

CLASSES = ["anger", "joy", "sadness"]
N_SPEAKERS, PER_SPEAKER, DIM = 9, 30, 6


def speaker_offset_store(path: Path, seed: int = 0, per_speaker: int = PER_SPEAKER) -> Path:
    """Class centres small against a large offset of every speaker's voice: what per-speaker statistics remove."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.0, (3, DIM))
    writer = StoreWriter.open(
        path,
        specs=[VectorSpec("audio/egemaps", (DIM,))],
        labels=CLASSES,
        dataset={"adapter": "synthetic"},
        extraction={"config": {"align_steps": 4}, "config_hash": "synthetic"},
        software={},
        chunk_rows=64,
    )
    with writer:
        for speaker in range(N_SPEAKERS):
            offset = rng.normal(0, 6.0, DIM)
            scale = rng.uniform(0.5, 3.0, DIM)
            for k in range(per_speaker):
                label = k % 3
                x = offset + scale * (centres[label] + rng.normal(0, 0.5, DIM))
                writer.add(
                    ClipResult(
                        {
                            "clip_id": f"s{speaker}_c{k}",
                            "label": label,
                            "label_name": CLASSES[label],
                            "speaker": f"spk{speaker}",
                            "status_audio": "ok",
                            "status_video": "missing",
                            "status_text": "missing",
                        },
                        {"audio/egemaps": x.astype(np.float32)},
                    )
                )
    return path


def test_each_speaker_gets_zero_mean_unit_variance_and_masked_values_stay() -> None:
    rng = np.random.default_rng(1)
    speakers = np.array(["a"] * 5 + ["b"] * 5 + [""] * 3)
    x = rng.normal(0, 1, (13, 4, 3)).astype(np.float32)
    x[:5] += 10.0
    x[:, :, 2] = np.nan  # a fitted feature's columns: filled later, left alone
    mask = np.ones((13, 4), bool)
    mask[0, 2:] = False
    x[0, 2:, :2] = 99.0
    out = standardize_per_speaker(ModalityInput("audio", "sequence", ["f"], [3], x, mask), speakers)
    for s in ("a", "b", ""):
        values = out.x[speakers == s][mask[speakers == s]][:, :2]
        np.testing.assert_allclose(values.mean(axis=0), 0.0, atol=1e-5)
        np.testing.assert_allclose(values.std(axis=0), 1.0, atol=1e-4)
    assert (out.x[0, 2:, :2] == 99.0).all()  # padding steps are not standardised
    assert np.isnan(out.x[..., 2]).all()
    assert np.isnan(x[..., 2]).all() and (x[:5, :, :2] > 5).mean() > 0.9  # the input is not modified


def test_auto_means_speaker_only_for_speaker_independent_splits() -> None:
    assert resolve_standardize("auto", "speaker") == "speaker"
    assert resolve_standardize("auto", "stratified") == "global"
    assert resolve_standardize("auto", "predefined") == "global"
    assert resolve_standardize("global", "speaker") == "global"
    with pytest.raises(UsageError, match="--standardize"):
        TrainConfig(method="early", standardize="per-clip")


@pytest.fixture(scope="module")
def offset_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return speaker_offset_store(tmp_path_factory.mktemp("offsets") / "store.zarr")


def test_speaker_standardisation_removes_the_voice_and_predict_applies_it(offset_store: Path, tmp_path: Path) -> None:
    common = dict(method="early", modalities=("audio",), split="speaker", folds=3, epochs=60, patience=60)
    by_speaker = train(offset_store, TrainConfig(**common), str(tmp_path / "speaker"))
    by_split = train(offset_store, TrainConfig(**common, standardize="global"))
    assert by_speaker.data.standardize == "speaker" and by_split.data.standardize == "global"
    ua_speaker, ua_global = by_speaker.summary["ua"]["mean"], by_split.summary["ua"]["mean"]
    assert ua_speaker > 0.9 > ua_global + 0.1, (ua_speaker, ua_global)
    metrics = json.loads((tmp_path / "speaker" / "metrics.json").read_text())
    assert metrics["standardize"] == "speaker" and metrics["config"]["standardize"] == "auto"

    # predict standardises the store's clips per speaker again: the reference run's test clips get the same
    # probabilities as in training, also when only those clips are asked for
    ref = by_speaker.reference
    test_ids = list(by_speaker.data.clip_ids[ref.split.test])
    for ids in (None, test_ids):
        predictions = {p.clip_id: p for p in predict_store(tmp_path / "speaker", str(offset_store), ids)}
        got = np.array([[predictions[c].probabilities[k] for k in CLASSES] for c in test_ids])
        np.testing.assert_allclose(got, ref.test_prob, atol=1e-4)

    # a speaker with a handful of clips has no usable statistics (one clip by itself standardises to zeros)
    few = speaker_offset_store(tmp_path / "few.zarr", seed=1, per_speaker=3)
    with pytest.raises(UsageError, match="needs at least 8 clips of every speaker: spk0 \\(3\\)"):
        predict_store(tmp_path / "speaker", str(few))


def test_cli_standardize_flag_and_summary_line(offset_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = run_emo(
        "fuse", "--store", str(offset_store), "--method", "early", "--modalities", "audio", "--epochs", "3",
        "--standardize", "global", "--split", "speaker", "-o", str(out),
    )
    assert done.returncode == 0, done.stderr
    assert "standardised on the training split" in done.stdout
    assert json.loads((out / "metrics.json").read_text())["standardize"] == "global"
