"""What every benchmark shares: the machine and software stamp, medians, subprocess timing with peak memory,
and the summary rows ``run.py`` turns into the Markdown table.

A *measure* is one line of issue 7's table: ``{"measure", "how", "figure", "value", "target", "met"}``;
``value`` is the number compared with the target (None when the benchmark could not produce it), ``figure``
its human reading. Each benchmark module exposes ``run(quick) -> list[dict]`` (its raw rows) and
``summary(rows) -> list[dict]`` (its measures).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: Generated media and stores (``data/`` is gitignored); reused between runs, rebuilt when missing.
CACHE = ROOT / "data" / "bench"
PYTHON = sys.executable

VERSIONS = (
    "numpy", "scipy", "torch", "torchvision", "facenet-pytorch", "transformers", "av", "imageio-ffmpeg",
    "librosa", "opensmile", "zarr", "numcodecs", "dask", "distributed", "scikit-learn", "mealpy", "psutil",
)  # fmt: skip


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state() -> dict[str, Any]:
    """The commit, and whether the working tree differs from it (a run on uncommitted code says so)."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(status) if status is not None else None,
        "modified_files": status.splitlines() if status else [],
    }


def versions(dists: Sequence[str] = VERSIONS) -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in dists:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def machine() -> dict[str, Any]:
    """Cores, CPU model, memory, platform (the load average is recorded separately, before and after)."""
    try:
        mem = next(
            int(line.split()[1]) * 1024
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    except (OSError, StopIteration):
        mem = None
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_available": affinity,
        "memory_bytes": mem,
        "platform": platform.platform(),
    }


def environment(dists: Sequence[str] = VERSIONS) -> dict[str, Any]:
    """The machine, the load average now, Python and ``dists``' versions, and the git commit: the stamp a
    stand-alone benchmark script writes next to its numbers."""
    return {
        **machine(),
        "load_average": load_average(),
        "versions": versions(dists),
        "git_commit": git_state()["commit"],
    }


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of repeated timings (rounded for the JSON)."""
    return {"median": round(median(values), 4), "min": round(min(values), 4), "max": round(max(values), 4)}


def remove_store(store: Path) -> None:
    """Delete a benchmark's store directory and the ``STORE.extract-config.toml`` that ``emo extract`` writes
    beside it, so runs leave nothing behind under ``data/bench/stores``."""
    shutil.rmtree(store, ignore_errors=True)
    store.with_name(f"{store.name}.extract-config.toml").unlink(missing_ok=True)


def measure(measure: str, how: str, value: float | None, figure: str, target: str, met: bool | None) -> dict:
    return {"measure": measure, "how": how, "value": value, "figure": figure, "target": target, "met": met}


def log(message: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def thread_env(threads: int | None) -> dict[str, str]:
    """The environment of a child process; ``threads`` pins OpenMP/BLAS pools the way Dask's nanny does."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["PYTHONPATH"] = str(ROOT)
    if threads is not None:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(threads)
    return env


@dataclass
class ProcessRun:
    """A finished child process: wall seconds, output, and the peaks of its process tree's memory: the sum of
    RSS (shared library pages counted once per process: an upper bound), the sum of PSS (shared pages split
    between the processes that map them: the physical memory the tree uses) and the sum of anonymous memory
    (heap, tensors, model weights; no file-backed pages). ``cpu_s`` is the user + system time of the whole tree
    (every process that was waited for: Dask's nannies and workers, FFmpeg), so ``cpu_s / wall_s`` is how many
    cores it kept busy."""

    wall_s: float
    returncode: int
    stdout: str
    stderr: str
    peak_rss_bytes: int
    peak_pss_bytes: int
    peak_anon_bytes: int
    peak_processes: int
    peak_by_process: dict[str, dict[str, int]]
    cpu_s: float


_ROLLUP_FIELDS = {"Rss:": "rss", "Pss:": "pss", "Anonymous:": "anon"}


def _memory(pid: int) -> dict[str, int] | None:
    """Rss, Pss and Anonymous bytes of a process from /proc/PID/smaps_rollup (None if it is gone)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] in _ROLLUP_FIELDS:
            out[_ROLLUP_FIELDS[parts[0]]] = int(parts[1]) * 1024
    return out if len(out) == len(_ROLLUP_FIELDS) else None


def _tree_memory(root: Any) -> tuple[dict[str, int], dict[Any, tuple[str, dict[str, int]]]]:
    """Summed Rss/Pss/Anonymous of ``root``'s process tree, and each living process's name and figures."""
    import psutil

    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return {}, {}
    totals = {"rss": 0, "pss": 0, "anon": 0}
    per: dict[Any, tuple[str, dict[str, int]]] = {}
    for p in procs:
        mem = _memory(p.pid)
        if mem is None:
            continue
        try:
            name = " ".join(p.cmdline()[1:3])[-80:] or p.name()
        except psutil.Error:
            name = "?"
        per[p] = (f"{p.pid} {name}", mem)
        for k in totals:
            totals[k] += mem[k]
    return totals, per


def run_process(
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    sample_s: float | None = 0.1,
    rss_sample_s: float = 0.01,
    timeout: float = 7200,
) -> ProcessRun:
    """Run ``cmd``, timing it and sampling the memory of its whole process tree (None: no sampling; timing runs
    go without). The processes' summed RSS is read every ``rss_sample_s`` (from /proc/PID/statm, cheap: a
    transient of a few tens of ms, a batch of activations, is seen); the tree and its PSS and anonymous memory
    every ``sample_s`` (/proc/PID/smaps_rollup walks every mapping, which costs the kernel time)."""
    import psutil

    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    root = psutil.Process(proc.pid)
    peak: dict[str, Any] = {"rss": 0, "pss": 0, "anon": 0, "n": 0, "per": {}}
    stop = threading.Event()

    def sample() -> None:
        tree: dict[Any, tuple[str, dict[str, int]]] = {}
        next_tree = 0.0
        while not stop.is_set():
            if time.perf_counter() >= next_tree:
                totals, tree = _tree_memory(root)
                for k in ("pss", "anon"):
                    peak[k] = max(peak[k], totals.get(k, 0))
                next_tree = time.perf_counter() + sample_s
            rss = {}
            for p in tree:
                try:
                    rss[p] = p.memory_info().rss
                except psutil.Error:
                    continue
            total = sum(rss.values())
            if total > peak["rss"]:
                per = {tree[p][0]: {**tree[p][1], "rss": v} for p, v in rss.items()}  # pss/anon: the tree's reading
                peak.update(rss=total, n=len(rss), per=per)
            stop.wait(rss_sample_s)

    sampler = threading.Thread(target=sample, daemon=True)
    if sample_s is not None:
        sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        wall = time.perf_counter() - started
        stop.set()
        if sampler.is_alive():
            sampler.join()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(getattr(children, f) - getattr(children_before, f) for f in ("ru_utime", "ru_stime"))
    return ProcessRun(
        wall, proc.returncode, out, err, peak["rss"], peak["pss"], peak["anon"], peak["n"], peak["per"], cpu
    )


def check(run: ProcessRun, what: str) -> ProcessRun:
    if run.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {run.returncode}):\n{run.stderr[-3000:]}")
    return run
