"""Dataset adapters on directories the tests build (adapters read names and tables, not media)."""

from __future__ import annotations

from pathlib import Path

import pytest

from emo.errors import UsageError
from emo.pipeline.datasets import (
    CREMAD_LABELS,
    MELD_LABELS,
    RAVDESS_LABELS,
    detect_adapter,
    scan_dataset,
)


def touch(path: Path, content: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_ravdess(tmp_path: Path) -> None:
    touch(tmp_path / "Actor_01" / "01-01-05-02-01-01-01.mp4")
    touch(tmp_path / "Actor_02" / "01-02-03-01-02-02-02.mp4")
    touch(tmp_path / "Actor_02" / "03-01-03-01-02-02-02.wav")  # audio-only file of another modality code
    touch(tmp_path / "Actor_02" / "01-01-09-01-01-01-02.mp4")  # emotion 09 does not exist
    touch(tmp_path / "Actor_02" / "holiday.mp4")
    scan = scan_dataset(tmp_path)
    assert scan.adapter == "ravdess"
    assert scan.labels == RAVDESS_LABELS
    by_id = {r.clip_id: r for r in scan.records}
    assert set(by_id) == {"01-01-05-02-01-01-01", "01-02-03-01-02-02-02", "03-01-03-01-02-02-02"}
    angry = by_id["01-01-05-02-01-01-01"]
    assert (angry.label, angry.speaker, angry.text) == ("angry", "Actor_01", "Kids are talking by the door")
    assert angry.metadata["intensity"] == "strong" and angry.metadata["gender"] == "male"
    song = by_id["01-02-03-01-02-02-02"]
    assert (song.label, song.text, song.metadata["vocal_channel"]) == ("happy", "Dogs are sitting by the door", "song")
    skipped = dict(scan.skipped)
    assert "emotion" in skipped["Actor_02/01-01-09-01-01-01-02.mp4"]
    assert "MM-VV-EE" in skipped["Actor_02/holiday.mp4"]


def test_cremad_prefers_video_over_audio(tmp_path: Path) -> None:
    touch(tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv")
    touch(tmp_path / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    touch(tmp_path / "AudioWAV" / "1002_IEO_HAP_HI.wav")
    touch(tmp_path / "AudioWAV" / "1002_XXX_HAP_HI.wav")
    scan = scan_dataset(tmp_path, "crema-d")
    assert scan.labels == CREMAD_LABELS
    by_id = {r.clip_id: r for r in scan.records}
    assert by_id["1001_DFA_ANG_XX"].path.suffix == ".flv"
    assert (by_id["1001_DFA_ANG_XX"].label, by_id["1001_DFA_ANG_XX"].text) == ("anger", "Don't forget a jacket")
    assert (by_id["1002_IEO_HAP_HI"].speaker, by_id["1002_IEO_HAP_HI"].metadata["level"]) == ("1002", "high")
    reasons = dict(scan.skipped)
    assert "video preferred" in reasons["AudioWAV/1001_DFA_ANG_XX.wav"]
    assert "unknown CREMA-D code" in reasons["AudioWAV/1002_XXX_HAP_HI.wav"]
    assert detect_adapter(tmp_path) == "crema-d"


def test_meld(tmp_path: Path) -> None:
    header = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"
    (tmp_path / "train_sent_emo.csv").write_text(
        header
        + '1,"Oh, my God!",Rachel,surprise,positive,0,0,3,5,0:00:01,0:00:02\n'
        + "2,Hi.,Joey,joy,positive,0,1,3,5,0:00:03,0:00:04\n"
        + "3,Where is it?,Ross,neutral,neutral,1,0,3,5,0:00:05,0:00:06\n"
    )
    (tmp_path / "dev_sent_emo.csv").write_text(header + "1,No.,Monica,anger,negative,0,0,1,1,0:00:01,0:00:02\n")
    touch(tmp_path / "train_splits" / "dia0_utt0.mp4")
    touch(tmp_path / "train_splits" / "dia0_utt1.mp4")
    touch(tmp_path / "train_splits" / "dia7_utt3.mp4")  # in no CSV
    touch(tmp_path / "dev_splits_complete" / "dia0_utt0.mp4")
    scan = scan_dataset(tmp_path)
    assert scan.adapter == "meld" and scan.labels == MELD_LABELS
    by_id = {r.clip_id: r for r in scan.records}
    assert set(by_id) == {"train/dia0_utt0", "train/dia0_utt1", "dev/dia0_utt0"}
    first = by_id["train/dia0_utt0"]
    assert (first.text, first.speaker, first.label, first.split) == ("Oh, my God!", "Rachel", "surprise", "train")
    assert (first.dialogue_id, first.utterance_idx) == ("train/dia0", 0)
    assert by_id["train/dia0_utt1"].utterance_idx == 1
    assert by_id["dev/dia0_utt0"].path.parent.name == "dev_splits_complete"
    assert first.metadata["Sentiment"] == "positive"
    reasons = [why for _, why in scan.skipped]
    assert any("no media file for dia1_utt0" in r for r in reasons)
    assert any("dia7_utt3 is in no" in r for r in reasons)


def test_manifest(tmp_path: Path) -> None:
    touch(tmp_path / "media" / "a.mp4")
    touch(tmp_path / "media" / "b.wav")
    touch(tmp_path / "notes.txt")
    (tmp_path / "manifest.csv").write_text(
        "path,label,text,speaker,split,session\n"
        "media/a.mp4,happy,hello there,spk1,train,s1\n"
        "media/b.wav,sad,,spk2,test,s2\n"
        "media/missing.mp4,sad,,spk2,test,s2\n"
        "notes.txt,sad,,spk2,test,s2\n"
    )
    scan = scan_dataset(tmp_path)
    assert scan.adapter == "manifest"
    assert scan.labels == ["happy", "sad"]
    a, b = scan.records
    assert (a.clip_id, a.label, a.text, a.speaker, a.split) == ("media/a", "happy", "hello there", "spk1", "train")
    assert a.metadata == {"session": "s1"}
    assert b.path == tmp_path / "media" / "b.wav"
    # the scan names each clip as the store will: its label's index and its path under the dataset root
    assert [(r.label_index, r.source_path) for r in scan.records] == [(0, "media/a.mp4"), (1, "media/b.wav")]
    reasons = " ".join(why for _, why in scan.skipped)
    assert "file not found: media/missing.mp4" in reasons and "not a media file" in reasons
    # the manifest file itself can be given, and TSV works
    (tmp_path / "other.tsv").write_text("path\tlabel\tclip_id\nmedia/a.mp4\tangry\tx1\n")
    tsv = scan_dataset(tmp_path / "other.tsv", "manifest")
    assert [(r.clip_id, r.label) for r in tsv.records] == [("x1", "angry")]
    assert [(r.label_index, r.source_path) for r in tsv.records] == [(0, "media/a.mp4")]  # from the manifest's folder


def test_manifest_without_label_column(tmp_path: Path) -> None:
    touch(tmp_path / "a.mp4")
    (tmp_path / "list.csv").write_text("path,text\na.mp4,hi\n")
    with pytest.raises(UsageError, match="lacks column"):
        scan_dataset(tmp_path / "list.csv", "manifest")


def test_folders(tmp_path: Path) -> None:
    touch(tmp_path / "happy" / "c1.mp4")
    (tmp_path / "happy" / "c1.txt").write_text("what a day\n")
    touch(tmp_path / "sad" / "deep" / "c2.webm")
    touch(tmp_path / "stray.mp4")
    scan = scan_dataset(tmp_path)
    assert scan.adapter == "folders"
    assert scan.labels == ["happy", "sad"]
    by_id = {r.clip_id: r for r in scan.records}
    assert by_id["happy/c1"].text == "what a day" and by_id["happy/c1"].label == "happy"
    assert by_id["sad/deep/c2"].label == "sad"
    assert dict(scan.skipped)["stray.mp4"] == "not inside a label folder"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: p / "nope", "does not exist"),
        (lambda p: p, "is empty"),
    ],
)
def test_bad_dataset_paths(tmp_path: Path, setup, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        scan_dataset(setup(tmp_path))


def test_unrecognised_layout(tmp_path: Path) -> None:
    touch(tmp_path / "clip.mp4")
    with pytest.raises(UsageError, match="--dataset"):
        scan_dataset(tmp_path)
    with pytest.raises(UsageError, match="unknown dataset adapter"):
        scan_dataset(tmp_path, "iemocap")
    (tmp_path / "readme.md").write_text("no media here")
    (tmp_path / "clip.mp4").unlink()
    with pytest.raises(UsageError, match="no media files"):
        scan_dataset(tmp_path)
