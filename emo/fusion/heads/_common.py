"""Building blocks shared by the fusion heads: the head base class, masking helpers and masked attention.

Masking conventions (every head follows them):

* vector inputs ``xs[m]`` are ``[N, D_m]`` with ``masks[m]`` ``[N]`` (True = modality present);
* sequence inputs are ``[N, T, D_m]`` with ``masks[m]`` ``[N, T]`` (True = valid step; an absent modality has
  an all-False row);
* masked values are replaced (``torch.where``, never multiplied, so NaN/inf in a masked slot cannot
  leak) before any computation, attention scores of masked keys are ``-inf`` before the softmax, and a
  row whose keys are all masked gets all-zero weights instead of NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812 - torch's own convention

from emo.errors import UsageError
from emo.registry import Registry

FRAME_MODES = ("crop", "resample")


@dataclass(frozen=True)
class FrameInput:
    """A head's request for a modality's own frames (the store's ragged ``values``) instead of its aligned steps.

    ``mode="crop"``: the clip's first ``length`` frames, shorter clips padded and masked (a CNN whose kernels
    are sized for real frames, seed 004); ``mode="resample"``: the clip's frames linearly interpolated to
    ``length`` frames spanning the whole clip (a fixed-size spectrogram image whose columns stay on the clip's
    time grid, seed 003's 128 x 256 input).
    """

    length: int
    mode: str = "crop"

    def __post_init__(self) -> None:
        if self.mode not in FRAME_MODES or not isinstance(self.length, int) or self.length < 1:
            raise UsageError(f"frame input needs a positive length and a mode in {FRAME_MODES}; got {self}")

    @property
    def kind(self) -> str:
        """The input kind string a trainer passes to the loader, e.g. ``frames:400:crop``."""
        return f"frames:{self.length}:{self.mode}"

    @classmethod
    def parse(cls, kind: str) -> FrameInput:
        _, length, mode = kind.split(":")
        return cls(int(length), mode)


#: Every ``--method``: a head module registers its class with ``@HEADS.register("name")``.
HEADS: Registry[type[FusionHead]] = Registry("fusion method", "--method")

class FusionHead(nn.Module):
    """Base class of every fusion head.

    Constructor contract: ``Head(dims, n_classes, *, steps=None, **hparams)``. ``dims`` maps modality name to
    feature dimension (order matters: it is the order of ``modalities`` and of exposed modality weights).
    ``steps`` is the common aligned sequence length T; only heads with a parameter indexed by time
    (``cross-tucker``'s temporal factor matrix) use it, the others accept it so that every head can be
    built the same way. ``hparams`` holds the resolved hyper-parameters (defaults included,
    JSON-serialisable) for ``config.json``: ``build_head(method, dims, n_classes, **head.hparams)``
    rebuilds the same architecture.
    """

    input_kind: ClassVar[str] = "vector"
    has_modality_weights: ClassVar[bool] = False
    accepts_dialogue: ClassVar[bool] = False
    #: the modalities its paper fuses: what ``emo fuse`` uses without ``--modalities`` (those the store has)
    paper_modalities: ClassVar[tuple[str, ...]] = ("audio", "video", "text")

    def __init__(self, dims: Mapping[str, int], n_classes: int, steps: int | None = None) -> None:
        super().__init__()
        if not dims:
            raise UsageError(f"{type(self).__name__} needs at least one modality in dims")
        for name, dim in dims.items():
            if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
                raise UsageError(
                    f"feature dimension of modality {name!r} must be a positive int, got {dim!r}"
                )
        if not isinstance(n_classes, int) or n_classes < 2:
            raise UsageError(f"n_classes must be an int >= 2, got {n_classes!r}")
        if steps is not None and (not isinstance(steps, int) or steps < 1):
            raise UsageError(f"steps must be a positive int or None, got {steps!r}")
        self.dims: dict[str, int] = dict(dims)
        self.modalities: list[str] = list(dims)
        self.n_classes = n_classes
        self.steps = steps
        self.hparams: dict[str, Any] = {}

    @classmethod
    def frame_inputs(cls, hparams: Mapping[str, Any]) -> dict[str, FrameInput]:
        """Modalities this head reads as their own frames (see :class:`FrameInput`) under the resolved
        ``hparams`` (defaults included); every other modality comes as ``input_kind`` says."""
        return {}

    def _gather(
        self, xs: Mapping[str, Tensor], masks: Mapping[str, Tensor], kind: str | None = None
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Inputs in ``modalities`` order with masked entries zeroed, and their boolean masks."""
        pairs = [self._input(xs, masks, name, kind or self.input_kind) for name in self.modalities]
        return [x for x, _ in pairs], [m for _, m in pairs]

    def _input(
        self, xs: Mapping[str, Tensor], masks: Mapping[str, Tensor], name: str, kind: str
    ) -> tuple[Tensor, Tensor]:
        """One modality's input (``kind`` "vector" or "sequence") with masked entries zeroed, and its mask.

        A modality missing from ``masks`` counts as present everywhere.
        """
        if name not in xs:
            raise UsageError(
                f"{type(self).__name__}: input for modality {name!r} is missing (expected {self.modalities})"
            )
        x = xs[name]
        if x.dim() != (2 if kind == "vector" else 3) or x.shape[-1] != self.dims[name]:
            shape = "[N, D]" if kind == "vector" else "[N, T, D]"
            raise UsageError(
                f"{type(self).__name__}: input {name!r} must be {shape} with D={self.dims[name]}, "
                f"got {tuple(x.shape)}"
            )
        mask = masks.get(name)
        if mask is None:
            mask = torch.ones(x.shape[:-1], dtype=torch.bool, device=x.device)
        mask = mask.to(device=x.device, dtype=torch.bool)
        if mask.shape != x.shape[:-1]:
            raise UsageError(
                f"{type(self).__name__}: mask of {name!r} must have shape {tuple(x.shape[:-1])}, "
                f"got {tuple(mask.shape)}"
            )
        return zero_masked(x, mask), mask


def zero_masked(x: Tensor, mask: Tensor) -> Tensor:
    """``x`` with every masked entry replaced by 0; ``mask`` has the shape of ``x`` minus the last axis."""
    return torch.where(mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))


def masked_softmax(scores: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Softmax over ``dim`` restricted to ``mask``; all-masked rows give all-zero weights (never NaN)."""
    any_valid = mask.any(dim, keepdim=True)
    scores = scores.masked_fill(~mask, float("-inf"))
    scores = torch.where(any_valid, scores, torch.zeros((), dtype=scores.dtype, device=scores.device))
    return torch.softmax(scores, dim) * mask


def masked_log_softmax(scores: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Log of :func:`masked_softmax`: ``-inf`` on masked entries; all-masked rows are finite (uniform)."""
    any_valid = mask.any(dim, keepdim=True)
    scores = scores.masked_fill(~mask, float("-inf"))
    scores = torch.where(any_valid, scores, torch.zeros((), dtype=scores.dtype, device=scores.device))
    return torch.log_softmax(scores, dim)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` [N, T, D] over the valid steps of ``mask`` [N, T]; zeros where no step is valid."""
    total = zero_masked(x, mask).sum(1)
    count = mask.sum(1, keepdim=True).clamp(min=1).to(x.dtype)
    return total / count


def masked_max(x: Tensor, mask: Tensor) -> Tensor:
    """Max of ``x`` [N, T, D] over the valid steps of ``mask`` [N, T]; zeros where no step is valid."""
    filled = x.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
    return torch.where(mask.any(1, keepdim=True), filled, torch.zeros((), dtype=x.dtype, device=x.device))


def fuse_aligned(xs: list[Tensor], masks: list[Tensor], names: list[str], head: str) -> tuple[Tensor, Tensor]:
    """Per-step concatenation of aligned sequences plus one mask-indicator channel per modality.

    Returns the fused sequence [N, T, sum(D_m) + M] (masked steps already zeroed) and the union mask [N, T].
    """
    lengths = {name: x.shape[1] for name, x in zip(names, xs, strict=True)}
    if len(set(lengths.values())) != 1:
        raise UsageError(
            f"{head} needs sequences aligned to one length T, got {lengths}; use the store's aligned arrays"
        )
    indicators = torch.stack([m.to(xs[0].dtype) for m in masks], dim=-1)
    fused = torch.cat([*xs, indicators], dim=-1)
    union = torch.stack(masks, dim=-1).any(-1)
    return fused, union


def check_choice(head: str, name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise UsageError(f"{head}: {name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


class MaskedMultiheadAttention(nn.Module):
    """Multi-head scaled dot-product attention with a key mask (seed 001 §2.1, Eq. 4-8).

    ``Q_i = X_q W^Q_i, K_i = X_kv W^K_i, V_i = X_kv W^V_i``; ``head_i = softmax(Q_i K_i^T / sqrt(d_k)) V_i``
    with masked keys at ``-inf``; ``R = Concat(head_1, ..., head_h) W^O``. Queries and keys may have different
    widths (cross-modal attention); the output has the query width.
    """

    def __init__(
        self,
        query_dim: int,
        n_heads: int,
        kv_dim: int | None = None,
        attn_dim: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        kv_dim = kv_dim or query_dim
        attn_dim = attn_dim or query_dim
        if attn_dim % n_heads:
            raise UsageError(f"attention width {attn_dim} is not divisible by {n_heads} heads")
        self.n_heads = n_heads
        self.d_k = attn_dim // n_heads
        self.q = nn.Linear(query_dim, attn_dim)
        self.k = nn.Linear(kv_dim, attn_dim)
        self.v = nn.Linear(kv_dim, attn_dim)
        self.o = nn.Linear(attn_dim, query_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, query: Tensor, key_value: Tensor, key_mask: Tensor, need_weights: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """``(R, weights)``; without ``need_weights`` the weights are not formed (None) and torch's fused
        attention kernel computes ``R`` (the same values to float rounding; README Performance has the speed-up)."""
        n, tq, _ = query.shape
        tk = key_value.shape[1]
        q = self.q(query).view(n, tq, self.n_heads, self.d_k).transpose(1, 2)
        k = self.k(key_value).view(n, tk, self.n_heads, self.d_k).transpose(1, 2)
        v = self.v(key_value).view(n, tk, self.n_heads, self.d_k).transpose(1, 2)
        if not need_weights:
            # a row with no valid key gets zero weights (masked_softmax): let it attend to every key, then zero it
            valid = key_mask.any(1)
            mask = (key_mask | ~valid[:, None])[:, None, None, :]
            p = self.dropout.p if self.training else 0.0
            if q.device.type == "cpu" and q.dtype == torch.bfloat16:
                # --precision bf16: torch's CPU flash-attention backward is ~5x slower in bfloat16 than in float32
                # (README Performance), so the attention itself runs in float32 and the projections around it in bf16
                with torch.autocast("cpu", enabled=False):
                    heads = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask, dropout_p=p)
            else:
                heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
            out = (heads * valid[:, None, None, None].to(heads.dtype)).transpose(1, 2).reshape(n, tq, -1)
            return self.o(out), None
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_k)
        weights = masked_softmax(scores, key_mask[:, None, None, :].expand_as(scores))
        out = (self.dropout(weights) @ v).transpose(1, 2).reshape(n, tq, -1)
        return self.o(out), weights


class AttentionBlock(nn.Module):
    """``S = LayerNorm(X_q + MHA(X_q, X_kv, X_kv))`` (seed 001 Eq. 9); self-attention when ``X_kv = X_q``."""

    def __init__(
        self,
        query_dim: int,
        n_heads: int,
        kv_dim: int | None = None,
        attn_dim: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.attn = MaskedMultiheadAttention(
            query_dim, n_heads, kv_dim=kv_dim, attn_dim=attn_dim, dropout=dropout
        )
        self.norm = nn.LayerNorm(query_dim)

    def forward(self, query: Tensor, key_value: Tensor, key_mask: Tensor) -> Tensor:
        out, _ = self.attn(query, key_value, key_mask, need_weights=False)
        return self.norm(query + out)
