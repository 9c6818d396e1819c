"""Fusion heads: shapes, determinism, masking, learning a toy problem, modality weights, checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from emo.errors import UsageError
from emo.fusion.heads import HEADS, build_head, head_hparams
from emo.fusion.heads.attention import DialogueTextEncoder
from emo.fusion.heads.cross_tucker import TuckerFusion
from emo.fusion.heads.speech_cnn import SpeechCNNEncoder

N, T, D, C = 256, 8, 16, 3
AV = {"audio": D, "video": D}
AVT = {"audio": D, "video": D, "text": D}



def _dims(method: str) -> dict[str, int]:
    """Every modality when the head takes three, else the ones its paper fuses (cross-tucker, speech-cnn)."""
    try:
        build_head(method, AVT, C)
    except UsageError:
        return {m: D for m in HEADS[method].paper_modalities}
    return AVT


# (id, method, dims, hyper-parameters): every registered head with its defaults, plus variants. Learning uses the
# same heads with smaller widths where the defaults would only cost time (LEARN_HPARAMS); every other test runs
# the defaults.
CASES = [(method, method, _dims(method), {}) for method in HEADS] + [
    ("late-learned", "late", AVT, {"weighting": "learned"}),
    (
        "attention-seed004",
        "attention",
        {"audio": D, "text": D},
        {"audio_encoder": "speech-cnn", "text_encoder": "dialogue-bigru"},
    ),
]
LEARN_HPARAMS = {
    "bilstm-sa": {"hidden": 32},
    "bilstm": {"hidden": 32},
    "hierarchical": {"hidden": 32},
    "speech-cnn": {"channels": (16, 16, 16, 16)},
    "attention-seed004": {"cnn_channels": (16, 16, 16, 16)},
}
IDS = [case[0] for case in CASES]


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """These models are tiny: one intra-op thread is several times faster than two contending ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def kinds(method: str, dims: dict[str, int], hparams: dict) -> dict[str, str]:
    """Each modality's layout; frame inputs (speech CNN, mel CNN) are [N, L, D] like sequences, here L = T."""
    out = dict.fromkeys(dims, HEADS[method].input_kind)
    for modality in HEADS[method].frame_inputs(head_hparams(method) | hparams):
        out[modality] = "sequence"
    return out


def make_data(
    kind: dict[str, str], n: int, seed: int, informative: set[str] | None = None, missing: bool = True
) -> tuple[dict, dict, torch.Tensor, torch.Tensor]:
    """Class-dependent means plus unit noise; ``informative`` modalities carry the class, others are noise.

    With ``missing``, ~10% of clips lack one modality (never all) and ~10% of sequence steps are masked.
    Also returns dialogue ids (groups of 4 consecutive clips).
    """
    g = torch.Generator().manual_seed(seed)
    centroids = torch.Generator().manual_seed(1234)
    y = torch.randint(0, C, (n,), generator=g)
    informative = set(kind) if informative is None else informative
    names = list(kind)
    dropped = torch.randint(0, len(names), (n,), generator=g)
    drop_clip = (torch.rand(n, generator=g) < 0.1) & missing & (len(names) > 1)
    xs, masks = {}, {}
    for i, name in enumerate(names):
        mu = torch.randn(C, D, generator=centroids) * 1.5
        present = ~(drop_clip & (dropped == i))
        if kind[name] == "vector":
            x = torch.randn(n, D, generator=g)
            mask = present
        else:
            x = torch.randn(n, T, D, generator=g)
            mask = present[:, None] & ((torch.rand(n, T, generator=g) > 0.1) | (not missing))
            mask[:, 0] = present  # a present modality keeps at least one valid step
        if name in informative:
            x = x + (mu[y] if kind[name] == "vector" else mu[y][:, None, :])
        xs[name], masks[name] = x, mask
    dialogue = torch.arange(n) // 4
    return xs, masks, y, dialogue


def build(case_id: str, learn: bool = False, seed: int = 0):
    _, method, dims, hparams = next(case for case in CASES if case[0] == case_id)
    hp = dict(hparams) | (LEARN_HPARAMS.get(case_id, {}) if learn else {})
    torch.manual_seed(seed)
    return build_head(method, dims, C, steps=T, **hp), kinds(method, dims, hparams)


def run(head, xs, masks, dialogue=None, weights=False):
    kwargs = {"dialogue": dialogue} if head.accepts_dialogue and dialogue is not None else {}
    if weights:
        return head.forward_with_weights(xs, masks, **kwargs)
    return head(xs, masks, **kwargs)


def train(head, xs, masks, y, dialogue=None, steps: int = 150, lr: float = 3e-3, batch: int = 64) -> None:
    """Adam on minibatches of whole dialogues (batch clips at a time, in order)."""
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    n = y.shape[0]
    head.train()
    for step in range(steps):
        if step % (n // batch) == 0:
            perm = torch.randperm(n // 4, generator=g)
            order = (perm[:, None] * 4 + torch.arange(4)).flatten()
        idx = order[(step % (n // batch)) * batch : (step % (n // batch) + 1) * batch]
        batch_x = {k: v[idx] for k, v in xs.items()}
        batch_m = {k: v[idx] for k, v in masks.items()}
        logits = run(head, batch_x, batch_m, None if dialogue is None else dialogue[idx])
        loss = torch.nn.functional.cross_entropy(logits, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.eval()


@pytest.mark.parametrize("case_id", IDS)
def test_output_shape_and_weights(case_id: str) -> None:
    head, kind = build(case_id)
    head.eval()
    xs, masks, _, dialogue = make_data(kind, N, seed=1)
    with torch.no_grad():
        logits = run(head, xs, masks, dialogue)
        assert logits.shape == (N, C)
        assert torch.isfinite(logits).all()
        assert head.modalities == list(head.dims)
        if head.has_modality_weights:
            again, w = run(head, xs, masks, dialogue, weights=True)
            torch.testing.assert_close(again, logits, rtol=0, atol=0)
            assert w.shape == (N, len(head.modalities))
            present = torch.stack([m if m.dim() == 1 else m.any(1) for m in masks.values()], dim=1)
            assert (w[~present] == 0).all()
            torch.testing.assert_close(w.sum(1), torch.ones(N))


@pytest.mark.parametrize("case_id", IDS)
def test_deterministic_with_fixed_seed(case_id: str) -> None:
    outs = []
    for _ in range(2):
        head, kind = build(case_id, seed=7)
        xs, masks, y, dialogue = make_data(kind, 64, seed=2)
        torch.manual_seed(3)
        train(head, xs, masks, y, dialogue, steps=2, batch=32)
        with torch.no_grad():
            outs.append(run(head, xs, masks, dialogue))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


@pytest.mark.parametrize("case_id", IDS)
def test_masked_values_do_not_matter(case_id: str) -> None:
    head, kind = build(case_id)
    head.eval()
    xs, masks, _, dialogue = make_data(kind, 64, seed=3)
    for mask in masks.values():  # clip 0 has every modality absent
        mask[0] = False
    with torch.no_grad():
        ref = run(head, xs, masks, dialogue)
        for fill in (lambda shape: 1e3 * torch.randn(shape), lambda shape: torch.full(shape, float("nan"))):
            changed = {k: torch.where(masks[k].unsqueeze(-1), v, fill(v.shape)) for k, v in xs.items()}
            out = run(head, changed, masks, dialogue)
            torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
        assert torch.isfinite(ref).all()
        if head.has_modality_weights:
            _, w = run(head, xs, masks, dialogue, weights=True)
            assert (w[0] == 0).all()
    run(head, changed, masks, dialogue).sum().backward()  # NaN in masked slots, one clip with nothing
    assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)


@pytest.mark.parametrize("case_id", IDS)
def test_learns_separable_problem(case_id: str) -> None:
    head, kind = build(case_id, learn=True)
    xs, masks, y, dialogue = make_data(kind, N, seed=4)
    train(head, xs, masks, y, dialogue)
    xt, mt, yt, dt = make_data(kind, N, seed=5)
    with torch.no_grad():
        accuracy = (run(head, xt, mt, dt).argmax(1) == yt).float().mean().item()
    assert accuracy > 0.9, f"{case_id}: held-out accuracy {accuracy:.3f}"


@pytest.mark.parametrize("case_id", ["attention", "label-fusion", "hierarchical", "late-learned"])
def test_weights_favour_informative_modality(case_id: str) -> None:
    _, method, _, hparams = next(case for case in CASES if case[0] == case_id)
    torch.manual_seed(0)
    head = build_head(method, AV, C, steps=T, **hparams, **LEARN_HPARAMS.get(case_id, {}))
    kind = kinds(method, AV, hparams)
    xs, masks, y, _ = make_data(kind, N, seed=6, informative={"audio"}, missing=False)
    train(head, xs, masks, y, steps=200)
    xt, mt, _, _ = make_data(kind, N, seed=7, informative={"audio"}, missing=False)
    with torch.no_grad():
        _, w = head.forward_with_weights(xt, mt)
    audio, video = w.mean(0).tolist()
    assert audio > video + 0.2, f"{case_id}: mean weight audio {audio:.3f} vs noise {video:.3f}"


@pytest.mark.parametrize("case_id", IDS)
def test_state_dict_round_trips_through_safetensors(case_id: str, tmp_path) -> None:
    head, kind = build(case_id, seed=1)
    xs, masks, y, dialogue = make_data(kind, 64, seed=8)
    train(head, xs, masks, y, dialogue, steps=2, batch=32)  # moves BatchNorm running statistics
    state = head.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    save_file(state, str(tmp_path / "model.safetensors"))
    fresh, _ = build(case_id, seed=99)
    fresh.load_state_dict(load_file(str(tmp_path / "model.safetensors")))
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            run(fresh, xs, masks, dialogue), run(head, xs, masks, dialogue), rtol=0, atol=0
        )


@pytest.mark.parametrize("case_id", IDS)
def test_hparams_rebuild_the_same_architecture(case_id: str) -> None:
    head, _ = build(case_id)
    _, method, dims, _ = next(case for case in CASES if case[0] == case_id)
    assert json.loads(json.dumps(head.hparams)) == head.hparams
    rebuilt = build_head(method, dims, C, **head.hparams)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in head.state_dict().items()
    }


def test_hierarchical_takes_each_modality_at_its_own_length() -> None:
    torch.manual_seed(0)
    head = build_head("hierarchical", {"audio": 12, "video": 6, "text": 10}, C)
    head.eval()
    lengths = {"audio": 20, "video": 5, "text": 7}
    xs = {m: torch.randn(4, t, head.dims[m]) for m, t in lengths.items()}
    masks = {m: torch.rand(4, t) > 0.3 for m, t in lengths.items()}
    masks["video"][1] = False  # clip 1 has no face
    with torch.no_grad():
        logits, beta = head.forward_with_weights(xs, masks)
        changed = {m: torch.where(masks[m].unsqueeze(-1), x, torch.full_like(x, 1e4)) for m, x in xs.items()}
        torch.testing.assert_close(head(changed, masks), logits, rtol=0, atol=1e-6)
    assert logits.shape == (4, C)
    assert beta[1, 1] == 0


def test_build_head_rejects_unknown_names() -> None:
    with pytest.raises(UsageError, match="choose one of"):
        build_head("transformer", AV, C)
    with pytest.raises(UsageError, match="unknown hyper-parameter"):
        build_head("early", AV, C, hiden=3)
    assert head_hparams("attention")["n"] == 250
    assert head_hparams("early") == {"hidden": 256, "dropout": 0.5}


def test_every_head_cites_its_paper() -> None:
    for cls in HEADS.values():
        assert "seed 00" in (cls.__doc__ or ""), cls.__name__


def test_heads_refuse_modalities_they_cannot_fuse() -> None:
    with pytest.raises(UsageError, match="exactly two modalities"):
        build_head("cross-tucker", AVT, C, steps=T)
    with pytest.raises(UsageError, match="exactly two modalities"):
        build_head("cross-tucker", {"audio": D}, C, steps=T)
    with pytest.raises(UsageError, match="audio-only"):
        build_head("speech-cnn", AV, C)
    with pytest.raises(UsageError, match="aligned"):
        head = build_head("bilstm", AV, C)
        head({"audio": torch.zeros(2, 4, D), "video": torch.zeros(2, 5, D)}, {})
    with pytest.raises(UsageError, match="T=8"):
        head = build_head("cross-tucker", AV, C, steps=T)
        head({"audio": torch.zeros(2, 4, D), "video": torch.zeros(2, 4, D)}, {})


def test_unimodal_runs_work_for_multimodal_heads() -> None:
    for method in (
        "early",
        "late",
        "attention",
        "label-fusion",
        "bilstm-sa",
        "bilstm",
        "cnn",
        "hierarchical",
    ):
        head = build_head(method, {"video": D}, C, steps=T)
        head.eval()
        kind = kinds(method, {"video": D}, {})
        xs, masks, _, _ = make_data(kind, 16, seed=9)
        assert head(xs, masks).shape == (16, C)


def test_tucker_layer_equals_explicit_mode_products() -> None:
    torch.manual_seed(0)
    layer = TuckerFusion(steps=5, dim_a=6, dim_v=7, ranks=(2, 3, 4))
    a, v = torch.randn(3, 5, 6, dtype=torch.float64), torch.randn(3, 5, 7, dtype=torch.float64)
    layer = layer.double()
    x = TuckerFusion.outer_tensor(a, v)
    assert x.shape == (3, 5, 6, 7)
    torch.testing.assert_close(layer(a, v), layer.mode_products(x))
    assert layer(a, v).shape == (3, 2, 3, 4)


def test_speech_cnn_encoder_architecture() -> None:
    enc = SpeechCNNEncoder(n_mels=128)
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs[:2]] == [(10, 2), (2, 8)]
    assert [c.out_channels for c in convs] == [8, 8, 32, 48, 64, 80]
    assert all(c.kernel_size == (3, 3) for c in convs[2:])
    enc.eval()
    for steps in (1, 3, 32):
        x, mask = torch.randn(2, steps, 128), torch.ones(2, steps, dtype=torch.bool)
        assert enc(x, mask).shape == (2, 80)


def test_dialogue_bigru_uses_context_within_a_dialogue_only() -> None:
    torch.manual_seed(0)
    enc = DialogueTextEncoder(D, C)
    enc.eval()
    x = torch.randn(6, D)
    present = torch.ones(6, dtype=torch.bool)
    dialogue = torch.tensor([5, 5, 9, 5, 9, 9])
    with torch.no_grad():
        ref = enc(x, present, dialogue)
        changed = x.clone()
        changed[3] += 1.0  # last utterance of dialogue 5
        out = enc(changed, present, dialogue)
        assert not torch.allclose(out[0], ref[0])  # same dialogue: context changes
        torch.testing.assert_close(out[[2, 4, 5]], ref[[2, 4, 5]], rtol=0, atol=0)  # other dialogue untouched
        alone = enc(x, present, torch.arange(6))
        torch.testing.assert_close(alone, enc(x, present, None), rtol=0, atol=1e-6)
        # an absent utterance is left out of its dialogue's sequence
        present[1] = False
        skipped = enc(x, present, dialogue)
        compact = enc(x[[0, 3]], torch.ones(2, dtype=torch.bool), torch.tensor([5, 5]))
        torch.testing.assert_close(skipped[[0, 3]], compact, rtol=0, atol=1e-6)


@pytest.mark.parametrize("case_id", IDS)
def test_bf16_autocast_step_matches_fp32(case_id: str) -> None:
    """``emo fuse --precision bf16``: a training step under CPU bfloat16 autocast gives every head the logits and
    gradients of fp32, to bfloat16's rounding (the attention layers run their kernel in fp32 there)."""
    head, kind = build(case_id)
    head.train()
    xs, masks, y, dialogue = make_data(kind, 64, seed=3)
    outs, grads = [], []
    for bf16 in (False, True):
        torch.manual_seed(0)  # the same dropout masks
        head.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = run(head, xs, masks, dialogue)
        torch.nn.functional.cross_entropy(logits.float(), y).backward()
        outs.append(logits.detach().float())
        grads.append(torch.cat([p.grad.flatten() for p in head.parameters() if p.grad is not None]))
    assert not torch.equal(outs[0], outs[1])  # the step did run in bfloat16
    torch.testing.assert_close(outs[1], outs[0], rtol=0.05, atol=0.05)
    cosine = torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0)
    assert torch.isfinite(grads[1]).all() and cosine > 0.99, cosine
