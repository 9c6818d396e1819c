"""The store's storage fails during ``emo extract``: the disk fills, the directory turns read-only, the S3
endpoint goes away. Each time the run stops with one line naming the problem (exit 1), the store opens with
every row committed before intact, and once the storage is back the same command resumes and completes it.

Real processes and real file systems: a tmpfs mounted for the test (skipped, saying why, where mounting is not
allowed), and moto's S3 server behind a relay process that is killed and restarted (``tests/tcp_relay.py``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import BIN, _free_port, assert_quiet, emo_cmd, run_emo

from emo.features_store import FeatureStore
from emo.features_store.lock import LEASE_TTL_S, LOCK_NAME
from emo.features_store.verify import verify_store

#: Audio features only: the faults are the storage's, the clips just have to keep coming.
AUDIO = ("--features", "mfcc,mel,egemaps", "--batch-size", "1", "--chunk-clips", "2", "-q")
STOPPED = re.compile(
    r"^emo: error: cannot write to the store .+; the (\d+) clips committed before are intact"
    r"(?:, and the (\d+) of the commit under way may be too \(the storage failed while recording it; .+\))?: .* "
    r"run the same command again to resume$"
)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A fresh 64 MiB tmpfs mounted at a temporary directory (needs root: CAP_SYS_ADMIN)."""
    mount_point = tmp_path / "mnt"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CAP_SYS_ADMIN); run the suite as root to test a full disk")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _rows(store: Path) -> int:
    try:
        return int(json.loads((store / "zarr.json").read_text())["attributes"]["rows"])
    except (OSError, ValueError, KeyError):
        return 0


def _stop_midway(
    driver: subprocess.Popen, err: Path, committed: Callable[[], int], fault: Callable[[], None]
) -> tuple[int, int]:
    """Let the driver commit some clips, cause ``fault``, and return (rows committed when it hit, exit code)."""
    deadline = time.monotonic() + 180
    while committed() < 4:
        assert driver.poll() is None, "the run ended before the fault: " + err.read_text()
        assert time.monotonic() < deadline, err.read_text()
        time.sleep(0.02)
    at_fault = committed()
    fault()
    try:
        return at_fault, driver.wait(180)
    finally:
        if driver.poll() is None:
            driver.kill()


def _check_stopped(err: Path, at_fault: int, code: int, store: str, **open_kwargs: object) -> int:
    """The run stopped with one line and exit 1; the store opens with the rows it says are intact."""
    text = err.read_text()
    assert code == 1, text
    assert_quiet(text)
    lines = [line for line in text.splitlines() if line.startswith("emo: error:")]
    assert len(lines) == 1, text
    match = STOPPED.match(lines[0])
    assert match, text
    fs = FeatureStore.open(store, **open_kwargs)
    intact, maybe = int(match.group(1)), int(match.group(2) or 0)
    # a commit whose record reached the server but whose answer did not (the endpoint killed in between) is
    # reported as possibly committed: the store holds either count, whole
    assert fs.n_clips in (intact, intact + maybe), text
    assert at_fault <= fs.n_clips < 24, "the fault must land in the middle of the run"
    clips = fs.clips()
    assert clips["clip_id"].is_unique and set(clips["status_audio"]) == {"ok"}
    return fs.n_clips


def _resume(demo_dir: Path, store: str, scheduler: str, before: int, *extra: str) -> None:
    proc = run_emo("extract", str(demo_dir), "-o", store, "--scheduler", scheduler, *AUDIO, "--json", *extra)
    assert proc.returncode == 0, proc.stderr
    assert_quiet(proc.stderr)
    report = json.loads(proc.stdout)
    assert (report["n_already_done"], report["n_written"]) == (before, 24 - before)


def _complete(store: str, demo_dir: Path, **open_kwargs: object) -> None:
    fs = FeatureStore.open(store, **open_kwargs)
    clips = fs.clips()
    assert fs.n_clips == 24 and sorted(clips["clip_id"]) == sorted(p.stem for p in demo_dir.rglob("*.mp4"))
    assert fs.offsets("audio/mfcc")[-1] == len(fs.read("audio/mfcc/values"))
    report = verify_store(store, deep=True, storage_options=open_kwargs.get("storage_options"))
    assert report.ok, report.lines()


def _fill(directory: Path) -> None:
    """Write zeros into ``directory`` until its file system is full (unbuffered: every byte that fits lands)."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (1 << 20, 4096, 1):
            block = bytes(size)
            try:
                while os.write(fd, block):
                    pass
            except OSError:
                continue
    finally:
        os.close(fd)


def _driver(demo_dir: Path, store: str, tmp_path: Path, scheduler: str, *extra: str) -> tuple[subprocess.Popen, Path]:
    err = tmp_path / "err.log"
    with open(err, "w") as stderr:
        driver = subprocess.Popen(
            emo_cmd("extract", str(demo_dir), "-o", store, "--scheduler", scheduler, *AUDIO, *extra),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    return driver, err


def test_disk_fills_during_a_commit(demo_dir: Path, tmp_path: Path, tmpfs: Path, scheduler: str) -> None:
    store = tmpfs / "s.zarr"
    driver, err = _driver(demo_dir, str(store), tmp_path, scheduler)
    at_fault, code = _stop_midway(driver, err, lambda: _rows(store), lambda: _fill(tmpfs))
    assert "No space left on device" in err.read_text()
    before = _check_stopped(err, at_fault, code, str(store))
    assert not (store / LOCK_NAME).exists()  # the stopped writer removed its lock
    (tmpfs / "filler").unlink()  # space is freed: the same command resumes
    _resume(demo_dir, str(store), scheduler, before)
    _complete(str(store), demo_dir)


def test_store_directory_turns_read_only(demo_dir: Path, tmp_path: Path, tmpfs: Path, scheduler: str) -> None:
    store = tmpfs / "s.zarr"
    driver, err = _driver(demo_dir, str(store), tmp_path, scheduler)

    def read_only() -> None:
        # the kernel refuses while a file is open for writing (a chunk being written): retry until it takes
        deadline = time.monotonic() + 60
        while subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], capture_output=True).returncode:
            assert time.monotonic() < deadline, "the file system stayed busy"

    at_fault, code = _stop_midway(driver, err, lambda: _rows(store), read_only)
    assert "Read-only file system" in err.read_text()
    before = _check_stopped(err, at_fault, code, str(store))
    subprocess.run(["mount", "-o", "remount,rw", str(tmpfs)], check=True)
    _resume(demo_dir, str(store), scheduler, before)
    _complete(str(store), demo_dir)


# -- S3 ------------------------------------------------------------------------------------------------------
KEY, SECRET, BUCKET = "AKIAEMOFAULTKEY1", "fault-secret-not-to-print", "emo-faults"


def _start_relay(port: int, target: int) -> subprocess.Popen:
    relay = subprocess.Popen(
        [sys.executable, str(Path(__file__).parents[1] / "tcp_relay.py"), str(port), str(target)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert relay.stdout.readline().strip() == "ready"
    return relay


@pytest.fixture
def s3_behind_relay(tmp_path: Path) -> Iterator[tuple[int, int, list[subprocess.Popen]]]:
    """moto's S3 server with one bucket, and a relay in front of it: (relay port, moto port, [moto, relay])."""
    import boto3

    moto_port, relay_port = _free_port(), _free_port()
    log = open(tmp_path / "moto.log", "w")  # noqa: SIM115 - closed after the server
    moto = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    procs = [moto]
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{moto_port}", timeout=1).close()
                break
            except urllib.error.HTTPError:
                break  # it answers
            except OSError:
                assert moto.poll() is None and time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.1)
        boto3.client(
            "s3",
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
            endpoint_url=f"http://127.0.0.1:{moto_port}",
            region_name="us-east-1",
        ).create_bucket(Bucket=BUCKET)
        procs.append(_start_relay(relay_port, moto_port))
        yield relay_port, moto_port, procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        log.close()


def _s3_options(port: int) -> dict:
    return {
        "key": KEY,
        "secret": SECRET,
        "endpoint_url": f"http://127.0.0.1:{port}",
        "client_kwargs": {"region_name": "us-east-1"},
    }


def _s3_args(port: int) -> list[str]:
    items = [
        f"key={KEY}",
        f"secret={SECRET}",
        f"endpoint_url=http://127.0.0.1:{port}",
        "client_kwargs.region_name=us-east-1",
    ]
    return [arg for item in items for arg in ("--storage-option", item)]


def test_s3_endpoint_killed_and_restarted(
    demo_dir: Path, tmp_path: Path, scheduler: str, s3_behind_relay: tuple[int, int, list[subprocess.Popen]]
) -> None:
    import s3fs

    relay_port, moto_port, procs = s3_behind_relay
    url = f"s3://{BUCKET}/stores/demo.zarr"
    direct = s3fs.S3FileSystem(**_s3_options(moto_port))  # behind the relay: what the server holds

    def committed() -> int:
        direct.invalidate_cache()
        try:
            return int(json.loads(direct.cat_file(f"{BUCKET}/stores/demo.zarr/zarr.json"))["attributes"]["rows"])
        except (OSError, ValueError, KeyError):
            return 0

    def kill_endpoint() -> None:
        procs[1].send_signal(signal.SIGKILL)
        procs[1].wait()

    driver, err = _driver(demo_dir, url, tmp_path, scheduler, *_s3_args(relay_port))
    at_fault, code = _stop_midway(driver, err, committed, kill_endpoint)
    text = err.read_text()
    assert KEY not in text and SECRET not in text, text
    procs.append(_start_relay(relay_port, moto_port))  # the endpoint is back
    before = _check_stopped(err, at_fault, code, url, storage_options=_s3_options(relay_port))
    # the writer could not delete its lease: it expires LEASE_TTL_S after its last renewal at the latest, and a
    # writer on this host takes it over at once, since the process that held it is gone
    direct.invalidate_cache()
    lease = json.loads(direct.cat_file(f"{BUCKET}/stores/demo.zarr/{LOCK_NAME}"))
    assert time.time() - LEASE_TTL_S < lease["heartbeat"] <= time.time() and lease["pid"] == driver.pid
    assert "could not remove the writer's lease" in text and f"expires after {LEASE_TTL_S:.0f} s" in text
    _resume(demo_dir, url, scheduler, before, *_s3_args(relay_port))
    _complete(url, demo_dir, storage_options=_s3_options(relay_port))
    direct.invalidate_cache()
    assert not direct.exists(f"{BUCKET}/stores/demo.zarr/{LOCK_NAME}")  # released by the run that completed it
