"""benchmarks/gpu.py, the GPU check of issue 22, as far as a machine without a GPU runs it: the one-line skip, the
whole path on the CPU with tiny inputs, and what only a GPU run reaches (the measures of a CUDA run, the plan,
the sampler reading nvidia-smi, the budget) on made-up inputs."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu
from benchmarks.common import RESULTS

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.py"
#: what the skip must not import: it says no GPU before loading any of the benchmark's machinery
HEAVY = ("emo", "distributed", "dask", "zarr", "facenet_pytorch", "transformers", "librosa", "benchmarks.extraction")


def run_script(*args: str, timeout: float, python_args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, *python_args, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_without_cuda_it_says_so_on_one_line_and_writes_nothing(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device: the check would run")
    before = set(RESULTS.glob("gpu-*.json"))
    proc = run_script("--output", str(tmp_path), timeout=180, python_args=("-X", "importtime"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == [
        f"gpu: no CUDA device (torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}): skipped"
    ]
    assert "Traceback" not in proc.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time")}
    assert "torch" in imported and not [m for m in imported if m.split(".")[0] in HEAVY or m in HEAVY]
    assert not list(tmp_path.iterdir()) and set(RESULTS.glob("gpu-*.json")) == before


def test_tiny_cpu_run_reaches_every_part(tmp_path: Path) -> None:
    proc = run_script("--device", "cpu", "--tiny", "--output", str(tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    (path,) = tmp_path.glob("gpu-*-tiny.json")
    report = json.loads(path.read_text())
    assert [s["status"] for s in report["steps"]] == ["ok"] * len(report["steps"]), report["steps"]
    (row,) = report["parts"]["extraction"]  # --device cpu with 1 worker: the device's run is the scaling's
    assert row["variant"] == gpu._variant("cpu", 1) and row["clips"] == gpu.TINY_CLIPS
    assert row["media_s"] > 0 and row["wall_s"] > 0 and row["media_per_s"] > 0 and row["workers"]
    fusion = report["parts"]["fusion"]
    assert [r["method"] for r in fusion] == list(gpu.TINY_HEADS)
    assert all(r["device"] == "cpu" and r["epoch_s"]["median"] > 0 for r in fusion)
    assert report["parts"]["faces"] and all(r["ms_per_frame"] > 0 for r in report["parts"]["faces"])
    measures = {m["measure"]: m for m in report["measures"]}
    for name in ("extraction throughput (cpu)", "fusion epoch (attention head)", "face stage (cpu)"):
        assert measures[name]["value"] > 0
        assert f"| {name} |" in proc.stdout
    assert report["gpu"]["backend"] is None and "GPU: none" in proc.stdout
    assert report["text_model"]["name"] == gpu.TEXT_MODEL


def _row(device: str, workers: int, wall: float) -> dict:
    return {
        "variant": gpu._variant(device, workers),
        "clips": 32,
        "media_s": 120.0,
        "wall_s": wall,
        "cpu_s": wall * min(workers, 14),
        "media_per_s": 120.0 / wall,
        "stage_seconds": {"model load": 8.0 * workers, "decode video": 20.0},
        "workers": {str(i): 32 // workers for i in range(workers)},
    }


def test_the_measures_of_a_cuda_run_with_16_workers() -> None:
    rows = [_row("cuda", 16, 20.0), _row("cuda", 1, 40.0), _row("cpu", 16, 24.0), _row("cpu", 1, 192.0)]
    measures = {m["measure"]: m for m in gpu.extraction_measures(rows, "cuda", 16)}
    throughput = measures["extraction throughput (cuda)"]
    assert throughput["value"] == 6.0 and "1.20x the CPU's 16 workers" in throughput["figure"]
    assert "16 workers 20.0 s" in throughput["how"] and "1 worker 40.0 s" in throughput["how"]
    scaling = measures["CPU scaling, 1 vs 16 workers"]
    assert scaling["value"] == 0.5 and scaling["figure"] == "8.00x, parallel efficiency 50%" and scaling["met"] is False
    assert "model load per worker 8.0 s vs 8.0 s" in scaling["how"]


def test_the_plan_of_a_cuda_run_puts_the_issue_s_figures_first() -> None:
    from emo.fusion.heads import HEADS

    args = argparse.Namespace(tiny=False, clips=None, workers=16)
    steps = gpu.plan(args, "cuda", text=lambda: None)
    names = [s.name for s in steps]
    assert names[:4] == [gpu._variant("cuda", 16), gpu._variant("cuda", 1), gpu._variant("cpu", 16),
                         gpu._variant("cpu", 1)]  # fmt: skip
    assert names[4:6] == ["fusion epoch attention (cuda)", "face stage (cuda)"]
    assert sorted(names[6:]) == sorted(f"fusion epoch {h} (cuda)" for h in HEADS if h != "attention")
    assert names[-2:] == ["fusion epoch cross-tucker (cuda)", "fusion epoch speech-cnn (cuda)"]
    assert steps[4].need_s >= 100 and steps[-2].need_s >= 100  # the two store builds


def test_sampler_reads_nvidia_smi_without_pynvml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        '#!/bin/sh\ncase "$*" in\n  *name,driver_version*) echo "NVIDIA H100 80GB HBM3, 570.86.15, 81559" ;;\n'
        '  *) echo "37, 2048" ;;\nesac\n'
    )
    fake.chmod(0o755)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` fails, as on an image without it
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    sampler = gpu.GpuSampler()
    assert sampler.backend == "nvidia-smi"
    assert sampler.info == {"name": "NVIDIA H100 80GB HBM3", "driver": "570.86.15", "memory_total_bytes": 81559 << 20}
    sampler.sample()
    sampler.sample()
    window = sampler.window()
    assert window is not None and window["samples"] >= 2
    assert window["utilisation_mean_pct"] == 37.0 and window["memory_peak_bytes"] == 2048 << 20
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    none = gpu.GpuSampler()
    assert none.backend is None and "nvidia-smi" in none.reason


def test_a_step_over_the_budget_is_skipped_and_a_broken_one_reported(tmp_path: Path) -> None:
    fusion_row = {"method": "attention", "train_clips": 10, "val_clips": 1, "epochs_timed": 1, "device": "cpu",
                  "epoch_s": {"median": 0.25, "min": 0.25, "max": 0.25}}  # fmt: skip

    def broken() -> list[dict]:
        raise ValueError("broken on purpose")

    steps = [
        gpu.Step("fusion", "fusion epoch attention (cpu)", 0, lambda: [fusion_row]),
        gpu.Step("faces", "too big", 1e9, lambda: pytest.fail("ran a step the budget had no time for")),
        gpu.Step("faces", "broken", 0, broken),
    ]
    args = argparse.Namespace(device="cpu", tiny=True, workers=1, budget_s=1e6, output=tmp_path)
    assert gpu.run_check(args, {"torch": "?"}, ["--device", "cpu"], steps) == 1
    (path,) = tmp_path.glob("gpu-*.json")
    report = json.loads(path.read_text())
    assert [(s["name"], s["status"]) for s in report["steps"]] == [
        ("fusion epoch attention (cpu)", "ok"), ("too big", "skipped"), ("broken", "failed")
    ]  # fmt: skip
    assert report["steps"][1]["reason"].startswith("budget: ")
    assert report["steps"][2]["reason"] == "ValueError: broken on purpose"
    assert [m["measure"] for m in report["measures"]] == ["fusion epoch (attention head)", "too big", "broken"]


def test_the_budget_kills_the_child_processes_when_it_runs_out() -> None:
    # in a process of its own: the budget kills every child of the process it runs in
    code = (
        "import subprocess\nfrom benchmarks.gpu import Budget\nb = Budget(1.0)\n"
        "print(subprocess.Popen(['sleep', '60']).wait())"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert int(proc.stdout) == -9, proc.stderr  # SIGKILL from the budget: `sleep 60` would have ended with 0


def test_the_carry_is_pinned_and_covers_every_import_of_emo() -> None:
    """A new third-party import in emo (or in the benchmarks gpu.py runs) must be carried, be in the GPU image,
    or be named as not needed there (benchmarks/gpu_carry.py), so the GPU check keeps running."""
    from benchmarks import gpu_carry

    wanted = gpu_carry.pins()  # every carried package has its version in requirements/lock.txt
    assert not set(map(gpu_carry.canonical, gpu_carry.NEVER)) & set(wanted)
    wheels = [Path(f"{n.replace('-', '_')}-{v}-py3-none-any.whl") for n, v in wanted.items()]  # as wheels are named
    lines, problems = gpu_carry.imports_problems(wheels)
    assert problems == [] and lines
