"""The Zarr store: round trip, ragged/aligned/pooled consistency, commits, trimming, the writer lock."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from emo.errors import StoreError, UsageError
from emo.features_store import ClipResult, FeatureStore, SequenceSpec, StoreWriter, VectorSpec, parse_location
from emo.features_store.resume import committed_clip_ids
from emo.features_store.schema import empty_row
from emo.features_store.sequences import align, derive, pool
from emo.features_store.store import StoreVersionError

writer_module = importlib.import_module("emo.features_store.writer")

STEPS = 8
SPECS = [
    SequenceSpec("audio/mfcc", {"values": (3,)}, steps=STEPS, attrs={"extractor": "test"}),
    VectorSpec("audio/egemaps", (4,)),
    SequenceSpec("video/faces", {"boxes": (4,), "probs": ()}, derived=False),
]


def result(i: int, frames: int) -> ClipResult:
    rng = np.random.default_rng(i)
    values = rng.standard_normal((frames, 3)).astype(np.float32)
    arrays = derive("audio/mfcc", values, STEPS)
    arrays["audio/egemaps"] = np.full(4, i, np.float32)
    arrays["video/faces/boxes"] = np.full((i % 3, 4), i, np.float32)
    arrays["video/faces/probs"] = np.full(i % 3, 0.5, np.float32)
    return ClipResult(
        {
            "clip_id": f"c{i}",
            "label": i % 2,
            "label_name": "ab"[i % 2],
            "speaker": f"s{i % 3}",
            "status_audio": "ok",
            "text": f"utterance {i} é",
        },
        arrays,
    )


def open_writer(path: Path, **kw) -> StoreWriter:
    args = {
        "specs": SPECS,
        "labels": ["a", "b"],
        "dataset": {"adapter": "test"},
        "extraction": {"config": {"x": 1, "y": {"z": 2}}, "config_hash": "h1"},
        "software": {"python": "3"},
        "chunk_rows": 4,
    }
    return StoreWriter.open(path, **{**args, **kw})


def test_round_trip_and_consistency(tmp_path: Path) -> None:
    lengths = [0, 1, 5, 8, 13, 40, 3, 9, 2, 17]
    with open_writer(tmp_path / "s.zarr") as writer:
        for i, n in enumerate(lengths):
            writer.add(result(i, n))
    store = FeatureStore.open(tmp_path / "s.zarr")
    assert store.n_clips == len(lengths)
    clips = store.clips()
    assert clips["clip_id"].tolist() == [f"c{i}" for i in range(10)]
    assert clips["text"][3] == "utterance 3 é"
    assert clips["label"].tolist() == [i % 2 for i in range(10)]
    assert clips["utterance_idx"].tolist() == [-1] * 10  # default fill

    offsets = store.offsets("audio/mfcc")
    assert offsets.tolist() == np.concatenate([[0], np.cumsum(lengths)]).tolist()
    sequences = store.sequences("audio/mfcc/values")
    aligned, mask, pooled = (store.read(f"audio/mfcc/{n}") for n in ("aligned", "mask", "pooled"))
    for i, (seq, n) in enumerate(zip(sequences, lengths, strict=True)):
        assert seq.shape == (n, 3)
        np.testing.assert_array_equal(seq, result(i, n).arrays["audio/mfcc/values"])
        assert mask[i].sum() == min(n, STEPS)
        if n:
            np.testing.assert_allclose(pooled[i], np.concatenate([seq.mean(0), seq.std(0)]), rtol=1e-5, atol=1e-6)
            if n % STEPS == 0:  # equal segments: the mean of the segment means is the overall mean
                np.testing.assert_allclose(aligned[i].mean(0), seq.mean(0), rtol=1e-4, atol=1e-5)
        else:
            assert np.isnan(pooled[i]).all() and not mask[i].any()
    np.testing.assert_array_equal(store.read("audio/egemaps")[:, 0], np.arange(10))
    boxes = store.sequences("video/faces/boxes")
    assert [b.shape[0] for b in boxes] == [i % 3 for i in range(10)]
    assert store.array("audio/mfcc/values").attrs["extractor"] == "test"

    # readable with plain zarr, no emo involved
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    assert group.attrs["rows"] == 10 and group.attrs["labels"] == ["a", "b"]
    assert list(group["clips/clip_id"][:3]) == ["c0", "c1", "c2"]


def test_codecs_per_array_kind(tmp_path: Path) -> None:
    """Per-clip rows every training run reads whole (vectors, pooled, mask) are stored uncompressed (float
    features barely compress; see layout.CODECS), aligned views as Blosc-LZ4 (their zero padding), ragged frames
    as Blosc-zstd in 1 MiB blocks (Blosc's default blocks are a few tens of KiB and decode 2-3x slower); all
    read back bit for bit."""
    specs = [VectorSpec("video/summary", (1024,)), SequenceSpec("audio/mfcc", {"values": (20,)}, steps=4)]
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((300, 1024)).astype(np.float32)
    frames = rng.standard_normal((300, 3, 20)).astype(np.float32)
    with open_writer(tmp_path / "s.zarr", specs=specs, chunk_rows=256) as writer:
        for i, row in enumerate(rows):
            arrays = {"video/summary": row, "audio/mfcc/values": frames[i]}
            arrays |= {"audio/mfcc/aligned": np.zeros((4, 20), np.float32), "audio/mfcc/mask": np.ones(4, bool)}
            arrays["audio/mfcc/pooled"] = np.concatenate([frames[i].mean(0), frames[i].std(0)])
            writer.add(ClipResult({"clip_id": f"c{i}", "label_name": "a"}, arrays))
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    for path in ("video/summary", "audio/mfcc/pooled", "audio/mfcc/mask"):
        assert group[path].compressors == (), path
    (lz4,) = group["audio/mfcc/aligned"].compressors
    (zstd,) = group["audio/mfcc/values"].compressors
    assert (lz4.cname.value, lz4.shuffle.value, lz4.blocksize) == ("lz4", "shuffle", 1 << 20)
    assert (zstd.cname.value, zstd.clevel, zstd.shuffle.value, zstd.blocksize) == ("zstd", 1, "shuffle", 1 << 20)
    fs = FeatureStore.open(tmp_path / "s.zarr")
    np.testing.assert_array_equal(fs.read("video/summary"), rows)
    np.testing.assert_array_equal(fs.read("audio/mfcc/values"), frames.reshape(-1, 20))
    np.testing.assert_array_equal(fs.read("audio/mfcc/mask"), np.ones((300, 4), bool))


def test_align_segments_and_padding() -> None:
    long = np.arange(20, dtype=np.float32)[:, None]
    out, mask = align(long, 4)
    assert mask.all() and out[:, 0].tolist() == [2.0, 7.0, 12.0, 17.0]
    short, mask = align(long[:3], 4)
    assert mask.tolist() == [True, True, True, False] and short[:3, 0].tolist() == [0, 1, 2] and short[3, 0] == 0
    np.testing.assert_allclose(pool(long), [9.5, np.std(np.arange(20))])


def test_rows_are_committed_in_chunk_aligned_blocks(tmp_path: Path) -> None:
    commits = []
    writer = open_writer(
        tmp_path / "s.zarr", on_commit=lambda total, added: commits.append((total, added)), flush_seconds=3600
    )
    for i in range(6):
        writer.add(result(i, 3))
    assert commits == [(4, 4)]  # one whole chunk so far; 2 rows still queued
    assert FeatureStore.open(tmp_path / "s.zarr").n_clips == 4
    writer.close()
    assert commits == [(4, 4), (6, 2)]


def test_interrupted_write_is_trimmed_and_resumed(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    with open_writer(path) as writer:
        for i in range(5):
            writer.add(result(i, 4))
    # simulate a writer killed after appending rows but before committing them
    group = zarr.open_group(str(path), mode="r+")
    group["audio/egemaps"].append(np.ones((3, 4), np.float32))
    group["audio/mfcc/values"].append(np.ones((30, 3), np.float32))
    group["clips/clip_id"].append(np.array(["ghost1", "ghost2"], dtype=object))
    store = FeatureStore.open(path)
    assert store.n_clips == 5 and store.read("audio/egemaps").shape == (5, 4)
    assert "ghost1" not in store.clips()["clip_id"].tolist()

    with open_writer(path) as writer:
        assert writer.done_clip_ids() == {f"c{i}" for i in range(5)}
        assert zarr.open_group(str(path), mode="r")["audio/egemaps"].shape == (5, 4)  # trimmed on open
        writer.add(result(5, 2))
    store = FeatureStore.open(path)
    assert store.clips()["clip_id"].tolist() == [f"c{i}" for i in range(6)]
    assert store.sequences("audio/mfcc/values")[5].shape == (2, 3)
    np.testing.assert_array_equal(store.sequences("audio/mfcc/values")[4], result(4, 4).arrays["audio/mfcc/values"])


def test_a_write_that_stops_part_way_is_never_followed_by_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a commit that fails after some arrays took the block's rows: appending the next block behind them would
    # pair one clip's audio with another's faces; the writer stops writing, the next one trims
    path = tmp_path / "s.zarr"
    with open_writer(path) as writer:
        for i in range(4):
            writer.add(result(i, 4))
    real_append, calls = writer_module._append, []

    def failing_append(arr: zarr.Array, data: np.ndarray) -> None:
        calls.append(arr.path)
        if len(calls) == 3:
            raise OSError("disk full")
        real_append(arr, data)

    monkeypatch.setattr(writer_module, "_append", failing_append)
    expected = r"cannot write to the store .*disk full; the 4 clips committed before are intact: .* resume"
    with pytest.raises(StoreError, match=expected), open_writer(path) as writer:
        for i in range(4, 12):
            writer.add(result(i, 4))  # the block of c4..c7 fails part-way; c8.. never get queued
    assert len(calls) == 3, "after the failure nothing else was appended (no flush of the rest on exit)"
    with pytest.raises(StoreError, match="stopped part-way"):  # this writer writes nothing more
        writer.add(result(12, 4))
        writer.flush()
    monkeypatch.setattr(writer_module, "_append", real_append)

    store = FeatureStore.open(path)
    assert store.n_clips == 4
    with open_writer(path) as writer:  # trims the uncommitted tail, then writes in step again
        for i in range(4, 7):
            writer.add(result(i, 4))
    store = FeatureStore.open(path)
    assert store.clips()["clip_id"].tolist() == [f"c{i}" for i in range(7)]
    np.testing.assert_array_equal(store.read("audio/egemaps")[:, 0], np.arange(7))
    for i, seq in enumerate(store.sequences("audio/mfcc/values")):
        np.testing.assert_array_equal(seq, result(i, 4).arrays["audio/mfcc/values"])


def test_ctrl_c_waits_for_the_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.zarr"
    real_append, calls = writer_module._append, []

    def interrupted_append(arr: zarr.Array, data: np.ndarray) -> None:
        calls.append(arr.path)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of a commit
            time.sleep(0.05)
        real_append(arr, data)

    monkeypatch.setattr(writer_module, "_append", interrupted_append)
    writer = open_writer(path)
    with pytest.raises(KeyboardInterrupt):
        for i in range(4):
            writer.add(result(i, 4))
    assert writer.rows == 4  # the block was committed whole, then Ctrl-C was raised
    writer.add(result(4, 4))  # and the writer is in step: it goes on writing
    writer.close()
    assert FeatureStore.open(path).clips()["clip_id"].tolist() == ["c0", "c1", "c2", "c3", "c4"]


def test_second_writer_is_refused_and_lock_is_released(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    writer = open_writer(path)
    with pytest.raises(StoreError, match=f"being written by another process \\(pid {os.getpid()}"):
        open_writer(path)
    writer.close()
    open_writer(path).close()


def test_lock_of_a_killed_writer_does_not_stick(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    open_writer(path).close()
    code = (
        f"from emo.features_store.lock import StoreLock; from emo.features_store import parse_location;"
        f"StoreLock(parse_location({str(path)!r})).acquire(); print('locked', flush=True);"
        "import time; time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(StoreError, match=f"pid {proc.pid}"):
            open_writer(path)
    finally:
        proc.kill()
        proc.wait()  # the kernel released its lock with the process
    open_writer(path).close()


def test_incompatible_config_and_labels_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    with open_writer(path) as w:
        w.add(result(0, 3))
    with pytest.raises(UsageError, match=r"different configuration \(y.z: store has 2, now 3\)"):
        open_writer(path, extraction={"config": {"x": 1, "y": {"z": 3}}, "config_hash": "h2"})
    with pytest.raises(UsageError, match="has labels"):
        open_writer(path, labels=["a", "b", "c"])
    open_writer(path, extraction={"config": {"x": 9}, "config_hash": "h9"}, overwrite=True).close()
    assert FeatureStore.open(path).config == {"x": 9}


def test_a_store_without_clips_starts_again_with_another_config(tmp_path: Path) -> None:
    """A run that stopped before its first clip (a worker refused its model, say) leaves an empty store: the
    command run next, with other options, writes into it instead of being refused."""
    path = tmp_path / "s.zarr"
    open_writer(path).close()
    assert committed_clip_ids(parse_location(path), "h2") == set()  # what `emo extract` peeks before opening
    with open_writer(path, extraction={"config": {"x": 2}, "config_hash": "h2"}, labels=["a", "b", "c"]) as w:
        assert w.done_clip_ids() == set()
        w.add(result(0, 3))
    store = FeatureStore.open(path)
    assert store.config == {"x": 2} and store.labels == ["a", "b", "c"] and len(store.clips()) == 1
    assert committed_clip_ids(parse_location(path), "h1") is None  # now it holds a clip of another config


def test_newer_store_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    open_writer(path).close()
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["emo_store_version"] = 99
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(StoreVersionError, match="upgrade emo"):
        FeatureStore.open(path)


def test_refuses_to_write_into_foreign_directories(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "thesis.tex").write_text("precious")
    with pytest.raises(UsageError, match="not an emo store"):
        open_writer(tmp_path / "docs")
    with pytest.raises(UsageError, match="not an emo store"):
        open_writer(tmp_path / "docs", overwrite=True)
    assert (tmp_path / "docs" / "thesis.tex").read_text() == "precious"


def test_rows_are_validated(tmp_path: Path) -> None:
    bad = result(0, 3)
    bad.arrays["audio/egemaps"] = np.zeros(5, np.float32)
    with open_writer(tmp_path / "s.zarr") as writer, pytest.raises(StoreError, match="audio/egemaps has shape"):
        writer.add(bad)


def test_empty_row_shapes() -> None:
    row = empty_row(SPECS[0])
    assert row["audio/mfcc/values"].shape == (0, 3) and row["audio/mfcc/aligned"].shape == (STEPS, 3)
    assert not row["audio/mfcc/mask"].any() and np.isnan(row["audio/mfcc/pooled"]).all()
