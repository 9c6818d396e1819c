"""Presets: each paper's configuration resolves to the documented values, flags override it, the store's
extraction is checked, and the front-ends it needs (frames, fitted MFCC CNN, schedules, 80/20) work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_emo

from emo.errors import UsageError
from emo.features_store import ClipResult, FeatureStore, SequenceSpec, StoreWriter, VectorSpec
from emo.features_store.sequences import derive
from emo.fusion.predict import predict_store
from emo.fusion.presets import PRESETS, preset_config, readme_table
from emo.fusion.splits import make_splits
from emo.fusion.train import prepare_data, train
from emo.fusion.train_config import TrainConfig, lr_schedule

CLASSES = ["neutral", "happy", "sad", "angry", "fearful", "surprised"]
STEPS = 8


def paper_store(path: Path, features: tuple[str, ...], adapter: str = "ravdess") -> Path:
    """A small store shaped like a real extraction (recorded features, n_mels 128, ResNet-18), 6 speakers, the
    class carried by the audio frames; video and text are noise."""
    rng = np.random.default_rng(0)
    specs = [
        SequenceSpec("audio/mel", {"values": (12,)}, steps=STEPS),
        SequenceSpec("audio/mfcc", {"values": (10,)}, steps=STEPS),
        SequenceSpec("video/face", {"values": (6,)}, steps=STEPS),
        VectorSpec("text/mean", (4,)),
    ]
    config = {"features": list(features), "n_mels": 128, "visual_model": "resnet18", "align_steps": STEPS,
              "text_model": "all-MiniLM-L6-v2", "denoise": "none", "normalize": "none"}
    writer = StoreWriter.open(path, specs=specs, labels=CLASSES, dataset={"adapter": adapter},
                              extraction={"config": config, "config_hash": "paper"}, software={}, chunk_rows=64)
    centres = rng.normal(0, 1.5, (len(CLASSES), 22))
    with writer:
        for speaker in range(6):
            for k in range(30):
                label = k % len(CLASSES)
                n = int(rng.integers(20, 60))
                audio = centres[label] + rng.normal(0, 1.0, (n, 22))
                arrays = derive("audio/mel", audio[:, :12].astype(np.float32), STEPS)
                arrays |= derive("audio/mfcc", audio[:, 12:].astype(np.float32), STEPS)
                arrays |= derive("video/face", rng.normal(0, 1, (10, 6)).astype(np.float32), STEPS)
                arrays["text/mean"] = rng.normal(0, 1, 4).astype(np.float32)
                writer.add(ClipResult({"clip_id": f"a{speaker}_{k}", "label": label, "label_name": CLASSES[label],
                                       "speaker": f"spk{speaker}", "status_audio": "ok", "status_video": "ok",
                                       "status_text": "ok"}, arrays))
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return paper_store(tmp_path_factory.mktemp("presets") / "paper.zarr", ("face", "mel", "mfcc", "text"))


def test_every_preset_resolves_to_the_papers_values() -> None:
    assert set(PRESETS) == {"seed000", "seed001", "seed002", "seed003", "seed004"}
    s4 = preset_config("seed004", TrainConfig())
    assert (s4.method, s4.epochs, s4.batch_size, s4.lr, s4.weight_decay) == ("attention", 300, 32, 5e-4, 1e-4)
    assert s4.lr_schedule == "inverse-time:0.0001" and s4.metrics == "weighted" and s4.preset == "seed004"
    assert s4.hparams == {"audio_encoder": "speech-cnn", "text_encoder": "dialogue-bigru", "n": 250, "dropout": 0.3}
    s3 = preset_config("seed003", TrainConfig())
    assert (s3.method, s3.batch_size, s3.hparams["dropout"], s3.hparams["heads"]) == ("cross-tucker", 128, 0.5, 4)
    assert s3.features == ("audio/mel", "video/face") and s3.hparams["mel_frames"] == 256
    s1 = preset_config("seed001", TrainConfig())
    assert s1.selector == {"joint": "zebra"} and s1.features == ("audio/ae", "video/summary")
    assert s1.method == "bilstm-sa" and s1.metrics == "weighted"
    s2 = preset_config("seed002", TrainConfig())
    assert s2.selector == {"text": "l1", "audio": "tree", "video": "tree"} and "audio/mfcc-cnn" in s2.features
    assert preset_config("seed000", TrainConfig()).method == "hierarchical"
    assert all(preset_config(name, TrainConfig()).split == "auto" for name in PRESETS)  # the honest default stays
    table = readme_table()
    for name in PRESETS:
        assert f"`{name}`" in table


def test_explicit_values_override_the_preset() -> None:
    base = TrainConfig(epochs=3, batch_size=16, hparams={"n": 32})
    config = preset_config("seed004", base, given=["epochs", "batch_size", "hparams"])
    assert (config.epochs, config.batch_size, config.lr) == (3, 16, 5e-4)
    assert config.hparams["n"] == 32 and config.hparams["audio_encoder"] == "speech-cnn"


def test_a_store_without_the_papers_extraction_is_refused_naming_what_to_re_extract(tmp_path: Path) -> None:
    audio_only = paper_store(tmp_path / "audio.zarr", ("mel", "mfcc"))
    with pytest.raises(UsageError, match=r"features face.*re-extract with --features face,mel,mfcc"):
        train(audio_only, preset_config("seed003", TrainConfig(epochs=1), given=["epochs"]))
    proc = run_emo("fuse", "--store", str(audio_only), "--preset", "seed001", "-o", str(tmp_path / "run"))
    assert proc.returncode == 2
    assert "--preset seed001 needs a store extracted with features summary" in proc.stderr
    assert "re-extract with --features mel,mfcc,summary" in proc.stderr and "Traceback" not in proc.stderr


def test_seed003_preset_trains_the_mel_cnn_cross_tucker_on_the_papers_classes(store: Path, tmp_path: Path) -> None:
    config = preset_config("seed003", TrainConfig(epochs=12, patience=12), given=["epochs", "patience"])
    result = train(store, config, str(tmp_path / "run"))
    assert result.data.inputs["audio"].kind == "frames" and result.data.inputs["audio"].x.shape[1] == 256
    assert result.summary["ua"]["mean"] > 1 / 6 + 0.15  # audio carries the class; chance is 1/6
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["config"]["preset"] == "seed003" and saved["preset"]["name"] == "seed003"


def test_seed000_keeps_the_papers_five_classes_and_says_what_the_store_lacks(store: Path) -> None:
    config = preset_config("seed000", TrainConfig(epochs=2), given=["epochs"])
    result = train(store, config)
    assert result.data.class_names == ["neutral", "happy", "sad", "angry", "fearful"]
    assert any("bert-base-uncased" in note for note in result.config.preset_notes)


def test_seed002_mfcc_cnn_is_fitted_in_every_split_and_predict_reproduces_it(store: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = preset_config(
        "seed002",
        TrainConfig(epochs=15, seeds=2, mfcc_cnn={"epochs": 4, "dim": 16}, features=("audio/mfcc-cnn", "text/mean"),
                    modalities=("audio", "text")),
        given=["epochs", "seeds", "mfcc_cnn", "features", "modalities"],
    )
    result = train(store, config, str(run))
    assert result.data.inputs["audio"].dims == [16]
    first, second = (r.prep.preprocessing.fitted["audio/mfcc-cnn"] for r in result.runs)
    assert first["n_clips"] == result.runs[0].split.train.size
    assert first["weights_sha256"] != second["weights_sha256"]  # a CNN per training split
    assert result.summary["accuracy"]["mean"] > 0.4  # chance 1/6
    ref = result.reference
    ids = list(result.data.clip_ids[ref.split.test])
    by_id = {p.clip_id: p for p in predict_store(run, str(store), ids)}
    for i, clip in enumerate(ids[:5]):
        assert by_id[clip].probabilities == pytest.approx(
            dict(zip(result.data.class_names, ref.test_prob[i], strict=True)), abs=1e-4)


def test_stratified_is_the_papers_80_20_without_validation(store: Path) -> None:
    data = prepare_data(FeatureStore.open(store), TrainConfig(method="early"))
    split = next(make_splits(data, "stratified", 1, 0))
    assert split.val.size == 0 and split.test.size == round(0.2 * data.n)
    assert split.train.size == data.n - split.test.size
    split = next(make_splits(data, "stratified", 1, 0, val_fraction=0.1))
    assert split.val.size == round(0.1 * data.n) and split.test.size == round(0.2 * data.n)


def test_learning_rate_schedules() -> None:
    keras = lr_schedule("inverse-time:0.0001")
    assert keras(0, 100) == 1.0 and keras(10_000, 100) == pytest.approx(0.5)
    assert lr_schedule("constant")(500, 10) == 1.0
    cosine = lr_schedule("cosine")
    assert cosine(0, 100) == 1.0 and cosine(50, 100) == pytest.approx(0.5) and cosine(100, 100) == pytest.approx(0)
    with pytest.raises(UsageError, match="lr-schedule"):
        lr_schedule("step:3")


def test_compare_with_seed000_gives_table_2_with_the_papers_unimodal_encoders(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    proc = run_emo("compare", "--store", str(store), "--preset", "seed000", "--epochs", "2", "--metrics", "weighted",
                   "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    table = (out / "compare.md").read_text()
    for row in ("hierarchical (audio only)", "hierarchical (video only)", "hierarchical (text only)", "| early |",
                "| late |", "| hierarchical |"):
        assert row in table, row
    assert "Precision (weighted)" in table
    unimodal = json.loads((out / "runs" / "hierarchical_audio_only" / "config.json").read_text())
    assert unimodal["method"] == "hierarchical" and list(unimodal["modalities"]) == ["audio"]


def test_the_readme_shows_the_presets_as_the_code_defines_them() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert readme_table() in readme


def test_an_explicit_other_method_does_not_inherit_the_presets_head_settings() -> None:
    config = preset_config("seed003", TrainConfig(method="early"), given=["method"])
    assert config.method == "early" and config.hparams == {} and config.batch_size == 128
