"""Where model stages run: ``--device cpu|cuda|auto`` resolved against the workers of a Dask cluster.

With CUDA, tasks that run models are submitted with ``resources={"GPU": 1}``, so only workers that
advertise a ``GPU`` resource (``dask worker --resources GPU=1``, or the embedded cluster started for a GPU
run) receive them, one at a time per GPU slot; configurations without models (audio only) never ask for a
GPU. The check happens against the connected cluster before anything is submitted, so ``--device cuda``
without a GPU worker is an immediate error instead of tasks waiting forever for a worker that never comes.

Test hook: the environment variable ``EMO_GPU_ROUTING_DEVICE`` (e.g. ``cpu``) makes a CUDA run route its
tasks exactly as above but compute on that device instead, so the routing can be exercised with real
``dask worker --resources GPU=1`` processes on a machine without a GPU. It is not meant for anything else.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distributed import Client

from emo.errors import UsageError

log = logging.getLogger(__name__)

DEVICES = ("cpu", "cuda", "auto")
GPU_RESOURCE = "GPU"
ROUTING_HOOK = "EMO_GPU_ROUTING_DEVICE"


@dataclass(frozen=True)
class DevicePlan:
    """The resolved choice: the torch ``device`` of the model stages, and whether their tasks need a worker
    with a ``GPU`` resource."""

    device: str = "cpu"
    gpu_resource: bool = False
    reason: str = ""

    @property
    def resources(self) -> dict[str, float] | None:
        """``resources=`` for ``Client.submit``."""
        return {GPU_RESOURCE: 1} if self.gpu_resource else None


def check_device(requested: str) -> None:
    if requested not in DEVICES:
        raise UsageError(f"unknown --device {requested!r}; choose one of: {', '.join(DEVICES)}")


def routing_hook() -> str | None:
    """The compute device forced by the test hook, if set."""
    return os.environ.get(ROUTING_HOOK) or None


def local_cuda_available() -> bool:
    """``torch.cuda.is_available()`` in this process. Where torch is not loaded (the extract driver, which
    never needs it) the same answer without importing it: torch built with CUDA kernels, and the CUDA driver
    reporting at least one visible device."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return bool(torch.cuda.is_available())
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None or not any((Path(spec.origin).parent / "lib").glob("libtorch_cuda*")):
        return False
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    return driver.cuInit(0) == 0 and driver.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0


def embedded_gpu_workers(requested: str, needs_models: bool) -> bool:
    """Whether an embedded LocalCluster should start its workers with a ``GPU`` resource."""
    if not needs_models or requested == "cpu":
        return False
    return requested == "cuda" or routing_hook() is not None or local_cuda_available()


def gpu_workers(client: Client) -> list[str]:
    """Addresses of the cluster's workers advertising at least one ``GPU``."""
    workers: dict[str, Any] = client.scheduler_info(n_workers=-1).get("workers", {})
    return sorted(a for a, w in workers.items() if (w.get("resources") or {}).get(GPU_RESOURCE, 0) >= 1)


def resolve_device(client: Client, requested: str, needs_models: bool) -> DevicePlan:
    """The plan for this run on this cluster (see the module docstring); :class:`UsageError` for a CUDA run
    without a usable GPU worker."""
    check_device(requested)
    if not needs_models:
        if requested == "cuda":
            log.info("--device cuda: no model features requested, nothing needs a GPU")
        return DevicePlan(reason="no model stages")
    if requested == "cpu":
        return DevicePlan(reason="--device cpu")
    gpus = gpu_workers(client)
    hook = routing_hook()
    if requested == "cuda" and not gpus:
        n = len(client.scheduler_info(n_workers=-1).get("workers", {}))
        raise UsageError(
            f"--device cuda: none of the {n} workers of the cluster advertises a {GPU_RESOURCE} resource; start "
            f"GPU workers with `dask worker SCHEDULER --resources {GPU_RESOURCE}=1`, or use --device cpu or auto"
        )
    if not gpus:
        return DevicePlan(reason="--device auto: no worker advertises a GPU")
    if hook:
        log.warning("%s=%s: tasks go to GPU-resource workers but compute on %s (test hook)", ROUTING_HOOK, hook, hook)
        return DevicePlan(device=hook, gpu_resource=True, reason=f"test hook {ROUTING_HOOK}={hook}")
    cuda = client.run(local_cuda_available, workers=gpus)
    blind = sorted(a for a, ok in cuda.items() if not ok)
    if requested == "cuda" and blind:
        raise UsageError(
            f"--device cuda: worker(s) {', '.join(blind)} advertise a {GPU_RESOURCE} resource but torch sees no "
            "CUDA device there (CPU-only torch, or no driver)"
        )
    if blind:
        log.warning(
            "--device auto: worker(s) %s advertise a GPU but torch sees no CUDA there; using the CPU", ", ".join(blind)
        )
        return DevicePlan(reason="--device auto: GPU workers without CUDA")
    return DevicePlan(device="cuda", gpu_resource=True, reason=f"--device {requested}: {len(gpus)} GPU worker(s)")
