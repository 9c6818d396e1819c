"""BiLSTM heads of seed 001: the BiLSTM baseline and the proposed BiLSTM with multi-head self-attention."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from ._common import HEADS, AttentionBlock, FusionHead, fuse_aligned, masked_mean


@HEADS.register("bilstm")
class BiLSTMHead(FusionHead):
    """BiLSTM over the aligned multimodal sequence: the "Bi-Directional LSTM" baseline of seed 001.

    Source: seed 001 (Kirar et al.), §3.6 and §4.1 Table 1 (second row). The modality features are
    concatenated (§3.2: "the audio and image features were concatenated to create a joint feature vector")
    at every aligned step t, with one presence-indicator channel per modality (masked steps are zeros,
    flagged)::

        x_t = [m_{1,t} x_{1,t}; ...; m_{M,t} x_{M,t}; m_{1,t}; ...; m_{M,t}]
        H = BiLSTM(x_1..x_T)                          hidden=128 per direction, lstm_layers=1
        s = sum_t u_t H_t / sum_t u_t                 u_t = OR_i m_{i,t} (masked mean pooling)
        logits = W Dropout(s) + b                     dropout=0.3

    The paper gives no hidden size, depth or dropout; the values above are our choices.
    """

    input_kind = "sequence"
    paper_modalities = ("audio", "video")  # seed 001 fuses audio and visual features

    def __init__(
        self,
        dims: Mapping[str, int],
        n_classes: int,
        *,
        steps: int | None = None,
        hidden: int = 128,
        lstm_layers: int = 1,
        dropout: float = 0.3,
    ) -> None:
        super().__init__(dims, n_classes, steps)
        self.hparams = {"hidden": hidden, "lstm_layers": lstm_layers, "dropout": dropout}
        in_dim = sum(self.dims.values()) + len(self.dims)
        self.lstm = nn.LSTM(
            in_dim,
            hidden,
            num_layers=lstm_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if lstm_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * hidden, n_classes)

    def _encode(self, h: Tensor, mask: Tensor) -> Tensor:
        return h

    def forward(self, xs: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> Tensor:
        x, m = self._gather(xs, masks)
        fused, union = fuse_aligned(x, m, self.modalities, type(self).__name__)
        h, _ = self.lstm(fused)
        h = self._encode(h, union)
        return self.fc(self.dropout(masked_mean(h, union)))


@HEADS.register("bilstm-sa")
class BiLSTMSelfAttentionHead(BiLSTMHead):
    """BiLSTM with multi-head self-attention (Bi-LSTM-SA), the proposed classifier of seed 001.

    Source: seed 001 (Kirar et al.), §2.1 Eq. 4-9 (self-attention), §3.6 (model), Table 1 (first row). Same
    input and BiLSTM as :class:`BiLSTMHead`; the BiLSTM output X = H (d = 2 * hidden) then goes through
    multi-head scaled dot-product self-attention with a residual connection and layer normalisation::

        Q_i = X W^Q_i,  K_i = X W^K_i,  V_i = X W^V_i          i = 1..h, each d x d/h      (Eq. 4-6)
        head_i = softmax(Q_i K_i^T / sqrt(d/h)) V_i             keys of invalid steps at -inf (Eq. 7)
        R = Concat(head_1, ..., head_h) W^O                     W^O in R^{d x d}            (Eq. 8)
        S = LayerNorm(X + R)                                                                (Eq. 9)
        logits = W Dropout(masked_mean_t(S)) + b

    The key padding mask is the union of the modalities' step masks. ``heads=4`` (d = 256, d/h = 64),
    ``hidden=128``, ``dropout=0.3`` and mean pooling are our choices: the paper gives none of them.
    """

    def __init__(
        self,
        dims: Mapping[str, int],
        n_classes: int,
        *,
        steps: int | None = None,
        hidden: int = 128,
        heads: int = 4,
        lstm_layers: int = 1,
        dropout: float = 0.3,
    ) -> None:
        super().__init__(
            dims, n_classes, steps=steps, hidden=hidden, lstm_layers=lstm_layers, dropout=dropout
        )
        self.hparams = {"hidden": hidden, "heads": heads, "lstm_layers": lstm_layers, "dropout": dropout}
        self.attention = AttentionBlock(2 * hidden, heads)

    def _encode(self, h: Tensor, mask: Tensor) -> Tensor:
        return self.attention(h, h, mask)
