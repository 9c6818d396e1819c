"""Attention over modality class embeddings plus MLP label fusion (seed 002)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ._common import HEADS, FusionHead, masked_softmax


@HEADS.register("label-fusion")
class LabelFusionHead(FusionHead):
    """Label fusion of per-modality classifiers with modality attention (seed 002, Joshi & Khare, §3.1-3.2).

    For each modality i (text t, speech s, face f in the paper; any names here), after feature selection::

        h_i = W_i x_i + b_i                                  projection to a common latent size ``latent=128``
        z_i = C_i(h_i) = V_i Dropout(ReLU(h_i)) + c_i        per-modality classifier -> class logits in R^C
        alpha_i = exp(v^T tanh(W'_i z_i + b'_i)) / sum_{j present} exp(v^T tanh(W'_j z_j + b'_j))
        z_fused = sum_i alpha_i z_i
        logits = MLP([z_1; ...; z_M; z_fused])               MLP: Linear -> ReLU -> Dropout -> Linear

    §3.1 writes the final step as ``MLP([z_t; z_s; z_f])`` and defines ``z_fused`` alongside it; following
    the method description ("the weighted embeddings are concatenated and passed through an MLP") the MLP sees
    both the per-modality logits and the attention-fused logits. W'_i in R^{att_dim x C} is modality-specific
    and v in R^{att_dim} is shared, as in the equation. An absent modality has alpha_i = 0 and z_i = 0 (zero
    logits, i.e. "no evidence") in the concatenation. The classifiers are trained end to end through the final
    loss (§3.2's separately trained classifiers become one differentiable model here).

    The paper gives no sizes: ``latent=128``, ``att_dim=64``, ``mlp_hidden=64`` and ``dropout=0.3`` are our
    choices. ``forward_with_weights`` returns alpha [N, M].
    """

    input_kind = "vector"
    has_modality_weights = True

    def __init__(
        self,
        dims: Mapping[str, int],
        n_classes: int,
        *,
        steps: int | None = None,
        latent: int = 128,
        att_dim: int = 64,
        mlp_hidden: int = 64,
        dropout: float = 0.3,
    ) -> None:
        super().__init__(dims, n_classes, steps)
        self.hparams = {"latent": latent, "att_dim": att_dim, "mlp_hidden": mlp_hidden, "dropout": dropout}
        self.project = nn.ModuleDict({name: nn.Linear(dim, latent) for name, dim in self.dims.items()})
        self.classify = nn.ModuleDict(
            {
                name: nn.Sequential(nn.ReLU(), nn.Dropout(dropout), nn.Linear(latent, n_classes))
                for name in self.modalities
            }
        )
        self.att_in = nn.ModuleDict({name: nn.Linear(n_classes, att_dim) for name in self.modalities})
        self.v = nn.Linear(att_dim, 1, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear((len(self.dims) + 1) * n_classes, mlp_hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_hidden, n_classes),
        )

    def forward_with_weights(
        self, xs: Mapping[str, Tensor], masks: Mapping[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        x, m = self._gather(xs, masks)
        present = torch.stack(m, dim=1)
        z = torch.stack(
            [
                self.classify[name](self.project[name](xi))
                for name, xi in zip(self.modalities, x, strict=True)
            ],
            dim=1,
        )  # [N, M, C]
        z = torch.where(present.unsqueeze(-1), z, torch.zeros((), dtype=z.dtype, device=z.device))
        scores = torch.cat(
            [self.v(torch.tanh(self.att_in[name](z[:, i]))) for i, name in enumerate(self.modalities)], dim=1
        )
        alpha = masked_softmax(scores, present)
        fused = (alpha.unsqueeze(-1) * z).sum(1)
        return self.mlp(torch.cat([z.flatten(1), fused], dim=1)), alpha

    def forward(self, xs: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> Tensor:
        return self.forward_with_weights(xs, masks)[0]
