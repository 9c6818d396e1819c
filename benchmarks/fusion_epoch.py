"""Fusion epoch: seconds per training epoch of every fusion head on 10,000 cached clips, CPU.

The store is synthetic with the dimensions of a real extraction (``benchmarks/stores.py``: MFCC 80 / pooled
160, eGeMAPS 88, face 512 aligned on 32 steps, text 384). Each head trains through emo's own trainer
(``emo.fusion.train.run_once``: data prepared by ``prepare_data`` as ``emo fuse`` does, Adam, batch 64,
validation pass and best-model bookkeeping every epoch) on every clip: train = all 10,000 clips, validation =
every 10th clip (1,000). Vector heads get the pooled features (audio/mfcc + audio/egemaps, video/face +
video/summary, text/mean), sequence heads the 32-step aligned sequences with masks (audio/mfcc, video/face,
text/tokens); the heads that convolve the clip's own frames (speech-cnn, audio-only, on its first 400 log-mel
frames; cross-tucker's 2-D mel CNN on the frames resampled to 256) read a store with 300 mel frames per clip
(3 s, ``benchmarks/stores.frames_store``), of fewer clips unless ``--clips`` is given (``FRAME_SETTINGS``: their
epoch is the papers' convolutions over every frame, 6-12 minutes per 10,000 clips on 2 cores, so the table
gives their seconds per epoch with the number of clips they ran on). An epoch is the time between two of the
trainer's epoch callbacks; the first epoch (which also pays standardisation and head construction) is left
out and the median of the others reported. torch uses its default threads (every core). ``--device cuda``
trains on the GPU instead (``benchmarks/gpu.py`` runs it there); the default is the CPU.

    .venv/bin/python benchmarks/fusion_epoch.py [--quick] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.common import log, measure, spread  # noqa: E402
from benchmarks.stores import frames_store, fusion_store  # noqa: E402

NAME = "fusion_epoch"
#: clips, epochs per head (the first one is not counted)
SETTINGS = {"quick": (10_000, 2), "full": (10_000, 4)}
#: the same for the heads that convolve the clip's own frames (speech-cnn, cross-tucker)
FRAME_SETTINGS = {"quick": (500, 2), "full": (1_000, 3)}
TARGET_HEAD = "attention"
TARGET_S = 0.5


def time_head(fs, method: str, epochs: int, device: str = "cpu", precision: str = "fp32") -> dict:
    import torch

    from emo.fusion.splits import Split
    from emo.fusion.train import prepare_data, run_once
    from emo.fusion.train_config import TrainConfig

    #: heads defined on fewer modalities than the store has (speech-cnn: audio only; seed 003: audio-video)
    modalities = {"speech-cnn": ("audio",), "cross-tucker": ("audio", "video")}.get(method)
    config = TrainConfig(
        method=method,
        modalities=modalities,
        epochs=epochs,
        patience=epochs + 1,
        seeds=1,
        device=device,
        precision=precision,
    )
    started = time.perf_counter()
    data = prepare_data(fs, config)
    load_s = time.perf_counter() - started
    rows = np.arange(data.n)
    split = Split("benchmark", train=rows, val=rows[::10], test=rows[:100])
    stamps = [time.perf_counter()]
    run_once(
        data,
        split,
        config,
        seed=0,
        device=torch.device(device),
        on_epoch=lambda e, m: stamps.append(time.perf_counter()),
    )
    epochs_s = np.diff(stamps)[1:].tolist()  # stamps[0] -> first callback includes set-up: left out
    return {
        "method": method,
        "input": {
            m: {"kind": i.kind, "features": i.features, "shape": list(i.x.shape)} for m, i in data.inputs.items()
        },
        "train_clips": int(split.train.size),
        "val_clips": int(split.val.size),
        "load_s": round(load_s, 3),
        "first_epoch_s": round(stamps[1] - stamps[0], 3),
        "epoch_s": spread(epochs_s),
        "epochs_timed": len(epochs_s),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "precision": precision,
    }


def run(
    quick: bool,
    methods: list[str] | None = None,
    clips: int | None = None,
    device: str = "cpu",
    precisions: tuple[str, ...] = ("fp32",),
) -> list[dict]:
    """Rows per head and training precision (``emo fuse --precision``), the precisions of a head one after the
    other so that they meet the same machine."""
    from emo.features_store import FeatureStore
    from emo.fusion.heads import HEADS, input_kinds

    setting = "quick" if quick else "full"
    fs = None
    rows = []
    for method in methods or list(HEADS):
        reads_frames = any(k.startswith("frames") for k in input_kinds(method, {}).values())
        n_clips, epochs = (FRAME_SETTINGS if reads_frames else SETTINGS)[setting]
        n_clips = clips or n_clips
        if reads_frames:
            store = FeatureStore.open(str(frames_store(n_clips)))
        else:
            fs = fs or FeatureStore.open(str(fusion_store(n_clips)))
            store = fs
        for precision in precisions:
            row = time_head(store, method, epochs, device, precision)
            log(f"fusion_epoch: {method} ({precision}): {row['epoch_s']['median']:.2f} s/epoch")
            rows.append(row)
    return rows


def _epoch(row: dict, clips: int) -> str:
    """A head's seconds per epoch, with its number of training clips when they differ from the target head's."""
    n = row.get("train_clips", clips)
    return f"{row['method']} {row['epoch_s']['median']:.2f}" + (f" ({n:,} clips)" if n != clips else "")


def summary(rows: list[dict]) -> list[dict]:
    by = {r["method"]: r for r in rows if r.get("precision", "fp32") == "fp32"}
    target = by.get(TARGET_HEAD)
    if target is None:
        return []
    clips = target["train_clips"]
    others = ", ".join(_epoch(r, clips) for m, r in by.items() if m != TARGET_HEAD)
    bf16 = [r for r in rows if r.get("precision") == "bf16"]
    if bf16:
        others += "; with --precision bf16: " + ", ".join(_epoch(r, clips) for r in bf16)
    s = target["epoch_s"]["median"]
    return [
        measure(
            "fusion epoch (attention head)",
            f"emo's trainer, {target['train_clips']:,} cached clips (pooled audio/video/text) + "
            f"{target['val_clips']:,}-clip validation pass, batch 64, {_device_name(target)}, median of "
            f"{target['epochs_timed']} epochs; other heads (s/epoch): {others}",
            round(s, 3),
            f"{s:.2f} s",
            f"< {TARGET_S} s",
            s < TARGET_S,
        )
    ]


def _device_name(row: dict) -> str:
    """How the table names where a head trained: "CPU" (rows of older runs have no device) or "CUDA"."""
    return row.get("device", "cpu").upper()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--methods", help="comma-separated heads (default: all)")
    parser.add_argument(
        "--clips", type=int, help="clips in the store (default 10,000; 1,000 for the heads that convolve frames)"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the heads train")
    parser.add_argument(
        "--precision", default="fp32", help="comma-separated training precisions among fp32, bf16 (each head in each)"
    )
    args = parser.parse_args(argv)
    methods = args.methods.split(",") if args.methods else None
    rows = run(args.quick, methods, args.clips, args.device, tuple(args.precision.split(",")))
    print(json.dumps({"rows": rows, "measures": summary(rows)}, indent=2))


if __name__ == "__main__":
    main()
