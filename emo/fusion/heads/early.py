"""Early (feature-level) fusion: concatenate the modality vectors, then an MLP (seed 000)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ._common import HEADS, FusionHead


@HEADS.register("early")
class EarlyFusionHead(FusionHead):
    """Early fusion by feature concatenation.

    Source: seed 000 (Karim & Dronwat), §II and Table 2 row "Multimodal Early Fusion — Feature
    Concatenation", the baseline the attention model is compared against. The paper gives no layer
    sizes; the MLP here has one hidden layer of ``hidden=256`` ReLU units and ``dropout=0.5`` (our
    choice; the paper only says dropout is used, §III).

    With ``m_i`` the presence indicator of modality i (0/1) and ``x_i`` its vector::

        x = [m_1 x_1; ...; m_M x_M; m_1; ...; m_M]          (absent modalities are zeros, flagged)
        h = Dropout(ReLU(W_1 x + b_1))
        logits = W_2 h + b_2

    The indicators let the network tell "absent" from "all-zero features".
    """

    input_kind = "vector"

    def __init__(
        self,
        dims: Mapping[str, int],
        n_classes: int,
        *,
        steps: int | None = None,
        hidden: int = 256,
        dropout: float = 0.5,
    ) -> None:
        super().__init__(dims, n_classes, steps)
        self.hparams = {"hidden": hidden, "dropout": dropout}
        in_dim = sum(self.dims.values()) + len(self.dims)
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes)
        )

    def forward(self, xs: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> Tensor:
        x, m = self._gather(xs, masks)
        indicators = torch.stack(m, dim=1).to(x[0].dtype)
        return self.net(torch.cat([*x, indicators], dim=1))
