"""Shared fixtures: generated media, the demo dataset, and a real Dask cluster of separate processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# A shell without job control (a script's `cmd &`) starts the suite with SIGINT ignored, and every process the
# tests start would inherit that: the Ctrl-C tests need Python's own handler, as in a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

from emo.pipeline.synthetic import DemoSpec, encode, face_frames, make_demo_dataset, speech_like  # noqa: E402

BIN = Path(sys.executable).parent


def emo_cmd(*args: str) -> list[str]:
    """Command line running this checkout's ``emo`` console script."""
    return [str(BIN / "emo"), *args]


def assert_quiet(stderr: str) -> None:
    """What a user must never see when a run ends, however it ends: a traceback, a Dask ERROR record, Python's
    "Exception ignored" note."""
    for bad in ("Traceback", " - ERROR - ", "Exception ignored"):
        assert bad not in stderr, stderr


def run_emo(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        emo_cmd(*args), capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test: "fails at once, offline" means no download is
    even tried (a hub id would otherwise retry for about 30 s), however busy the machine is."""
    import socket

    def refuse(self: socket.socket, address: object) -> None:
        raise AssertionError(f"tried to connect to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled demo dataset (24 RAVDESS-style clips), generated once per session."""
    root = tmp_path_factory.mktemp("demo")
    make_demo_dataset(root)
    return root


@pytest.fixture(scope="session")
def small_demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-clip RAVDESS-style dataset (2 actors x 3 emotions) for quick end-to-end runs."""
    root = tmp_path_factory.mktemp("small_demo")
    make_demo_dataset(root, DemoSpec(actors=(1, 2), emotions=("neutral", "happy", "angry"), seconds=1.5))
    return root


@pytest.fixture(scope="session")
def bad_media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Clips that must fail cleanly: corrupt, truncated, empty, text, no audio; plus a good one and a wav."""
    root = tmp_path_factory.mktemp("bad_media")
    audio = speech_like("happy", 1.5, seed=3)
    good = encode(root / "good.mp4", face_frames("happy", 1.5, seed=3), audio)
    data = good.read_bytes()
    (root / "corrupt.mp4").write_bytes(bytes(b ^ 0x5A for b in data[:4096]) + data[4096:])
    (root / "truncated.mp4").write_bytes(data[: len(data) // 3])
    faststart = encode(
        root / "faststart_src.mp4",
        face_frames("sad", 2.0, seed=4),
        speech_like("sad", 2.0, seed=4),
        extra_args=["-movflags", "+faststart"],
    )
    fs_data = faststart.read_bytes()
    (root / "truncated_faststart.mp4").write_bytes(fs_data[: len(fs_data) // 2])
    faststart.unlink()
    (root / "empty.mp4").write_bytes(b"")
    (root / "notes.mp4").write_text("this is a text file with a video extension\n")
    encode(root / "silent_video.mp4", face_frames("neutral", 1.0, seed=5))
    encode(root / "speech.wav", audio=speech_like("sad", 1.2, seed=6))
    return {p.stem: p for p in root.iterdir()}


def packets(path: Path, kind: str) -> list[tuple[int, int, float]]:
    """(byte offset, size, time in s) of every packet of the first ``kind`` ("audio"/"video") stream of a file."""
    import av

    with av.open(str(path)) as container:
        stream = getattr(container.streams, kind)[0]
        return [(p.pos, p.size, float(p.pts * p.time_base)) for p in container.demux(stream) if p.size and p.pos >= 0]


def overwrite_packets(
    src: Path, dst: Path, spans: list[tuple[int, int, float]], keep: int = 8, seed: int = 0
) -> Path:
    """A copy of ``src`` whose packets ``spans`` have their bytes (but the first ``keep``) replaced by noise."""
    import numpy as np

    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(seed)
    for pos, size, _t in spans:
        if size > keep:
            data[pos + keep : pos + size] = rng.integers(0, 256, size - keep, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return dst


@pytest.fixture(scope="session")
def damaged_media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Files of which FFmpeg decodes only part: AAC packets overwritten in the middle, a file cut inside its last
    audio packet, an AVI with AC3 audio cut inside its last frame, an H.264 video whose middle GOP is damaged."""
    root = tmp_path_factory.mktemp("damaged")
    out = {}
    src = encode(
        root / "src.mp4",
        face_frames("happy", 4.0, seed=7),
        speech_like("happy", 4.0, seed=7),
        extra_args=["-g", "15", "-movflags", "+faststart"],
    )
    audio = packets(src, "audio")
    middle = len(audio) // 2
    out["aac_damaged"] = overwrite_packets(src, root / "aac_damaged.mp4", audio[middle : middle + 3])
    pos, size, _t = audio[-1]
    (root / "cut_in_last_audio_frame.mp4").write_bytes(src.read_bytes()[: pos + size // 2])
    out["cut_in_last_audio_frame"] = root / "cut_in_last_audio_frame.mp4"
    video = packets(src, "video")  # a keyframe every second (-g 15 at 15 fps): damage the GOP at 2 s
    out["gop_damaged"] = overwrite_packets(src, root / "gop_damaged.mp4", [p for p in video if 2.0 <= p[2] < 3.0])
    frames, audio = face_frames("sad", 3.0, seed=8), speech_like("sad", 3.0, seed=8)
    avi = encode(root / "ac3_src.avi", frames, audio, extra_args=["-c:a", "ac3"])
    pos, size, _t = packets(avi, "audio")[-1]
    (root / "ac3_cut.avi").write_bytes(avi.read_bytes()[: pos + size // 2])
    out["ac3_cut"] = root / "ac3_cut.avi"
    src.unlink()
    avi.unlink()
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaskProcesses:
    """A ``dask scheduler`` and ``dask worker`` processes started as real processes on 127.0.0.1; ``env``: extra
    environment variables of the scheduler (Dask config such as ``DASK_DISTRIBUTED__SCHEDULER__...``)."""

    def __init__(self, tmp: Path, env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.port = _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        log = open(tmp / "scheduler.log", "w")  # noqa: SIM115 - closed with the process
        self.procs.append(
            subprocess.Popen(
                [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        )

    def add_worker(
        self, name: str, *extra: str, nanny: bool = False, env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        """Start ``dask worker`` (one process, or with ``nanny`` a nanny process that restarts its worker
        process when it dies or exceeds ``--memory-limit``) in ``env`` (default: this process's environment);
        its output goes to ``worker-NAME.log``."""
        log = open(self.tmp / f"worker-{name}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [
                str(BIN / "dask"),
                "worker",
                self.address,
                "--nthreads",
                "1",
                "--nworkers",
                "1",
                "--name",
                name,
                "--no-dashboard",
                "--host",
                "127.0.0.1",
                "--nanny" if nanny else "--no-nanny",
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
        self.procs.append(proc)
        self.workers.append(proc)
        return proc

    def wait_for_workers(self, n: int, timeout: float = 60) -> None:
        from distributed import Client

        with Client(self.address, timeout="30s") as client:
            client.wait_for_workers(n, timeout=timeout)

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def dask_processes(tmp_path_factory: pytest.TempPathFactory):
    """A real scheduler and two single-threaded workers (separate ``dask`` processes) for the session."""
    cluster = DaskProcesses(tmp_path_factory.mktemp("dask"))
    try:
        cluster.add_worker("w1")
        cluster.add_worker("w2")
        cluster.wait_for_workers(2)
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def scheduler(dask_processes: DaskProcesses) -> str:
    return dask_processes.address


@pytest.fixture(scope="module")
def gpu_dask(tmp_path_factory: pytest.TempPathFactory):
    """A real scheduler with one plain worker ("cpu") and one advertising a GPU ("gpu", ``--resources GPU=1``;
    it computes on the CPU: the machine has no GPU), for the GPU-routing tests."""
    cluster = DaskProcesses(tmp_path_factory.mktemp("gpu_dask"))
    try:
        cluster.add_worker("cpu")
        cluster.add_worker("gpu", "--resources", "GPU=1")
        cluster.wait_for_workers(2)
        yield cluster
    finally:
        cluster.close()


def read_rows(store: Path) -> int:
    """Committed rows of a store, read from its root metadata without emo."""
    return int(json.loads((store / "zarr.json").read_text())["attributes"]["rows"])


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
