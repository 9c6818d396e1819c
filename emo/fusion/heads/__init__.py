"""Fusion heads: one ``torch.nn.Module`` per ``--method``, built from modality dimensions and class count.

Every head is constructed as ``Head(dims, n_classes, *, steps=None, **hparams)`` and called as
``head(xs, masks) -> logits [N, n_classes]``; see :class:`~emo.fusion.heads._common.FusionHead` for the
masking conventions and each class docstring for the paper, equations and defaults. Class attributes tell a
trainer what a head needs: ``input_kind`` ("vector" = pooled [N, D] inputs, "sequence" = aligned
[N, T, D] inputs with [N, T] masks), ``has_modality_weights`` (``forward_with_weights`` exists) and
``accepts_dialogue`` (``forward`` takes ``dialogue=`` ids).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from emo.errors import UsageError

from ._common import FusionHead
from .attention import AttentionFusionHead, DialogueTextEncoder
from .bilstm import BiLSTMHead, BiLSTMSelfAttentionHead
from .cnn import CNN1DHead
from .cross_tucker import CrossModalTuckerHead, TuckerFusion
from .early import EarlyFusionHead
from .hierarchical import HierarchicalAttentionHead
from .label_fusion import LabelFusionHead
from .late import LateFusionHead
from .speech_cnn import SpeechCNNEncoder, SpeechCNNHead

HEADS: dict[str, type[FusionHead]] = {
    "early": EarlyFusionHead,
    "late": LateFusionHead,
    "attention": AttentionFusionHead,
    "bilstm-sa": BiLSTMSelfAttentionHead,
    "bilstm": BiLSTMHead,
    "cnn": CNN1DHead,
    "label-fusion": LabelFusionHead,
    "cross-tucker": CrossModalTuckerHead,
    "hierarchical": HierarchicalAttentionHead,
    "speech-cnn": SpeechCNNHead,
}


def head_hparams(method: str) -> dict[str, Any]:
    """The keyword hyper-parameters of ``method`` with their defaults (``steps`` excluded)."""
    cls = _lookup(method)
    return {
        name: p.default
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name != "steps"
    }


def paper_modalities(method: str) -> tuple[str, ...]:
    """The modalities the paper of ``method`` fuses: what it trains on when ``--modalities`` is not given."""
    return _lookup(method).paper_modalities


def build_head(method: str, dims: Mapping[str, int], n_classes: int, **hparams: Any) -> FusionHead:
    """Instantiate the head registered as ``method``; ``hparams`` may include ``steps``.

    Raises :class:`~emo.errors.UsageError` for an unknown method or hyper-parameter, naming what is allowed.
    """
    cls = _lookup(method)
    unknown = sorted(set(hparams) - set(head_hparams(method)) - {"steps"})
    if unknown:
        allowed = ", ".join(head_hparams(method)) or "none"
        raise UsageError(f"{method}: unknown hyper-parameter(s) {', '.join(unknown)}; allowed: {allowed}")
    return cls(dims, n_classes, **hparams)


def _lookup(method: str) -> type[FusionHead]:
    try:
        return HEADS[method]
    except KeyError:
        raise UsageError(f"unknown fusion method {method!r}; choose one of {', '.join(HEADS)}") from None


__all__ = [
    "HEADS",
    "AttentionFusionHead",
    "BiLSTMHead",
    "BiLSTMSelfAttentionHead",
    "CNN1DHead",
    "CrossModalTuckerHead",
    "DialogueTextEncoder",
    "EarlyFusionHead",
    "FusionHead",
    "HierarchicalAttentionHead",
    "LabelFusionHead",
    "LateFusionHead",
    "SpeechCNNEncoder",
    "SpeechCNNHead",
    "TuckerFusion",
    "build_head",
    "head_hparams",
    "paper_modalities",
]
