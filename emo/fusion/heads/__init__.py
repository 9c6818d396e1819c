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
from emo.features_store.schema import MODALITIES

# importing a head module registers its heads: adding a head is its module plus its name here
from . import attention, bilstm, cnn, cross_tucker, early, hierarchical, label_fusion, late, speech_cnn  # noqa: F401
from ._common import HEADS, FusionHead


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


def input_kinds(method: str, hparams: Mapping[str, Any]) -> dict[str, str]:
    """What each modality feeds the head: pooled vectors, aligned sequences, or the clip's own frames
    (``frames:LENGTH:MODE``, e.g. the mel frames of seed 004's speech CNN and seed 003's 2-D CNN)."""
    kinds = {m: _lookup(method).input_kind for m in MODALITIES}
    resolved = head_hparams(method) | dict(hparams)
    for modality, spec in _lookup(method).frame_inputs(resolved).items():
        kinds[modality] = spec.kind
    return kinds


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
    return HEADS.lookup(method)


__all__ = ["HEADS", "FusionHead", "build_head", "head_hparams", "input_kinds", "paper_modalities"]
