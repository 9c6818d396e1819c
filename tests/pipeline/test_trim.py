"""Trimming of leading and trailing silence before the audio features (``--trim-silence``)."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from emo.errors import UsageError
from emo.features_store import FeatureStore
from emo.fusion.data import frames_view, load_fusion_data
from emo.fusion.heads._common import FrameInput
from emo.fusion.presets import check_extraction, get_preset
from emo.pipeline.audio import TRIM_FRAME_LENGTH, trim_silence
from emo.pipeline.config import ExtractionConfig
from emo.pipeline.synthetic import speech_like
from tests.conftest import run_emo

SR = 16000
#: the silence decision is made per librosa frame: the kept span's edges are within one frame of the speech's
EDGE_S = TRIM_FRAME_LENGTH / SR
LEAD_S, SPEECH_S, TAIL_S = 1.0, 1.2, 0.8
STEPS = 6  # 0.5 s segments of the 3 s clip


def _silence_speech_silence() -> np.ndarray:
    rng = np.random.default_rng(3)
    speech = speech_like("happy", SPEECH_S, seed=5)
    speech = 0.5 * speech / np.abs(speech).max()
    hiss = 1e-4 * rng.standard_normal(int((LEAD_S + SPEECH_S + TAIL_S) * SR)).astype(np.float32)  # -80 dB
    out = hiss.copy()
    start = int(LEAD_S * SR)
    out[start : start + speech.size] += speech
    return out


def test_trim_silence_keeps_the_speech_and_says_where_it_starts() -> None:
    samples = _silence_speech_silence()
    kept, start = trim_silence(samples, 30.0)
    assert LEAD_S - EDGE_S <= start / SR <= LEAD_S
    end = (start + kept.size) / SR
    assert LEAD_S + SPEECH_S - EDGE_S <= end <= LEAD_S + SPEECH_S + EDGE_S
    np.testing.assert_array_equal(kept, samples[start : start + kept.size])
    # the same span as librosa's own trim, which frames a copy of the signal (4x its size) to decide
    for signal in (samples, samples[: 3 * SR // 2 + 77], samples[::-1].copy()):
        expected, (a, b) = librosa.effects.trim(signal, top_db=30.0, frame_length=2048, hop_length=512)
        kept, start = trim_silence(signal, 30.0)
        assert (start, start + kept.size) == (a, b)
    # nothing louder than the rest, or too short to frame: kept whole
    for whole in (np.zeros(SR, np.float32), 0.1 * np.ones(SR, np.float32), samples[: TRIM_FRAME_LENGTH - 1]):
        kept, start = trim_silence(whole, 30.0)
        assert start == 0 and kept.size == whole.size


def test_config_records_trimming_and_older_configs_read_as_untrimmed() -> None:
    config = ExtractionConfig(features=("mfcc",))
    assert config.trim_silence_db == 30.0 and config.to_dict()["trim_silence_db"] == 30.0
    older = config.to_dict()
    del older["trim_silence_db"]  # a store written before trimming existed
    untrimmed = ExtractionConfig.from_dict(older)
    assert untrimmed.trim_silence_db is None and untrimmed.to_dict() == older  # so its hash is unchanged
    assert untrimmed.hash() != config.hash()
    assert ExtractionConfig.from_dict(config.to_dict()) == config
    with pytest.raises(UsageError, match="--trim-silence"):
        ExtractionConfig(trim_silence_db=0)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, scheduler: str) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("trim")
    data = root / "data" / "neutral"
    data.mkdir(parents=True)
    sf.write(data / "a.wav", _silence_speech_silence(), SR, subtype="FLOAT")
    out = {}
    for name, flag in (("trimmed", []), ("off", ["--trim-silence", "off"])):
        out[name] = root / f"{name}.zarr"
        proc = run_emo(
            "extract", str(root / "data"), "-o", str(out[name]), "--scheduler", scheduler, "--features",
            "mel,mfcc,egemaps", "--align-steps", str(STEPS), "-q", *flag,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    return out


def test_extraction_leaves_the_silence_out_and_keeps_clip_times(stores: dict[str, Path]) -> None:
    fs = FeatureStore.open(stores["trimmed"])
    clip = fs.clips().iloc[0]
    assert clip["status_audio"] == "ok"
    assert LEAD_S - EDGE_S <= clip["trim_start_s"] <= LEAD_S
    assert LEAD_S + SPEECH_S - EDGE_S <= clip["trim_end_s"] <= LEAD_S + SPEECH_S + EDGE_S
    frames = fs.read("audio/mel/values")
    assert abs(len(frames) - (clip["trim_end_s"] - clip["trim_start_s"]) * 100) <= 1
    # frame times are clip times: the steps of the grid (0.5 s) over the silence hold no frame; step 1 [0.5, 1.0)
    # holds the first frames (the kept span starts up to one librosa frame early, or within half a step)
    expected = [False, True, True, True, True, False]
    assert fs.read("audio/mel/mask")[0].tolist() == expected and fs.read("audio/mfcc/mask")[0].tolist() == expected
    params = dict(fs.group["audio/mel/values"].attrs)["params"]
    assert params["trim_silence"]["top_db"] == 30.0
    assert dict(fs.group["audio/egemaps"].attrs)["params"]["trim_silence"]["top_db"] == 30.0
    assert fs.attrs["extraction"]["config"]["trim_silence_db"] == 30.0

    off = FeatureStore.open(stores["off"])
    row = off.clips().iloc[0]
    assert row["trim_start_s"] == 0.0 and row["trim_end_s"] == pytest.approx(row["decoded_s_audio"])
    assert off.read("audio/mel/mask")[0].all()
    assert "trim_silence" not in dict(off.group["audio/mel/values"].attrs)["params"]
    assert "trim_silence_db" not in off.attrs["extraction"]["config"]
    # the pooled features describe the speech only: the silence no longer pulls the mean of the frames down
    trimmed_energy = fs.read("audio/mel/pooled")[0][:128].mean()
    untrimmed_energy = off.read("audio/mel/pooled")[0][:128].mean()
    assert trimmed_energy > untrimmed_energy + 10
    assert not np.allclose(fs.read("audio/egemaps"), off.read("audio/egemaps"))


def test_trim_silence_option_is_checked_before_any_work(tmp_path: Path) -> None:
    for bad, message in (("0", "positive number of dB"), ("loud", "expected a number of dB or 'off'")):
        proc = run_emo("extract", str(tmp_path), "-o", str(tmp_path / "s.zarr"), "--trim-silence", bad)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert not (tmp_path / "s.zarr").exists()


def test_frames_resampled_over_the_clip_stay_in_clip_time() -> None:
    seq = np.arange(10, dtype=np.float32)[:, None]
    out, mask = frames_view(seq, FrameInput(8, "resample"), span=(0.25, 0.75))
    assert mask.tolist() == [False, False, True, True, True, True, False, False]
    assert out[~mask].sum() == 0 and out[2, 0] < out[5, 0] and out[2, 0] <= 2 and out[5, 0] >= 7
    out, mask = frames_view(seq, FrameInput(8, "resample"))
    assert mask.all() and out[0, 0] < 1 and out[-1, 0] > 8


def test_seed003s_mel_image_keeps_audio_and_video_steps_on_one_time_line(stores: dict[str, Path]) -> None:
    # the mel frames of a trimmed clip cover 1.0-2.2 s of 3 s: resampled "over the whole clip", they are placed
    # there, so part j of the image still describes the j-th part of the clip (as the video's step j does)
    kinds = {"audio": "frames:12:resample"}
    trimmed = load_fusion_data(FeatureStore.open(stores["trimmed"]), {"audio": ["audio/mel"]}, kinds)
    off = load_fusion_data(FeatureStore.open(stores["off"]), {"audio": ["audio/mel"]}, kinds)
    assert off.inputs["audio"].mask[0].all()
    mask = trimmed.inputs["audio"].mask[0]
    assert not mask[:3].any() and mask[5:8].all() and not mask[-2:].any()  # 0.25 s per frame


def test_trimming_is_named_a_preset_deviation_and_resuming_an_older_store_says_how(
    stores: dict[str, Path], tmp_path: Path
) -> None:
    FEATURES = ["mel", "mfcc", "summary"]  # noqa: N806 - what seed 001 needs
    notes = check_extraction(get_preset("seed001"), {"features": FEATURES, "trim_silence_db": 30.0}, "s.zarr")
    assert any("--trim-silence off" in n for n in notes)
    assert not any("trim" in n for n in check_extraction(get_preset("seed001"), {"features": FEATURES}, "s.zarr"))
    # the --trim-silence off store's config is that of a store written before the option existed
    data = tmp_path / "data" / "neutral"
    data.mkdir(parents=True)
    sf.write(data / "a.wav", _silence_speech_silence(), SR, subtype="FLOAT")
    proc = run_emo("extract", str(tmp_path / "data"), "-o", str(stores["off"]), "--features", "mel,mfcc,egemaps",
                   "--align-steps", str(STEPS), "-q")  # fmt: skip
    assert proc.returncode == 2 and "resume it with --trim-silence off" in proc.stderr, proc.stderr
