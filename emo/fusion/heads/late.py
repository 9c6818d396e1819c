"""Late (decision-level) fusion: one classifier per modality, probabilities averaged (seed 000)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ._common import HEADS, FusionHead, check_choice, masked_log_softmax


@HEADS.register("late")
class LateFusionHead(FusionHead):
    """Late fusion of per-modality classifiers.

    Source: seed 000 (Karim & Dronwat), §II ("late fusion merges decision outputs from individual
    classifiers") and Table 2 row "Multimodal Late Fusion — Decision-Level Fusion". The paper gives no
    sizes; each per-modality classifier is an MLP with one hidden layer of ``hidden=256`` ReLU units and
    ``dropout=0.5``, the same as ``early`` so the two rows compare fusion, not capacity (our choice).

    For the present modalities P(n) of clip n::

        p_i = softmax(C_i(x_i))
        w_i = 1 / |P(n)|                                 weighting="mean"
        w_i = exp(theta_i) / sum_{j in P(n)} exp(theta_j)   weighting="learned" (one theta per modality)
        p = sum_{i in P(n)} w_i p_i
        logits = log p                                   (so softmax(logits) = p and cross-entropy applies)

    The whole head is trained end to end through ``log p``. ``forward_with_weights`` returns the weights
    ``w`` [N, M] (zero for absent modalities). A clip with no modality present gets uniform probabilities.
    """

    input_kind = "vector"
    has_modality_weights = True

    def __init__(
        self,
        dims: Mapping[str, int],
        n_classes: int,
        *,
        steps: int | None = None,
        weighting: str = "mean",
        hidden: int = 256,
        dropout: float = 0.5,
    ) -> None:
        super().__init__(dims, n_classes, steps)
        check_choice("late", "weighting", weighting, ("mean", "learned"))
        self.hparams = {"weighting": weighting, "hidden": hidden, "dropout": dropout}
        self.weighting = weighting
        self.classifiers = nn.ModuleDict(
            {
                name: nn.Sequential(
                    nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes)
                )
                for name, dim in self.dims.items()
            }
        )
        if weighting == "learned":
            self.weight_logits = nn.Parameter(torch.zeros(len(self.dims)))

    def forward_with_weights(
        self, xs: Mapping[str, Tensor], masks: Mapping[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        x, m = self._gather(xs, masks)
        present = torch.stack(m, dim=1)
        log_probs = torch.stack(
            [
                torch.log_softmax(self.classifiers[name](xi), dim=-1)
                for name, xi in zip(self.modalities, x, strict=True)
            ],
            dim=1,
        )
        if self.weighting == "learned":
            raw = self.weight_logits.expand(present.shape)
        else:
            raw = torch.zeros(present.shape, dtype=log_probs.dtype, device=log_probs.device)
        log_w = masked_log_softmax(raw, present, dim=1)
        fused = torch.logsumexp(log_w.unsqueeze(-1) + log_probs, dim=1)
        uniform = torch.full_like(fused, -math.log(self.n_classes))
        logits = torch.where(present.any(1, keepdim=True), fused, uniform)
        return logits, log_w.exp() * present

    def forward(self, xs: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> Tensor:
        return self.forward_with_weights(xs, masks)[0]
