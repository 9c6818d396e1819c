"""Decode + resample: emo's decoding of a clip (the 16 kHz mono audio and the RGB frames sampled at 5 fps,
``emo.pipeline.decode`` through PyAV) vs the FFmpeg command line decoding the same clips to nothing
(``ffmpeg -f null``: every audio and video frame decoded, nothing converted or resampled beyond what the
null muxer needs), with the static ffmpeg of imageio-ffmpeg.

FFmpeg runs two ways: one process over all clips (concat demuxer: start-up paid once, the stricter
reference and the one the target uses) and one process per clip (how a per-video script calls it). Both
sides use their default threading (FFmpeg's frame threads on every core). Speed is media seconds decoded per
wall second; emo's figure is its speed as a fraction of FFmpeg's. Medians of repeats after a warm-up pass
(files in the page cache for everyone).

    .venv/bin/python benchmarks/decode.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import log, measure, median, spread  # noqa: E402
from benchmarks.media import clips_of, ravdess_dataset  # noqa: E402

NAME = "decode"
#: clips, repeats (the clips of the extraction benchmark)
SETTINGS = {"quick": (6, 3), "full": (32, 5)}
FPS = 5.0
SAMPLE_RATE = 16000


def emo_decode(paths: list[Path]) -> tuple[float, int]:
    """Wall seconds to decode every clip the way a worker does; number of frames sampled."""
    from emo.pipeline.decode import decode_audio, iter_frames

    frames = 0
    started = time.perf_counter()
    for path in paths:
        decode_audio(path, SAMPLE_RATE)
        for _t, _frame in iter_frames(path, FPS):
            frames += 1
    return time.perf_counter() - started, frames


def ffmpeg_concat(paths: list[Path], listing: Path) -> float:
    from emo.pipeline.synthetic import ffmpeg_exe

    listing.write_text("".join(f"file '{p}'\n" for p in paths))
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-f", "concat", "-safe", "0", "-i", str(listing), "-f", "null", "-"]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - started


def ffmpeg_each(paths: list[Path]) -> float:
    from emo.pipeline.synthetic import ffmpeg_exe

    started = time.perf_counter()
    for path in paths:
        subprocess.run([ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path), "-f", "null", "-"], check=True)
    return time.perf_counter() - started


def media_seconds(paths: list[Path]) -> float:
    from emo.pipeline.decode import probe

    return sum(probe(p).duration_s for p in paths)


def run(quick: bool) -> list[dict]:
    n_clips, repeats = SETTINGS["quick" if quick else "full"]
    paths = clips_of(ravdess_dataset(n_clips))
    seconds = media_seconds(paths)
    times: dict[str, list[float]] = {"emo": [], "ffmpeg (one process)": [], "ffmpeg (one process per clip)": []}
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "clips.txt"
        emo_decode(paths), ffmpeg_concat(paths, listing)  # warm-up: page cache, imports, lazy init
        frames = 0
        for _ in range(repeats):  # interleaved, so load changes hit every method
            wall, frames = emo_decode(paths)
            times["emo"].append(wall)
            times["ffmpeg (one process)"].append(ffmpeg_concat(paths, listing))
            times["ffmpeg (one process per clip)"].append(ffmpeg_each(paths))
    log("decode: " + ", ".join(f"{k} {median(v):.2f} s" for k, v in times.items()))
    return [
        {
            "method": method,
            "clips": len(paths),
            "media_seconds": round(seconds, 2),
            "sampled_frames": frames if method == "emo" else None,
            "wall_s": spread(walls),
            "media_seconds_per_second": round(seconds / median(walls), 1),
            "repeats": [round(w, 4) for w in walls],
        }
        for method, walls in times.items()
    ]


def summary(rows: list[dict]) -> list[dict]:
    by = {r["method"]: r for r in rows}
    emo, ref, each = by["emo"], by["ffmpeg (one process)"], by["ffmpeg (one process per clip)"]
    ratio = emo["media_seconds_per_second"] / ref["media_seconds_per_second"]
    ratio_each = emo["media_seconds_per_second"] / each["media_seconds_per_second"]
    return [
        measure(
            "decode + resample",
            f"{emo['clips']} 720p clips ({emo['media_seconds']:.0f} s of media): emo decode_audio (16 kHz mono) + "
            f"iter_frames (5 fps RGB) {emo['media_seconds_per_second']:.0f} media-s/s vs `ffmpeg -f null` in one "
            f"process {ref['media_seconds_per_second']:.0f} media-s/s (one process per clip: "
            f"{each['media_seconds_per_second']:.0f}, emo at {100 * ratio_each:.0f}%)",
            round(ratio, 3),
            f"{100 * ratio:.0f}% of ffmpeg's speed",
            ">= 50%",
            ratio >= 0.5,
        )
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    rows = run(args.quick)
    print(json.dumps({"rows": rows, "measures": summary(rows)}, indent=2))


if __name__ == "__main__":
    main()
