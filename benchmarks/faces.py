"""Face-detection benchmark: full-resolution MTCNN one frame at a time vs emo's downscaled, batched path.

Frames are skimage's astronaut photo pasted at random positions and scales on 640x480 and 1280x720 canvases
(face widths from about 30 to 120 pixels), plus frames without a face (uniform colour, coffee and rocket
photos). For each method: milliseconds per frame (best of the repeats), how often it finds the face,
agreement with the full-resolution batch-1 reference (both find a face with IoU >= 0.5; both find none),
and landmark error against the placement truth (astronaut's landmarks found at full resolution on the
original photo, moved by the known paste), normalised by the inter-ocular distance (NME).

    .venv/bin/python benchmarks/faces.py            # full run, writes benchmarks/results/faces.json
    .venv/bin/python benchmarks/faces.py --quick    # fewer frames, one repeat
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import skimage.data
import torch
from PIL import Image

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import environment as common_environment  # noqa: E402
from benchmarks.common import load_average  # noqa: E402
from emo.pipeline.face_detection import DEFAULT_BATCH_SIZE, DEFAULT_DETECT_SIZE, FaceDetections, FaceDetector  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "faces.json"
CANVASES = ((480, 640), (720, 1280))
#: astronaut photo side as a fraction of 512 px; its face is ~17% of the photo's width
SCALES = {640: (0.35, 0.93), 1280: (0.4, 1.4)}
#: (label, detect_size, batch_size, refine); the first is the reference every other method is compared with.
METHODS = (
    ("full-res, batch 1", None, 1, False),
    (
        f"emo default: detect_size {DEFAULT_DETECT_SIZE}, batch {DEFAULT_BATCH_SIZE}, refine",
        DEFAULT_DETECT_SIZE,
        DEFAULT_BATCH_SIZE,
        True,
    ),
    ("full-res, batch 8", None, 8, False),
    ("detect_size 640, batch 8, refine", 640, 8, True),
    ("detect_size 480, batch 1, refine", 480, 1, True),
    ("detect_size 480, batch 16, refine", 480, 16, True),
    ("detect_size 480, batch 8, no refine", 480, 8, False),
    ("detect_size 320, batch 8, refine", 320, 8, True),
    ("detect_size 320, batch 8, no refine", 320, 8, False),
)


@dataclass
class Frame:
    canvas: str
    image: np.ndarray
    truth: np.ndarray | None  # [5, 2] placement-truth landmarks, None for a frame without a face
    face_width: float


def make_frames(quick: bool, seed: int = 0) -> list[Frame]:
    """Astronaut at random positions/scales on each canvas, plus face-free frames; deterministic."""
    rng = np.random.default_rng(seed)
    photo = skimage.data.astronaut()
    source = FaceDetector(detect_size=None).detect([photo])
    base_lm, base_width = (
        source.landmarks[0].astype(np.float64),
        float(source.boxes[0, 2] - source.boxes[0, 0]),
    )
    astronaut = Image.fromarray(photo)
    distractors = [skimage.data.coffee(), skimage.data.rocket()]
    n_face, n_none = (6, 2) if quick else (20, 4)
    frames = []
    for h, w in CANVASES:
        label = f"{w}x{h}"
        lo, hi = SCALES[w]
        for _ in range(n_face):
            size = min(int(512 * rng.uniform(lo, hi)), h)
            x, y = int(rng.integers(0, w - size + 1)), int(rng.integers(0, h - size + 1))
            canvas = np.full((h, w, 3), rng.integers(0, 256, size=3), dtype=np.uint8)
            canvas[y : y + size, x : x + size] = np.asarray(
                astronaut.resize((size, size), Image.Resampling.BILINEAR)
            )
            s = size / 512
            truth = (base_lm + 0.5) * s - 0.5 + [x, y]  # pixel-index coordinates through the resize and paste
            frames.append(Frame(label, canvas, truth, base_width * s))
        for k in range(n_none):
            if k % 2 == 0:
                image = np.full((h, w, 3), rng.integers(0, 256, size=3), dtype=np.uint8)
            else:
                image = np.asarray(
                    Image.fromarray(distractors[(k // 2) % 2]).resize((w, h), Image.Resampling.BILINEAR)
                )
            frames.append(Frame(label, image, None, 0.0))
    return frames


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def _nme(landmarks: np.ndarray, truth: np.ndarray) -> float:
    return float(np.linalg.norm(landmarks - truth, axis=1).mean() / np.linalg.norm(truth[1] - truth[0]))


def _time_method(
    detector: FaceDetector, images: list[np.ndarray], repeats: int
) -> tuple[float, FaceDetections]:
    detector.detect(images[:1])  # warm-up
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = detector.detect(images)
        best = min(best, time.perf_counter() - t0)
    assert result is not None
    return best * 1000.0 / len(images), result


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 3) if den else None


def run(quick: bool, threads: int = 1) -> list[dict]:
    """One row per (canvas, method): ms/frame, detection rates, agreement with full-res batch 1, NME."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        data = make_frames(quick)
        rows: list[dict] = []
        for h, w in CANVASES:
            canvas = f"{w}x{h}"
            frames = [f for f in data if f.canvas == canvas]
            images = [f.image for f in frames]
            has_face = np.array([f.truth is not None for f in frames])
            reference: FaceDetections | None = None
            for name, detect_size, batch_size, refine in METHODS:
                detector = FaceDetector(detect_size=detect_size, batch_size=batch_size, refine=refine)
                ms, det = _time_method(detector, images, repeats=1 if quick else 3)
                if reference is None:
                    reference = det
                ref_face = np.flatnonzero(reference.found)
                ious = [box_iou(det.boxes[i], reference.boxes[i]) for i in ref_face if det.found[i]]
                nme = [_nme(det.landmarks[i], frames[i].truth) for i in np.flatnonzero(det.found & has_face)]
                missed = [round(frames[i].face_width) for i in np.flatnonzero(has_face & ~det.found)]
                rows.append(
                    {
                        "canvas": canvas,
                        "method": name,
                        "detect_size": detect_size,
                        "batch_size": batch_size,
                        "refine": refine,
                        "frames": len(frames),
                        "face_frames": int(has_face.sum()),
                        "ms_per_frame": round(ms, 1),
                        "face_found_rate": _rate(int(det.found[has_face].sum()), int(has_face.sum())),
                        "missed_face_widths_px": missed,
                        "false_face_rate": _rate(int(det.found[~has_face].sum()), int((~has_face).sum())),
                        "agree_face_iou50": _rate(sum(iou >= 0.5 for iou in ious), len(ref_face)),
                        "agree_no_face": _rate(
                            int((~det.found & ~reference.found).sum()), int((~reference.found).sum())
                        ),
                        "mean_iou_vs_reference": round(float(np.mean(ious)), 3) if ious else None,
                        "landmark_nme_vs_truth": round(float(np.mean(nme)), 4) if nme else None,
                        "torch_threads": threads,
                    }
                )
        return rows
    finally:
        torch.set_num_threads(previous_threads)


def environment() -> dict[str, Any]:
    """Machine and software facts recorded next to the numbers."""
    return common_environment(("torch", "torchvision", "facenet-pytorch", "numpy", "pillow"))


def summary(rows: list[dict]) -> list[dict]:
    """The face-stage line of ``benchmarks/run.py``: speed-up of emo's path over full-resolution MTCNN one frame at
    a time per canvas, and the lowest detection agreement (face with IoU >= 0.5, or no face on both sides)."""
    reference, shipped = METHODS[0][0], METHODS[1][0]
    parts, agreements, speedups = [], [], []
    for h, w in CANVASES:
        canvas = f"{w}x{h}"
        by = {r["method"]: r for r in rows if r["canvas"] == canvas}
        if reference not in by or shipped not in by:
            continue
        ref, emo = by[reference], by[shipped]
        speedup = ref["ms_per_frame"] / emo["ms_per_frame"]
        agree = min(a for a in (emo["agree_face_iou50"], emo["agree_no_face"]) if a is not None)
        speedups.append(speedup)
        agreements.append(agree)
        parts.append(
            f"{canvas}: {ref['ms_per_frame']:.1f} -> {emo['ms_per_frame']:.1f} ms/frame ({speedup:.1f}x), "
            f"agreement {100 * agree:.0f}%"
        )
    if not agreements:
        return []
    threads = rows[0]["torch_threads"]
    return [
        {
            "measure": "face stage",
            "how": f"MTCNN full resolution one frame at a time vs emo's path ({shipped}), {threads} torch thread; "
            + "; ".join(parts),
            "value": round(min(agreements), 3),
            "figure": f"{min(speedups):.1f}-{max(speedups):.1f}x faster, agreement {100 * min(agreements):.0f}%",
            "target": "report speed-up; agreement >= 98%",
            "met": min(agreements) >= 0.98,
        }
    ]


def markdown(rows: list[dict]) -> str:
    head = (
        "canvas",
        "method",
        "ms/frame",
        "face found",
        "missed face widths (px)",
        "agree face (IoU>=0.5)",
        "agree no-face",
        "mean IoU vs ref",
        "landmark NME vs truth",
    )

    def fmt(v: Any, spec: str) -> str:
        return "" if v is None else format(v, spec)

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = (
            r["canvas"],
            r["method"],
            fmt(r["ms_per_frame"], ".1f"),
            fmt(r["face_found_rate"], ".2f"),
            ", ".join(map(str, r["missed_face_widths_px"])) or "-",
            fmt(r["agree_face_iou50"], ".2f"),
            fmt(r["agree_no_face"], ".2f"),
            fmt(r["mean_iou_vs_reference"], ".3f"),
            fmt(r["landmark_nme_vs_truth"], ".3f"),
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames, one timing repeat")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (Dask workers run with 1)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    env_before = environment()
    t0 = time.perf_counter()
    rows = run(args.quick, threads=args.threads)
    report = {
        "benchmark": "faces",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "quick": args.quick,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": env_before,
        "load_average_after": load_average(),
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(rows))
    print(
        f"\n{env_before['cpu']}, {env_before['cores']} cores, torch threads {args.threads}, load average "
        f"before {env_before['load_average']} after {report['load_average_after']}; wrote {args.output}"
    )


if __name__ == "__main__":
    main()
