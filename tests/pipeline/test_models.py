"""Visual backbone registry: real weight-loading paths (state dicts written here, the offline
EfficientNet-Lite0 ImageNet weights), clear errors for missing or wrong weights, reproducible random ones."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file

from emo.errors import MissingModelError, UsageError
from emo.pipeline.backbones import RESNET18_IMAGENET_URL, RESNET50_IMAGENET_URL, available_models, get_backbone
from emo.pipeline.models import PRECISION_MIN_COSINE, check_faces, check_visual_weights, load_visual_model


def ort_version() -> str:
    return importlib.metadata.version("onnxruntime")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def resnet18_state_dict(seed: int, num_classes: int = 1000) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return torchvision.models.resnet18(num_classes=num_classes).state_dict()


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, size=(3, 224, 224, 3), dtype=np.uint8)
    faces[0] = np.asarray(Image.fromarray(skimage.data.astronaut()[40:200, 150:300]).resize((224, 224)))
    return faces


@pytest.fixture()
def empty_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch_home"
    home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(home))
    assert Path(torch.hub.get_dir()) == home / "hub"
    return home


def test_imagenet_urls_are_torchvisions() -> None:
    # the registry names torchvision's weights without importing torchvision: the same files
    assert torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url == RESNET18_IMAGENET_URL
    assert torchvision.models.ResNet50_Weights.DEFAULT.url == RESNET50_IMAGENET_URL


def test_registry_lists_the_backbones_with_their_sizes() -> None:
    assert available_models() == ["efficientnet-lite0", "resnet18", "resnet50"]
    assert {n: get_backbone(n).dim for n in available_models()} == {
        "efficientnet-lite0": 1280,
        "resnet18": 512,
        "resnet50": 2048,
    }
    with pytest.raises(UsageError, match="unknown visual model 'vgg16'.*resnet18"):
        load_visual_model("vgg16", "random")


def test_random_weights_are_explicit_deterministic_and_recorded(crops: np.ndarray) -> None:
    before = torch.random.get_rng_state()
    a = load_visual_model("resnet18", "random")
    b = load_visual_model("resnet18", "random")
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's RNG is left alone
    ea, eb = a.embed(crops), b.embed(crops)
    assert ea.shape == (3, 512) and ea.dtype == np.float32 and np.isfinite(ea).all()
    np.testing.assert_array_equal(ea, eb)
    assert a.weights_identity == {"source": "random", "file": None, "sha256": None}
    prov = json.loads(json.dumps(a.provenance()))
    assert prov["weights"]["source"] == "random" and "manual_seed(0)" in prov["random_init"]
    assert prov["software"]["torchvision"] == torchvision.__version__.split("+")[0]
    assert check_visual_weights("resnet18", "random") is None


def test_state_dict_files_load_and_are_identified(tmp_path: Path, crops: np.ndarray) -> None:
    sd = resnet18_state_dict(seed=123, num_classes=7)  # a fine-tuned 7-class head is ignored, not refused
    pth, st = tmp_path / "faces-r18.pth", tmp_path / "faces-r18.safetensors"
    torch.save(sd, pth)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(st))
    from_pth = load_visual_model("resnet18", str(pth))
    from_st = load_visual_model("resnet18", st)
    for model, path in ((from_pth, pth), (from_st, st)):
        assert model.dim == 512
        assert model.weights_identity == {"source": "file", "file": path.name, "sha256": sha256(path)}
        prov = json.loads(json.dumps(model.provenance()))
        assert prov["weights"]["sha256"] == sha256(path)
        assert prov["preprocessing"]["mean"] == [0.485, 0.456, 0.406] and prov["dim"] == 512
    e1, e2 = from_pth.embed(crops), from_st.embed(crops)
    assert e1.shape == (3, 512)
    np.testing.assert_array_equal(e1, e2)
    assert not np.allclose(e1, load_visual_model("resnet18", "random").embed(crops))  # the file was used
    # reference: torchvision's own model with the same weights, classifier removed, same preprocessing
    ref = torchvision.models.resnet18(num_classes=7)
    ref.load_state_dict(sd)
    ref.fc = torch.nn.Identity()
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    x = (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    with torch.no_grad():
        np.testing.assert_allclose(e1, ref.eval()(x).numpy(), rtol=1e-4, atol=1e-4)


def test_missing_imagenet_weights_fail_fast_naming_file_and_directory(empty_torch_home: Path, no_network: None) -> None:
    with pytest.raises(MissingModelError) as err:
        check_visual_weights("resnet18", "imagenet")
    msg = str(err.value)
    assert "resnet18-f37072fd.pth" in msg
    assert str(empty_torch_home / "hub" / "checkpoints") in msg
    assert "TORCH_HOME" in msg and "https://download.pytorch.org/models/resnet18-f37072fd.pth" in msg
    with pytest.raises(MissingModelError, match="resnet18-f37072fd.pth"):
        load_visual_model("resnet18", "imagenet")
    with pytest.raises(MissingModelError, match="resnet50-11ad3fa6.pth"):
        load_visual_model("resnet50")


def test_imagenet_reads_the_file_at_torchvisions_cache_path(empty_torch_home: Path, crops: np.ndarray) -> None:
    target = empty_torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    target.parent.mkdir(parents=True)
    torch.save(resnet18_state_dict(seed=5), target)
    assert check_visual_weights("resnet18", "imagenet") == target
    with pytest.warns(UserWarning, match="published prefix f37072fd"):  # not the real ImageNet file
        model = load_visual_model("resnet18", "imagenet")
    assert model.weights_identity == {"source": "imagenet", "file": target.name, "sha256": sha256(target)}
    prov = model.provenance()
    assert prov["matches_published"] is False and prov["weights_url"].endswith("resnet18-f37072fd.pth")
    ref = load_visual_model("resnet18", target)
    np.testing.assert_array_equal(model.embed(crops[:1]), ref.embed(crops[:1]))


def test_wrong_or_unreadable_state_dicts_are_refused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    r50 = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50().state_dict(), r50)
    with pytest.raises(UsageError, match=r"resnet50\.pth does not fit resnet18: .*unexpected keys.*shape mismatches"):
        load_visual_model("resnet18", r50)
    partial = tmp_path / "partial.pt"
    sd = resnet18_state_dict(seed=1)
    del sd["layer4.1.bn2.weight"]
    torch.save(sd, partial)
    with pytest.raises(UsageError, match=r"partial\.pt does not fit resnet18: 1 missing keys \(layer4\.1\.bn2\.w"):
        load_visual_model("resnet18", partial)
    not_sd = tmp_path / "not-a-state-dict.pt"
    torch.save({"epoch": 3}, not_sd)
    with pytest.raises(UsageError, match="does not hold a state dict"):
        load_visual_model("resnet18", not_sd)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not safetensors")
    with pytest.raises(UsageError, match="cannot read a state dict"):
        load_visual_model("resnet18", garbage)
    with pytest.raises(MissingModelError, match="does not exist"):
        check_visual_weights("resnet18", tmp_path / "absent.pth")
    with pytest.raises(UsageError, match="'imagenet', 'random' or a state-dict file"):
        check_visual_weights("resnet18", "imagenet1k")


def test_efficientnet_lite0_imagenet_weights_work_offline(crops: np.ndarray) -> None:
    model = load_visual_model("efficientnet-lite0", "imagenet")
    assert model.dim == 1280 and model.input_size == 224
    ident = model.weights_identity
    assert ident["source"] == "imagenet" and ident["file"] == "efficientnet-lite0-57934424.pth"
    assert ident["sha256"].startswith("57934424") and model.provenance()["matches_published"] is True
    emb = model.embed(crops)
    assert emb.shape == (3, 1280) and np.isfinite(emb).all()
    # Truly ImageNet-trained, and preprocessed as trained: the shipped classifier on our embedding names the
    # photos (285 Egyptian cat, 967 espresso).
    fc = torch.load(check_visual_weights("efficientnet-lite0"), map_location="cpu", weights_only=True)
    photos = np.stack(
        [np.asarray(Image.fromarray(p).resize((224, 224))) for p in (skimage.data.chelsea(), skimage.data.coffee())]
    )
    logits = model.embed(photos) @ fc["_fc.weight"].numpy().T + fc["_fc.bias"].numpy()
    assert logits.argmax(axis=1).tolist() == [285, 967]


def test_embed_resizes_batches_and_accepts_float_crops(crops: np.ndarray) -> None:
    model = load_visual_model("resnet18", "random", batch_size=2)
    full = model.embed(crops)
    np.testing.assert_allclose(model.embed(crops, batch_size=3), full, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.embed(crops.astype(np.float32)), full, rtol=1e-5, atol=1e-5)
    small = np.stack([np.asarray(Image.fromarray(c).resize((112, 112))) for c in crops])
    assert model.embed(small).shape == (3, 512)
    assert model.embed(np.zeros((0, 224, 224, 3), np.uint8)).shape == (0, 512)
    with pytest.raises(ValueError, match="shape"):
        model.embed(crops[0])


def test_the_check_faces_are_scikit_images_astronaut() -> None:
    # read with PIL from the file scikit-image ships: the very pixels of skimage.data.astronaut()
    from emo.pipeline.synthetic import face_photo

    np.testing.assert_array_equal(face_photo(), skimage.data.astronaut())
    faces = check_faces()
    assert faces.shape == (8, 224, 224, 3) and faces.dtype == np.uint8 and len({f.tobytes() for f in faces}) == 8


def test_bf16_keeps_resnet_embeddings_and_is_refused_where_it_would_not() -> None:
    faces = check_faces()
    fp32 = load_visual_model("resnet18", "random")
    bf16 = load_visual_model("resnet18", "random", precision="bf16")
    a, b = fp32.embed(faces), bf16.embed(faces)
    assert a.dtype == b.dtype == np.float32 and not np.array_equal(a, b)  # bf16 did run
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() >= PRECISION_MIN_COSINE
    assert bf16.check_numerics(faces) == pytest.approx(cosine.min(), abs=1e-6)
    assert bf16.precision == "bf16" and "bfloat16" in bf16.provenance()["numerics"]
    assert fp32.provenance()["numerics"] == "fp32"
    # EfficientNet-Lite0's ImageNet weights move in bf16 (cosine ~0.9987): the load-time check refuses them
    with pytest.raises(UsageError, match="--visual-precision fp32"):
        load_visual_model("efficientnet-lite0", "imagenet", precision="bf16").check_numerics(faces)


def test_visual_precision_auto_is_the_backbones_measured_choice() -> None:
    from emo.pipeline.config import ExtractionConfig
    from emo.pipeline.extractors.faces import VisualOptions

    def precision(**kw: object) -> str:
        return ExtractionConfig(**kw).section(VisualOptions).visual_precision

    assert precision(visual_model="resnet18", visual_weights="random") == "bf16"
    assert precision(visual_model="resnet50", visual_weights="random") == "bf16"
    assert precision(visual_model="efficientnet-lite0") == "fp32"
    assert precision(visual_model="resnet18", visual_weights="random", visual_precision="fp32") == "fp32"
    with pytest.raises(UsageError, match="--visual-precision"):
        precision(visual_precision="fp16")
    # recorded resolved; a config recorded before the option existed reads as fp32 (what those stores ran)
    recorded = ExtractionConfig(visual_weights="random").to_dict()
    assert recorded["visual_precision"] == "bf16"
    del recorded["visual_precision"]
    assert ExtractionConfig.from_dict(recorded).section(VisualOptions).visual_precision == "fp32"


def test_onnx_runtime_keeps_the_embeddings_and_says_so(crops: np.ndarray) -> None:
    faces = check_faces()
    eager = load_visual_model("efficientnet-lite0", "imagenet")
    onnx = load_visual_model("efficientnet-lite0", "imagenet", runtime="onnxruntime")
    assert (eager.runtime, onnx.runtime) == ("torch", "onnxruntime")
    a, b = eager.embed(faces), onnx.embed(faces)
    assert not np.array_equal(a, b)  # ONNX Runtime did run (its sums differ from torch's in the last bits)
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() >= PRECISION_MIN_COSINE
    assert onnx.check_numerics(faces) == pytest.approx(cosine.min(), abs=1e-6)
    # the graph's batch axis is dynamic; smaller crops are resized before it, as in torch
    np.testing.assert_allclose(onnx.embed(crops, batch_size=2), eager.embed(crops), atol=1e-3)
    small = np.stack([np.asarray(Image.fromarray(c).resize((112, 112))) for c in crops])
    np.testing.assert_allclose(onnx.embed(small), eager.embed(small), atol=1e-3)
    assert onnx.embed(np.zeros((0, 224, 224, 3), np.uint8)).shape == (0, 1280)
    recorded = onnx.provenance()
    assert "ONNX Runtime" in recorded["numerics"] and recorded["runtime"]["provider"] == "CPUExecutionProvider"
    assert recorded["software"]["onnxruntime"] == recorded["runtime"]["onnxruntime"] == ort_version()
    assert "runtime" not in eager.provenance() and eager.provenance()["numerics"] == "fp32"
    with pytest.raises(UsageError, match="fp32"):
        load_visual_model("resnet18", "random", precision="bf16", runtime="onnxruntime")


class _Branchy(torch.nn.Module):
    """Takes another path on real faces than on the all-zero input the exporter traces: the kind of model whose
    exported graph computes something else than torch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.conv(x).mean((2, 3))
        return self.fc(features if bool(x.abs().sum() > 0) else -features)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # what the exporter says of such a model
def test_onnx_runtime_is_refused_where_the_exported_graph_differs(monkeypatch: pytest.MonkeyPatch) -> None:
    from emo.pipeline.backbones import IMAGENET_MEAN, IMAGENET_STD, REGISTRY, Backbone

    branchy = Backbone(
        name="branchy", dim=4, input_size=32, mean=IMAGENET_MEAN, std=IMAGENET_STD, build=_Branchy, head="fc",
        imagenet=lambda: None, description="a test network with data-dependent control flow", packages=("torch",),
    )  # fmt: skip
    monkeypatch.setitem(REGISTRY, "branchy", branchy)
    faces = check_faces(32)
    assert load_visual_model("branchy", "random").check_numerics(faces) == 1.0  # torch fp32: nothing to check
    with pytest.raises(UsageError, match=r"ONNX Runtime changes the embeddings of branchy .*--visual-runtime torch"):
        load_visual_model("branchy", "random", runtime="onnxruntime").check_numerics(faces)


def test_visual_runtime_auto_is_the_backbones_measured_choice() -> None:
    from emo.pipeline.config import ExtractionConfig
    from emo.pipeline.extractors.faces import VisualOptions

    def numerics(**kw: object) -> tuple[str, str]:
        options = ExtractionConfig(**kw).section(VisualOptions)
        return options.visual_precision, options.visual_runtime

    assert numerics(visual_model="efficientnet-lite0") == ("fp32", "onnxruntime")
    assert numerics(visual_model="efficientnet-lite0", visual_runtime="torch") == ("fp32", "torch")
    assert numerics(visual_model="resnet18", visual_weights="random") == ("bf16", "torch")
    # asking for ONNX Runtime picks fp32 where the precision is left to auto; bf16 with it is refused
    assert numerics(visual_weights="random", visual_runtime="onnxruntime") == ("fp32", "onnxruntime")
    with pytest.raises(UsageError, match="--visual-precision fp32"):
        numerics(visual_weights="random", visual_runtime="onnxruntime", visual_precision="bf16")
    with pytest.raises(UsageError, match="--visual-runtime"):
        numerics(visual_runtime="tensorrt")
    # recorded resolved; a config recorded before the option existed reads as torch, and torch is not recorded
    # (a ResNet store keeps its config hash)
    recorded = ExtractionConfig(visual_model="efficientnet-lite0").to_dict()
    assert recorded["visual_runtime"] == "onnxruntime"
    del recorded["visual_runtime"]
    assert ExtractionConfig.from_dict(recorded).section(VisualOptions).visual_runtime == "torch"
    assert "visual_runtime" not in ExtractionConfig(visual_weights="random").to_dict()
