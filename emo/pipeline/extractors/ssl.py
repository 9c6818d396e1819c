"""The opt-in ``ssl`` token: hidden states of a pretrained self-supervised speech encoder (wav2vec 2.0, HuBERT,
WavLM, data2vec-audio via transformers) as ``audio/ssl/{values,offsets,aligned,mask,pooled}``.

One row per encoder frame (20 ms for these models: the product of the feature encoder's conv strides), either
one layer's hidden state (``--audio-layer N``, 0 = the input to the transformer) or the mean of every
transformer layer's (``mean``, the default: emotion is spread over the middle layers, and the mean is what
SUPERB-style probes start from). The model is read from disk only, like the text encoder: a directory or a name
in the local Hugging Face cache; its weights' sha256 is pinned in the extraction config.

Each clip is a forward pass of its own, in windows of ``WINDOW_S`` seconds: wav2vec 2.0 base normalises its
first conv layer over the whole input (group norm), so zero-padding clips into one batch would change every
clip's features; long clips are cut into windows so attention memory stays bounded.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import emo
from emo.errors import MissingModelError, UsageError
from emo.features_store.schema import FeatureSpec, SequenceSpec
from emo.features_store.sequences import derive, grid_description
from emo.pipeline.config import ExtractionConfig, Section, option, register_section
from emo.pipeline.extractors.base import Clip, Extractor, register, worker_resource
from emo.pipeline.extractors.mel import cleanup_params

log = logging.getLogger(__name__)

#: transformers model types whose base model takes raw 16 kHz samples (``input_values``)
SPEECH_MODEL_TYPES = ("wav2vec2", "wav2vec2-conformer", "hubert", "wavlm", "data2vec-audio", "unispeech-sat")
#: longest stretch of audio put through the encoder at once (seconds); longer clips are encoded window by window
WINDOW_S = 30.0
WHAT = "speech encoder"


def describe_speech_model(model: str, layer: str) -> dict[str, Any]:
    """The encoder's provenance read from its files (no torch import): type, layers, frame rate, weights."""
    from emo.pipeline.text_encoder import model_json, resolve_text_model, weights_identity

    model_dir, source = resolve_text_model(model, WHAT)
    config = model_json(model_dir / "config.json")
    model_type = str(config.get("model_type", ""))
    if model_type not in SPEECH_MODEL_TYPES:
        raise UsageError(
            f"{WHAT} {model}: model_type {model_type!r} is not one emo reads raw audio with "
            f"({', '.join(SPEECH_MODEL_TYPES)}); Whisper's encoder takes log-mel input and is not supported"
        )
    if not (model_dir / "preprocessor_config.json").is_file():
        raise MissingModelError(
            f"{WHAT} {model_dir} has no preprocessor_config.json: the feature extractor (sampling rate, input "
            "normalisation) is part of the model; save it with the model (feature_extractor.save_pretrained)"
        )
    preprocessor = model_json(model_dir / "preprocessor_config.json")
    strides = [int(s) for s in config.get("conv_stride", [5, 2, 2, 2, 2, 2, 2])]
    kernels = [int(k) for k in config.get("conv_kernel", [10, 3, 3, 3, 3, 2, 2])]
    hop, field = 1, 1
    for kernel, stride in zip(kernels, strides, strict=True):
        field += (kernel - 1) * hop
        hop *= stride
    n_layers = int(config.get("num_hidden_layers", 0))
    if layer != "mean" and int(layer) > n_layers:
        raise UsageError(f"--audio-layer {layer}: {model} has {n_layers} transformer layers (0..{n_layers})")
    return {
        "model": model,
        "model_dir": str(model_dir),
        "source": source,
        "model_type": model_type,
        "architecture": f"transformers AutoModel for model_type {model_type!r}: the base encoder, no task head",
        "hidden_size": int(config["hidden_size"]),
        "num_hidden_layers": n_layers,
        "layer": "mean of hidden states 1..L (every transformer layer)" if layer == "mean" else int(layer),
        "sampling_rate": int(preprocessor.get("sampling_rate", 16000)),
        "do_normalize": bool(preprocessor.get("do_normalize", True)),
        "hop_samples": hop,
        "receptive_field_samples": field,
        "weights": weights_identity(model_dir, WHAT),
    }


def cached_models() -> list[str]:
    """Speech encoders in the local Hugging Face cache that ``--features ssl`` can read (repo ids)."""
    from emo.pipeline.text_encoder import model_json

    try:
        from huggingface_hub import scan_cache_dir

        repos = scan_cache_dir().repos
    except Exception:  # noqa: BLE001 - no cache directory at all: nothing cached
        return []
    out = []
    for repo in sorted(repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        for revision in repo.revisions:
            config = model_json(Path(revision.snapshot_path) / "config.json")
            if config.get("model_type") in SPEECH_MODEL_TYPES:
                out.append(repo.repo_id)
                break
    return out


@register_section
@dataclass(frozen=True)
class SslOptions(Section):
    """The speech encoder of the opt-in ``ssl`` token and the hidden states it keeps; recorded in a config (and
    its hash) only when ``ssl`` is extracted, so the hashes of other stores stay what they were."""

    name = "ssl"
    recorded_with = ("ssl",)
    audio_model: str = option(
        "microsoft/wavlm-base-plus",
        "Speech encoder of --features ssl (wav2vec 2.0, HuBERT, WavLM, data2vec-audio): a directory or a Hugging "
        "Face model name (downloaded on first use).",
        metavar="NAME|DIR",
    )
    audio_layer: str = option(
        "mean",
        "Hidden states of --features ssl: the mean of every transformer layer, or layer N (0 = input).",
        metavar="mean|N",
    )
    audio_weights_sha256: str | None = option(None, cli=False)

    def __post_init__(self) -> None:
        layer = str(self.audio_layer)
        if layer != "mean" and not (layer.isdigit()):
            raise UsageError(f"--audio-layer must be 'mean' or a layer index (0, 1, ...), got {layer!r}")
        object.__setattr__(self, "audio_layer", layer if layer == "mean" else str(int(layer)))  # "01" is "1"


class SpeechEncoder:
    """A transformers speech encoder (AutoFeatureExtractor + AutoModel, offline) giving [T, D] frames per clip."""

    def __init__(self, model: str, device: str = "cpu", layer: str = "mean") -> None:
        self.description = describe_speech_model(model, layer)
        self.layer = layer
        self.device = device
        from transformers import AutoFeatureExtractor, AutoModel
        from transformers.utils import logging as hf_logging

        directory = self.description["model_dir"]
        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            self.feature_extractor = AutoFeatureExtractor.from_pretrained(directory, local_files_only=True)
            self.model = AutoModel.from_pretrained(directory, local_files_only=True)
        except OSError as exc:
            raise MissingModelError(f"cannot load {WHAT} from {directory}: {exc}") from exc
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        self.model.eval().to(device)

    @property
    def sampling_rate(self) -> int:
        return int(self.description["sampling_rate"])

    def encode(self, samples: np.ndarray) -> np.ndarray:
        """[T, D] float32 frames of mono ``samples`` at :attr:`sampling_rate` (T = 0 when shorter than one
        receptive field)."""
        import torch

        field = int(self.description["receptive_field_samples"])
        window = int(WINDOW_S * self.sampling_rate)
        parts = []
        with torch.inference_mode():
            for start in range(0, max(samples.size, 1), window):
                piece = samples[start : start + window]
                if piece.size < field:
                    continue
                inputs = self.feature_extractor(piece, sampling_rate=self.sampling_rate, return_tensors="pt")
                hidden = self.model(inputs["input_values"].to(self.device), output_hidden_states=True).hidden_states
                h = torch.stack(hidden[1:]).mean(0) if self.layer == "mean" else hidden[int(self.layer)]
                parts.append(h[0].float().cpu().numpy())
        if not parts:
            return np.zeros((0, int(self.description["hidden_size"])), np.float32)
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)

    def frame_times(self, n_frames: int) -> np.ndarray:
        """Centre of each frame's receptive field in seconds (windows restart the count every ``WINDOW_S``)."""
        hop = int(self.description["hop_samples"])
        field = int(self.description["receptive_field_samples"])
        window = int(WINDOW_S * self.sampling_rate)
        per_window = max(1, (window - field) // hop + 1)
        k = np.arange(n_frames)
        starts = (k // per_window) * window + (k % per_window) * hop
        return (starts + (field - 1) / 2) / self.sampling_rate


@register
class SslExtractor(Extractor):
    """A pretrained speech encoder's frames: ``audio/ssl/{values,offsets,aligned,mask,pooled}``."""

    token = "ssl"
    modality = "audio"
    path = "audio/ssl"
    default = False  # needs a model download: extracted only when --features names it
    uses_model = True

    @classmethod
    def describe_models(cls, config: ExtractionConfig) -> dict[str, str]:
        from emo.pipeline.text_encoder import resolve_text_model

        c = config.section(SslOptions)
        directory, source = resolve_text_model(c.audio_model, "speech encoder")
        layers = "mean of every layer" if c.audio_layer == "mean" else "layer " + c.audio_layer
        return {
            "ssl": f"{c.audio_model} ({source}: {directory}; weights sha256 {c.audio_weights_sha256}; hidden "
            f"states {layers})"
        }

    @classmethod
    def pin(cls, config: ExtractionConfig) -> dict[str, Any]:
        from emo.pipeline.text_encoder import weights_sha256

        return {"audio_weights_sha256": weights_sha256(config.section(SslOptions).audio_model, WHAT)}

    @functools.cached_property
    def description(self) -> dict[str, Any]:
        options = self.config.section(SslOptions)
        return describe_speech_model(options.audio_model, options.audio_layer)

    def preflight(self) -> None:
        rate = self.description["sampling_rate"]
        if rate != self.config.sample_rate:
            raise UsageError(
                f"the {WHAT} {self.config.section(SslOptions).audio_model} takes {rate} Hz audio and this "
                f"extraction decodes at {self.config.sample_rate} Hz: use --sample-rate {rate}"
            )

    def specs(self) -> list[FeatureSpec]:
        d = self.description
        attrs = {
            "extractor": "transformers AutoFeatureExtractor + AutoModel (hidden states)",
            "extractor_version": f"emo {emo.__version__}",
            "model": d,
            "sample_rate_hz": d["sampling_rate"],
            "frame_rate_hz": d["sampling_rate"] / d["hop_samples"],
            "frame_offset_s": (d["receptive_field_samples"] - 1) / 2 / d["sampling_rate"],
            "window_s": WINDOW_S,
            "params": cleanup_params(self.config),
            "time_grid": grid_description(self.config.align_steps),
        }
        return [SequenceSpec(self.path, {"values": (int(d["hidden_size"]),)}, steps=self.config.align_steps,
                             attrs=attrs)]  # fmt: skip

    def encoder(self) -> SpeechEncoder:
        c = self.config.section(SslOptions)
        return worker_resource(
            ("ssl", c.audio_model, c.audio_layer, c.audio_weights_sha256, self.device), self._load
        )

    def _load(self) -> SpeechEncoder:
        """The encoder, once per worker, refused when the weights it loaded are not the ones the config pins."""
        from emo.pipeline.text_encoder import weights_sha256

        c = self.config.section(SslOptions)
        encoder = SpeechEncoder(c.audio_model, device=self.device, layer=c.audio_layer)
        loaded = weights_sha256(encoder.description["model_dir"], WHAT)
        if c.audio_weights_sha256 is not None and loaded != c.audio_weights_sha256:
            raise UsageError(
                f"the {WHAT} {c.audio_model} at {encoder.description['model_dir']} has other weights (sha256 "
                f"{loaded}) than the extraction config records ({c.audio_weights_sha256}): every worker needs the "
                "same model"
            )
        return encoder

    def setup(self) -> None:
        encoder = self.encoder()
        encoder.encode(np.zeros(encoder.sampling_rate, np.float32))

    def extract(self, clip: Clip) -> dict[str, np.ndarray]:
        encoder = self.encoder()
        frames = encoder.encode(clip.audio)
        return derive(self.path, frames, self.config.align_steps, **clip.audio_grid(encoder.frame_times(len(frames))))
