"""Kill the driver with SIGKILL, or press Ctrl-C, in the middle of ``emo extract``: committed rows survive, a re-run
completes."""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import multiprocessing
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
import pytest
from conftest import emo_cmd, read_rows, run_emo

from emo.errors import StoreError, UsageError
from emo.features_store import FeatureStore
from emo.features_store.location import parse_location
from emo.features_store.lock import StoreLock
from emo.features_store.writer import StoreWriter
from emo.pipeline.config import ExtractionConfig
from emo.pipeline.runner import ClusterOptions, _sigint_blocked, dask_client

extract_module = importlib.import_module("emo.pipeline.extract")  # the package exports a function of that name

#: Every modality (the default features), untrained visual weights (no ImageNet ResNet offline), few frames.
FAST = ("--visual-weights", "random", "--fps", "2")


def test_sigkill_driver_then_resume(demo_dir: Path, tmp_path: Path, scheduler: str) -> None:
    store = tmp_path / "s.zarr"
    log = tmp_path / "driver.log"
    with open(log, "w") as err:
        # the default embedded LocalCluster, small batches and chunks so that commits happen during the run
        driver = subprocess.Popen(
            emo_cmd(
                "extract", str(demo_dir), "-o", str(store), "--workers", "2", "--batch-size", "1", "--chunk-clips", "2",
                *FAST,
            ),
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    children = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if (store / "zarr.json").exists() and read_rows(store) >= 4:
                break
            assert driver.poll() is None, log.read_text()
            time.sleep(0.05)
        children = psutil.Process(driver.pid).children(recursive=True)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    finally:
        for child in children:  # the embedded cluster's worker processes lose their scheduler with the driver
            if child.is_running():
                child.kill()
    reported = [int(n) for n in re.findall(r"\((\d+) in the store\)", log.read_text())]
    assert reported, log.read_text()

    fs = FeatureStore.open(store)
    n = fs.n_clips
    assert reported[-1] <= n < 24, "the kill must land in the middle of the run"
    clips = fs.clips()
    assert clips["clip_id"].is_unique and set(clips["status_audio"]) == {"ok"} and set(clips["status_video"]) == {"ok"}
    before = {name: fs.read(f"audio/mfcc/{name}") for name in ("pooled", "aligned", "mask")}
    values = fs.sequences("audio/mfcc/values")
    for i, seq in enumerate(values):  # every committed row is complete and self-consistent
        assert len(seq) > 100
        np.testing.assert_allclose(before["pooled"][i, :80], seq.mean(0), rtol=1e-4, atol=1e-4)
    assert before["mask"].all()

    proc = run_emo("extract", str(demo_dir), "-o", str(store), "--scheduler", scheduler, *FAST, "--json", "-q")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["n_already_done"], report["n_written"]) == (n, 24 - n)
    fs = FeatureStore.open(store)
    clips = fs.clips()
    assert fs.n_clips == 24 and clips["clip_id"].is_unique
    assert sorted(clips["clip_id"]) == sorted(p.stem for p in demo_dir.rglob("*.mp4"))
    for name, old in before.items():
        np.testing.assert_array_equal(fs.read(f"audio/mfcc/{name}")[:n], old)
    assert fs.offsets("audio/mfcc")[-1] == len(fs.read("audio/mfcc/values"))
    for path in ("video/faces/probs", "video/face/values", "text/tokens/values"):  # ragged rows line up too
        assert fs.offsets(path.rsplit("/", 1)[0])[-1] == len(fs.read(path)) > 0
    assert np.isfinite(fs.read("video/summary")).all() and np.isfinite(fs.read("text/cls")).all()


def _ctrl_c(
    demo_dir: Path, tmp_path: Path, store: Path, ready: Callable[[str, psutil.Process], bool]
) -> tuple[int, str, str]:
    """Run ``emo extract`` of the demo clips into ``store`` in its own session, press Ctrl-C the way a terminal does
    (SIGINT to the whole process group: the driver and the embedded cluster's worker processes) once
    ``ready(stderr so far, driver process)``, and return the exit code, stdout and stderr."""
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        driver = subprocess.Popen(
            emo_cmd(
                "extract", str(demo_dir), "-o", str(store), "--workers", "2", "--batch-size", "1", "--chunk-clips", "2",
                *FAST,
            ),
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 180
        process = psutil.Process(driver.pid)
        while time.monotonic() < deadline and not ready(err.read_text(), process):
            assert driver.poll() is None, err.read_text()
            time.sleep(0.01)
        children = psutil.Process(driver.pid).children(recursive=True)
        os.killpg(driver.pid, signal.SIGINT)
        code = driver.wait(timeout=60)
        _, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, f"processes left running after Ctrl-C: {alive}"
    finally:
        for child in children:
            if child.is_running():
                child.kill()
    return code, out.read_text(), err.read_text()


def test_ctrl_c_mid_run_keeps_every_row_and_says_so(demo_dir: Path, tmp_path: Path, scheduler: str) -> None:
    store = tmp_path / "s.zarr"

    def committed(_log: str, _driver: psutil.Process) -> bool:
        return (store / "zarr.json").exists() and read_rows(store) >= 4

    code, out, err = _ctrl_c(demo_dir, tmp_path, store, committed)
    # the driver takes the interrupt: no worker dies of it with a traceback, nothing Dask says while stopping shows
    assert code == 130, err
    assert "Traceback" not in err + out and "Exception ignored" not in err and " - ERROR - " not in err, err
    assert "interrupted: committing the clips received and stopping the workers" in err
    n = FeatureStore.open(store).n_clips
    summary = " ".join(out.split())  # the console wraps long lines
    assert re.search(rf"{n} clips written .* INTERRUPTED: run the same command again to resume", summary), out
    assert 4 <= n < 24

    proc = run_emo("extract", str(demo_dir), "-o", str(store), "--scheduler", scheduler, *FAST, "--json", "-q")
    assert proc.returncode == 0, proc.stderr
    assert (json.loads(proc.stdout)["n_already_done"], FeatureStore.open(store).n_clips) == (n, 24)


def test_ctrl_c_while_the_workers_load_their_models(demo_dir: Path, tmp_path: Path) -> None:
    # the writer has opened the store, the workers load their models (7-10 s here) before they take any clip
    store = tmp_path / "s.zarr"
    code, out, err = _ctrl_c(demo_dir, tmp_path, store, lambda log, _: "waiting for the workers to load" in log)
    assert "model stages on" not in err, "the Ctrl-C must land while the workers load their models"
    assert code == 130, err
    assert "Traceback" not in err + out and " - ERROR - " not in err and "Aborted" not in err, err
    assert "INTERRUPTED: run the same command again to resume" in " ".join(out.split()), out + err
    FeatureStore.open(store)  # readable; a re-run resumes from whatever it holds


def test_ctrl_c_while_the_worker_processes_start(demo_dir: Path, tmp_path: Path) -> None:
    # a worker process spends its first second importing Python modules, long before its preload ignores SIGINT
    store = tmp_path / "s.zarr"

    def worker_spawned(_log: str, driver: psutil.Process) -> bool:
        with contextlib.suppress(psutil.Error):
            return any("spawn_main" in " ".join(p.cmdline()) for p in driver.children(recursive=True))
        return False

    code, out, err = _ctrl_c(demo_dir, tmp_path, store, worker_spawned)
    assert code == 130, err
    assert "Traceback" not in err + out and "KeyboardInterrupt" not in err and " - ERROR - " not in err, err
    assert "emo: interrupted" in err or "INTERRUPTED" in " ".join(out.split()), out + err


def test_processes_spawned_while_the_cluster_starts_are_born_with_ctrl_c_held() -> None:
    # Dask spawns the worker processes from threads started inside the block: they inherit its signal mask
    held: list[set[signal.Signals]] = []

    def spawn() -> None:
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            held.append(pool.apply(signal.pthread_sigmask, (signal.SIG_BLOCK, [])))

    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    with _sigint_blocked():
        thread = threading.Thread(target=spawn)
        thread.start()
        thread.join()
    assert held == [{signal.SIGINT}]
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before  # this thread's mask is restored


def test_embedded_cluster_leaves_ctrl_c_to_the_driver() -> None:
    with dask_client(ClusterOptions(workers=1, dashboard_address=None)) as client:
        assert list(client.run(signal.getsignal, signal.SIGINT).values()) == [signal.SIG_IGN]
        # Dask's GC diagnosis would catch (and lose) a KeyboardInterrupt that lands in its gc callback
        assert not [cb for cb in gc.callbacks if type(getattr(cb, "__self__", None)).__name__ == "GCDiagnosis"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the driver's own handler is untouched


def test_workers_start_while_the_store_opens_and_never_for_nothing(
    demo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the cluster comes up in the background, and the driver opens the store once the workers are connected
    # (while they load their models); the workers are released before the writer commits its last rows; a run
    # with nothing left to do, or one the store refuses, starts no cluster at all
    events: list[str] = []
    starts: list[object] = []
    real_start, real_open, real_close = (
        extract_module.ClusterStart,
        extract_module.StoreWriter.open,
        extract_module.StoreWriter.close,
    )

    class RecordingStart(real_start):  # type: ignore[misc, valid-type]
        def __init__(self, *args: object, **kwargs: object) -> None:
            events.append("cluster")
            super().__init__(*args, **kwargs)
            starts.append(self)

        def release(self) -> None:
            events.append("release")
            super().release()

    def recording_open(*args: object, **kwargs: object) -> StoreWriter:
        connected = [s.connected() for s in starts]  # type: ignore[attr-defined]
        events.append("store" + (" (workers connected)" if connected and all(connected) else ""))
        return real_open(*args, **kwargs)

    def recording_close(self: StoreWriter) -> None:
        events.append("store closed")
        real_close(self)

    monkeypatch.setattr(extract_module, "ClusterStart", RecordingStart)
    monkeypatch.setattr(extract_module.StoreWriter, "open", staticmethod(recording_open))
    monkeypatch.setattr(extract_module.StoreWriter, "close", recording_close)
    store, options = str(tmp_path / "s.zarr"), ClusterOptions(workers=1, dashboard_address=None)
    audio = ExtractionConfig(features=("mfcc",))

    report = extract_module.extract(demo_dir, store, config=audio, cluster=options)
    assert events == ["cluster", "store (workers connected)", "release", "store closed"] and report.n_written == 24
    assert not {t.name for t in threading.enumerate()} & {"emo-cluster-start", "emo-cluster-close"}  # none left behind
    events.clear()
    starts.clear()
    report = extract_module.extract(demo_dir, store, config=audio, cluster=options)
    assert events == ["store", "store closed"] and report.n_already_done == 24 and report.n_written == 0
    assert not starts  # nothing to do: no cluster was started (how long such a run takes: benchmarks/extraction.py)
    events.clear()
    with pytest.raises(UsageError, match="different configuration"):
        extract_module.extract(demo_dir, store, config=ExtractionConfig(features=("mfcc",), n_mfcc=20), cluster=options)
    assert events == ["store"]
    events.clear()
    with StoreLock(parse_location(store)), pytest.raises(StoreError, match="being written by another process"):
        extract_module.extract(demo_dir, store, config=audio, cluster=options, overwrite=True)
    assert events == ["store"]
