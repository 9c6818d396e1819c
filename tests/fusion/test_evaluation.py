"""Evaluation that cannot leak, and comparisons that say whether a difference is real: fitted features inside
every training split, the leakage alarm and the permutation check, the default split per dataset, dialogue
grouping, and the paired statistics of ``emo compare`` against scipy."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import run_emo
from scipy import stats
from test_train import CLASSES, quick, synthetic_store

from emo.errors import UsageError
from emo.features_store import ClipResult, FeatureStore, SequenceSpec, StoreWriter, VectorSpec
from emo.features_store.sequences import derive
from emo.fusion.significance import compare_methods, corrected_paired_difference, holm, mcnemar, paired_difference
from emo.fusion.splits import explain_protocol
from emo.fusion.train import prepare_data, train

STEPS = 8


def _store(
    path: Path,
    *,
    n_speakers: int = 6,
    per_speaker: int = 18,
    informative: bool = True,
    leaky_ae: bool = False,
    duplicate_speakers: int = 0,
    split_column: bool = False,
    seed: int = 0,
) -> Path:
    """Clips of ``n_speakers`` speakers whose ``audio/egemaps`` separates the 3 classes (or not), with noise
    ``audio/mel`` frames. ``leaky_ae``: a stored ``audio/ae`` that encodes every clip's label, as an autoencoder
    that memorised the test clips would. ``duplicate_speakers``: that many more speakers whose clips are copies
    (same media sha256, same features) of the first speakers' clips."""
    rng = np.random.default_rng(seed)
    specs = [SequenceSpec("audio/mel", {"values": (16,)}, steps=STEPS), VectorSpec("audio/egemaps", (6,))]
    if leaky_ae:
        specs.append(VectorSpec("audio/ae", (3,)))
    centres = rng.normal(0, 2.0, (3, 6))
    clips = []
    for speaker in range(n_speakers):
        for k in range(per_speaker):
            label = k % 3
            frames = rng.normal(0, 1.0, (int(rng.integers(20, 40)), 16)).astype(np.float32)
            egemaps = (centres[label] if informative else 0) + rng.normal(0, 1.0, 6)
            arrays = derive("audio/mel", frames, STEPS) | {"audio/egemaps": egemaps.astype(np.float32)}
            if leaky_ae:
                arrays["audio/ae"] = np.eye(3, dtype=np.float32)[label] * 5
            columns = {
                "clip_id": f"s{speaker}_c{k}",
                "label": label,
                "label_name": CLASSES[label],
                "speaker": f"spk{speaker}",
                "source_sha256": f"{speaker:02d}{k:04d}" * 8,
                "status_audio": "ok",
            }
            if split_column:
                columns["split"] = ["train", "dev", "test"][speaker % 3]
            clips.append((columns, arrays))
    for d in range(duplicate_speakers):
        for columns, arrays in [c for c in clips if c[0]["speaker"] == f"spk{d}"]:
            copy = {**columns, "clip_id": f"dup{d}_{columns['clip_id']}", "speaker": f"spk{n_speakers + d}"}
            clips.append((copy, arrays))
    writer = StoreWriter.open(
        path,
        specs=specs,
        labels=CLASSES,
        dataset={"adapter": "synthetic"},
        extraction={"config": {"align_steps": STEPS}, "config_hash": "synthetic"},
        software={},
        chunk_rows=64,
    )
    with writer:
        for columns, arrays in clips:
            writer.add(ClipResult(columns, arrays))
    return path


# -- audio/ae is fitted inside every training split ---------------------------------------------------------
def test_a_stored_autoencoder_that_memorised_the_test_clips_does_not_reach_training(tmp_path: Path) -> None:
    # audio/mel frames are noise: an autoencoder fitted on training frames can tell nothing about the labels;
    # the stored audio/ae encodes every label, test clips included, as a memorising autoencoder's codes would.
    # Read as stored (what emo did before), UA is about 1; fitted in every training split it is at chance.
    leaky = _store(tmp_path / "leaky.zarr", informative=False, leaky_ae=True)
    honest = _store(tmp_path / "honest.zarr", informative=False)
    config = quick("early", features=("audio/ae",), seeds=2, epochs=15, autoencoder={"epochs": 2, "bottleneck": 3})
    with_leak, without = train(leaky, config), train(honest, config)
    assert with_leak.summary["ua"]["mean"] < 0.6  # chance is 1/3; the stored codes would give ~1.0
    for a, b in zip(with_leak.runs, without.runs, strict=True):  # the stored array changed nothing at all
        np.testing.assert_array_equal(a.test_prob, b.test_prob)
    # what reading the stored codes would give on the same split: a plain logistic regression is perfect
    from sklearn.linear_model import LogisticRegression

    split = with_leak.reference.split
    codes, y = FeatureStore.open(leaky).read("audio/ae"), with_leak.data.y
    fitted = LogisticRegression().fit(codes[split.train], y[split.train])
    assert (fitted.predict(codes[split.test]) == y[split.test]).mean() == 1.0
    ref = with_leak.reference
    # fitted on the training clips only
    assert ref.prep.preprocessing.fitted["audio/ae"]["n_clips"] == ref.split.train.size
    first, second = (r.prep.preprocessing.models["ae.norm_mean"] for r in with_leak.runs)
    assert not np.array_equal(first, second)  # each seed's split fitted its own


# -- the leakage alarm and the permutation check ------------------------------------------------------------
def test_leakage_alarm_names_duplicated_media_and_the_honest_store_has_none(tmp_path: Path) -> None:
    leaky = _store(tmp_path / "leaky.zarr", duplicate_speakers=3)
    honest = _store(tmp_path / "honest.zarr")
    runs = {}
    for name, store in (("leaky", leaky), ("honest", honest)):
        out = tmp_path / f"run_{name}"
        proc = run_emo(
            "fuse", "--store", str(store), "--method", "early", "--split", "speaker", "--folds", "3",
            "--epochs", "10", "-o", str(out),
        )
        assert proc.returncode == 0, proc.stderr
        runs[name] = (json.loads((out / "metrics.json").read_text()), " ".join(proc.stdout.split()), proc.stderr)
    metrics, printed, log = runs["honest"]
    overlap = metrics["leakage"]["overlap"]
    zero = {"shared_speakers": 0, "shared_dialogues": 0, "duplicate_media": 0}
    assert overlap["ok"] and overlap["max_over_runs"] == zero
    assert "leakage check: train/test share 0 speaker(s), 0 dialogue(s), 0 identical media file(s)" in printed
    assert all(r["overlap"]["shared_speakers"] == 0 for r in metrics["runs"])
    metrics, printed, log = runs["leaky"]
    overlap = metrics["leakage"]["overlap"]
    assert not overlap["ok"] and overlap["max_over_runs"]["duplicate_media"] > 0
    assert "LEAK:" in printed and "whose media file is also a training clip" in printed and "leakage:" in log
    some_run = next(r for r in metrics["runs"] if r["overlap"]["duplicate_media"])
    assert some_run["overlap"]["examples"]["test_clips_with_a_copy_in_training"]


def test_permutation_check_sits_at_chance_and_gives_the_p_value(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.zarr", n_speakers=6)
    result = train(store, quick("early", split="speaker", epochs=20, permutation_test=5))
    perm = result.leakage["permutation"]
    assert perm["n_permutations"] == 5 and len(perm["permuted"]) == 5 and perm["chance"] == pytest.approx(1 / 3)
    assert abs(perm["permuted_mean"] - 1 / 3) < 0.15  # shuffled labels: chance, nothing leaks
    real = result.reference.metrics["ua"]
    assert perm["real"] == real > 0.8
    expected_p = (1 + sum(s >= real for s in perm["permuted"])) / 6  # Phipson & Smyth
    assert perm["p_value"] == pytest.approx(expected_p) == pytest.approx(1 / 6)


# -- defaults that match the field ----------------------------------------------------------------------------
def test_auto_split_is_the_datasets_own_when_it_has_one(tmp_path: Path) -> None:
    with_split = prepare_data(FeatureStore.open(_store(tmp_path / "a.zarr", split_column=True)), quick("early"))
    assert explain_protocol(with_split, "auto")[0] == "predefined"
    plain = prepare_data(FeatureStore.open(_store(tmp_path / "b.zarr")), quick("early"))
    protocol, reason = explain_protocol(plain, "auto")
    assert protocol == "speaker" and "6 speakers" in reason
    assert explain_protocol(with_split, "stratified") == ("stratified", "as asked")


def test_clips_without_a_dialogue_id_are_dialogues_of_their_own(tmp_path: Path) -> None:
    data = prepare_data(FeatureStore.open(synthetic_store(tmp_path / "d.zarr", dialogues=True)), quick("early"))
    ids = data.dialogue_ids.copy()
    ids[[0, 1, 2]] = ""  # three clips of one dialogue lose their id
    codes = dataclasses.replace(data, dialogue_ids=ids).dialogue_codes()
    assert len({int(c) for c in codes[[0, 1, 2]]}) == 3  # not merged into one "empty" dialogue
    assert not {int(c) for c in codes[[0, 1, 2]]} & {int(c) for c in codes[3:]}
    same = data.dialogue_ids == data.dialogue_ids[3]
    assert len(set(codes[same & (ids != "")].tolist())) == 1
    no_ids = dataclasses.replace(data, dialogue_ids=np.full(data.n, "", dtype=object))
    assert no_ids.dialogue_codes() is None


# -- the statistics, against scipy ------------------------------------------------------------------------------
def test_paired_difference_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(0.6, 0.05, 9)
    b = a - rng.normal(0.04, 0.02, 9)
    out = paired_difference(a, b)
    d = a - b
    half = stats.t.ppf(0.975, 8) * d.std(ddof=1) / math.sqrt(9)
    assert out["mean_difference"] == pytest.approx(d.mean())
    assert out["ci"] == pytest.approx([d.mean() - half, d.mean() + half])
    assert out["t_p"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert out["wilcoxon_p"] == pytest.approx(stats.wilcoxon(a, b).pvalue)
    assert paired_difference([0.5, 0.6], [0.5, 0.6])["t_p"] == 1.0  # no difference at all


def test_corrected_resampled_t_test_widens_by_the_test_train_ratio() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(0.6, 0.05, 12)
    b = a - rng.normal(0.03, 0.03, 12)
    d = a - b
    out = corrected_paired_difference(a, b, test_train_ratio=1 / 3)
    se = d.std(ddof=1) * math.sqrt(1 / 12 + 1 / 3)  # Nadeau & Bengio (2003): s^2 (1/J + n_test/n_train)
    assert out["ci"] == pytest.approx([d.mean() - stats.t.ppf(0.975, 11) * se, d.mean() + stats.t.ppf(0.975, 11) * se])
    assert out["t_p"] == pytest.approx(2 * stats.t.sf(abs(d.mean() / se), 11))
    assert out["t_p"] > paired_difference(a, b)["t_p"] and out["corrected"]


def test_mcnemar_exact_and_holm_on_hand_computed_values() -> None:
    # b = 10 clips only A gets right, c = 2 only B: p = 2 * P(X <= 2 | 12, 1/2) = 2 * (1 + 12 + 66) / 4096
    correct_a = np.array([True] * 10 + [False] * 2 + [True] * 30 + [False] * 5)
    correct_b = np.array([False] * 10 + [True] * 2 + [True] * 30 + [False] * 5)
    out = mcnemar(correct_a, correct_b)
    assert (out["a_only_correct"], out["b_only_correct"]) == (10, 2)
    assert out["p"] == pytest.approx(2 * 79 / 4096)
    assert mcnemar(correct_a, correct_a)["p"] == 1.0
    # Holm: sorted 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, then max(0.06, 0.04 x 1) = 0.06
    assert holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])


def test_compare_methods_pairs_runs_by_seed_and_split() -> None:
    rng = np.random.default_rng(1)
    test = np.arange(40)
    runs = {}
    for name, level in (("good", 0.8), ("bad", 0.5), ("same_as_bad", 0.5)):
        runs[name] = [
            {
                "key": (seed, "speaker"),
                "metrics": {"ua": level + rng.normal(0, 0.01), "wf1": level + rng.normal(0, 0.01)},
                "correct": rng.random(40) < level,
                "test": test,
            }
            for seed in range(8)
        ]
    pairs = {(p["a"], p["b"]): p for p in compare_methods(runs)}
    good_bad = pairs[("good", "bad")]
    assert good_bad["n_runs"] == 8 and good_bad["ua"]["significant"] and good_bad["ua"]["mean_difference"] > 0.25
    ua = {name: [r["metrics"]["ua"] for r in entries] for name, entries in runs.items()}
    expected = stats.ttest_rel(ua["good"], ua["bad"])
    assert good_bad["ua"]["t_p"] == pytest.approx(expected.pvalue)
    assert good_bad["ua"]["t_p"] <= good_bad["ua"]["t_p_holm"] <= 3 * good_bad["ua"]["t_p"]  # 3 pairs
    assert not pairs[("bad", "same_as_bad")]["ua"]["significant"]
    assert len(good_bad["mcnemar"]) == 8 and good_bad["mcnemar_significant_runs"] >= 1


def test_compare_writes_the_significance_table(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.zarr")
    out = tmp_path / "cmp"
    proc = run_emo(
        "compare", "--store", str(store), "--methods", "early,late", "--unimodal", "audio", "--split", "speaker",
        "--seeds", "3", "--epochs", "10", "-o", str(out), "-q",
    )
    assert proc.returncode == 0, proc.stderr
    table = (out / "compare.md").read_text()
    assert "## Is the difference real?" in table and "| early | late |" in table
    pairs = json.loads((out / "significance.json").read_text())
    assert {(p["a"], p["b"]) for p in pairs} == {
        ("early (audio only)", "early"), ("early (audio only)", "late"), ("early", "late")
    }
    # the paired differences are those of the runs' own metrics
    early = json.loads((out / "runs" / "early" / "metrics.json").read_text())["runs"]
    late = json.loads((out / "runs" / "late" / "metrics.json").read_text())["runs"]
    pair = next(p for p in pairs if (p["a"], p["b"]) == ("early", "late"))
    diffs = [a["metrics"]["ua"] - b["metrics"]["ua"] for a, b in zip(early, late, strict=True)]
    assert pair["ua"]["mean_difference"] == pytest.approx(np.mean(diffs))
    header = (out / "compare.csv").read_text().splitlines()[0]
    assert "f1_macro_mean" in header and "precision_weighted_mean" in header and "f1_weighted_mean" in header


# -- class sets: a subset, renamed classes, a metadata field ---------------------------------------------------
def test_labels_from_metadata_renamed_and_restricted() -> None:
    import pandas as pd

    from emo.fusion.labels import LabelChoice, clip_labels, parse_mapping

    clips = pd.DataFrame(
        {
            "label_name": ["anger", "joy", "neutral", "sadness", ""],
            "metadata": [json.dumps({"Sentiment": s}) for s in ("negative", "positive", "neutral", "negative", "")],
        }
    )
    store = ["anger", "joy", "neutral", "sadness"]
    y, names = clip_labels(clips, store, LabelChoice())
    assert names == store and y.tolist() == [0, 1, 2, 3, -1]
    y, names = clip_labels(clips, store, LabelChoice("metadata:Sentiment"))
    assert names == ["negative", "neutral", "positive"] and y.tolist() == [0, 2, 1, 0, -1]
    mapping = parse_mapping("anger=negative, sadness=negative, joy=positive")
    y, names = clip_labels(clips, store, LabelChoice("label", mapping))
    assert names == ["negative", "positive", "neutral"] and y.tolist() == [0, 1, 2, 0, -1]
    y, names = clip_labels(clips, store, LabelChoice("label", {}, ("sadness", "joy")))
    assert names == ["sadness", "joy"] and y.tolist() == [-1, 1, -1, 0, -1]  # other classes left out
    with pytest.raises(UsageError, match="--classes fear: no clip has that label"):
        clip_labels(clips, store, LabelChoice("label", {}, ("fear",)))
    with pytest.raises(UsageError, match="OLD=NEW"):
        parse_mapping("anger")


def test_training_on_a_subset_of_classes(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.zarr")
    result = train(store, quick("early", classes=("sadness", "anger"), epochs=10))
    assert result.data.class_names == ["sadness", "anger"]
    assert set(result.data.y.tolist()) == {0, 1}  # clips of joy are not in the data at all
    assert result.reference.metrics["labels"] == ["sadness", "anger"]
