"""openSMILE feature sets on a signal in memory, through SMILEapi: openSMILE's C API, which the opensmile wheel
ships with its Python wrapper (``opensmile/core/lib.py``) and its feature-set configs.

This does what ``opensmile.Smile(feature_set, feature_level).process_signal`` does for one channel: the same
library, configs, options and int16 conversion, so the values are identical (a test compares them). It leaves
out the package's front end, which imports pandas, pyarrow and audformat: 0.1 GB resident in every worker and in
the extraction driver, for a table emo turns straight back into an array.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from emo.errors import EmoError
from emo.pipeline.weights import package_dir

#: ``opensmile.FeatureSet`` names -> their configs under ``opensmile/core/config`` (``FeatureSet[name].value``)
FEATURE_SETS = {
    "ComParE_2016": "compare/ComParE_2016",
    "GeMAPSv01b": "gemaps/v01b/GeMAPSv01b",
    "eGeMAPSv02": "egemaps/v02/eGeMAPSv02",
    "emobase": "emobase/emobase",
}
#: ``opensmile.FeatureLevel`` names -> the sink levels of those configs (``FeatureLevel[name].value``); the
#: deltas level, which opensmile refuses for the GeMAPS sets, is left out
FEATURE_LEVELS = {"LowLevelDescriptors": "lld", "Functionals": "func"}
#: ``opensmile.config``'s component names and shared configs for a signal in memory and one output level
SOURCE, SINK = "extsource", "extsink"
SOURCE_CONFIG = "shared/standard_external_wave_input.conf.inc"
SINK_CONFIG = "shared/standard_external_data_output_single.conf.inc"
BUFFER_CONFIG = "shared/BufferModeRb.conf.inc"
FUNCTIONALS_CONFIG = "shared/FrameModeFunctionals.conf.inc"
#: ``opensmile.Smile``'s defaults: log level 2, no log file, no debug or console output
LOG_LEVEL = 2


@functools.cache
def _package_dir() -> Path:
    root = package_dir("opensmile")  # without running the package's __init__
    if root is None:
        raise EmoError("openSMILE is not installed (pip install opensmile); the egemaps feature needs it")
    return root


@functools.cache
def _smileapi() -> ModuleType:
    """The wheel's ctypes wrapper of SMILEapi, loaded from its file: importing ``opensmile.core.lib`` would run
    the package's ``__init__`` (pandas). Where opensmile is loaded already, its own module."""
    if "opensmile.core.lib" in sys.modules:
        return sys.modules["opensmile.core.lib"]
    path = _package_dir() / "core" / "lib.py"
    spec = importlib.util.spec_from_file_location("_emo_opensmile_lib", path)
    if spec is None or spec.loader is None:
        raise EmoError(f"openSMILE's SMILEapi wrapper is missing: {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def version() -> str:
    """The installed opensmile package's version (``opensmile.__version__``)."""
    return importlib.metadata.version("opensmile")


class SmileFeatures:
    """One openSMILE feature set at one level (names as in ``opensmile.FeatureSet`` / ``FeatureLevel``)."""

    def __init__(self, feature_set: str, feature_level: str) -> None:
        if feature_set not in FEATURE_SETS:
            raise EmoError(f"openSMILE has no feature set {feature_set} (known: {', '.join(FEATURE_SETS)})")
        if feature_level not in FEATURE_LEVELS:
            raise EmoError(
                f"openSMILE has no feature level {feature_level} for {feature_set} (known: {', '.join(FEATURE_LEVELS)})"
            )
        self.feature_set, self.feature_level = feature_set, feature_level
        self.config_root = _package_dir() / "core" / "config"
        self.config_path = self.config_root / f"{FEATURE_SETS[feature_set]}.conf"
        if not self.config_path.is_file():
            raise EmoError(f"openSMILE's config for {feature_set} is missing: {self.config_path}")
        smile = self._smile({})
        try:
            n = smile.external_sink_get_num_elements(SINK)
            self.feature_names = [smile.external_sink_get_element_name(SINK, i) for i in range(n)]
        finally:
            smile.free()

    @property
    def feature_set_value(self) -> str:
        return FEATURE_SETS[self.feature_set]

    @property
    def feature_level_value(self) -> str:
        return FEATURE_LEVELS[self.feature_level]

    def _smile(self, options: dict[str, object]) -> Any:
        root = self.config_root
        options = {
            "sink": root / SINK_CONFIG,
            "sinkLevel": self.feature_level_value,
            "bufferModeRbConf": root / BUFFER_CONFIG,
            "frameModeFunctionalsConf": root / FUNCTIONALS_CONFIG,
            "source": root / SOURCE_CONFIG,
            **options,
        }
        smile = _smileapi().OpenSMILE()
        smile.initialize(config_file=str(self.config_path), options=options, loglevel=LOG_LEVEL, debug=False)
        return smile

    def __call__(self, signal: np.ndarray, sampling_rate: int) -> np.ndarray:
        """[frames, features] float32 of a mono float signal in [-1, 1], converted to 16-bit PCM as opensmile
        converts it (scaled in the signal's own precision, then cast); one row of NaN where the signal is too short
        for a single frame."""
        pcm = (np.asarray(signal).reshape(-1) * 32768).astype(np.int16)
        rows: list[np.ndarray] = []
        smile = self._smile({"sampleRate": sampling_rate, "nBits": 16})
        try:
            smile.external_sink_set_callback_ex(SINK, lambda data, meta: rows.append(data.copy()))
            if not smile.external_audio_source_write_data(SOURCE, pcm.tobytes()):
                seconds = pcm.size / sampling_rate
                raise EmoError(f"openSMILE took only part of {seconds:.1f} s of audio ({self.feature_set})")
            smile.external_audio_source_set_eoi(SOURCE)
            smile.run()
        finally:
            smile.free()
        if not rows:
            return np.full((1, len(self.feature_names)), np.nan, np.float32)
        return np.vstack(rows).astype(np.float32, copy=False)

