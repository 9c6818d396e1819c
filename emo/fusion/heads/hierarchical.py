"""Seed 000's full network: modality encoders, intra-modal self-attention, inter-modal attention, fusion."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from emo.errors import UsageError

from ._common import HEADS, AttentionBlock, FusionHead, check_choice, masked_mean, masked_softmax, zero_masked

ENCODERS = ("cnn-lstm", "projection", "bilstm")
DEFAULT_ENCODER = {"audio": "cnn-lstm", "video": "projection", "text": "bilstm"}


class SequenceEncoder(nn.Module):
    """One modality's encoder to ``hidden`` features per step (seed 000 Table 1, stages 4-6).

    * ``"cnn-lstm"`` (audio, stage 4 "CNN + LSTM"): ``LSTM(ReLU(Conv1d_3(x)))``, the convolution for local
      spectral patterns, the LSTM for temporal dependencies;
    * ``"projection"`` (video, stage 5): ``ReLU(W x + b)`` per frame; the face embeddings already come from
      the deep CNN (ResNet/VGG) of stage 5, which seed 000 uses without a temporal model;
    * ``"bilstm"`` (text, stage 6 "Bi-LSTM / Transformer encoder"): a BiLSTM with ``hidden/2`` units per
      direction over the token embeddings.

    Invalid steps are zero on input and re-zeroed between layers.
    """

    def __init__(self, kind: str, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "cnn-lstm":
            self.conv = nn.Conv1d(in_dim, hidden, 3, padding=1)
            self.rnn = nn.LSTM(hidden, hidden, batch_first=True)
        elif kind == "projection":
            self.proj = nn.Linear(in_dim, hidden)
        else:
            if hidden % 2:
                raise UsageError(f"hierarchical: hidden must be even for a BiLSTM encoder, got {hidden}")
            self.rnn = nn.LSTM(in_dim, hidden // 2, batch_first=True, bidirectional=True)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        if self.kind == "projection":
            return torch.relu(self.proj(x))
        if self.kind == "cnn-lstm":
            x = zero_masked(torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2), mask)
        out, _ = self.rnn(x)
        return out


@HEADS.register("hierarchical")
class HierarchicalAttentionHead(FusionHead):
    """Attention-based multimodal network of seed 000 (Karim & Dronwat), §III and Table 1 (stages 4-10).

    Per modality i with sequence X_i [T_i, D_i] and step mask m_i (each modality keeps its own length T_i)::

        H_i = Enc_i(X_i)                                   stages 4-6, see SequenceEncoder; hidden=128
        S_i = LayerNorm(H_i + MHA(H_i, H_i, H_i))          stage 7, intra-modal self-attention (heads=4)
        C_i = LayerNorm(S_i + MHA(S_i, S_others, S_others)) stage 8, inter-modal cross-attention: queries of
                                                           modality i, keys/values the concatenated steps of
                                                           all other modalities (their masks as key mask)
        s_i = masked_mean_t(C_i)                           modality summary
        e_i = u^T tanh(W s_i + b);  beta = softmax_i(e)    stage 9, attention fusion over present modalities
        f = sum_i beta_i s_i
        logits = W_2 Dropout(ReLU(W_1 f + b_1)) + b_2      stage 10, "fully connected layers" + softmax

    Encoders default by modality name (audio "cnn-lstm", video "projection", text "bilstm", anything else
    "bilstm"); ``encoders`` overrides them, e.g. ``{"video": "bilstm"}``. With a single modality the
    inter-modal step is skipped. Masked keys get -inf scores; a modality absent from a clip has beta_i = 0.
    Seed 000 gives no sizes: ``hidden=128``, ``heads=4``, ``dropout=0.3`` and the additive (tanh) form of the
    fusion scores are our choices. ``forward_with_weights`` returns beta [N, M].
    """

    input_kind = "sequence"
    has_modality_weights = True

    def __init__(
        self,
        dims: Mapping[str, int],
        n_classes: int,
        *,
        steps: int | None = None,
        hidden: int = 128,
        heads: int = 4,
        dropout: float = 0.3,
        encoders: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(dims, n_classes, steps)
        chosen = {name: DEFAULT_ENCODER.get(name, "bilstm") for name in self.modalities}
        for name, kind in (encoders or {}).items():
            if name not in self.dims:
                raise UsageError(
                    f"hierarchical: encoders names unknown modality {name!r}; have {self.modalities}"
                )
            chosen[name] = check_choice("hierarchical", f"encoder of {name}", kind, ENCODERS)
        self.hparams = {"hidden": hidden, "heads": heads, "dropout": dropout, "encoders": chosen}
        self.encoders = nn.ModuleDict(
            {name: SequenceEncoder(chosen[name], self.dims[name], hidden) for name in self.modalities}
        )
        self.intra = nn.ModuleDict({name: AttentionBlock(hidden, heads) for name in self.modalities})
        self.inter = nn.ModuleDict(
            {name: AttentionBlock(hidden, heads) for name in self.modalities}
            if len(self.modalities) > 1
            else {}
        )
        self.score = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1, bias=False))
        self.classifier = nn.Sequential(
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes)
        )

    def forward_with_weights(
        self, xs: Mapping[str, Tensor], masks: Mapping[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        x, m = self._gather(xs, masks)
        seqs = []
        for name, xi, mi in zip(self.modalities, x, m, strict=True):
            h = self.encoders[name](xi, mi)
            seqs.append(self.intra[name](h, h, mi))
        if self.inter:
            crossed = []
            for i, name in enumerate(self.modalities):
                others = torch.cat([s for j, s in enumerate(seqs) if j != i], dim=1)
                other_mask = torch.cat([mk for j, mk in enumerate(m) if j != i], dim=1)
                crossed.append(self.inter[name](seqs[i], others, other_mask))
            seqs = crossed
        summaries = torch.stack(
            [masked_mean(s, mi) for s, mi in zip(seqs, m, strict=True)], dim=1
        )  # [N, M, H]
        present = torch.stack([mi.any(1) for mi in m], dim=1)
        beta = masked_softmax(self.score(summaries).squeeze(-1), present)
        fused = (beta.unsqueeze(-1) * summaries).sum(1)
        return self.classifier(fused), beta

    def forward(self, xs: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> Tensor:
        return self.forward_with_weights(xs, masks)[0]
