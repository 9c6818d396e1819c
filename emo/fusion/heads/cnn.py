"""1-D CNN baseline of seed 001 over the aligned multimodal sequence."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ._common import HEADS, FusionHead, check_choice, fuse_aligned, masked_max, masked_mean, zero_masked


@HEADS.register("cnn")
class CNN1DHead(FusionHead):
    """1-D convolutional baseline ("CNN" of seed 001, §3.6 / §4.1 Table 1, third row; Figures 6-7).

    Same fused input as the BiLSTM heads: at every aligned step the concatenated modality features (masked
    steps zeroed) plus one presence-indicator channel per modality. Then::

        H^0 = x;  H^l = ReLU(Conv1d_k(H^{l-1}))  l = 1..L     channels=(64, 128), kernel_size=3, same padding
        s = [max_t H^L_t ; mean_t H^L_t]                      over valid steps only (pool="max+mean")
        logits = W Dropout(s) + b                             dropout=0.3

    Invalid steps are re-zeroed after every convolution so a gap behaves like a sequence edge. The paper
    describes the baseline only as a CNN relying "on spatial feature extraction without sequence modelling";
    all sizes are our choices.
    """

    input_kind = "sequence"
    paper_modalities = ("audio", "video")  # seed 001's baseline on its audio-visual features

    def __init__(
        self,
        dims: Mapping[str, int],
        n_classes: int,
        *,
        steps: int | None = None,
        channels: tuple[int, ...] = (64, 128),
        kernel_size: int = 3,
        pool: str = "max+mean",
        dropout: float = 0.3,
    ) -> None:
        super().__init__(dims, n_classes, steps)
        check_choice("cnn", "pool", pool, ("max", "mean", "max+mean"))
        self.hparams = {
            "channels": list(channels),
            "kernel_size": kernel_size,
            "pool": pool,
            "dropout": dropout,
        }
        self.pool = pool
        widths = (sum(self.dims.values()) + len(self.dims), *channels)
        self.convs = nn.ModuleList(
            nn.Conv1d(widths[i], widths[i + 1], kernel_size, padding="same") for i in range(len(channels))
        )
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels[-1] * (2 if pool == "max+mean" else 1), n_classes)

    def forward(self, xs: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> Tensor:
        x, m = self._gather(xs, masks)
        h, union = fuse_aligned(x, m, self.modalities, type(self).__name__)
        for conv in self.convs:
            h = zero_masked(torch.relu(conv(h.transpose(1, 2))).transpose(1, 2), union)
        pooled = []
        if "max" in self.pool:
            pooled.append(masked_max(h, union))
        if "mean" in self.pool:
            pooled.append(masked_mean(h, union))
        return self.fc(self.dropout(torch.cat(pooled, dim=-1)))
