"""openSMILE eGeMAPSv02: 88 functionals per clip and, if asked, the 25 low-level descriptors per frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emo.features_store.schema import FeatureSpec, SequenceSpec, VectorSpec
from emo.features_store.sequences import derive, grid_description
from emo.pipeline.config import Section, option, register_section
from emo.pipeline.extractors.base import Clip, Extractor, register
from emo.pipeline.extractors.mel import cleanup_params
from emo.pipeline.opensmile_api import SmileFeatures, version

#: member of opensmile.FeatureSet (run through SMILEapi: emo.pipeline.opensmile_api)
FEATURE_SET = "eGeMAPSv02"
N_FUNCTIONALS = 88
N_LLD = 25
LLD_FRAME_RATE_HZ = 100.0
#: Centre of the first LLD frame: openSMILE's eGeMAPS frames start every 10 ms and are 20 ms long (60 ms for
#: F0 and its derivatives); the centre of the 20 ms frames is taken.
LLD_FRAME_OFFSET_S = 0.01
#: members of opensmile.FeatureLevel
FUNCTIONALS, LLD = "Functionals", "LowLevelDescriptors"


@register_section
@dataclass(frozen=True)
class EgemapsOptions(Section):
    """Whether the low-level descriptors are stored too, as a sequence (``audio/egemaps_lld``)."""

    name = "egemaps"
    egemaps_lld: bool = option(False, "Also store eGeMAPS low-level descriptors per frame.", is_flag=True)


@register
class EgemapsExtractor(Extractor):
    """``audio/egemaps`` [N, 88] (and ``audio/egemaps_lld/*`` with ``egemaps_lld``)."""

    token = "egemaps"
    modality = "audio"
    path = "audio/egemaps"
    lld_path = "audio/egemaps_lld"

    def _smile(self, level: str) -> SmileFeatures:
        """eGeMAPSv02 at ``level`` (:data:`FUNCTIONALS` or :data:`LLD`)."""
        return SmileFeatures(FEATURE_SET, level)

    def _attrs(self, smile: SmileFeatures) -> dict[str, object]:
        return {
            "extractor": "openSMILE SMILEapi (opensmile.Smile's library, configs and options)",
            "extractor_version": f"opensmile {version()}",
            "params": {
                "feature_set": smile.feature_set_value,
                "feature_level": smile.feature_level_value,
                "sample_rate_hz": self.config.sample_rate,
                **cleanup_params(self.config),
            },
            "feature_names": list(smile.feature_names),
            "license": "openSMILE binary: audEERING research license",
        }

    def specs(self) -> list[FeatureSpec]:
        specs: list[FeatureSpec] = [
            VectorSpec(self.path, (N_FUNCTIONALS,), attrs=self._attrs(self._smile(FUNCTIONALS)))
        ]
        if self.config.section(EgemapsOptions).egemaps_lld:
            attrs = self._attrs(self._smile(LLD))
            attrs["frame_rate_hz"] = LLD_FRAME_RATE_HZ
            attrs["frame_offset_s"] = LLD_FRAME_OFFSET_S
            attrs["time_grid"] = grid_description(self.config.align_steps)
            specs.append(SequenceSpec(self.lld_path, {"values": (N_LLD,)}, steps=self.config.align_steps, attrs=attrs))
        return specs

    def setup(self) -> None:
        self.functionals = self._smile(FUNCTIONALS)
        self.lld = self._smile(LLD) if self.config.section(EgemapsOptions).egemaps_lld else None
        noise = 0.1 * np.random.default_rng(0).standard_normal(self.config.sample_rate).astype(np.float32)
        self.functionals(noise, self.config.sample_rate)

    def extract(self, clip: Clip) -> dict[str, np.ndarray]:
        values = self.functionals(clip.audio, clip.sample_rate)
        if values.shape != (1, N_FUNCTIONALS) or np.isnan(values).all():
            raise RuntimeError(f"openSMILE gave no functionals for {clip.audio.size / clip.sample_rate:.3f} s of audio")
        out = {self.path: values[0]}
        if self.lld is not None:
            frames = self.lld(clip.audio, clip.sample_rate)
            times = np.arange(len(frames)) / LLD_FRAME_RATE_HZ + LLD_FRAME_OFFSET_S
            out |= derive(self.lld_path, frames, self.config.align_steps, **clip.audio_grid(times))
        return out
