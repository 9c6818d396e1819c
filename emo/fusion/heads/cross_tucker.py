"""Bidirectional cross-modal attention + Tucker fusion of aligned audio and video sequences (seed 003)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from emo.errors import UsageError

from ._common import HEADS, AttentionBlock, FrameInput, FusionHead, check_choice, zero_masked
from .mel_cnn import MelCNN2D

DEFAULT_STEPS = 32  # DESIGN.md §5: default --align-steps of the store's aligned sequences


class TuckerFusion(nn.Module):
    """Tucker layer of seed 003, Appendix B, Algorithm A2 (learnable factor matrices, n-mode products).

    For the 4th-order cross-modal tensor X in R^{N x T x P x Q} built by Algorithm A1
    (``X[n, t] = a_{n,t} outer v_{n,t}``) and factor matrices U_t in R^{T x R_t}, U_a in R^{P x R_a},
    U_v in R^{Q x R_v}::

        G = X x_2 U_t^T x_3 U_a^T x_4 U_v^T      in R^{N x R_t x R_a x R_v}
        G[n, i, j, k] = sum_{t,p,q} X[n, t, p, q] U_t[t, i] U_a[p, j] U_v[q, k]
                      = sum_t U_t[t, i] (U_a^T a_{n,t})_j (U_v^T v_{n,t})_k

    ``forward`` evaluates the last line, which is the same number as the mode products but never
    materialises the N x T x P x Q tensor (for P = 128 audio and Q = 512 face features, T = 32, a batch of 128
    clips the explicit tensor would need 1 GiB); :meth:`outer_tensor` and :meth:`mode_products` are the
    literal Algorithms A1 and A2 and serve as the reference. Factor matrices start (semi-)orthogonal.
    """

    def __init__(self, steps: int, dim_a: int, dim_v: int, ranks: tuple[int, int, int]) -> None:
        super().__init__()
        r_t, r_a, r_v = ranks
        self.U_t = nn.Parameter(nn.init.orthogonal_(torch.empty(steps, r_t)))
        self.U_a = nn.Parameter(nn.init.orthogonal_(torch.empty(dim_a, r_a)))
        self.U_v = nn.Parameter(nn.init.orthogonal_(torch.empty(dim_v, r_v)))

    def forward(self, a: Tensor, v: Tensor) -> Tensor:
        return torch.einsum("ti,ntj,ntk->nijk", self.U_t, a @ self.U_a, v @ self.U_v)

    @staticmethod
    def outer_tensor(a: Tensor, v: Tensor) -> Tensor:
        """Algorithm A1: the per-time-step outer products stacked into X [N, T, P, Q]."""
        return torch.einsum("ntp,ntq->ntpq", a, v)

    def mode_products(self, x: Tensor) -> Tensor:
        """Algorithm A2 literally: mode-2, mode-3 then mode-4 products of X [N, T, P, Q]."""
        g = torch.einsum("ntpq,ti->nipq", x, self.U_t)
        g = torch.einsum("nipq,pj->nijq", g, self.U_a)
        return torch.einsum("nijq,qk->nijk", g, self.U_v)


@HEADS.register("cross-tucker")
class CrossModalTuckerHead(FusionHead):
    """Cross-modal attention fusion with a Tucker layer (seed 003, Kumar, Aruldoss & Wynn 2025, App. A-B).

    Two sequences on the common time grid, audio A in R^{T x D_a} and video V in R^{T x D_v} (modality names
    ``a="audio"``, ``v="video"``), same T = ``steps``:

    0. Audio front-end (App. A.4), ``audio_frontend="mel-cnn"`` (default): the clip's log-mel frames resampled
       to ``mel_frames=256`` frames over the whole clip (the paper's 128 x 256 input) go through
       :class:`~emo.fusion.heads.mel_cnn.MelCNN2D` (kernel 3, ReLU, 3 x 3 max pooling with stride 2, 128-dim
       output), pooled to the T steps of the video's grid, so A is learned end to end with the fusion.
       ``audio_frontend="none"`` takes the store's aligned audio steps as A (e.g. ``--features audio/mfcc``).
       The video branch is the stored ResNet-18 face embedding per aligned step (frozen, not fine-tuned).

    1. Bidirectional cross-modal multi-head attention (App. A.3, ``heads=4`` from the App. A.4 table): audio
       queries attend to video keys/values and video queries to audio keys/values (keys of invalid steps
       masked), each enriching its query sequence::

           A~ = LayerNorm(A + MHA(Q=A, K=V, V=V)),   V~ = LayerNorm(V + MHA(Q=V, K=A, V=A))

       with attention width ``attn_dim=128`` (the audio branch's output dimension in App. A.4); the residual
       and LayerNorm are our reading of "enriched with visual context".
    2. Tensor construction (Algorithm A1): at every step, the outer product of the attended vectors, invalid
       steps zeroed, each augmented with a constant 1::

           a_t = [m^a_t A~_t; 1],  v_t = [m^v_t V~_t; 1],  X[t] = a_t outer v_t  in R^{(D_a+1) x (D_v+1)}

       The augmentation (as in Tensor Fusion Networks, which seed 003 builds on) keeps the first-order audio
       and video terms in X, so a clip whose face is missing still carries its audio (a plain outer product
       with a zero vector would erase it).
    3. Tucker layer (Algorithm A2, :class:`TuckerFusion`) with learnable factor matrices to the core
       G in R^{R_t x R_a x R_v}; ``ranks=(8, 16, 16)`` is our choice (the ranks are not legible in the seed).
    4. ``logits = W Dropout(vec(G)) + b`` with ``dropout=0.5`` (App. A.4).

    The extracted seed also mentions a GRU for "common temporal dynamics" only in a results-table remark,
    without a description; it is not part of this head. Seed 003 is strictly bimodal (audio-video): this head
    refuses any other set of modalities, including a third one (text), rather than invent a way to add it.
    """

    input_kind = "sequence"
    paper_modalities = ("audio", "video")  # seed 003: mel audio and face frames

    def __init__(
        self,
        dims: Mapping[str, int],
        n_classes: int,
        *,
        steps: int | None = None,
        a: str = "audio",
        v: str = "video",
        heads: int = 4,
        attn_dim: int = 128,
        ranks: tuple[int, int, int] = (8, 16, 16),
        dropout: float = 0.5,
        audio_frontend: str = "mel-cnn",
        mel_frames: int = 256,
        cnn_channels: tuple[int, ...] = (32, 64, 128),
    ) -> None:
        check_choice("cross-tucker", "audio_frontend", audio_frontend, ("mel-cnn", "none"))
        if set(dims) != {a, v} or a == v:
            raise UsageError(
                f"cross-tucker fuses exactly two modalities, {a!r} and {v!r} (seed 003 is "
                f"audio-video only); got {list(dims)}"
            )
        if len(ranks) != 3 or min(ranks) < 1:
            raise UsageError(
                f"cross-tucker: ranks must be three positive ints (R_t, R_a, R_v); got {ranks!r}"
            )
        super().__init__(dims, n_classes, steps or DEFAULT_STEPS)
        self.hparams = {
            "steps": self.steps,
            "a": a,
            "v": v,
            "heads": heads,
            "attn_dim": attn_dim,
            "ranks": list(ranks),
            "dropout": dropout,
            "audio_frontend": audio_frontend,
        }
        self.a, self.v = a, v
        d_a, d_v = self.dims[a], self.dims[v]
        self.frontend: MelCNN2D | None = None
        if audio_frontend == "mel-cnn":
            self.hparams |= {"mel_frames": mel_frames, "cnn_channels": list(cnn_channels)}
            self.frontend = MelCNN2D(d_a, self.steps, channels=tuple(cnn_channels))
            d_a = self.frontend.out_dim
        self.audio_to_video = AttentionBlock(d_a, heads, kv_dim=d_v, attn_dim=attn_dim)
        self.video_to_audio = AttentionBlock(d_v, heads, kv_dim=d_a, attn_dim=attn_dim)
        self.tucker = TuckerFusion(self.steps, d_a + 1, d_v + 1, tuple(ranks))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(ranks[0] * ranks[1] * ranks[2], n_classes)

    @classmethod
    def frame_inputs(cls, hparams: Mapping[str, Any]) -> dict[str, FrameInput]:
        if hparams.get("audio_frontend", "mel-cnn") != "mel-cnn":
            return {}
        return {hparams.get("a", "audio"): FrameInput(int(hparams.get("mel_frames", 256)), "resample")}

    def attended(self, xs: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """The 1-augmented attended sequences a [N, T, D_a+1] and v [N, T, D_v+1] (steps 0-2)."""
        x_a, m_a = self._input(xs, masks, self.a, "sequence")
        x_v, m_v = self._input(xs, masks, self.v, "sequence")
        if self.frontend is not None:
            x_a, m_a = self.frontend(x_a, m_a)
        if x_a.shape[1] != self.steps or x_v.shape[1] != self.steps:
            raise UsageError(
                f"cross-tucker was built for T={self.steps} aligned steps; got audio T="
                f"{x_a.shape[1]}, video T={x_v.shape[1]}"
            )
        att_a = self.audio_to_video(x_a, x_v, m_v)
        att_v = self.video_to_audio(x_v, x_a, m_a)
        one = torch.ones(*att_a.shape[:2], 1, dtype=att_a.dtype, device=att_a.device)
        return torch.cat([zero_masked(att_a, m_a), one], dim=-1), torch.cat(
            [zero_masked(att_v, m_v), one], dim=-1
        )

    def forward(self, xs: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> Tensor:
        a, v = self.attended(xs, masks)
        return self.fc(self.dropout(self.tucker(a, v).flatten(1)))
