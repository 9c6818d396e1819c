"""The papers' front-ends read the store's own frames: crop / resample to a head's length, masks, shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import synthetic_store

from emo.errors import UsageError
from emo.features_store import FeatureStore
from emo.fusion.data import frames_view, load_fusion_data, resolve_features
from emo.fusion.heads import build_head, input_kinds
from emo.fusion.heads._common import FrameInput
from emo.fusion.heads.mel_cnn import MelCNN2D
from emo.fusion.train import train
from emo.fusion.train_config import TrainConfig


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_store(tmp_path_factory.mktemp("frontends") / "synthetic.zarr")


def test_crop_keeps_the_first_frames_and_masks_the_padding() -> None:
    seq = np.arange(10, dtype=np.float32)[:, None].repeat(3, axis=1)
    x, mask = frames_view(seq, FrameInput(4, "crop"))
    np.testing.assert_array_equal(x[:, 0], [0, 1, 2, 3])
    assert mask.all()
    x, mask = frames_view(seq[:3], FrameInput(5, "crop"))
    np.testing.assert_array_equal(mask, [True, True, True, False, False])
    np.testing.assert_array_equal(x[3:], 0)
    x, mask = frames_view(seq[:0], FrameInput(5, "crop"))
    assert not mask.any()


def test_resample_spans_the_whole_clip_so_an_event_keeps_its_place_on_the_time_grid() -> None:
    """A burst in the last quarter of a clip's frames lands in the last quarter of the resampled frames,
    whatever the clip's length (shorter or longer than the requested length)."""
    for n in (37, 256, 1000):
        seq = np.zeros((n, 2), np.float32)
        start = 3 * n // 4
        seq[start:] = 1.0
        x, mask = frames_view(seq, FrameInput(256, "resample"))
        assert mask.all() and x.shape == (256, 2)
        at, blur = round(start / n * 256), int(np.ceil(256 / n)) + 1  # interpolation blurs one input frame
        assert x[: at - blur, 0].max() == 0.0, n
        assert x[at + blur :, 0].min() == 1.0, n


def test_heads_ask_for_the_frames_the_papers_convolve() -> None:
    assert input_kinds("speech-cnn", {})["audio"] == "frames:400:crop"
    assert input_kinds("attention", {"audio_encoder": "speech-cnn"})["audio"] == "frames:400:crop"
    assert input_kinds("attention", {})["audio"] == "vector"
    kinds = input_kinds("cross-tucker", {})
    assert kinds["audio"] == "frames:256:resample" and kinds["video"] == "sequence"
    assert input_kinds("cross-tucker", {"audio_frontend": "none"})["audio"] == "sequence"


def test_the_mel_cnn_pools_a_128x256_image_to_the_video_grid() -> None:
    cnn = MelCNN2D(128, steps=32)
    x = torch.randn(3, 256, 128)
    mask = torch.ones(3, 256, dtype=torch.bool)
    mask[1, 128:] = False  # second half missing
    mask[2] = False  # no audio
    h, step_mask = cnn(x, mask)
    assert h.shape == (3, 32, 128) and step_mask.shape == (3, 32)
    assert step_mask[0].all() and step_mask[1, :16].all() and not step_mask[1, 16:].any()
    assert not step_mask[2].any()


def test_loading_frames_from_a_store(store: Path) -> None:
    fs = FeatureStore.open(store)
    kinds = input_kinds("cross-tucker", {})
    features = resolve_features(fs, ["audio", "video"], None, kinds)
    assert features == {"audio": ["audio/mfcc"], "video": ["video/face"]}  # no audio/mel in this store
    data = load_fusion_data(fs, features, kinds)
    audio, video = data.inputs["audio"], data.inputs["video"]
    assert audio.kind == "frames" and audio.x.shape == (fs.n_clips, 256, 6) and audio.mask.all()
    assert video.kind == "sequence" and video.x.shape[1] == 8
    with pytest.raises(UsageError, match="clip vector"):
        load_fusion_data(fs, {"audio": ["audio/egemaps"]}, input_kinds("speech-cnn", {}))


def test_cross_tucker_with_the_mel_cnn_and_speech_cnn_on_frames_learn(store: Path) -> None:
    common = dict(split="speaker", epochs=25, patience=25, seeds=1)
    result = train(store, TrainConfig(method="cross-tucker", modalities=("audio", "video"), **common))
    assert result.reference.head.hparams["audio_frontend"] == "mel-cnn"
    assert result.summary["accuracy"]["mean"] > 0.5  # chance 1/3; audio carries the class
    result = train(
        store,
        TrainConfig(
            method="speech-cnn",
            modalities=("audio",),
            hparams={"channels": (16, 16, 16, 16), "max_frames": 48},
            **common,
        ),
    )
    assert result.data.inputs["audio"].x.shape[1] == 48
    assert result.summary["accuracy"]["mean"] > 0.5


def test_a_head_built_for_frames_refuses_the_wrong_layout() -> None:
    head = build_head("cross-tucker", {"audio": 8, "video": 4}, 3, steps=16)
    xs = {"audio": torch.randn(2, 64, 8), "video": torch.randn(2, 16, 4)}
    assert head(xs, {}).shape == (2, 3)
    with pytest.raises(UsageError):
        head({"audio": torch.randn(2, 8), "video": xs["video"]}, {})
