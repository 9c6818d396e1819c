"""The 2-D CNN audio branch of seed 003 (App. A.4): a log-mel image in, one vector per common time step out."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from emo.errors import UsageError

from ._common import zero_masked


class MelCNN2D(nn.Module):
    """Seed 003's audio modality (Kumar, Aruldoss & Wynn 2025, App. A.4): a 2-D CNN over the log-mel
    spectrogram taken as a one-channel image of 256 frames x 128 bands.

    What the paper fixes: input 128 x 256, kernel size 3, ReLU, max pooling 3 x 3 with stride 2, output
    dimension 128. What it leaves open and we chose: ``channels=(32, 64, 128)`` (three conv blocks, the last
    one giving the 128-dim output), padding 1 so each pooling halves time and frequency, no batch norm (none is
    named). The feature map [N, 128, 256/8, 128/8] is averaged over frequency and pooled over time to ``steps``
    vectors (adaptive average pooling), so step t covers the same 1/steps of the clip as the video's aligned
    step t (the frames come resampled over the whole clip, ``FrameInput(256, "resample")``).

    ``forward(x [N, L, F], mask [N, L]) -> (h [N, steps, channels[-1]], step mask [N, steps])``; a step is
    valid when any frame under it is.
    """

    def __init__(self, n_mels: int, steps: int, *, channels: tuple[int, ...] = (32, 64, 128)) -> None:
        super().__init__()
        if not channels or min(channels) < 1:
            raise UsageError(f"mel-cnn: channels must be positive ints, got {channels!r}")
        widths = (1, *channels)
        self.blocks = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], kernel_size=3, padding=1) for i in range(len(channels))
        )
        self.n_mels = n_mels
        self.steps = steps
        self.out_dim = channels[-1]

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        h = zero_masked(x, mask).unsqueeze(1)  # [N, 1, L, F]
        for conv in self.blocks:
            h = F.max_pool2d(F.relu(conv(h)), kernel_size=3, stride=2, padding=1)
        h = h.mean(dim=3)  # over frequency: [N, C, L']
        h = F.adaptive_avg_pool1d(h, self.steps).transpose(1, 2)  # [N, steps, C]
        step_mask = F.adaptive_max_pool1d(mask[:, None].to(h.dtype), self.steps)[:, 0] > 0
        return h, step_mask
