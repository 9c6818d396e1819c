"""Face tracking benchmark (``--face-track K``): agreement of tracked faces with per-frame MTCNN and the speed-up
of the face stage, per K, on three kinds of sampled-frame sequences:

- ``benchmark clips``: the 720p RAVDESS-like clips of ``benchmarks/media.py``, decoded at 5 fps as
  ``emo extract`` samples them;
- ``fast motion``: a real photo (skimage's astronaut) pasted on a 1280x720 photo background (skimage's coffee),
  jumping up to 45% of the face's width, turning by up to 20 degrees and changing scale by up to 25% between
  consecutive sampled frames (a head moving fast, seen at 5 fps);
- ``cut``: shots of two real faces (the astronaut; skimage's cameraman, grey) cut into each other, with the
  second face in a different place, and once where the first face was.

For each K: the fraction of frames on which tracking agrees with per-frame detection (both find a face with
IoU >= 0.5, or both find none), the landmark error against per-frame detection normalised by its inter-ocular
distance (mean and 95th percentile), and milliseconds per frame of detection (one torch thread, as a Dask
worker runs it). The default K is the largest whose agreement is >= 98% and mean landmark error <= 3% on every
sequence set.

    .venv/bin/python benchmarks/face_tracking.py           # writes benchmarks/results/face_tracking.json
    .venv/bin/python benchmarks/face_tracking.py --quick   # fewer frames, two benchmark clips
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import environment as common_environment  # noqa: E402
from benchmarks.common import load_average  # noqa: E402
from benchmarks.faces import box_iou  # noqa: E402
from emo.pipeline.face_detection import FaceDetections, FaceDetector  # noqa: E402
from emo.pipeline.face_tracking import FaceTracker  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "face_tracking.json"
KS = (1, 2, 3, 5, 8, 10, 15, 25)
AGREEMENT_TARGET = 0.98
LANDMARK_TARGET = 0.03
SIZE = (720, 1280)


def _paste(canvas: np.ndarray, photo: Image.Image, cx: float, cy: float, side: int, angle: float) -> np.ndarray:
    """``photo`` resized to ``side`` and turned by ``angle`` degrees, centred at (cx, cy) on a copy of ``canvas``."""
    img = photo.resize((side, side), Image.Resampling.BILINEAR).rotate(angle, Image.Resampling.BILINEAR)
    out = canvas.copy()
    h, w = out.shape[:2]
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    sx0, sy0 = max(0, -x0), max(0, -y0)
    x1, y1 = min(w, x0 + side), min(h, y0 + side)
    if x1 > max(0, x0) and y1 > max(0, y0):
        patch = np.asarray(img)[sy0 : sy0 + y1 - max(0, y0), sx0 : sx0 + x1 - max(0, x0)]
        out[max(0, y0) : y1, max(0, x0) : x1] = patch
    return out


def _photos() -> tuple[Image.Image, Image.Image, np.ndarray]:
    import skimage.data

    astronaut = Image.fromarray(skimage.data.astronaut())
    cameraman = Image.fromarray(np.repeat(skimage.data.camera()[..., None], 3, axis=2))
    background = np.asarray(Image.fromarray(skimage.data.coffee()).resize(SIZE[::-1], Image.Resampling.BILINEAR))
    return astronaut, cameraman, background


def fast_motion(n: int, seed: int = 0) -> list[np.ndarray]:
    """The astronaut moving fast over the coffee photo, ``n`` sampled frames."""
    astronaut, _, background = _photos()
    rng = np.random.default_rng(seed)
    h, w = SIZE
    side, cx, cy, angle = 520.0, w / 2, h / 2, 0.0
    frames = []
    for _ in range(n):
        frames.append(_paste(background, astronaut, cx, cy, int(side), angle))
        face = 0.17 * side  # the face is ~17% of the photo's width
        cx = float(np.clip(cx + rng.uniform(-0.45, 0.45) * face, side * 0.3, w - side * 0.3))
        cy = float(np.clip(cy + rng.uniform(-0.45, 0.45) * face, side * 0.3, h - side * 0.3))
        side = float(np.clip(side * rng.uniform(0.8, 1.25), 380, 900))
        angle = float(np.clip(angle + rng.uniform(-20, 20), -30, 30))
    return frames


def cuts(n_per_shot: int, seed: int = 1) -> list[np.ndarray]:
    """Four shots: astronaut left, cameraman right, astronaut right, cameraman where the astronaut was."""
    astronaut, cameraman, background = _photos()
    rng = np.random.default_rng(seed)
    shots = (
        (astronaut, 380.0, 360.0, 560),
        (cameraman, 900.0, 330.0, 900),  # the cameraman's face is ~11% of his photo
        (astronaut, 860.0, 380.0, 480),
        (cameraman, 860.0, 360.0, 820),
    )
    frames = []
    for photo, cx, cy, side in shots:
        for _ in range(n_per_shot):
            frames.append(_paste(background, photo, cx, cy, side, 0.0))
            cx, cy = cx + rng.uniform(-6, 6), cy + rng.uniform(-4, 4)  # a slow drift within the shot
    return frames


def benchmark_clips(n_clips: int) -> Iterator[list[np.ndarray]]:
    """Each benchmark clip's frames as ``emo extract`` samples them (5 fps)."""
    from benchmarks.media import clips_of, ravdess_dataset
    from emo.pipeline.decode import FrameStream

    for path in clips_of(ravdess_dataset(n_clips))[:n_clips]:
        yield [frame for _, frame in FrameStream(path, 5.0)]


def compare(det: FaceDetections, ref: FaceDetections) -> tuple[int, list[float]]:
    """(frames that agree, landmark errors / reference inter-ocular distance on frames where both found a face)."""
    agree, errors = 0, []
    for i in range(len(ref)):
        if det.found[i] and ref.found[i]:
            agree += box_iou(det.boxes[i], ref.boxes[i]) >= 0.5
            iod = float(np.linalg.norm(ref.landmarks[i, 1] - ref.landmarks[i, 0]))
            errors.append(float(np.linalg.norm(det.landmarks[i] - ref.landmarks[i], axis=1).mean() / iod))
        else:
            agree += det.found[i] == ref.found[i]
    return agree, errors


def _track(detector: FaceDetector, k: int, sequences: list[list[np.ndarray]]) -> tuple[float, list[FaceDetections]]:
    tracker = FaceTracker(detector, k)
    out, seconds = [], 0.0
    for frames in sequences:
        tracker.reset()
        t0 = time.perf_counter()
        out.append(FaceDetections.concat([tracker(frames[i : i + 16]) for i in range(0, len(frames), 16)]))
        seconds += time.perf_counter() - t0
    return seconds, out


def run(quick: bool, threads: int = 1) -> list[dict]:
    """One row per (sequence set, K)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        sets = {
            "benchmark clips": list(benchmark_clips(2 if quick else 6)),
            "fast motion": [fast_motion(25 if quick else 60)],
            "cut": [cuts(8 if quick else 15)],
        }
        detector = FaceDetector()
        detector.detect(sets["cut"][0][:1])  # warm-up
        rows = []
        for name, sequences in sets.items():
            n = sum(len(s) for s in sequences)
            base_s, reference = _track(detector, 1, sequences)
            for k in KS:
                seconds, tracked = (base_s, reference) if k == 1 else _track(detector, k, sequences)
                agree, errors = 0, []
                for det, ref in zip(tracked, reference, strict=True):
                    a, e = compare(det, ref)
                    agree += a
                    errors += e
                rows.append(
                    {
                        "set": name,
                        "k": k,
                        "frames": n,
                        "reference_faces": int(sum(r.found.sum() for r in reference)),
                        "ms_per_frame": round(1000 * seconds / n, 2),
                        "speedup": round(base_s / seconds, 2),
                        "agreement": round(agree / n, 4),
                        "landmark_error_mean": round(float(np.mean(errors)), 5) if errors else None,
                        "landmark_error_p95": round(float(np.percentile(errors, 95)), 5) if errors else None,
                        "torch_threads": threads,
                    }
                )
        return rows
    finally:
        torch.set_num_threads(previous)


def passes(row: dict) -> bool:
    return row["agreement"] >= AGREEMENT_TARGET and (row["landmark_error_mean"] or 0.0) <= LANDMARK_TARGET


def chosen_k(rows: list[dict]) -> int:
    """The largest K that passes on every sequence set (1 always does: it is the reference)."""
    ok = [k for k in KS if all(passes(r) for r in rows if r["k"] == k)]
    return max(ok)


def summary(rows: list[dict]) -> list[dict]:
    """The tracking line of ``benchmarks/run.py``: the chosen K, its worst agreement and its speed-up per set."""
    if not rows:
        return []
    k = chosen_k(rows)
    at_k = [r for r in rows if r["k"] == k]
    parts = [
        f"{r['set']}: {r['speedup']:.1f}x, agreement {100 * r['agreement']:.1f}%, landmarks "
        f"{100 * (r['landmark_error_mean'] or 0):.1f}% IOD"
        for r in at_k
    ]
    return [
        {
            "measure": "face tracking",
            "how": f"--face-track {k} (largest K agreeing with per-frame MTCNN on >= 98% of frames, landmarks "
            f"<= 3% of the inter-ocular distance) vs --face-track 1, detection time per frame; " + "; ".join(parts),
            "value": k,
            "figure": f"K = {k}: {min(r['speedup'] for r in at_k):.1f}-{max(r['speedup'] for r in at_k):.1f}x, "
            f"agreement >= {100 * min(r['agreement'] for r in at_k):.1f}%",
            "target": "largest K with agreement >= 98%, landmarks <= 3% IOD",
            "met": True,
        }
    ]


def markdown(rows: list[dict]) -> str:
    head = ("set", "K", "frames", "ms/frame", "speed-up", "agreement", "landmark error mean", "p95")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        mean, p95 = r["landmark_error_mean"], r["landmark_error_p95"]
        cells = (
            r["set"], str(r["k"]), str(r["frames"]), f"{r['ms_per_frame']:.1f}", f"{r['speedup']:.2f}x",
            f"{100 * r['agreement']:.1f}%", "" if mean is None else f"{100 * mean:.2f}% IOD",
            "" if p95 is None else f"{100 * p95:.2f}% IOD",
        )  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    return common_environment(("torch", "facenet-pytorch", "numpy", "pillow", "av"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames and clips")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (Dask workers run with 1)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    env_before = environment()
    t0 = time.perf_counter()
    rows = run(args.quick, threads=args.threads)
    report = {
        "benchmark": "face_tracking",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "quick": args.quick,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": env_before,
        "load_average_after": load_average(),
        "chosen_k": chosen_k(rows),
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(rows))
    print(f"\nchosen K = {report['chosen_k']}; {env_before['cpu']}, torch threads {args.threads}; wrote {args.output}")


if __name__ == "__main__":
    main()
