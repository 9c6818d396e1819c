"""Each extractor owns its options as a config section; the recorded (flat) form and its hash are what they were
before sections existed, so stores teammates already have still resume, merge and predict."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from emo.cli import cli
from emo.features_store import StoreWriter
from emo.features_store.schema import VectorSpec
from emo.pipeline.config import ExtractionConfig, section_classes
from emo.pipeline.extractors.faces import VisualOptions
from emo.pipeline.extractors.mfcc import MfccOptions
from emo.pipeline.extractors.ssl import SslOptions
from emo.pipeline.extractors.text import TextOptions

OLD = json.loads((Path(__file__).parent / "fixtures" / "e4234c1_extraction.json").read_text())["extraction"]


def test_a_config_recorded_by_e4234c1_keeps_its_hash() -> None:
    config = ExtractionConfig.from_dict(OLD["config"])
    assert config.hash() == OLD["config_hash"]
    assert config.to_dict() == OLD["config"]
    assert config.section(VisualOptions).fps == 2.0 and config.section(VisualOptions).visual_weights == "random"
    assert config.section(TextOptions).text_weights_sha256 == OLD["config"]["text_weights_sha256"]
    assert config.section(MfccOptions).n_mfcc == 40


def test_a_store_written_by_e4234c1_is_resumed(tmp_path: Path) -> None:
    """The writer compares the recorded hash with the one of the options given now: the same options, expressed
    through the sections, open the old store for resuming instead of being refused as another configuration."""
    store, spec = tmp_path / "old.zarr", [VectorSpec("audio/x", (2,))]
    kw = {"specs": spec, "labels": ["a"], "dataset": {"adapter": "test"}, "software": {}, "chunk_rows": 4}
    StoreWriter.open(store, extraction=OLD, **kw).close()
    now = ExtractionConfig(visual_weights="random", fps=2.0, text_weights_sha256=OLD["config"]["text_weights_sha256"],
                           trim_silence_db=None, face_track=1, visual_precision="fp32")
    StoreWriter.open(store, extraction={"config": now.to_dict(), "config_hash": now.hash()}, **kw).close()


def test_sections_are_flat_and_disjoint() -> None:
    shared = {f.name for f in dataclasses.fields(ExtractionConfig)} - {"sections"}
    seen: set[str] = set()
    for cls in section_classes():
        names = {f.name for f in dataclasses.fields(cls)}
        assert not names & (seen | shared), cls.name
        seen |= names
    assert {"n_mfcc", "n_mels", "fps", "visual_weights", "text_model", "audio_model", "egemaps_lld"} <= seen


def test_opt_in_section_is_recorded_only_when_extracted() -> None:
    assert "audio_model" not in ExtractionConfig(features=("mfcc",)).to_dict()
    with_ssl = ExtractionConfig(features=("mfcc", "ssl"), audio_layer="07")
    assert with_ssl.to_dict()["audio_layer"] == "7" and with_ssl.section(SslOptions).audio_layer == "7"


def test_flat_keywords_reach_their_section_and_unknown_ones_are_refused() -> None:
    config = ExtractionConfig(features=("mfcc",), n_mfcc=20)
    assert config.section(MfccOptions).n_mfcc == 20
    assert dataclasses.replace(config, mfcc_deltas=2).section(MfccOptions) == MfccOptions(n_mfcc=20, mfcc_deltas=2)
    with pytest.raises(TypeError, match="n_mfccs"):
        ExtractionConfig(n_mfccs=20)


def test_every_section_option_is_an_extract_option() -> None:
    result = CliRunner().invoke(cli, ["extract", "--help"], terminal_width=10_000)
    assert result.exit_code == 0
    for cls in section_classes():
        for f in dataclasses.fields(cls):
            flag = "--" + f.name.replace("_", "-")
            assert (flag in result.output) == f.metadata.get("cli", True), flag


def test_auto_face_track_resumes_what_the_store_was_extracted_with() -> None:
    from emo.pipeline.config import resume_choices
    from emo.pipeline.extractors.faces import DEFAULT_FACE_TRACK

    auto = {"visual_model": "resnet18", "face_track": "auto"}
    # a store extracted when auto meant 8 frames: resumed with 8, and said
    assert resume_choices(auto, {"visual_model": "resnet18", "face_track": 8}) == (
        {**auto, "face_track": 8},
        ["--face-track auto is 8, as the store was extracted"],
    )
    # one from before tracking (nothing recorded: every frame), whichever backbone it was extracted with
    assert resume_choices(auto, {"visual_model": "resnet50"})[0]["face_track"] == 1
    # today's K, silently; an explicit K stays what was asked
    assert resume_choices(auto, {"face_track": DEFAULT_FACE_TRACK}) == ({**auto, "face_track": DEFAULT_FACE_TRACK}, [])
    assert resume_choices({**auto, "face_track": 3}, {"face_track": 8})[0]["face_track"] == 3


def test_auto_numerics_resume_what_the_store_was_extracted_with() -> None:
    from emo.pipeline.config import resume_choices

    auto = {"visual_model": "efficientnet-lite0", "visual_precision": "auto", "visual_runtime": "auto"}
    # a store from before --visual-runtime (nothing recorded: torch); said, since auto now means ONNX Runtime
    values, notes = resume_choices(auto, {"visual_model": "efficientnet-lite0"})
    assert (values["visual_precision"], values["visual_runtime"]) == ("fp32", "torch")
    assert notes == ["--visual-runtime auto is torch, as the store was extracted"]
    # what was asked stays; nothing to resume, or another backbone (refused later as another configuration)
    explicit = {**auto, "visual_runtime": "onnxruntime"}
    assert resume_choices(explicit, {"visual_model": "efficientnet-lite0"})[0]["visual_runtime"] == "onnxruntime"
    assert resume_choices(auto, None) == (auto, [])
    assert resume_choices(auto, {"visual_model": "resnet18", "visual_precision": "bf16"}) == (auto, [])
    # a ResNet store recorded with today's choice: resumed silently
    resnet = {**auto, "visual_model": "resnet18"}
    assert resume_choices(resnet, {"visual_model": "resnet18", "visual_precision": "bf16"})[1] == []
