"""Sharing stores: copy to and from a real S3-protocol server (moto on 127.0.0.1), verify, merge, pack, zips.

Every ``emo`` call of this module goes through ``emo_checked`` (the installed program, used for every call
that talks to S3) or ``emo`` (the same click CLI in this process, for local calls); both fail when the fake
credentials passed as storage options appear in stdout or stderr, or when a traceback does. "Training from a
remote store" is tested as a full read of every array through FeatureStore.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import BIN, run_emo

from emo.errors import StoreError, UsageError
from emo.features_store import ClipResult, FeatureStore, SequenceSpec, StoreWriter, VectorSpec
from emo.features_store.checksums import CHECKSUMS_ATTR, record_checksums
from emo.features_store.location import parse_location, redact_argv
from emo.features_store.lock import LOCK_NAME
from emo.features_store.sequences import derive
from emo.features_store.transfer import copy_store
from emo.features_store.verify import verify_store
from emo.pipeline.synthetic import DemoSpec, make_demo_dataset

KEY = "AKIAEMOTESTKEY123"
SECRET = "s3cr3t-emo-do-not-print"
BUCKET = "emo-team"
EMOTIONS = ("neutral", "happy", "angry")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class S3:
    endpoint: str

    @property
    def options(self) -> dict:
        return {
            "key": KEY,
            "secret": SECRET,
            "endpoint_url": self.endpoint,
            "client_kwargs": {"region_name": "us-east-1"},
        }

    @property
    def args(self) -> list[str]:
        items = [
            f"key={KEY}",
            f"secret={SECRET}",
            f"endpoint_url={self.endpoint}",
            "client_kwargs.region_name=us-east-1",
        ]
        return [arg for item in items for arg in ("--storage-option", item)]

    def fs(self):  # noqa: ANN201 - s3fs filesystem
        import s3fs

        fs = s3fs.S3FileSystem(**self.options)
        fs.invalidate_cache()
        return fs


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    """A moto S3 server process on 127.0.0.1 with one bucket, for this module."""
    import boto3

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")  # noqa: SIM115 - closed after the server
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=1).close()
                break
            except urllib.error.HTTPError:
                break  # it answers
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.1)
        boto3.client(
            "s3", aws_access_key_id=KEY, aws_secret_access_key=SECRET, endpoint_url=endpoint, region_name="us-east-1"
        ).create_bucket(Bucket=BUCKET)
        yield S3(endpoint)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _check_output(args: tuple[str, ...], stdout: str, stderr: str) -> None:
    for stream in (stdout, stderr):
        assert KEY not in stream and SECRET not in stream, (args, stream)
    assert "Traceback" not in stderr, stderr


def emo_checked(*args: str) -> subprocess.CompletedProcess:
    """Run the ``emo`` program; the credentials must appear in none of its output, and never a traceback."""
    proc = run_emo(*args, timeout=300)
    _check_output(args, proc.stdout, proc.stderr)
    return proc


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def emo(*args: str) -> Result:
    """The same CLI in this process (click's runner): no interpreter start-up, for the many local calls."""
    from click.testing import CliRunner

    from emo.cli import cli

    result = CliRunner().invoke(cli, list(args), prog_name="emo")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    _check_output(args, result.stdout, result.stderr)
    return Result(result.exit_code, result.stdout, result.stderr)


def assert_same_store(a: FeatureStore, b: FeatureStore) -> None:
    """Every array, array attribute (checksums included) and root attribute equal."""
    assert a.array_paths() == b.array_paths()
    assert a.attrs == b.attrs
    for path in a.array_paths():
        x, y = a.read(path), b.read(path)
        assert x.dtype == y.dtype and x.shape == y.shape, path
        if x.dtype.kind == "f":
            np.testing.assert_array_equal(x, y, err_msg=path)
        else:
            assert x.tolist() == y.tolist(), path
        assert dict(a.array(path).attrs) == dict(b.array(path).attrs), path


def extract(dataset: Path, store: Path | str, scheduler: str, *extra: str) -> None:
    proc = emo_checked(
        "extract", str(dataset), "-o", str(store), "--features", "mfcc,egemaps", "--scheduler", scheduler, "-q", *extra
    )
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def team_store(tmp_path_factory: pytest.TempPathFactory, small_demo_dir: Path, scheduler: str) -> Path:
    """A real extraction (MFCC + eGeMAPS) of 6 clips: actors 1 and 2."""
    store = tmp_path_factory.mktemp("team") / "ravdess.zarr"
    extract(small_demo_dir, store, scheduler)
    return store


@pytest.fixture(scope="module")
def other_store(tmp_path_factory: pytest.TempPathFactory, scheduler: str) -> Path:
    """The same extraction of other clips (actors 3 and 4): what a teammate would bring."""
    root = tmp_path_factory.mktemp("other_data")
    make_demo_dataset(root, DemoSpec(actors=(3, 4), emotions=EMOTIONS, seconds=1.5), seed=1)
    store = tmp_path_factory.mktemp("other") / "ravdess-34.zarr"
    extract(root, store, scheduler)
    return store


@pytest.fixture(scope="module")
def pushed(team_store: Path, s3: S3) -> str:
    url = f"s3://{BUCKET}/team/ravdess.zarr"
    proc = emo_checked("store", "copy", str(team_store), url, *s3.args)
    assert proc.returncode == 0, proc.stderr
    assert "copied" in proc.stdout and url in proc.stdout
    return url


# -- object store round trip --------------------------------------------------------------------------------
def test_push_info_verify_read_pull_and_compare(team_store: Path, pushed: str, s3: S3, tmp_path: Path) -> None:
    fs3 = s3.fs()
    keys = fs3.find(f"{BUCKET}/team/ravdess.zarr")
    assert f"{BUCKET}/team/ravdess.zarr/zarr.json" in keys
    assert not [k for k in keys if k.endswith(LOCK_NAME)]  # neither the source's lock file nor a lease

    info = emo_checked("store", "info", pushed, "--json", *s3.args)
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert data["store"] == pushed and data["n_clips"] == 6
    assert {a["path"] for a in data["arrays"]} >= {"audio/mfcc/values", "audio/egemaps", "clips/clip_id"}
    assert "clips by label" in emo("store", "info", str(team_store)).stdout

    deep = emo_checked("store", "verify", pushed, "--deep", "--json", *s3.args)
    assert deep.returncode == 0, deep.stdout + deep.stderr
    report = json.loads(deep.stdout)
    assert report["ok"] and report["deep"] and report["n_chunks_checked"] > 20 and report["bytes_hashed"] > 0
    assert report["problems"] == [] and report["warnings"] == []

    # what training from the remote store needs: every array read in full through FeatureStore
    local, remote = FeatureStore.open(team_store), FeatureStore.open(pushed, s3.options)
    assert_same_store(local, remote)
    assert [len(s) for s in remote.sequences("audio/mfcc/values")] == [
        len(s) for s in local.sequences("audio/mfcc/values")
    ]

    back = tmp_path / "back.zarr"
    pulled = emo_checked("store", "copy", pushed, str(back), *s3.args, "--json")
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout)["n_chunks_checked"] > 0
    assert_same_store(local, FeatureStore.open(back))
    assert emo("store", "verify", str(back), "--deep").returncode == 0

    # an existing destination is refused, then replaced with --overwrite
    again = emo_checked("store", "copy", str(team_store), pushed, *s3.args)
    assert again.returncode == 2 and "already exists" in again.stderr and "--overwrite" in again.stderr
    assert emo_checked("store", "copy", str(team_store), pushed, *s3.args, "--overwrite").returncode == 0
    assert_same_store(local, FeatureStore.open(pushed, s3.options))


def test_fuse_trains_from_the_object_store_without_recording_credentials(
    team_store: Path, pushed: str, s3: S3, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    proc = emo_checked("fuse", "--store", pushed, *s3.args, "--method", "early", "--split", "stratified",
                       "--epochs", "3", "-o", str(run), "--json")
    assert proc.returncode == 0, proc.stderr
    local = tmp_path / "local"
    assert emo_checked("fuse", "--store", str(team_store), "--method", "early", "--split", "stratified",
                       "--epochs", "3", "-o", str(local), "--json").stdout == proc.stdout
    for name in ("metrics.json", "config.json", "predictions.csv"):
        text = (run / name).read_text()
        assert KEY not in text and SECRET not in text, name
    assert "secret=***" in json.loads((run / "metrics.json").read_text())["command"]


def test_writer_commits_and_resumes_on_the_object_store(s3: S3) -> None:
    """StoreWriter on S3: the lease lock, chunk-aligned commits, checksums of rewritten chunks, trim on resume."""
    url = f"s3://{BUCKET}/direct/written.zarr"
    write_store(url, [clip(i) for i in range(6)], options=s3.options)  # commits 4, then 2 (a partial chunk)
    group = zarr.open_group(parse_location(url, s3.options).zarr_store(read_only=False), mode="r+")
    group["audio/egemaps"].append(np.ones((2, 4), np.float32))  # a writer killed before its commit
    report = verify_store(url, s3.options, deep=True)
    assert report.ok and [w.path for w in report.warnings] == ["audio/egemaps"], report.problems

    write_store(url, [clip(6), clip(7), clip(8)], options=s3.options)  # trims, rewrites the partial chunk
    report = verify_store(url, s3.options, deep=True)
    assert report.ok and not report.warnings, (report.problems, report.warnings)
    fs = FeatureStore.open(url, s3.options)
    assert fs.clips()["clip_id"].tolist() == [f"c{i}" for i in range(9)]
    np.testing.assert_array_equal(fs.read("audio/egemaps")[:, 0], np.arange(9))
    fs3 = s3.fs()
    keys = fs3.find(f"{BUCKET}/direct/written.zarr")
    assert not [k for k in keys if k.endswith(LOCK_NAME)]  # the writer's lease is gone
    for key in keys:  # credentials and endpoints never land in the store's metadata
        if key.endswith("zarr.json"):
            text = fs3.cat_file(key).decode()
            assert KEY not in text and SECRET not in text and s3.endpoint not in text


# -- corruption -----------------------------------------------------------------------------------------------
def test_flipped_and_truncated_chunks_are_named(team_store: Path, tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    assert emo("store", "copy", str(team_store), str(store)).returncode == 0
    chunks = [p for p in (store / "audio" / "mfcc" / "values" / "c").rglob("*") if p.is_file()]
    chunk = max(chunks, key=lambda p: p.stat().st_size)
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x40
    chunk.write_bytes(bytes(data))

    quick = emo("store", "verify", str(store))
    assert quick.returncode == 0  # same size: only reading the bytes can tell
    deep = emo("store", "verify", str(store), "--deep", "--json")
    assert deep.returncode == 1
    problems = json.loads(deep.stdout)["problems"]
    assert {p["path"] for p in problems} == {"audio/mfcc/values"}
    assert any("sha256 differs" in p["message"] for p in problems)
    human = emo("store", "verify", str(store), "--deep")
    assert human.returncode == 1 and "FAILED" in human.stdout and "audio/mfcc/values" in human.stdout

    refused = emo("store", "copy", str(store), str(tmp_path / "spread.zarr"))
    assert refused.returncode == 1 and "does not match its recorded sha256" in refused.stderr
    assert not (tmp_path / "spread.zarr").exists()

    egemaps = next(p for p in (store / "audio" / "egemaps" / "c").rglob("*") if p.is_file())
    egemaps.write_bytes(egemaps.read_bytes()[:-3])
    (store / "clips" / "speaker" / "c" / "0").unlink()
    quick = emo("store", "verify", str(store), "--json")
    assert quick.returncode == 1
    paths = {p["path"]: p["message"] for p in json.loads(quick.stdout)["problems"]}
    assert "wrong size" in paths["audio/egemaps"] and "missing" in paths["clips/speaker"]


# -- checksums under the writer's resume protocol --------------------------------------------------------------
SPECS = [SequenceSpec("audio/mfcc", {"values": (3,)}, steps=4), VectorSpec("audio/egemaps", (4,))]


def clip(i: int, *, sha: str | None = None, label: str = "happy", labels: tuple[str, ...] = ("neutral", "happy")):
    values = np.random.default_rng(i).standard_normal((i % 5 + 1, 3)).astype(np.float32)
    arrays = derive("audio/mfcc", values, 4)
    arrays["audio/egemaps"] = np.full(4, i, np.float32)
    columns = {
        "clip_id": f"c{i}",
        "label": labels.index(label),
        "label_name": label,
        "status_audio": "ok",
        "source_sha256": sha or f"{i:064x}",
    }
    return ClipResult(columns, arrays)


def write_store(
    path: Path | str, clips: list[ClipResult], labels=("neutral", "happy"), config=None, options=None
) -> Path | str:
    """A store written by StoreWriter from synthetic clips (4 clips per chunk)."""
    config = config or {"n_mels": 128, "hop_ms": 10.0}
    extraction = {"config": config, "config_hash": json.dumps(config, sort_keys=True)}
    with StoreWriter.open(
        path,
        specs=SPECS,
        labels=list(labels),
        dataset={"adapter": "test"},
        extraction=extraction,
        software={"python": "3"},
        chunk_rows=4,
        storage_options=options,
    ) as writer:
        for c in clips:
            writer.add(c)
    return path


def test_checksums_survive_rewritten_chunks_and_an_interrupted_write(tmp_path: Path) -> None:
    path = write_store(tmp_path / "s.zarr", [clip(i) for i in range(6)])  # the last chunk is partial
    with StoreWriter.open(
        path,
        specs=SPECS,
        labels=["neutral", "happy"],
        dataset={"adapter": "test"},
        extraction={
            "config": {"n_mels": 128, "hop_ms": 10.0},
            "config_hash": json.dumps({"hop_ms": 10.0, "n_mels": 128}),
        },
        software={},
        chunk_rows=4,
    ) as writer:
        writer.add(clip(6))  # rewrites the partial chunk c/1
    assert verify_store(path, deep=True).ok

    # a writer killed after appending, without committing: one array with its checksums updated, one without
    group = zarr.open_group(str(path), mode="r+")
    eg = group["audio/egemaps"]
    eg.append(np.ones((3, 4), np.float32))
    record_checksums(eg, 7, 10)
    group["clips/clip_id"].append(np.array(["ghost"], dtype=object))  # chunk rewritten, checksum not recorded
    report = verify_store(path, deep=True)
    assert report.ok, report.problems
    assert {w.path for w in report.warnings} == {"audio/egemaps", "clips/clip_id"}
    assert all("uncommitted" in w.message for w in report.warnings)

    write_store(path, [clip(7), clip(8)])  # resumes: trims, re-hashes the chunk that now ends each array
    report = verify_store(path, deep=True)
    assert report.ok and not report.warnings, (report.problems, report.warnings)
    fs = FeatureStore.open(path)
    assert fs.clips()["clip_id"].tolist() == [f"c{i}" for i in range(9)]
    chunks = fs.array("clips/clip_id").attrs[CHECKSUMS_ATTR]["chunks"]
    assert set(chunks) == {"c/0", "c/1", "c/2"}


# -- merge ------------------------------------------------------------------------------------------------------
def test_merge_disjoint_stores_then_overlapping_ones(
    team_store: Path, other_store: Path, pushed: str, s3: S3, tmp_path: Path
) -> None:
    merged = tmp_path / "merged.zarr"
    # one source on the object store, one local: storage options apply to the remote one
    proc = emo_checked("store", "merge", pushed, str(other_store), "-o", str(merged), "--json", *s3.args)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["n_clips"] == 12 and report["n_duplicates"] == 0
    assert emo("store", "verify", str(merged), "--deep").returncode == 0

    fs, a, b = FeatureStore.open(merged), FeatureStore.open(team_store), FeatureStore.open(other_store)
    assert fs.config_hash == a.config_hash and fs.labels == a.labels
    assert [s["store"] for s in fs.attrs["merged_from"]] == [pushed, str(other_store)]
    assert "merged_from" in json.loads(emo("store", "info", str(merged), "--json").stdout)
    ids = fs.clips()["clip_id"].tolist()
    assert ids == a.clips()["clip_id"].tolist() + b.clips()["clip_id"].tolist()
    for source in (a, b):  # every clip's features and labels arrive unchanged
        rows = [ids.index(c) for c in source.clips()["clip_id"]]
        for path in ("audio/egemaps", "audio/mfcc/pooled", "audio/mfcc/aligned", "audio/mfcc/mask"):
            np.testing.assert_array_equal(fs.read(path)[rows], source.read(path), err_msg=path)
        mine, theirs = fs.sequences("audio/mfcc/values"), source.sequences("audio/mfcc/values")
        for r, seq in zip(rows, theirs, strict=True):
            np.testing.assert_array_equal(mine[r], seq)
        assert fs.clips()["label_name"][rows].tolist() == source.clips()["label_name"].tolist()
        assert (
            dict(fs.array("audio/mfcc/values").attrs)["params"]
            == dict(source.array("audio/mfcc/values").attrs)["params"]
        )

    # the same clips again (a teammate's copy of the team store): kept once
    again = emo("store", "merge", str(merged), str(team_store), "-o", str(tmp_path / "again.zarr"), "--json")
    assert again.returncode == 0, again.stderr
    assert (json.loads(again.stdout)["n_clips"], json.loads(again.stdout)["n_duplicates"]) == (12, 6)
    exists = emo("store", "merge", str(merged), str(team_store), "-o", str(tmp_path / "again.zarr"))
    assert exists.returncode == 2 and "already exists" in exists.stderr


def test_merge_refusals_name_what_differs(tmp_path: Path) -> None:
    base = write_store(tmp_path / "a.zarr", [clip(i) for i in range(3)])
    other_config = write_store(
        tmp_path / "b.zarr", [clip(i) for i in range(3, 6)], config={"n_mels": 64, "hop_ms": 10.0}
    )
    proc = emo("store", "merge", str(base), str(other_config), "-o", str(tmp_path / "out.zarr"))
    assert proc.returncode == 2 and "different configurations" in proc.stderr and "n_mels" in proc.stderr
    assert "hop_ms" not in proc.stderr and not (tmp_path / "out.zarr").exists()

    joy = write_store(
        tmp_path / "joy.zarr",
        [clip(i, label="joy", labels=("neutral", "joy")) for i in range(3, 6)],
        labels=("neutral", "joy"),
    )
    proc = emo("store", "merge", str(base), str(joy), "-o", str(tmp_path / "out.zarr"))
    assert proc.returncode == 2 and "label sets differ" in proc.stderr
    assert "happy" in proc.stderr and "joy" in proc.stderr and "--map-labels" in proc.stderr
    proc = emo("store", "merge", str(base), str(joy), "-o", str(tmp_path / "out.zarr"), "--map-labels", "joy=happy")
    assert proc.returncode == 0, proc.stderr
    fs = FeatureStore.open(tmp_path / "out.zarr")
    assert fs.labels == ["neutral", "happy"] and set(fs.clips()["label_name"]) == {"happy"}
    assert fs.clips()["label"].tolist() == [1] * 6 and verify_store(fs.location).ok
    assert (
        emo(
            "store", "merge", str(base), str(joy), "-o", str(tmp_path / "x.zarr"), "--map-labels", "sad=happy"
        ).returncode
        == 2
    )

    clash = write_store(tmp_path / "clash.zarr", [clip(1, sha="f" * 64), clip(7)])
    proc = emo("store", "merge", str(base), str(clash), "-o", str(tmp_path / "clash-out.zarr"))
    assert proc.returncode == 2 and "c1: different media" in proc.stderr and "1 clip(s) conflict" in proc.stderr
    assert not (tmp_path / "clash-out.zarr").exists()


# -- zips -------------------------------------------------------------------------------------------------------
def test_pack_then_open_the_zip_directly(team_store: Path, s3: S3, tmp_path: Path, small_demo_dir: Path) -> None:
    packed = tmp_path / "ravdess.zip"
    proc = emo("store", "pack", str(team_store), str(packed))
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(packed) as zf:
        names = zf.namelist()
        assert "zarr.json" in names and "audio/mfcc/values/zarr.json" in names
        assert not [n for n in names if LOCK_NAME in n or n.endswith(".partial")]
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
    assert json.loads(emo("store", "info", str(packed), "--json").stdout)["n_clips"] == 6
    assert emo("store", "verify", str(packed), "--deep").returncode == 0
    local = FeatureStore.open(team_store)
    assert_same_store(local, FeatureStore.open(packed))
    plain = zarr.open_group(zarr.storage.ZipStore(packed, mode="r"), mode="r")  # no emo needed to read it
    assert plain["clips/clip_id"][:].tolist() == local.clips()["clip_id"].tolist()
    assert emo("store", "pack", str(team_store), str(packed)).returncode == 2
    assert emo("store", "pack", str(team_store), str(packed), "--overwrite").returncode == 0
    assert emo("store", "pack", str(team_store), str(tmp_path / "x.tar")).returncode == 2
    as_url = f"file://{tmp_path}/by-url.zip"  # file:// URLs are local paths too
    assert emo("store", "pack", f"file://{team_store}", as_url).returncode == 0
    assert emo("store", "verify", as_url, "--deep").returncode == 0
    readonly = emo("extract", str(small_demo_dir), "-o", str(packed), "--features", "mfcc")
    assert readonly.returncode == 2 and "read-only" in readonly.stderr

    url = f"s3://{BUCKET}/team/ravdess.zip"
    assert emo_checked("store", "pack", str(team_store), url, *s3.args).returncode == 0
    assert json.loads(emo_checked("store", "info", url, "--json", *s3.args).stdout)["store"] == url
    assert emo_checked("store", "verify", url, "--deep", *s3.args).returncode == 0
    assert_same_store(local, FeatureStore.open(url, s3.options))
    unpacked = tmp_path / "unpacked.zarr"
    assert emo_checked("store", "copy", url, str(unpacked), *s3.args).returncode == 0
    assert_same_store(local, FeatureStore.open(unpacked))


def test_zip_members_escaping_the_store_are_refused(team_store: Path, tmp_path: Path) -> None:
    packed = tmp_path / "good.zip"
    assert emo("store", "pack", str(team_store), str(packed)).returncode == 0
    for bad_name in ("../escaped.txt", "/tmp/absolute.txt", "audio/../../up.txt"):
        evil = tmp_path / "evil" / "store.zip"
        evil.parent.mkdir(exist_ok=True)
        shutil.copy(packed, evil)
        with zipfile.ZipFile(evil, "a") as zf:
            zf.writestr(bad_name, b"owned")
        for args in (("store", "info", str(evil)), ("store", "verify", str(evil), "--deep")):
            proc = emo(*args)
            assert (
                proc.returncode == 1 and "escape" in proc.stderr + proc.stdout and bad_name in proc.stderr + proc.stdout
            )
        out = tmp_path / "evil" / "unpacked" / "store.zarr"
        proc = emo("store", "copy", str(evil), str(out))
        assert proc.returncode == 1 and "escape" in proc.stderr
        assert not out.parent.exists() or not any(out.parent.iterdir())
        assert not (tmp_path / "evil" / "unpacked" / "escaped.txt").exists()
        assert not (tmp_path / "evil" / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
        with pytest.raises(StoreError, match="escape"):
            FeatureStore.open(evil)


# -- read-only HTTP -----------------------------------------------------------------------------------------------
def test_http_store_is_read_only(team_store: Path, tmp_path: Path) -> None:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(team_store.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/{team_store.name}"
        info = emo("store", "info", url, "--json")
        assert info.returncode == 0, info.stderr
        assert json.loads(info.stdout)["store"] == url
        assert emo("store", "verify", url, "--deep").returncode == 0
        proc = emo("store", "copy", str(team_store), f"{url}-copy")
        assert proc.returncode == 2 and "read-only" in proc.stderr
        with pytest.raises(UsageError, match="read-only"):
            StoreWriter.open(
                url, specs=SPECS, labels=["a"], dataset={}, extraction={"config": {}, "config_hash": "h"}, software={}
            )
    finally:
        server.shutdown()
        server.server_close()


# -- credentials --------------------------------------------------------------------------------------------------
def test_credentials_never_appear_in_output_or_errors(team_store: Path, s3: S3, tmp_path: Path) -> None:
    # a bucket that does not exist: the copy fails with a one-line error naming the store, not the keys
    proc = emo_checked("store", "copy", str(team_store), "s3://no-such-bucket-emo/x.zarr", *s3.args)
    assert proc.returncode == 1 and "s3://no-such-bucket-emo/x.zarr" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = emo_checked("store", "info", "s3://no-such-bucket-emo/x.zarr", *s3.args)
    assert proc.returncode == 2 and "no feature store at s3://no-such-bucket-emo/x.zarr" in proc.stderr
    proc = emo_checked("store", "verify", f"s3://{BUCKET}/nothing-here.zarr", *s3.args, "-vv")
    assert proc.returncode == 2
    # a signed URL carries its credentials in the query string: never shown
    signed = "https://127.0.0.1:9/team/x.zarr?X-Amz-Credential=AKIAEMOTESTKEY123&X-Amz-Signature=abc"
    proc = emo("store", "info", signed)
    assert proc.returncode in (1, 2) and "X-Amz" not in proc.stderr and "https://127.0.0.1:9/team/x.zarr" in proc.stderr

    location = parse_location("s3://b/x.zarr", s3.options)
    assert KEY not in repr(location) and SECRET not in repr(location)
    message = f"PermissionError: key {KEY} with secret {SECRET} refused at http://user:pw@host/"
    assert location.redact(message) == "PermissionError: key *** with secret *** refused at http://***@host/"
    argv = [
        "emo",
        "fuse",
        "--storage-option",
        f"key={KEY}",
        f"--storage-option=secret={SECRET}",
        "--storage-option",
        "client_kwargs.region_name=us-east-1",
    ]
    assert redact_argv(argv) == [
        "emo",
        "fuse",
        "--storage-option",
        "key=***",
        "--storage-option=secret=***",
        "--storage-option",
        "client_kwargs.region_name=us-east-1",
    ]
    with pytest.raises(StoreError) as caught:
        copy_store(team_store, "s3://no-such-bucket-emo/y.zarr", storage_options=s3.options)
    assert KEY not in str(caught.value) and SECRET not in str(caught.value)
