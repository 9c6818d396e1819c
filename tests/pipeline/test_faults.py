"""Cluster faults during ``emo extract`` on real ``dask scheduler`` / ``dask worker`` processes on 127.0.0.1.

- A worker killed with SIGKILL in the middle of the run: the run completes, every clip is in the store
  exactly once and the store verifies.
- A poison clip, one whose worker dies on every attempt (here: a 20-minute recording whose audio features
  need far more memory than the worker's ``--memory-limit``, so that Dask's nanny kills the worker process):
  the clip is marked failed with the reason, every other clip is extracted.
- The scheduler killed in the middle of the run: the run stops with a clear error, the store keeps what was
  committed and no clip is recorded as failed because of it.

Each has its own small cluster, so that killing processes cannot hurt the session's cluster or another test;
the first runs at Dask's default ``allowed-failures`` (what a user's cluster has), the second with a low one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import soundfile as sf
from conftest import DaskProcesses, assert_quiet, emo_cmd, run_emo
from distributed import Client

from emo.features_store import FeatureStore
from emo.features_store.verify import verify_store
from emo.pipeline.synthetic import speech_like

#: Audio features by openSMILE only: a worker sets it up in about a second (librosa's first MFCC takes several
#: per worker process), and it is the stage whose memory a long recording blows up.
EGEMAPS = ("--features", "egemaps")
#: The poison's scheduler fails a task with KilledWorker once 2 workers died running it (Dask's default: 4).
POISON_ALLOWED_FAILURES = 1
#: A worker process is about 0.2 GB once openSMILE is set up; its nanny kills it at 95% of this (0.45 GB).
POISON_MEMORY_LIMIT = "450MiB"


def _rows(store: Path) -> int:
    """Committed rows, read from the root metadata while the driver may be rewriting it."""
    try:
        return int(json.loads((store / "zarr.json").read_text())["attributes"]["rows"])
    except (OSError, ValueError, KeyError):
        return 0


def _start_driver(tmp_path: Path, *args: str) -> subprocess.Popen:
    with open(tmp_path / "out.json", "w") as out, open(tmp_path / "err.log", "w") as err:
        return subprocess.Popen(emo_cmd("extract", *args), stdout=out, stderr=err, start_new_session=True)


def _wait_for(driver: subprocess.Popen, condition, err: Path, timeout: float = 120) -> None:
    """Poll ``condition`` while the driver runs; fail if the run ends (or times out) first."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert driver.poll() is None, "the run ended before the fault: " + err.read_text()
        assert time.monotonic() < deadline, err.read_text()
        time.sleep(0.02)


def _kill(cluster: DaskProcesses) -> None:
    """SIGKILL every process of a test cluster (a graceful close takes seconds, and nothing here needs one)."""
    for proc in cluster.procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the process group: a nanny and its worker process
        proc.wait()
    cluster.close()


def _verified(store: Path) -> None:
    report = verify_store(str(store), deep=True)  # what `emo store verify --deep` runs
    assert report.ok, report.lines()


@pytest.fixture(scope="module")
def kill_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A scheduler with Dask's default settings and two single-threaded workers without a nanny (a killed
    worker stays dead)."""
    cluster = DaskProcesses(tmp_path_factory.mktemp("kill_dask"))
    try:
        cluster.add_worker("w1")
        cluster.add_worker("w2")
        cluster.wait_for_workers(2)
        yield cluster
    finally:
        _kill(cluster)


def test_sigkill_worker_mid_run(demo_dir: Path, tmp_path: Path, kill_cluster: DaskProcesses) -> None:
    store, err = tmp_path / "s.zarr", tmp_path / "err.log"
    clip_ids = sorted(p.stem for p in demo_dir.rglob("*.mp4"))
    victim = kill_cluster.workers[1]
    with Client(kill_cluster.address, timeout="30s") as client:
        address = next(a for a, w in client.scheduler_info(n_workers=-1)["workers"].items() if w["name"] == "w2")
        driver = _start_driver(
            tmp_path, str(demo_dir), "-o", str(store), "--scheduler", kill_cluster.address, *EGEMAPS,
            "--batch-size", "1", "--chunk-clips", "2", "--json", "-q",
        )
        try:
            # once clips are committed, and while w2 holds tasks of the run
            _wait_for(driver, lambda: _rows(store) >= 2 and client.processing([address])[address], err)
            rows_at_kill = _rows(store)
            # Frozen first, killed once the scheduler shows the same tasks on it twice in a row: they can no longer
            # finish, and a "finished" message sent just before the freeze has been read by then. Killed at once,
            # a worker that had just finished its task could leave the scheduler nothing of the run to requeue
            # (seen once in 52 iterations of the fault loop under load).
            victim.send_signal(signal.SIGSTOP)
            seen: list[set] = []

            def holds_tasks() -> bool:
                seen.append(set(client.processing([address])[address]))
                return len(seen) > 1 and bool(seen[-1]) and seen[-1] == seen[-2]

            _wait_for(driver, holds_tasks, err)
            victim.send_signal(signal.SIGKILL)
            assert driver.wait(120) == 0, err.read_text()
        finally:
            if driver.poll() is None:
                driver.kill()
        assert victim.wait(10) == -signal.SIGKILL
        removed = [e for _, e in client.get_events(address) if e.get("action") == "remove-worker"]
    assert rows_at_kill < len(clip_ids), "the kill must land in the middle of the run"
    # the scheduler lost w2 unexpectedly with tasks of the run on it, and had them run again on w1
    assert len(removed) == 1 and not removed[0]["expected"], removed
    assert any(str(k).startswith("emo-extract-") for k in removed[0]["processing-tasks"]), removed

    report = json.loads((tmp_path / "out.json").read_text())
    assert report["n_written"] == len(clip_ids) and report["status"]["audio"] == {"ok": len(clip_ids)}
    assert sum(report["workers"].values()) == len(clip_ids) and set(report["workers"]) <= {"w1", "w2"}
    fs = FeatureStore.open(store)
    clips = fs.clips()
    assert fs.n_clips == len(clip_ids) and clips["clip_id"].is_unique  # each clip once
    assert sorted(clips["clip_id"]) == clip_ids
    assert set(clips["status_audio"]) == {"ok"} and not clips["error"].any()
    assert np.isfinite(fs.read("audio/egemaps")).all()
    _verified(store)
    assert_quiet((tmp_path / "err.log").read_text())


def _embedded_workers(driver: subprocess.Popen) -> list[psutil.Process]:
    """The worker processes of a driver's embedded cluster (spawned by its nannies; not the resource tracker)."""
    out = []
    for child in psutil.Process(driver.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            cmdline = " ".join(child.cmdline())
            if "spawn_main" in cmdline and "resource_tracker" not in cmdline:
                out.append(child)
    return out


def test_embedded_worker_killed_three_times(demo_dir: Path, tmp_path: Path) -> None:
    store, err = tmp_path / "s.zarr", tmp_path / "err.log"
    driver = _start_driver(
        tmp_path, str(demo_dir), "-o", str(store), "--workers", "2", "--features", "mfcc,faces", "--fps", "2",
        "--batch-size", "1", "--chunk-clips", "1", "--json", "-q",
    )
    killed: list[int] = []
    try:
        for kill in range(3):
            # two workers are up (the nanny restarted the last one killed) and clips keep coming: the oldest worker
            # has been taking clips all along, so the kill lands in the middle of one
            rows = _rows(store)
            _wait_for(
                driver,
                lambda r=rows: _rows(store) >= r + 2 and len(_embedded_workers(driver)) == 2,
                err,
                timeout=180,
            )
            victim = min(_embedded_workers(driver), key=lambda w: w.create_time())
            victim.kill()
            killed.append(victim.pid)
            assert _rows(store) < 24, f"kill {kill + 1} must land in the middle of the run"
        assert driver.wait(600) == 0, err.read_text()  # a guard against a hang, not a wait for an event
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["n_written"] == 24 and report["status"]["audio"] == {"ok": 24}
    fs = FeatureStore.open(store)
    clips = fs.clips()
    assert fs.n_clips == 24 and clips["clip_id"].is_unique  # each clip exactly once
    assert set(clips["status_video"]) == {"ok"} and not clips["error"].any()
    _verified(store)
    assert_quiet(err.read_text())


@pytest.fixture(scope="module")
def poison_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A scheduler with a low ``allowed-failures`` and one worker under a nanny with a small memory limit."""
    cluster = DaskProcesses(
        tmp_path_factory.mktemp("poison_dask"),
        # no scheduler-side queuing: the tasks behind the poison wait on its worker, where Dask blames them too
        env={
            "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": str(POISON_ALLOWED_FAILURES),
            "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "inf",
        },
    )
    try:
        cluster.add_worker("small", "--memory-limit", POISON_MEMORY_LIMIT, nanny=True)
        cluster.wait_for_workers(1)
        yield cluster
    finally:
        _kill(cluster)


@pytest.fixture(scope="module")
def poison_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Label folders of 1.5 s speech-like WAV clips, and one 20-minute recording among them."""
    root = tmp_path_factory.mktemp("poison_data")
    for i, emotion in enumerate(["neutral", "happy", "sad", "angry"] * 2):
        path = root / emotion / f"clip{i:02d}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, speech_like(emotion, 1.5, seed=i), 16000, subtype="PCM_16")
    # 77 MB of float32 once decoded, and openSMILE needs several times that: far over the worker's limit
    segment = (speech_like("angry", 2.0, seed=99) * 20000).astype(np.int16)
    sf.write(root / "angry" / "long_recording.wav", np.tile(segment, 600), 16000, subtype="PCM_16")
    return root


def test_poison_clip_is_marked_failed(poison_dir: Path, tmp_path: Path, poison_cluster: DaskProcesses) -> None:
    store = tmp_path / "s.zarr"
    proc = run_emo(
        "extract", str(poison_dir), "-o", str(store), "--scheduler", poison_cluster.address, *EGEMAPS,
        "--batch-size", "1", "--json", "-v", timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    clips = FeatureStore.open(store).clips().set_index("clip_id")
    assert len(clips) == report["n_written"] == 9 and clips.index.is_unique
    poison = clips.loc["angry/long_recording"]
    assert poison["status_audio"] == "failed", poison
    expected = "worker died: the worker processing this clip died on every attempt (2 attempts, "
    assert poison["error"].startswith(expected), poison["error"]
    others = clips.drop(index="angry/long_recording")
    assert set(others["status_audio"]) == {"ok"} and not others["error"].any(), others[["status_audio", "error"]]
    assert report["failures"] == {"worker died": {"count": 1, "clip_ids": ["angry/long_recording"]}}

    # the worker process was really killed by its nanny for exceeding its memory limit, once per attempt
    worker_log = (poison_cluster.tmp / "worker-small.log").read_text()
    kills = re.findall(r"exceeded 95% memory budget\. Restarting", worker_log)
    assert len(kills) == POISON_ALLOWED_FAILURES + 1, worker_log[-3000:]
    scheduler_log = (poison_cluster.tmp / "scheduler.log").read_text()
    blamed = set(re.findall(r"Task (emo-extract-\S+) marked as failed because 2 workers died", scheduler_log))
    assert blamed, scheduler_log
    # Dask also fails a clip that was only queued behind the poison on the dying worker (whether one was
    # depends on the order the restarted worker got its tasks in): each such clip was run again, not failed
    requeued = re.findall(r"clip \S+ was queued on workers that died; submitting it again", proc.stderr)
    assert len(requeued) == len(blamed) - 1, (proc.stderr, scheduler_log)
    _verified(store)


def test_scheduler_lost_mid_run(demo_dir: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    cluster = DaskProcesses(tmp_path_factory.mktemp("lost_dask"))
    store, err = tmp_path / "s.zarr", tmp_path / "err.log"
    try:
        cluster.add_worker("w")
        cluster.wait_for_workers(1)
        driver = _start_driver(
            tmp_path, str(demo_dir), "-o", str(store), "--scheduler", cluster.address, *EGEMAPS,
            "--batch-size", "1", "--chunk-clips", "2", "-q",
        )
        try:
            _wait_for(driver, lambda: _rows(store) >= 2, err)
            cluster.procs[0].send_signal(signal.SIGKILL)  # the scheduler
            code = driver.wait(60)
        finally:
            if driver.poll() is None:
                driver.kill()
    finally:
        _kill(cluster)
    message = err.read_text()
    assert code == 1, message
    expected = r"^emo: error: lost contact with the Dask cluster \(.+\); .* run the same command again to resume$"
    assert re.search(expected, message, re.MULTILINE), message
    # what was computed is kept; no clip is recorded as failed because the cluster went away
    clips = FeatureStore.open(store).clips()
    assert 2 <= len(clips) < 24 and clips["clip_id"].is_unique
    assert set(clips["status_audio"]) == {"ok"} and not clips["error"].any()
    _verified(store)
    assert_quiet(message)
