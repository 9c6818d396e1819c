"""The ``ssl`` token: a pretrained speech encoder's hidden states, with a small randomly initialised wav2vec 2.0
that the test builds and saves with ``save_pretrained`` (no pretrained weights can be had here), read through
the same loading and extraction code as a downloaded model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_emo

from emo.errors import UsageError
from emo.features_store import FeatureStore
from emo.pipeline.config import ExtractionConfig
from emo.pipeline.extractors import default_tokens
from emo.pipeline.extractors.ssl import SpeechEncoder, describe_speech_model
from emo.pipeline.synthetic import speech_like

SR = 16000
HIDDEN, LAYERS = 24, 3


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    out = tmp_path_factory.mktemp("tiny-wav2vec2")
    config = Wav2Vec2Config(
        hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=2, intermediate_size=48,
        conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
    )  # fmt: skip
    torch.manual_seed(0)
    Wav2Vec2Model(config).save_pretrained(out)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SR, padding_value=0.0, do_normalize=True).save_pretrained(
        out
    )
    return out


def test_frames_are_the_models_hidden_states(encoder_dir: Path) -> None:
    from transformers import AutoModel

    samples = speech_like("happy", 1.3, seed=3)
    model = AutoModel.from_pretrained(encoder_dir).eval()
    x = torch.from_numpy((samples - samples.mean()) / np.sqrt(samples.var() + 1e-7))[None]
    with torch.inference_mode():
        hidden = model(x, output_hidden_states=True).hidden_states
    n_frames = (samples.size - 400) // 320 + 1  # receptive field 400 samples, hop 320 (20 ms)
    mean = SpeechEncoder(str(encoder_dir)).encode(samples)
    assert mean.shape == (n_frames, HIDDEN) and mean.dtype == np.float32
    np.testing.assert_allclose(mean, torch.stack(hidden[1:]).mean(0)[0].numpy(), atol=1e-4)
    second = SpeechEncoder(str(encoder_dir), layer="2").encode(samples)
    np.testing.assert_allclose(second, hidden[2][0].numpy(), atol=1e-4)
    assert SpeechEncoder(str(encoder_dir)).encode(samples[:300]).shape == (0, HIDDEN)  # shorter than one frame


def test_description_names_frame_rate_layers_and_weights(encoder_dir: Path) -> None:
    d = describe_speech_model(str(encoder_dir), "mean")
    assert (d["model_type"], d["hidden_size"], d["num_hidden_layers"]) == ("wav2vec2", HIDDEN, LAYERS)
    assert (d["hop_samples"], d["receptive_field_samples"], d["sampling_rate"]) == (320, 400, SR)
    weights = (encoder_dir / "model.safetensors").read_bytes()
    assert d["weights"] == {"file": "model.safetensors", "sha256": hashlib.sha256(weights).hexdigest()}
    with pytest.raises(UsageError, match="has 3 transformer layers"):
        describe_speech_model(str(encoder_dir), "7")


def test_ssl_is_opt_in_and_its_settings_join_the_config_only_when_extracted() -> None:
    assert "ssl" not in default_tokens() and "mfcc" in default_tokens()
    plain = ExtractionConfig(features=("mfcc",))
    assert "audio_model" not in plain.to_dict()  # hashes of stores made before the token are unchanged
    assert ExtractionConfig.from_dict(plain.to_dict()) == plain
    with_ssl = ExtractionConfig(features=("mfcc", "ssl"), audio_model="x")
    assert with_ssl.to_dict()["audio_model"] == "x" and with_ssl.hash() != plain.hash()
    with pytest.raises(UsageError, match="--audio-layer"):
        ExtractionConfig(features=("ssl",), audio_layer="last")


def test_extract_writes_audio_ssl_on_the_time_grid(
    encoder_dir: Path, small_demo_dir: Path, scheduler: str, tmp_path: Path
) -> None:
    store = tmp_path / "ssl.zarr"
    done = run_emo("extract", str(small_demo_dir), "-o", str(store), "--features", "ssl,mfcc", "--audio-model",
                   str(encoder_dir), "--audio-layer", "1", "--scheduler", scheduler, "-q")  # fmt: skip
    assert done.returncode == 0, done.stderr
    fs = FeatureStore.open(str(store))
    assert fs.config["audio_model"] == str(encoder_dir) and fs.config["audio_layer"] == "1"
    sha = hashlib.sha256((encoder_dir / "model.safetensors").read_bytes()).hexdigest()
    assert fs.config["audio_weights_sha256"] == sha
    attrs = dict(fs.group["audio/ssl/values"].attrs)
    assert attrs["frame_rate_hz"] == 50.0 and attrs["model"]["weights"]["sha256"] == sha
    assert attrs["model"]["layer"] == 1
    frames = fs.sequences("audio/ssl/values")
    mfcc = fs.sequences("audio/mfcc/values")
    for ssl_frames, mfcc_frames in zip(frames, mfcc, strict=True):
        assert ssl_frames.shape[1] == HIDDEN
        assert abs(len(ssl_frames) * 2 - len(mfcc_frames)) <= 4  # 20 ms frames against 10 ms frames
    aligned = fs.read("audio/ssl/aligned")
    assert aligned.shape == (fs.n_clips, 32, HIDDEN)
    # every step of the grid inside the audio kept (silence at the ends is trimmed) holds ssl frames
    clips, mask = fs.clips(), fs.read("audio/ssl/mask")
    for i, clip in clips.iterrows():
        edges = np.arange(33) * clip["duration_s"] / 32
        inside = (edges[:-1] >= clip["trim_start_s"]) & (edges[1:] <= clip["trim_end_s"])
        assert inside.sum() >= 16 and mask[i][inside].all(), (clip, mask[i])
    assert fs.read("audio/ssl/pooled").shape == (fs.n_clips, 2 * HIDDEN)
    fused = run_emo("fuse", "--store", str(store), "--method", "early", "--features", "audio/ssl", "--epochs", "2",
                    "--split", "stratified", "-o", str(tmp_path / "run"), "-q")  # fmt: skip
    assert fused.returncode == 0, fused.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["modalities"]["audio"] == {"kind": "vector", "features": ["audio/ssl"], "dim": 2 * HIDDEN}


def test_a_missing_encoder_stops_the_run_before_any_work(small_demo_dir: Path, tmp_path: Path) -> None:
    done = run_emo("extract", str(small_demo_dir), "-o", str(tmp_path / "s.zarr"), "--features", "ssl",
                   "--audio-model", str(tmp_path / "nope"))  # fmt: skip
    assert done.returncode == 2 and "speech encoder directory" in done.stderr and "nope" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "s.zarr").exists()


def test_a_cuda_run_sends_the_speech_encoder_to_gpu_workers(
    encoder_dir: Path, small_demo_dir: Path, gpu_dask, tmp_path: Path
) -> None:
    # an audio-only configuration with a model: its tasks ask for the GPU resource like the video models'
    done = run_emo("extract", str(small_demo_dir), "-o", str(tmp_path / "s.zarr"), "--features", "ssl",
                   "--audio-model", str(encoder_dir), "--scheduler", gpu_dask.address, "--device", "cuda",
                   "--batch-size", "1", "--json", "-q", env={"EMO_GPU_ROUTING_DEVICE": "cpu"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["workers"] == {"gpu": 6} and report["device"] == "cpu"
