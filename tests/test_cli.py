"""``emo`` end to end: extraction against real Dask processes, bad inputs, resume, usage errors, store info."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_emo

from emo.features_store import FeatureStore, parse_location
from emo.features_store.lock import StoreLock

#: All features (the default), with untrained visual weights (no ImageNet ResNet offline) and few frames.
FAST = ("--visual-weights", "random", "--fps", "2")


@pytest.fixture(scope="module")
def mixed_dataset(
    tmp_path_factory: pytest.TempPathFactory, bad_media: dict[str, Path], damaged_media: dict[str, Path]
) -> Path:
    """A folder-per-label dataset holding good clips, every kind of bad input and partly decodable files."""
    root = tmp_path_factory.mktemp("mixed")
    for i, path in enumerate(sorted([*bad_media.values(), *damaged_media.values()])):
        label = "happy" if i % 2 else "sad"
        (root / label).mkdir(exist_ok=True)
        shutil.copy(path, root / label / path.name)
    return root


@pytest.fixture(scope="module")
def mixed_store(tmp_path_factory: pytest.TempPathFactory, mixed_dataset: Path, scheduler: str):
    store = tmp_path_factory.mktemp("stores") / "mixed.zarr"
    proc = run_emo("extract", str(mixed_dataset), "-o", str(store), "--scheduler", scheduler, *FAST, "--json", "-q")
    return store, proc


def test_help_on_every_command() -> None:
    for args, needle in (
        (["--help"], "extract"),
        (["extract", "--help"], "--visual-weights"),
        (["store", "--help"], "info"),
        (["store", "info", "--help"], "--json"),
        (["demo", "--help"], "DIRECTORY"),
    ):
        proc = run_emo(*args)
        assert proc.returncode == 0 and needle in proc.stdout, args


def test_bad_inputs_are_recorded_not_fatal(mixed_store) -> None:
    store_path, proc = mixed_store
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["adapter"] == "folders" and report["n_written"] == 12
    store = FeatureStore.open(store_path)
    clips = store.clips().set_index("clip_id")
    status = {cid.split("/")[1]: (row.status_audio, row.error) for cid, row in clips.iterrows()}
    assert status["good"] == ("ok", "")
    assert clips.loc["happy/good" if "happy/good" in clips.index else "sad/good", "source_path"].endswith("/good.mp4")
    assert status["speech"] == ("ok", "")  # a .wav: audio only
    assert status["silent_video"] == ("missing", "no audio stream")
    assert status["empty"][0] == "failed" and status["empty"][1].startswith("empty file")
    for name in ("corrupt", "notes", "truncated"):
        assert status[name][0] == "failed" and status[name][1].startswith("unreadable container"), name
    # whatever FFmpeg decodes of a damaged or cut file is kept, and the store says how much that was
    partial = ("truncated_faststart", "aac_damaged", "cut_in_last_audio_frame", "gop_damaged", "ac3_cut")
    for name in partial:
        assert status[name] == ("ok", ""), name
    by_name = clips.rename(index=lambda cid: cid.split("/")[1])
    cut = by_name.loc["truncated_faststart"]
    assert cut["decoded_s_audio"] < 0.9 * cut["duration_s"]
    assert by_name.loc["aac_damaged", "decode_errors_audio"] > 0
    assert by_name.loc["gop_damaged", "decode_errors_video"] > 0
    assert by_name.loc["good", "decode_errors_audio"] == by_name.loc["good", "decode_errors_video"] == 0
    assert abs(by_name.loc["good", "decoded_s_audio"] - by_name.loc["good", "duration_s"]) < 0.1
    assert by_name.loc["speech", "decode_errors_video"] == -1 and np.isnan(by_name.loc["speech", "decoded_s_video"])
    assert by_name.loc["corrupt", "decode_errors_audio"] == -1  # the container never opened: nothing was decoded
    decoded = {m: {c.split("/")[1] for c in v["clip_ids"]} for m, v in report["partly_decoded"].items()}
    assert decoded["audio"] == {"truncated_faststart", "aac_damaged", "cut_in_last_audio_frame"}
    assert decoded["video"] == {"truncated_faststart", "gop_damaged"}
    # failed clips keep their rows, with empty features
    rows = {cid.split("/")[1]: i for i, cid in enumerate(store.clips()["clip_id"])}
    pooled = store.read("audio/mfcc/pooled")
    assert np.isnan(pooled[rows["corrupt"]]).all() and np.isfinite(pooled[rows["good"]]).all()
    assert np.isnan(store.read("audio/egemaps")[rows["notes"]]).all()
    assert len(store.sequences("audio/mel/values")[rows["empty"]]) == 0
    for name in ("aac_damaged", "truncated_faststart"):
        assert np.isfinite(pooled[rows[name]]).all() and len(store.sequences("audio/mel/values")[rows[name]]) > 50
    assert len(store.sequences("video/face/values")[rows["gop_damaged"]]) >= 6  # 4 s at 2 fps, a damaged second
    video = {cid.split("/")[1]: s for cid, s in clips["status_video"].items()}
    assert video["good"] == video["silent_video"] == "ok" and video["speech"] == "missing"  # a .wav: no video
    assert {video[n] for n in ("corrupt", "notes", "truncated", "empty")} == {"failed"}
    assert {video[n] for n in ("gop_damaged", "ac3_cut", "truncated_faststart")} == {"ok"}
    assert set(clips["status_text"]) == {"missing"}  # no transcripts in this folder dataset
    assert len(store.sequences("video/face/values")[rows["good"]]) > 0
    assert len(store.sequences("video/faces/probs")[rows["corrupt"]]) == 0
    # the summary counts reasons and names clips
    failures = report["failures"]
    assert failures["unreadable container"]["count"] == 3
    assert set(failures["no audio stream"]["clip_ids"]) == {c for c in clips.index if c.endswith("silent_video")}
    assert clips.loc[[c for c in clips.index if c.endswith("good")][0], "source_sha256"]


def test_every_array_says_what_made_it_and_plain_zarr_reads_the_store_quietly(mixed_store) -> None:
    import warnings

    import zarr

    store_path, proc = mixed_store
    assert proc.returncode == 0, proc.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # plain zarr, as a teammate without emo reads it: not a single warning
        root = zarr.open_group(str(store_path), mode="r")
        arrays = dict(root.arrays()) | {f"{g}/{a}": arr for g, grp in root.groups() for a, arr in grp.arrays()}
        arrays |= {
            f"{g}/{s}/{a}": arr
            for g, grp in root.groups()
            for s, sub in grp.groups()
            for a, arr in sub.arrays()
        }
    assert not (store_path / ".emo-writer.lock").exists()  # the writer removed its lock when it finished
    features = {path: arr for path, arr in arrays.items() if path.split("/")[0] in ("audio", "video", "text")}
    assert {"audio/mfcc/pooled", "audio/mfcc/offsets", "audio/mfcc/mask", "video/face/aligned"} <= features.keys()
    for path, arr in features.items():  # each array alone names the extractor and version that made it
        assert arr.attrs["extractor"] and arr.attrs["extractor_version"], path
        if path.startswith(("video/face/", "video/summary")):  # and the model with its weights
            assert arr.attrs["model"]["weights"], path


def test_human_summary_and_strict(mixed_dataset: Path, mixed_store, scheduler: str) -> None:
    store_path, _ = mixed_store
    proc = run_emo("extract", str(mixed_dataset), "-o", str(store_path), "--scheduler", scheduler, *FAST)
    assert proc.returncode == 0
    assert "0 clips written, 12 already there" in proc.stdout
    strict = run_emo(
        "extract", str(mixed_dataset), "-o", str(store_path), "--scheduler", scheduler, *FAST, "--strict", "-q"
    )
    assert strict.returncode == 0  # nothing failed in this (empty) run
    fresh = store_path.parent / "strict.zarr"
    strict = run_emo(
        "extract", str(mixed_dataset), "-o", str(fresh), "--scheduler", scheduler, "--features", "mfcc", "--strict"
    )
    assert strict.returncode == 1
    assert "unreadable container" in strict.stdout and "problems by reason" in strict.stdout


def test_partly_decoded_clips_are_shown_and_strict_partial_fails(
    damaged_media: dict[str, Path], scheduler: str, tmp_path: Path
) -> None:
    dataset = tmp_path / "damaged"
    for path in damaged_media.values():
        (dataset / "neutral").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dataset / "neutral" / path.name)
    store = tmp_path / "damaged.zarr"
    lenient = run_emo(
        "extract", str(dataset), "-o", str(store), "--scheduler", scheduler, "--features", "mfcc", "--strict"
    )
    assert lenient.returncode == 0, lenient.stderr  # a partial decode is not a failure...
    assert "partly decoded" in " ".join(lenient.stdout.split()) and "aac_damaged" in lenient.stdout
    strict = run_emo(
        "extract", str(dataset), "-o", str(tmp_path / "strict.zarr"), "--scheduler", scheduler, "--features", "mfcc",
        "--strict-partial", "-q",
    )
    assert strict.returncode == 1  # ...unless asked
    info = run_emo("store", "info", str(store), "--json")
    partial = json.loads(info.stdout)["partly_decoded"]
    assert partial["audio"]["count"] == 2 and partial["video"]["count"] == 0  # video was not decoded for mfcc
    text = " ".join(run_emo("store", "info", str(store)).stdout.split())
    assert "partly decoded" in text and "audio 2" in text


def test_resume_does_no_work_and_overwrite_starts_fresh(small_demo_dir: Path, scheduler: str, tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    first = run_emo("extract", str(small_demo_dir), "-o", str(store), "--scheduler", scheduler, *FAST, "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["n_written"] == 6
    assert "ravdess" in first.stderr  # auto-detection says what it picked
    chunk = next((store / "audio" / "mfcc" / "values").rglob("c/*"))
    stamp = chunk.stat().st_mtime_ns
    again = run_emo("extract", str(small_demo_dir), "-o", str(store), "--scheduler", scheduler, *FAST, "--json")
    report = json.loads(again.stdout)
    assert (report["n_written"], report["n_already_done"]) == (0, 6)
    assert chunk.stat().st_mtime_ns == stamp
    over = run_emo(
        "extract", str(small_demo_dir), "-o", str(store), "--scheduler", scheduler, *FAST, "--json", "--overwrite"
    )
    assert json.loads(over.stdout)["n_written"] == 6
    assert FeatureStore.open(store).n_clips == 6


def test_other_config_is_refused_naming_keys(small_demo_dir: Path, scheduler: str, tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    assert (
        run_emo(
            "extract", str(small_demo_dir), "-o", str(store), "--scheduler", scheduler, "--features", "mfcc"
        ).returncode
        == 0
    )
    proc = run_emo(
        "extract",
        str(small_demo_dir),
        "-o",
        str(store),
        "--scheduler",
        scheduler,
        "--features",
        "mfcc",
        "--n-mels",
        "64",
        "--denoise",
        "spectral-subtraction",
    )
    assert proc.returncode == 2
    assert "denoise: store has 'none', now 'spectral-subtraction'" in proc.stderr
    assert "n_mels: store has 128, now 64" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_denoise_and_normalisation_are_recorded(small_demo_dir: Path, scheduler: str, tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    proc = run_emo(
        "extract",
        str(small_demo_dir),
        "-o",
        str(store),
        "--scheduler",
        scheduler,
        "--features",
        "mel",
        "--denoise",
        "spectral-subtraction",
        "--normalize",
        "rms",
        "-q",
    )
    assert proc.returncode == 0, proc.stderr
    fs = FeatureStore.open(store)
    assert (fs.config["denoise"], fs.config["normalize"]) == ("spectral-subtraction", "rms")
    assert fs.array("audio/mel/values").attrs["params"]["denoise"] == "spectral-subtraction"


def _usage(*args: str) -> str:
    proc = run_emo(*args)
    assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc.stderr


def test_usage_errors(tmp_path: Path, small_demo_dir: Path) -> None:
    out = str(tmp_path / "s.zarr")
    assert "does not exist" in _usage("extract", str(tmp_path / "nope"), "-o", out)
    (tmp_path / "empty").mkdir()
    assert "is empty" in _usage("extract", str(tmp_path / "empty"), "-o", out)
    assert "'iemocap' is not one of" in _usage("extract", str(small_demo_dir), "-o", out, "--dataset", "iemocap")
    err = _usage("extract", str(small_demo_dir), "-o", out, "--features", "mfcc,mfc")
    assert "unknown feature token(s) 'mfc'; available:" in err and err.count("\n") == 1
    (tmp_path / "afile").write_text("x")
    assert "cannot write a store" in _usage(
        "extract", str(small_demo_dir), "-o", str(tmp_path / "afile" / "s.zarr"), "--features", "mfcc"
    )
    assert "unknown visual model 'vgg'" in _usage("extract", str(small_demo_dir), "-o", out, "--visual-model", "vgg")
    assert "--fps must be positive" in _usage("extract", str(small_demo_dir), "-o", out, "--fps", "0")
    assert "three numbers" in _usage("extract", str(small_demo_dir), "-o", out, "--face-thresholds", "0.6,x")
    assert "no feature store" in _usage("store", "info", str(tmp_path / "missing.zarr"))
    assert "No such option" in _usage("extract", str(small_demo_dir), "-o", out, "--frobnicate")
    assert "KEY=VALUE" in _usage("store", "info", out, "--storage-option", "secret")


def test_store_written_by_newer_emo(tmp_path: Path, small_demo_dir: Path, scheduler: str) -> None:
    store = tmp_path / "s.zarr"
    assert (
        run_emo(
            "extract", str(small_demo_dir), "-o", str(store), "--scheduler", scheduler, "--features", "egemaps", "-q"
        ).returncode
        == 0
    )
    meta = json.loads((store / "zarr.json").read_text())
    meta["attributes"]["emo_store_version"] = 42
    (store / "zarr.json").write_text(json.dumps(meta))
    assert "upgrade emo" in _usage("store", "info", str(store))
    assert "upgrade emo" in _usage("extract", str(small_demo_dir), "-o", str(store), "--features", "egemaps")


def test_locked_store_is_refused(tmp_path: Path, small_demo_dir: Path) -> None:
    store = tmp_path / "s.zarr"
    with StoreLock(parse_location(str(store))):
        proc = run_emo("extract", str(small_demo_dir), "-o", str(store), "--features", "mfcc")
    assert proc.returncode == 1
    assert "being written by another process" in proc.stderr and "Traceback" not in proc.stderr


def test_demo_dataset_end_to_end(demo_dir: Path, scheduler: str, tmp_path: Path) -> None:
    store = tmp_path / "demo.zarr"
    # what `make demo` runs: every modality, with the truly pretrained models that exist offline
    proc = run_emo(
        "extract", str(demo_dir), "-o", str(store), "--scheduler", scheduler,
        "--visual-model", "efficientnet-lite0", "--visual-weights", "imagenet", "--text-model", "all-MiniLM-L6-v2",
        "--fps", "2",
    )
    assert proc.returncode == 0, proc.stderr
    assert "efficientnet-lite0 (ImageNet weights efficientnet-lite0-57934424.pth" in proc.stdout
    assert "all-MiniLM-L6-v2 (package" in proc.stdout
    info = json.loads(run_emo("store", "info", str(store), "--json").stdout)
    assert info["n_clips"] == 24
    assert info["clips_by_label"] == {e: 4 for e in ("neutral", "happy", "sad", "angry", "fearful", "surprised")}
    assert info["clips_by_status"] == {m: {"ok": 24} for m in ("audio", "video", "text")}
    arrays = {a["path"]: a for a in info["arrays"]}
    assert arrays["video/summary"]["shape"] == [24, 1280] and arrays["video/face/aligned"]["shape"] == [24, 32, 1280]
    assert arrays["text/cls"]["shape"] == [24, 384] and arrays["video/faces/landmarks"]["shape"][1:] == [5, 2]
    assert arrays["audio/mfcc/pooled"]["shape"] == [24, 160]
    assert arrays["audio/mel/aligned"]["shape"] == [24, 32, 128]
    assert arrays["audio/egemaps"]["shape"] == [24, 88]
    assert arrays["audio/mfcc/values"]["bytes_stored"] > 0
    assert info["extraction"]["config"]["n_mfcc"] == 40 and len(info["extraction"]["config_hash"]) == 16
    assert {"python", "librosa", "opensmile", "zarr"} <= set(info["software"])
    table = run_emo("store", "info", str(store)).stdout
    for needle in (
        "clips by label",
        "surprised",
        "audio/mel/aligned",
        "24 x 32 x 128",
        "extraction config (hash",
        "librosa",
    ):
        assert needle in table
    # the demo's prosody makes the emotions separable on speaker-independent pooled MFCCs
    fs = FeatureStore.open(store)
    x, clips = fs.read("audio/mfcc/pooled"), fs.clips()
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scores = cross_val_score(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        x,
        clips["label"],
        groups=clips["speaker"],
        cv=GroupKFold(4),
    )
    assert scores.mean() > 0.5  # chance is 1/6
