"""Audio extractors against the libraries' own calls, and the clean-up steps of seed 001."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import librosa
import numpy as np
import opensmile
import pytest

from emo.errors import UsageError
from emo.pipeline.audio import normalize, spectral_subtraction
from emo.pipeline.config import ExtractionConfig
from emo.pipeline.datasets import ClipRecord
from emo.pipeline.extractors import Clip, build_extractors
from emo.pipeline.opensmile_api import FEATURE_LEVELS, FEATURE_SETS, SmileFeatures
from emo.pipeline.synthetic import speech_like

SR = 16000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return speech_like("angry", 1.7, seed=11)


def run(config: ExtractionConfig, samples: np.ndarray) -> dict[str, np.ndarray]:
    clip = Clip(record=ClipRecord("c", path=None), audio=samples, sample_rate=SR)  # type: ignore[arg-type]
    out: dict[str, np.ndarray] = {}
    for ex in build_extractors(config):
        ex.setup()
        out |= ex.extract(clip)
    return out


def test_mel_and_mfcc_equal_librosa(speech: np.ndarray) -> None:
    config = ExtractionConfig(features=("mfcc", "mel"))
    out = run(config, speech)
    mel = librosa.feature.melspectrogram(y=speech, sr=SR, n_fft=512, win_length=400, hop_length=160, n_mels=128)
    log_mel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
    np.testing.assert_allclose(out["audio/mel/values"], log_mel.T, rtol=1e-5, atol=1e-3)
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=40)
    expected = np.concatenate([mfcc, librosa.feature.delta(mfcc)]).T
    assert out["audio/mfcc/values"].shape == (log_mel.shape[1], 80)
    np.testing.assert_allclose(out["audio/mfcc/values"], expected, rtol=1e-4, atol=1e-2)
    # 10 ms hop: 1.7 s -> 171 frames (librosa centres frames)
    assert out["audio/mel/values"].shape[0] == 1 + speech.size // 160


def test_mfcc_delta_orders(speech: np.ndarray) -> None:
    assert run(ExtractionConfig(features=("mfcc",), mfcc_deltas=2), speech)["audio/mfcc/values"].shape[1] == 120
    assert run(ExtractionConfig(features=("mfcc",), mfcc_deltas=0), speech)["audio/mfcc/values"].shape[1] == 40
    # clips shorter than the delta window still get deltas (narrower window)
    short = run(ExtractionConfig(features=("mfcc",)), speech[:800])["audio/mfcc/values"]
    assert short.shape == (6, 80) and np.isfinite(short).all()


def test_egemaps_equals_opensmile(speech: np.ndarray) -> None:
    out = run(ExtractionConfig(features=("egemaps",), egemaps_lld=True), speech)
    smile = opensmile.Smile(opensmile.FeatureSet.eGeMAPSv02, opensmile.FeatureLevel.Functionals)
    np.testing.assert_allclose(out["audio/egemaps"], smile.process_signal(speech, SR).to_numpy()[0], rtol=1e-6)
    assert out["audio/egemaps"].shape == (88,)
    lld = out["audio/egemaps_lld/values"]
    assert lld.shape[1] == 25 and abs(lld.shape[0] - 170) <= 5
    assert out["audio/egemaps_lld/mask"].all()


def test_egemaps_rejects_too_short_audio() -> None:
    with pytest.raises(RuntimeError, match="no functionals"):
        run(ExtractionConfig(features=("egemaps",)), np.zeros(100, np.float32))


def test_spectral_subtraction_improves_snr() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(SR * 2) / SR
    clean = (0.5 * np.sin(2 * np.pi * 300 * t) * (t % 0.5 < 0.25)).astype(np.float32)  # bursts and pauses
    noisy = clean + 0.05 * rng.standard_normal(t.size).astype(np.float32)
    out = spectral_subtraction(noisy)

    def snr(x: np.ndarray) -> float:
        return 10 * np.log10(np.sum(clean**2) / np.sum((x - clean) ** 2))

    assert out.shape == noisy.shape
    assert snr(out) > snr(noisy) + 3


def test_normalisation_levels(speech: np.ndarray) -> None:
    peak = normalize(speech * 0.1, "peak")
    assert np.isclose(20 * np.log10(np.abs(peak).max()), -1.0, atol=1e-3)
    rms = normalize(speech * 0.1, "rms")
    assert np.isclose(20 * np.log10(np.sqrt(np.mean(rms.astype(np.float64) ** 2))), -20.0, atol=1e-3)
    silence = np.zeros(100, np.float32)
    assert np.array_equal(normalize(silence, "peak"), silence)


def test_preprocessing_changes_features_and_config_hash(speech: np.ndarray) -> None:
    plain = ExtractionConfig(features=("mel",))
    cleaned = ExtractionConfig(features=("mel",), denoise="spectral-subtraction", normalize="rms")
    assert plain.hash() != cleaned.hash()
    assert ExtractionConfig(features=("mel", "mfcc")).hash() == ExtractionConfig(features=("mfcc", "mel")).hash()
    with pytest.raises(UsageError, match="unknown --denoise"):
        ExtractionConfig(denoise="wiener")


def test_unknown_feature_token() -> None:
    with pytest.raises(UsageError, match="unknown feature token.*'mfc'.*available: .*mfcc"):
        build_extractors(ExtractionConfig(features=("mfc",)))


def test_a_worker_keeps_its_set_up_extractors_out_of_garbage_collection() -> None:
    # a Dask worker process freezes what set-up created: no later collection walks the models' objects, and
    # the process exits in a fraction of the time (the embedded cluster's close waits for it)
    script = """
import gc
from emo.pipeline.config import ExtractionConfig
from emo.pipeline.devices import DevicePlan
from emo.pipeline.runner import ExtractorSetup, worker_extractors
config = ExtractionConfig(features=("mfcc",))
worker_extractors(config)
before = gc.get_freeze_count()  # the library used in-process (a notebook, emo predict) freezes nothing
ExtractorSetup(config, DevicePlan()).setup(worker=None)
print(before, gc.get_freeze_count())
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    before, after = map(int, out.stdout.split())
    assert before == 0 and after > 10_000


def test_a_worker_imports_its_tasks_without_the_store_writer_libraries() -> None:
    # unpickling the runner's plugin and tasks imports emo.pipeline.runner; Zarr, pandas and openSMILE (what
    # the driver's writer and the eGeMAPS set-up need) stay out until something uses them, and the packages'
    # public names still resolve, emo.pipeline.extract to the function even once its module is loaded
    script = """
import json, sys
import emo.pipeline.runner
heavy = ("zarr", "pandas", "opensmile", "torch", "librosa")
loaded = sorted(m for m in heavy if m in sys.modules)
import emo.features_store, emo.pipeline
import emo.pipeline.extract  # the module of the same name as the function
names = {p.__name__: {n: type(getattr(p, n)).__name__ for n in p.__all__} for p in (emo.features_store, emo.pipeline)}
from emo.pipeline import extract
print(json.dumps({"loaded": loaded, "names": names, "extract": [extract.__module__, callable(extract)]}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["loaded"] == []
    assert seen["names"]["emo.features_store"] == {
        "CLIP_COLUMNS": "tuple", "STORE_VERSION": "int", "ClipResult": "type", "FeatureStore": "type",
        "SequenceSpec": "type", "StoreLocation": "type", "StoreWriter": "type", "VectorSpec": "type",
        "parse_location": "function",
    }
    assert seen["names"]["emo.pipeline"]["extract"] == "function" and len(seen["names"]["emo.pipeline"]) == 8
    assert seen["extract"] == ["emo.pipeline.extract", True]


def test_the_driver_describes_every_array_without_the_feature_libraries() -> None:
    # openSMILE's names for eGeMAPS come from SMILEapi, not from the opensmile package, whose front end brings
    # pandas and pyarrow (0.11 GB held by the extraction driver for the whole run); nothing loads a feature library
    script = """
import json, sys
from emo.errors import EmoError
from emo.pipeline.config import ExtractionConfig
from emo.pipeline.extractors import build_extractors
from emo.pipeline.opensmile_api import SmileFeatures
config = ExtractionConfig(egemaps_lld=True, visual_weights="random")
specs = {s.path: s.attrs for ex in build_extractors(config) for s in ex.array_specs}
heavy = ("opensmile", "pandas", "pyarrow", "audformat", "av", "torch", "librosa", "transformers")
try:
    SmileFeatures("eGeMAPSv99", "Functionals")
except EmoError as e:
    error = str(e)
print(json.dumps({"loaded": sorted(m for m in heavy if m in sys.modules), "paths": sorted(specs),
                  "egemaps": specs["audio/egemaps"], "lld": specs["audio/egemaps_lld"], "error": error}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["loaded"] == []
    assert {"audio/mel", "audio/mfcc", "audio/egemaps", "video/face", "text/cls"} <= set(seen["paths"])
    levels = opensmile.FeatureLevel
    for attrs, level in ((seen["egemaps"], levels.Functionals), (seen["lld"], levels.LowLevelDescriptors)):
        smile = opensmile.Smile(opensmile.FeatureSet.eGeMAPSv02, level)
        assert attrs["feature_names"] == list(smile.feature_names)
        assert attrs["extractor_version"] == f"opensmile {opensmile.__version__}"
        params = attrs["params"]
        assert (params["feature_set"], params["feature_level"]) == (smile.feature_set.value, level.value)
    assert len(seen["egemaps"]["feature_names"]) == 88 and len(seen["lld"]["feature_names"]) == 25
    assert "openSMILE has no feature set eGeMAPSv99" in seen["error"], seen["error"]


def test_a_worker_computes_egemaps_without_pandas() -> None:
    # a worker's eGeMAPS (functionals and descriptors) loads SMILEapi alone, from the wrapper's file: the opensmile
    # package's front end would keep pandas, pyarrow and audformat resident in every worker (0.1 GB each); the
    # values are still opensmile.Smile's
    script = """
import json, sys
import numpy as np
from emo.pipeline.config import ExtractionConfig
from emo.pipeline.datasets import ClipRecord
from emo.pipeline.extractors import Clip
from emo.pipeline.runner import worker_extractors
from emo.pipeline.synthetic import speech_like
(extractor,) = worker_extractors(ExtractionConfig(features=("egemaps",), egemaps_lld=True))
clip = Clip(record=ClipRecord("c", path=None), audio=speech_like("sad", 1.5, seed=3), sample_rate=16000)
out = extractor.extract(clip)
heavy = ("opensmile", "pandas", "pyarrow", "audformat", "audinterface")
shapes = {k: v.shape for k, v in out.items()}
print(json.dumps({"loaded": sorted(m for m in heavy if m in sys.modules), "shapes": shapes,
                  "functionals": out["audio/egemaps"].tolist()}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["loaded"] == []
    assert seen["shapes"]["audio/egemaps"] == [88] and seen["shapes"]["audio/egemaps_lld/aligned"][1] == 25
    smile = opensmile.Smile(opensmile.FeatureSet.eGeMAPSv02, opensmile.FeatureLevel.Functionals)
    expected = smile.process_signal(speech_like("sad", 1.5, seed=3), SR).to_numpy(np.float32)[0]
    np.testing.assert_array_equal(np.asarray(seen["functionals"], np.float32), expected)


@pytest.mark.parametrize("level", ["Functionals", "LowLevelDescriptors"])
def test_smileapi_gives_opensmiles_own_values(level: str, speech: np.ndarray) -> None:
    # the same library, config, options and 16-bit conversion as opensmile.Smile: identical values, on speech (in
    # float32 and float64), on a signal past full scale (its int16 conversion wraps), and on one too short for a
    # frame (a row of NaN)
    ours = SmileFeatures("eGeMAPSv02", level)
    theirs = opensmile.Smile(opensmile.FeatureSet.eGeMAPSv02, opensmile.FeatureLevel[level])
    loud = 1.5 * np.random.default_rng(0).standard_normal(2 * SR).astype(np.float32)
    for signal in (speech, speech.astype(np.float64), loud, speech[:100]):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Segment too short")
            expected = theirs.process_signal(signal, SR).to_numpy(np.float32)
        np.testing.assert_array_equal(ours(signal, SR), expected)
    assert ours.feature_names == list(theirs.feature_names)
    for name, value in FEATURE_SETS.items():
        assert opensmile.FeatureSet[name].value == value
    for name, value in FEATURE_LEVELS.items():
        assert opensmile.FeatureLevel[name].value == value
