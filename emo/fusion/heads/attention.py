"""Attention-based modality fusion of seed 004 (after Poria et al. 2017) with its speech and text encoders."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from emo.errors import UsageError

from ._common import HEADS, FrameInput, FusionHead, check_choice, masked_softmax
from .speech_cnn import SpeechCNNEncoder


class DialogueTextEncoder(nn.Module):
    """Text module of seed 004 (§3.2, Figure 3) on top of precomputed BERT utterance vectors.

    ``u_k = W_1 x_k + b_1`` (FC to ``fc=100``, the "utterance features"); a BiGRU with ``hidden=100`` units
    per direction runs over the utterances of each dialogue in order; ``dropout=0.3`` (§3.2 training
    set-up) then an FC maps the 200-d BiGRU state to ``out_dim`` (the paper: "dimensions representing
    different emotional categories", i.e. the number of classes).

    ``dialogue`` [N] holds integer dialogue ids; the utterances of a dialogue appear in conversation order
    within the batch (not necessarily contiguously); batches should hold whole dialogues, otherwise the
    context stops at the batch boundary. Utterances whose text is absent are left out of the dialogue's
    sequence and get a zero state. With ``dialogue=None`` each utterance is its own length-1 sequence.
    """

    def __init__(
        self, in_dim: int, out_dim: int, *, fc: int = 100, hidden: int = 100, dropout: float = 0.3
    ) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, fc)
        self.gru = nn.GRU(fc, hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(2 * hidden, out_dim)

    def forward(self, x: Tensor, present: Tensor, dialogue: Tensor | None = None) -> Tensor:
        u = self.fc(x)
        states = torch.zeros(x.shape[0], 2 * self.gru.hidden_size, dtype=u.dtype, device=u.device)
        rows = present.nonzero().squeeze(1)
        if rows.numel():
            if dialogue is None:
                out, _ = self.gru(u[rows].unsqueeze(1))
                states = states.index_copy(0, rows, out[:, 0])
            else:
                dialogue = torch.as_tensor(dialogue, device=x.device)
                if dialogue.shape != (x.shape[0],):
                    raise UsageError(
                        f"dialogue ids must have shape [N]={x.shape[0]}, got {tuple(dialogue.shape)}"
                    )
                _, group = torch.unique(dialogue[rows], return_inverse=True)
                order = torch.argsort(group, stable=True)
                group = group[order]
                rows = rows[order]
                counts = torch.bincount(group)
                starts = torch.cumsum(counts, 0) - counts
                pos = torch.arange(rows.numel(), device=x.device) - starts[group]
                padded = u.new_zeros(counts.numel(), int(counts.max()), u.shape[1])
                padded[group, pos] = u[rows]
                packed = pack_padded_sequence(padded, counts.cpu(), batch_first=True, enforce_sorted=False)
                out, _ = self.gru(packed)
                out, _ = pad_packed_sequence(out, batch_first=True, total_length=padded.shape[1])
                states = states.index_copy(0, rows, out[group, pos])
        return self.out(self.dropout(states))


@HEADS.register("attention")
class AttentionFusionHead(FusionHead):
    """Attention-based multimodal fusion (seed 004, Makhmudov et al., §3.3, Eq. 1-3; after Poria et al.).

    Each modality i is encoded and mapped by an FC layer to the common size ``n=250`` (the value §3.3 found
    best), giving the columns of ``F = [F_1, ..., F_M]`` in R^{n x M}. Then, per clip::

        L = tanh(P F)                P in R^{n x n}                               (Eq. 1)
        alpha = softmax(w^T L)       w in R^n, over the present modalities only   (Eq. 2)
        M_f = F alpha^T              fused vector in R^n                          (Eq. 3)
        logits = W_o Dropout(M_f) + b_o

    Absent modalities get score -inf (weight 0); a clip with nothing present has all-zero weights and
    ``M_f = 0``. ``forward_with_weights`` returns ``alpha`` [N, M] in ``modalities`` order. ``dropout=0.3`` on
    ``M_f`` is our choice (the value §3.2 uses for the text module; §3.3 gives none).

    Encoders (before the FC to ``n``):

    * ``"fc"`` (default for every modality): the input vector itself.
    * ``audio_encoder="speech-cnn"``: seed 004's speech module (:class:`SpeechCNNEncoder`) on the
      clip's own frames: ``xs[audio]`` is its first ``speech_frames=400`` log-mel frames [N, 400, F] (F = 128,
      shorter clips padded, frame mask [N, 400]) and the modality counts as present when any frame is valid.
      The speech module's own FC and the FC to ``n`` are one FC (80 -> n): the paper gives no size for the
      former and two stacked linear maps are one.
    * ``text_encoder="dialogue-bigru"``: seed 004's text module (:class:`DialogueTextEncoder`: FC 100 ->
      BiGRU 100 over the dialogue -> FC to ``text_out``, default ``n_classes``) on BERT utterance vectors;
      pass ``dialogue`` ids to ``forward`` for conversational context.

    The head's ``input_kind`` is "vector"; only the speech-cnn audio input is frames (:meth:`frame_inputs`).
    """

    input_kind = "vector"
    # seed 000's attention fusion of all three (seed 004, whose equations this is, fuses speech and text)
    paper_modalities = ("audio", "video", "text")
    has_modality_weights = True
    accepts_dialogue = True

    def __init__(
        self,
        dims: Mapping[str, int],
        n_classes: int,
        *,
        steps: int | None = None,
        n: int = 250,
        dropout: float = 0.3,
        audio_encoder: str = "fc",
        text_encoder: str = "fc",
        audio_modality: str = "audio",
        text_modality: str = "text",
        cnn_parallel_channels: int = 8,
        cnn_channels: tuple[int, ...] = (32, 48, 64, 80),
        cnn_pool: str = "mean",
        speech_frames: int = 400,
        text_fc: int = 100,
        text_hidden: int = 100,
        text_out: int | None = None,
        text_dropout: float = 0.3,
    ) -> None:
        super().__init__(dims, n_classes, steps)
        check_choice("attention", "audio_encoder", audio_encoder, ("fc", "speech-cnn"))
        check_choice("attention", "text_encoder", text_encoder, ("fc", "dialogue-bigru"))
        if audio_encoder != "fc" and audio_modality not in self.dims:
            raise UsageError(
                f"attention: audio_encoder={audio_encoder} needs modality {audio_modality!r} "
                f"in {self.modalities}"
            )
        if text_encoder != "fc" and text_modality not in self.dims:
            raise UsageError(
                f"attention: text_encoder={text_encoder} needs modality {text_modality!r} "
                f"in {self.modalities}"
            )
        text_out = text_out or n_classes
        self.hparams = {
            "n": n,
            "dropout": dropout,
            "audio_encoder": audio_encoder,
            "text_encoder": text_encoder,
            "audio_modality": audio_modality,
            "text_modality": text_modality,
        }
        if audio_encoder == "speech-cnn":
            self.hparams |= {
                "cnn_parallel_channels": cnn_parallel_channels,
                "cnn_channels": list(cnn_channels),
                "cnn_pool": cnn_pool,
                "speech_frames": speech_frames,
            }
        if text_encoder == "dialogue-bigru":
            self.hparams |= {
                "text_fc": text_fc,
                "text_hidden": text_hidden,
                "text_out": text_out,
                "text_dropout": text_dropout,
            }
        self.sequence_modality = audio_modality if audio_encoder == "speech-cnn" else None
        self.dialogue_modality = text_modality if text_encoder == "dialogue-bigru" else None
        self.encoders = nn.ModuleDict()
        widths = dict(self.dims)
        if self.sequence_modality:
            enc = SpeechCNNEncoder(
                self.dims[audio_modality],
                parallel_channels=cnn_parallel_channels,
                channels=tuple(cnn_channels),
                pool=cnn_pool,
            )
            self.encoders[audio_modality] = enc
            widths[audio_modality] = enc.out_dim
        if self.dialogue_modality:
            self.encoders[text_modality] = DialogueTextEncoder(
                self.dims[text_modality], text_out, fc=text_fc, hidden=text_hidden, dropout=text_dropout
            )
            widths[text_modality] = text_out
        self.to_n = nn.ModuleDict({name: nn.Linear(widths[name], n) for name in self.modalities})
        self.P = nn.Linear(n, n, bias=False)
        self.w = nn.Linear(n, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(n, n_classes)

    @classmethod
    def frame_inputs(cls, hparams: Mapping[str, Any]) -> dict[str, FrameInput]:
        if hparams.get("audio_encoder", "fc") != "speech-cnn":
            return {}
        return {hparams.get("audio_modality", "audio"): FrameInput(int(hparams.get("speech_frames", 400)), "crop")}

    def forward_with_weights(
        self, xs: Mapping[str, Tensor], masks: Mapping[str, Tensor], dialogue: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        columns, present = [], []
        for name in self.modalities:
            if name == self.sequence_modality:
                x, m = self._input(xs, masks, name, "sequence")
                columns.append(self.to_n[name](self.encoders[name](x, m)))
                present.append(m.any(1))
                continue
            x, m = self._input(xs, masks, name, "vector")
            if name == self.dialogue_modality:
                x = self.encoders[name](x, m, dialogue)
            columns.append(self.to_n[name](x))
            present.append(m)
        # F is held transposed, one row per modality: every product below then runs on contiguous rows and
        # the gradients of the modality FCs come back contiguous (one epoch 10-15% faster on a CPU)
        F_t = torch.stack(columns, dim=1)  # [N, M, n] = F^T
        present_t = torch.stack(present, dim=1)  # [N, M]
        L = torch.tanh(self.P(F_t))  # [N, M, n] = (P F)^T
        alpha = masked_softmax(self.w(L).squeeze(-1), present_t)
        fused = (alpha.unsqueeze(1) @ F_t).squeeze(1)  # (F alpha^T)^T
        return self.fc(self.dropout(fused)), alpha

    def forward(
        self, xs: Mapping[str, Tensor], masks: Mapping[str, Tensor], dialogue: Tensor | None = None
    ) -> Tensor:
        return self.forward_with_weights(xs, masks, dialogue)[0]
