"""A clip's row of the clip table, as extraction fills it (one owner: ``emo.pipeline.clip_row``)."""

from __future__ import annotations

import math
from pathlib import Path

from emo.features_store.schema import CLIP_COLUMN_NAMES
from emo.pipeline.config import ExtractionConfig
from emo.pipeline.datasets import ClipRecord, DatasetScan
from emo.pipeline.extractors import build_extractors
from emo.pipeline.process import failure_result, process_clip

AUDIO = ExtractionConfig(features=("mfcc",))


def _record(path: Path, root: Path) -> ClipRecord:
    scan = DatasetScan("folders", root, [ClipRecord(path.stem, path, label="sad", speaker="s1")], ["happy", "sad"])
    return scan.records[0]


def test_an_extracted_clip_fills_every_column_of_what_it_decoded(bad_media: dict[str, Path]) -> None:
    good = bad_media["good"]
    row = process_clip(_record(good, good.parent), build_extractors(AUDIO), AUDIO).columns
    assert set(row) <= set(CLIP_COLUMN_NAMES)
    # only the video's decode columns are left to their fills: no video feature was asked for
    assert set(CLIP_COLUMN_NAMES) - set(row) == {"decoded_s_video", "decode_errors_video"}
    assert (row["clip_id"], row["label"], row["label_name"], row["source_path"]) == ("good", 1, "sad", "good.mp4")
    statuses = (row["status_audio"], row["status_video"], row["status_text"])
    assert statuses == ("ok", "skipped", "skipped") and row["error"] == ""
    assert len(str(row["source_sha256"])) == 64 and row["decode_errors_audio"] == 0
    assert 0 <= row["trim_start_s"] < row["trim_end_s"] <= row["decoded_s_audio"] + 1e-6
    assert abs(row["duration_s"] - 1.5) < 0.1


def test_an_unreadable_clip_keeps_its_identity_and_says_why(bad_media: dict[str, Path]) -> None:
    corrupt = bad_media["corrupt"]
    row = process_clip(_record(corrupt, corrupt.parent), build_extractors(AUDIO), AUDIO).columns
    assert (row["clip_id"], row["label"], row["source_path"]) == ("corrupt", 1, "corrupt.mp4")
    assert row["status_audio"] == "failed"
    assert row["error"] and math.isnan(row["duration_s"]) and "trim_start_s" not in row


def test_a_task_that_failed_as_a_whole_fails_each_requested_modality(bad_media: dict[str, Path]) -> None:
    good = bad_media["good"]
    result = failure_result(_record(good, good.parent), build_extractors(AUDIO), "worker: killed 3 times")
    assert result.columns["status_audio"] == "failed" and result.columns["status_video"] == "skipped"
    assert (result.columns["error"], result.columns["label"]) == ("worker: killed 3 times", 1)
    arrays = result.arrays  # the row of a clip nothing was extracted for: no frames, masked out, NaN pooled
    assert arrays["audio/mfcc/values"].shape[0] == 0 and not arrays["audio/mfcc/mask"].any()
    assert all(math.isnan(v) for v in arrays["audio/mfcc/pooled"])
