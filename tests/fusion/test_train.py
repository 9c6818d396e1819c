"""The fusion trainer on stores: data loading, splits, training, reports, checkpoints, compare, predict."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_emo

from emo.errors import UsageError
from emo.features_store import ClipResult, FeatureStore, SequenceSpec, StoreWriter, VectorSpec
from emo.features_store.sequences import derive
from emo.fusion.checkpoint import load_checkpoint
from emo.fusion.compare import compare
from emo.fusion.data import load_fusion_data, resolve_features
from emo.fusion.heads import input_kinds
from emo.fusion.predict import predict_store
from emo.fusion.splits import make_splits
from emo.fusion.train import prepare_data, train
from emo.fusion.train_config import TrainConfig

CLASSES = ["anger", "joy", "sadness"]
N_SPEAKERS, PER_SPEAKER, STEPS = 8, 24, 8


def synthetic_store(path: Path, informative: str = "audio", seed: int = 0, dialogues: bool = False) -> Path:
    """A store whose ``informative`` modality separates the classes; the others are noise. Every 7th clip has
    no video (status missing) and every 11th no text."""
    rng = np.random.default_rng(seed)
    specs = [
        SequenceSpec("audio/mfcc", {"values": (6,)}, steps=STEPS),
        VectorSpec("audio/egemaps", (5,)),
        SequenceSpec("video/face", {"values": (8,)}, steps=STEPS),
        VectorSpec("text/mean", (4,)),
    ]
    centres = {m: rng.normal(0, 2.0, (3, d)) for m, d in (("audio", 6), ("video", 8), ("text", 4))}
    writer = StoreWriter.open(
        path,
        specs=specs,
        labels=CLASSES,
        dataset={"adapter": "synthetic"},
        extraction={"config": {"align_steps": STEPS}, "config_hash": "synthetic"},
        software={},
        chunk_rows=64,
    )
    i = 0
    with writer:
        for speaker in range(N_SPEAKERS):
            for k in range(PER_SPEAKER):
                label = k % 3
                arrays, status = {}, {"audio": "ok", "video": "ok", "text": "ok"}
                for modality, dim, ragged in (("audio", 6, True), ("video", 8, True), ("text", 4, False)):
                    centre = centres[modality][label] if modality == informative else np.zeros(dim)
                    if ragged:
                        frames = rng.integers(STEPS // 2, 3 * STEPS)
                        values = (centre + rng.normal(0, 1.0, (frames, dim))).astype(np.float32)
                        path_ = "audio/mfcc" if modality == "audio" else "video/face"
                        if modality == "video" and i % 7 == 0:
                            values = values[:0]
                            status["video"] = "missing"
                        arrays |= derive(path_, values, STEPS)
                    else:
                        arrays["text/mean"] = (centre + rng.normal(0, 1.0, dim)).astype(np.float32)
                        if i % 11 == 0:
                            arrays["text/mean"][:] = np.nan
                            status["text"] = "missing"
                arrays["audio/egemaps"] = rng.normal(0, 1, 5).astype(np.float32)
                writer.add(
                    ClipResult(
                        {
                            "clip_id": f"s{speaker}_c{k}",
                            "label": label,
                            "label_name": CLASSES[label],
                            "speaker": f"spk{speaker}",
                            "split": ["train", "dev", "test"][speaker % 3],
                            **{f"status_{m}": s for m, s in status.items()},
                            **({"dialogue_id": f"d{speaker}_{k // 6}", "utterance_idx": k % 6} if dialogues else {}),
                        },
                        arrays,
                    )
                )
                i += 1
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_store(tmp_path_factory.mktemp("fusion") / "synthetic.zarr")


def quick(method: str, **kw) -> TrainConfig:
    """A short run; speaker-independent unless asked (``auto`` would take the synthetic store's split column)."""
    kw.setdefault("split", "speaker")
    return TrainConfig(method=method, epochs=kw.pop("epochs", 40), patience=kw.pop("patience", 40), **kw)


def test_loading_vectors_and_sequences(store: Path) -> None:
    fs = FeatureStore.open(store)
    features = resolve_features(fs, None, None, input_kinds("attention", {}))
    assert features == {"audio": ["audio/mfcc", "audio/egemaps"], "video": ["video/face"], "text": ["text/mean"]}
    data = load_fusion_data(fs, features, input_kinds("attention", {}))
    audio = data.inputs["audio"]
    assert audio.x.shape == (N_SPEAKERS * PER_SPEAKER, 12 + 5) and audio.dims == [12, 5]
    np.testing.assert_array_equal(audio.x[:, :12], fs.read("audio/mfcc/pooled"))
    video = data.inputs["video"]
    assert not video.mask[0] and video.mask[1]  # clip 0 has no video: kept, masked
    assert not data.inputs["text"].mask[0]

    seq = load_fusion_data(
        fs, resolve_features(fs, ["audio", "text"], None, input_kinds("bilstm-sa", {})), input_kinds("bilstm-sa", {})
    )
    assert seq.inputs["audio"].x.shape == (N_SPEAKERS * PER_SPEAKER, STEPS, 6)
    np.testing.assert_array_equal(seq.inputs["audio"].mask, fs.read("audio/mfcc/mask"))
    assert seq.inputs["text"].x.shape == (N_SPEAKERS * PER_SPEAKER, STEPS, 4)  # a vector repeated over steps
    assert seq.class_names == CLASSES

    with pytest.raises(UsageError, match="no feature 'audio/mel'"):
        resolve_features(fs, None, ["audio/mel"], input_kinds("early", {}))
    with pytest.raises(UsageError, match="unknown modality"):
        resolve_features(fs, ["smell"], None, input_kinds("early", {}))


def test_splits_are_speaker_disjoint(store: Path) -> None:
    data = prepare_data(FeatureStore.open(store), quick("early"))
    (split,) = make_splits(data, "speaker", seed=3)
    parts = [set(data.speakers[p]) for p in (split.train, split.val, split.test)]
    assert parts[0] and parts[1] and parts[2]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    folds = list(make_splits(data, "speaker", folds=4, seed=0))
    tested = [s for f in folds for s in set(data.speakers[f.test])]
    assert sorted(tested) == sorted(set(data.speakers))  # each speaker tested exactly once
    for f in folds:
        assert not set(data.speakers[f.test]) & set(data.speakers[f.train])
    (strat,) = make_splits(data, "stratified", seed=0)
    assert abs(strat.test.size / data.n - 0.2) < 0.02
    assert np.allclose(np.bincount(data.y[strat.test]) / strat.test.size, 1 / 3, atol=0.05)
    (pre,) = make_splits(data, "predefined")
    assert set(data.splits[pre.test]) == {"test"} and set(data.splits[pre.val]) == {"dev"}


@pytest.mark.parametrize("informative", ["audio", "video"])
def test_attention_learns_and_weights_the_informative_modality(tmp_path: Path, informative: str) -> None:
    path = synthetic_store(tmp_path / "s.zarr", informative=informative, seed=1)
    result = train(path, quick("attention"), str(tmp_path / "run"))
    assert result.summary["ua"]["mean"] > 0.8
    weights = json.loads((tmp_path / "run" / "modality_weights.json").read_text())
    mods = weights["modalities"]
    clips = [c for c in weights["clips"] if c["weights"]["video"] > 0]  # clips that have video
    mean = {m: np.mean([c["weights"][m] for c in clips]) for m in mods}
    noise = [m for m in mods if m != informative]
    assert all(mean[informative] > mean[m] + 0.2 for m in noise), mean


def test_run_directory_and_checkpoint_round_trip(store: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = train(store, quick("early", seeds=2), str(run), command=["emo", "fuse", "--method", "early"])
    for name in ("metrics.json", "confusion.png", "curves.png", "model.safetensors", "config.json", "predictions.csv"):
        assert (run / name).stat().st_size > 0, name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["command"] == "emo fuse --method early"
    assert metrics["split_protocol"] == "speaker" and metrics["split_reason"] == "as asked"
    assert len(metrics["runs"]) == 2
    assert metrics["store"]["config_hash"] == "synthetic"
    for key in ("accuracy", "balanced_accuracy", "f1_macro", "f1_weighted", "wa", "ua", "wf1"):
        summary = metrics["summary"][key]
        assert summary["n"] == 2 and summary["ci"][0] <= summary["mean"] <= summary["ci"][1]
    assert "confusion_matrix" in metrics["runs"][0]["metrics"]
    assert not (run / "model.safetensors").read_bytes().startswith(b"\x80")  # not a pickle

    # the checkpoint reproduces the reference run's test predictions exactly
    ref = result.reference
    test_ids = result.data.clip_ids[ref.split.test]
    predictions = predict_store(run, str(store), list(test_ids))
    by_id = {p.clip_id: p for p in predictions}
    for i, clip in enumerate(test_ids):
        expected = dict(zip(result.data.class_names, ref.test_prob[i], strict=True))
        assert by_id[clip].probabilities == pytest.approx(expected, abs=1e-4)
    ckpt = load_checkpoint(run)
    assert ckpt.class_names == CLASSES and ckpt.config["method"] == "early"
    with open(run / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == sum(r.split.test.size for r in result.runs)


def test_training_is_deterministic_and_standardisation_sees_only_train(store: Path) -> None:
    a = train(store, quick("bilstm", epochs=5))
    b = train(store, quick("bilstm", epochs=5))
    np.testing.assert_array_equal(a.reference.test_prob, b.reference.test_prob)
    ref = a.reference
    audio = a.data.inputs["audio"]
    train_values = audio.x[ref.split.train][audio.mask[ref.split.train]]
    mean = ref.prep.preprocessing.standardizers["audio"].mean
    np.testing.assert_allclose(mean, train_values.mean(0), rtol=1e-4, atol=1e-5)


def test_bf16_training_steps_learn_like_fp32(store: Path) -> None:
    fp32 = train(store, quick("bilstm", epochs=5))
    bf16 = train(store, quick("bilstm", epochs=5, precision="bf16"))
    losses = fp32.reference.history["train_loss"], bf16.reference.history["train_loss"]
    assert losses[0] != losses[1]  # the steps did run in bfloat16
    np.testing.assert_allclose(losses[1], losses[0], rtol=0.1)  # the same training, to bfloat16's rounding
    assert bf16.summary["accuracy"]["mean"] > 0.5  # chance is 1/3
    with pytest.raises(UsageError, match="--precision must be one of fp32, bf16"):
        quick("bilstm", precision="fp16")


def test_every_sequence_and_vector_head_trains_on_a_store(store: Path) -> None:
    # without --modalities each method fuses what its paper fuses: seed 001's heads and seed 003's cross-tucker
    # audio and video, seed 000's and seed 002's all three (the store has text too)
    paper = {"cnn": {"audio", "video"}, "bilstm-sa": {"audio", "video"}, "cross-tucker": {"audio", "video"}}
    for method in ("late", "label-fusion", "cnn", "bilstm-sa", "hierarchical", "cross-tucker"):
        # label fusion's per-modality classifiers and its fusion layer learn slower (0.50 at 8 epochs, 0.73 at 20)
        result = train(store, quick(method, epochs=20 if method == "label-fusion" else 8))
        assert result.summary["accuracy"]["mean"] > 0.5, method  # chance is 1/3
        assert set(result.data.inputs) == paper.get(method, {"audio", "video", "text"}), method


def test_compare_gives_each_method_its_papers_modalities(store: Path, tmp_path: Path) -> None:
    # hierarchical (all three) and cnn (audio and video) read the same kind of input: each keeps its own data
    for methods in (("hierarchical", "cnn"), ("cnn", "hierarchical")):
        out = tmp_path / "-".join(methods)
        compare(str(store), methods, TrainConfig(epochs=1, split="speaker"), out)
        used = {
            json.loads(p.read_text())["config"]["method"]: set(json.loads(p.read_text())["modalities"])
            for p in out.glob("runs/*/metrics.json")
        }
        assert used == {"hierarchical": {"audio", "video", "text"}, "cnn": {"audio", "video"}}, methods


def test_the_run_summary_says_where_the_modalities_came_from(store: Path, tmp_path: Path) -> None:
    proc = run_emo("fuse", "--store", str(store), "--method", "cross-tucker", "--epochs", "1", "--split", "speaker",
                   "-o", str(tmp_path / "run"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = " ".join(proc.stdout.split())
    assert "(no --modalities: those cross-tucker's paper fuses, audio, video)" in summary, proc.stdout
    assert set(json.loads((tmp_path / "run" / "metrics.json").read_text())["modalities"]) == {"audio", "video"}
    proc = run_emo("fuse", "--store", str(store), "--method", "early", "--modalities", "audio", "--epochs", "1",
                   "--split", "speaker", "-o", str(tmp_path / "run2"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "no --modalities" not in proc.stdout


def test_fuse_and_compare_cli(store: Path, tmp_path: Path) -> None:
    proc = run_emo(
        "fuse",
        "--store",
        str(store),
        "--method",
        "attention",
        "--epochs",
        "20",
        "-o",
        str(tmp_path / "run"),
        "--json",
        "--hparam",
        "n=32",
        "--precision",
        "bf16",
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["ua"]["mean"] > 0.6
    assert json.loads((tmp_path / "run" / "config.json").read_text())["hparams"]["n"] == 32
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["config"]["precision"] == "bf16"
    bad = run_emo("fuse", "--store", str(store), "--method", "transformer", "-o", str(tmp_path / "x"))
    # the choices come from the head registry: the message names the value and every method
    assert bad.returncode == 2 and "'transformer' is not one of" in bad.stderr and "'attention'" in bad.stderr
    assert "Traceback" not in bad.stderr
    bad = run_emo(
        "fuse", "--store", str(store), "--method", "early", "--features", "audio/nope", "-o", str(tmp_path / "x")
    )
    assert bad.returncode == 2 and "no feature 'audio/nope'" in bad.stderr

    out = tmp_path / "cmp"
    proc = run_emo(
        "compare",
        "--store",
        str(store),
        "--methods",
        "early,late,attention",
        "--unimodal",
        "audio,video,text",
        "--epochs",
        "15",
        "--seeds",
        "2",
        "-o",
        str(out),
        "-q",
    )
    assert proc.returncode == 0, proc.stderr
    table = (out / "compare.md").read_text()
    for name in ("early (audio only)", "early (video only)", "early (text only)", "| late |", "| attention |"):
        assert name in table
    with open(out / "compare.csv") as fh:
        rows = {r["name"]: r for r in csv.DictReader(fh)}
    assert float(rows["early (audio only)"]["ua_mean"]) > float(rows["early (text only)"]["ua_mean"])
    assert (out / "compare.png").stat().st_size > 0
    assert {p.name for p in (out / "runs").iterdir()} >= {"early", "late", "attention", "early_audio_only"}
    # identical splits: every entry evaluated the same test clips
    tests = [
        json.loads((out / "runs" / r / "metrics.json").read_text())["runs"][0]["sizes"]["test"]
        for r in ("early", "late", "attention")
    ]
    assert len(set(tests)) == 1


def test_select_command_writes_mask_scores_and_convergence(store: Path, tmp_path: Path) -> None:
    for method in ("l1", "tree", "zebra"):
        out = tmp_path / method
        proc = run_emo("select", "--store", str(store), "--method", method, "-o", str(out),
                       "--split", "speaker", "--param", "random_state=0")
        assert proc.returncode == 0, proc.stderr
        result = json.loads((out / "selection.json").read_text())
        assert len(result["support"]) == result["n_features"] == 12 + 5 + 16 + 4
        assert result["split"]["protocol"] == "speaker" and result["split"]["n_train"] > 0
        kept_audio = sum(n.startswith("audio/mfcc") for n in result["selected"])
        if method == "zebra":
            # speaker-grouped inner CV (the split holds speakers out); a budgeted search may keep a few noise
            # columns that cost no accuracy, but the informative modality is in and the subset is accurate
            assert result["split"]["inner_cv_grouped_by"] == "speaker"
            assert kept_audio >= 3 and result["best_cv_accuracy"] >= 0.9
        else:  # the informative modality (audio mfcc) dominates what is kept
            assert kept_audio >= 0.6 * len(result["selected"])
        assert (out / "selection.png").stat().st_size > 0
    zebra = json.loads((tmp_path / "zebra" / "selection.json").read_text())
    assert len(zebra["convergence"]) > 1 and zebra["convergence"][-1] <= zebra["convergence"][0]
    bad = run_emo("select", "--store", str(store), "--method", "zebra", "-o", str(tmp_path / "x"),
                  "--param", "population=3")
    assert bad.returncode == 2 and "population" in bad.stderr


def test_selection_per_modality_is_fitted_in_training_and_reapplied(store: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = quick("early", selector={"audio": "tree", "video": "l1", "text": "l1"}, seeds=2, epochs=15)
    result = train(store, config, str(run))
    for r in result.runs:
        assert set(r.prep.preprocessing.selections) == {"audio", "video", "text"}
        assert r.prep.preprocessing.selections["audio"].sum() < r.prep.preprocessing.selections["audio"].size
    saved = json.loads((run / "selection.json").read_text())
    assert set(saved["runs"]) == {r.name for r in result.runs}
    ckpt = load_checkpoint(run)
    reference = result.reference.prep.preprocessing
    np.testing.assert_array_equal(ckpt.preprocessing.selections["audio"], reference.selections["audio"])
    assert ckpt.head.dims["audio"] == int(ckpt.preprocessing.selections["audio"].sum())
    ref = result.reference
    test_ids = list(result.data.clip_ids[ref.split.test])
    by_id = {p.clip_id: p for p in predict_store(run, str(store), test_ids)}
    for i, clip in enumerate(test_ids):
        assert by_id[clip].probabilities == pytest.approx(
            dict(zip(result.data.class_names, ref.test_prob[i], strict=True)), abs=1e-4)


def test_dialogue_context_text_encoder_of_seed_004(tmp_path: Path) -> None:
    path = synthetic_store(tmp_path / "dialogues.zarr", informative="text", seed=2, dialogues=True)
    data = prepare_data(FeatureStore.open(path), quick("attention"))
    assert set(data.dialogue_ids) and data.utterance_idx.max() == 5
    config = quick("attention", hparams={"text_encoder": "dialogue-bigru"}, epochs=30)
    result = train(path, config, str(tmp_path / "run"))
    assert result.reference.head.hparams["text_encoder"] == "dialogue-bigru"
    assert result.summary["ua"]["mean"] > 0.8


def test_plain_selector_selects_jointly_on_the_fused_vector(store: Path, tmp_path: Path) -> None:
    """``--selector zebra`` is seed 001's selection on the concatenated audio-visual vector: one subset over
    every modality's features (the audio carries the class in this store), grouped by speaker inside."""
    from emo.fusion.train_config import JOINT, parse_selector

    assert parse_selector("zebra") == {JOINT: "zebra"}
    assert parse_selector("audio=tree,text=l1") == {"audio": "tree", "text": "l1"}
    run = tmp_path / "run"
    result = train(store, quick("early", selector=parse_selector("zebra"), epochs=10), str(run))
    sel = result.reference.prep.preprocessing.selections
    assert set(sel) == {"audio", "video", "text"}
    widths = {m: i.dim for m, i in result.data.inputs.items()}
    assert all(sel[m].size == widths[m] for m in sel)
    assert sel["audio"].sum() >= 1
    assert result.reference.split.grouped_by == "speaker"
    assert result.summary["accuracy"]["mean"] > 0.5
    ref = result.reference
    test_ids = list(result.data.clip_ids[ref.split.test])
    by_id = {p.clip_id: p for p in predict_store(run, str(store), test_ids)}
    assert by_id[test_ids[0]].probabilities == pytest.approx(
        dict(zip(result.data.class_names, ref.test_prob[0], strict=True)), abs=1e-4)
