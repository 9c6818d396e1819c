"""The ``text`` token: a BERT-family encoder over the transcript, ``text/cls``, ``text/mean`` and
``text/tokens/{values,offsets,aligned,mask,pooled}``.

The transcripts of a task's clips are encoded together (sorted by length, so batches pad little). A clip
without a transcript gets ``status_text = missing`` and empty rows; its media do not matter here, so a clip
whose video cannot be decoded still has its text features.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

import emo
from emo.errors import UsageError
from emo.features_store.schema import STATUS_MISSING, FeatureSpec, SequenceSpec, VectorSpec
from emo.features_store.sequences import derive
from emo.pipeline.config import ExtractionConfig, Section, option, register_section
from emo.pipeline.extractors.base import Clip, Extractor, Unavailable, register, worker_resource

if TYPE_CHECKING:
    from emo.pipeline.text_encoder import TextEmbedding, TextEncoder

# torch and transformers are imported where they are used, so that audio-only runs never load them.

log = logging.getLogger(__name__)

#: Transcripts per forward pass.
TEXT_BATCH = 32


@register_section
@dataclass(frozen=True)
class TextOptions(Section):
    """The text encoder and the tokens it reads per transcript; the weights' sha256 is pinned before a run."""

    name = "text"
    text_model: str = option(
        "all-MiniLM-L6-v2",
        "Text encoder: a model directory or a Hugging Face model name (e.g. google-bert/bert-base-uncased; "
        "downloaded into its cache on first use); all-MiniLM-L6-v2 is the BERT-architecture model bundled offline.",
    )
    text_max_length: int = option(128, "Tokens per transcript.")  # [CLS] and [SEP] included
    text_weights_sha256: str | None = option(None, cli=False)

    def __post_init__(self) -> None:
        if self.text_max_length < 3:
            raise UsageError(f"--text-max-length must be at least 3 tokens, got {self.text_max_length}")


@register
class TextExtractor(Extractor):
    """[CLS] vector, attention-masked mean and token sequence of the clip's transcript."""

    token = "text"
    modality = "text"
    uses_model = True
    path = "text"

    @classmethod
    def describe_models(cls, config: ExtractionConfig) -> dict[str, str]:
        from emo.pipeline.text_encoder import resolve_text_model

        c = config.section(TextOptions)
        directory, source = resolve_text_model(c.text_model)
        return {
            "text": f"{c.text_model} ({source}: {directory}; weights sha256 {c.text_weights_sha256}; "
            f"max {c.text_max_length} tokens)"
        }

    @classmethod
    def pin(cls, config: ExtractionConfig) -> dict[str, Any]:
        from emo.pipeline.text_encoder import weights_sha256

        return {"text_weights_sha256": weights_sha256(config.section(TextOptions).text_model)}

    @functools.cached_property
    def description(self) -> dict[str, Any]:
        from emo.pipeline.text_encoder import describe_text_model

        options = self.config.section(TextOptions)
        return describe_text_model(options.text_model, options.text_max_length)

    def specs(self) -> list[FeatureSpec]:
        attrs = {
            "extractor": "transformers AutoTokenizer + AutoModel (last hidden state)",
            "extractor_version": f"emo {emo.__version__}",
            "model": self.description,
        }
        dim = int(self.description["hidden_size"])
        return [
            VectorSpec(f"{self.path}/cls", (dim,), attrs={**attrs, "pooling": "[CLS] token"}),
            VectorSpec(f"{self.path}/mean", (dim,), attrs={**attrs, "pooling": "attention-masked mean of tokens"}),
            SequenceSpec(
                f"{self.path}/tokens",
                {"values": (dim,)},
                steps=self.config.align_steps,
                attrs={
                    **attrs,
                    "rows": "one per real token, [CLS] and [SEP] included, padding excluded",
                    "aligned": "positional, not on the clip's time grid (a transcript has no timing): up to "
                    "align_steps tokens one per step, longer token sequences averaged over equal runs of tokens",
                },
            ),
        ]

    def encoder(self) -> TextEncoder:
        from emo.pipeline.text_encoder import TextEncoder, weights_sha256

        c = self.config.section(TextOptions)
        encoder = worker_resource(
            ("text", c.text_model, c.text_max_length, c.text_weights_sha256, self.device),
            lambda: TextEncoder(c.text_model, device=self.device, max_length=c.text_max_length, batch_size=TEXT_BATCH),
        )
        if c.text_weights_sha256 is not None and weights_sha256(encoder.model_dir) != c.text_weights_sha256:
            raise UsageError(
                f"the text model {c.text_model} at {encoder.model_dir} has other weights than the extraction "
                f"config records (sha256 {c.text_weights_sha256}): every worker needs the same model"
            )
        return encoder

    def setup(self) -> None:
        self.encoder().encode(["warm up"])

    def _arrays(self, emb: TextEmbedding) -> dict[str, np.ndarray]:
        return {
            f"{self.path}/cls": emb.cls,
            f"{self.path}/mean": emb.mean,
            **derive(f"{self.path}/tokens", emb.tokens, self.config.align_steps),
        }

    def extract(self, clip: Clip) -> dict[str, np.ndarray]:
        result = self.extract_batch([clip])[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def extract_batch(self, clips: Sequence[Clip]) -> list[dict[str, np.ndarray] | BaseException]:
        out: list[dict[str, np.ndarray] | BaseException] = [Unavailable(STATUS_MISSING) for _ in clips]
        todo = [i for i, clip in enumerate(clips) if clip.record.text.strip()]
        if not todo:
            return out
        encoder = self.encoder()
        try:
            embeddings = encoder.encode([clips[i].record.text for i in todo])
        except Exception:  # noqa: BLE001 - find the clip(s) that fail, keep the others
            log.debug("text batch failed; encoding its clips one by one", exc_info=True)
            for i in todo:
                try:
                    out[i] = self._arrays(encoder.encode([clips[i].record.text])[0])
                except Exception as exc:  # noqa: BLE001 - this clip's result
                    out[i] = exc
            return out
        for i, emb in zip(todo, embeddings, strict=True):
            out[i] = self._arrays(emb)
        return out
