"""Real voices (``../shared/data/ravdess-speech``): what per-speaker standardisation removes, shown on recordings
of people nobody on this project recorded. Skipped when the recordings are absent."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import run_emo
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from emo.features_store import FeatureStore
from emo.fusion.train import prepare_data
from emo.fusion.train_config import TrainConfig

#: the recordings: $EMO_RAVDESS_SPEECH, else ../shared/data/ravdess-speech beside the repository
RAVDESS_SPEECH = Path(
    os.environ.get("EMO_RAVDESS_SPEECH") or Path(__file__).resolve().parents[3] / "shared" / "data" / "ravdess-speech"
)
pytestmark = pytest.mark.skipif(
    not RAVDESS_SPEECH.is_dir(), reason=f"RAVDESS speech recordings not found at {RAVDESS_SPEECH}"
)


@pytest.fixture(scope="module")
def real_store(tmp_path_factory: pytest.TempPathFactory, scheduler: str) -> Path:
    """4 actors x 16 recordings: every emotion, both statements, normal intensity, first repetition."""
    root = tmp_path_factory.mktemp("ravdess")
    for actor in (1, 2, 3, 4):
        for path in sorted(RAVDESS_SPEECH.glob(f"03-01-*-01-*-01-{actor:02d}.flac")):
            shutil.copy(path, root / path.name)
    store = root / "store.zarr"
    done = run_emo("extract", str(root), "-o", str(store), "--features", "egemaps", "--scheduler", scheduler, "-q")
    assert done.returncode == 0, done.stderr
    return store


def test_per_speaker_statistics_take_out_who_is_speaking(real_store: Path) -> None:
    fs = FeatureStore.open(str(real_store))
    assert fs.n_clips == 64 and set(fs.clips()["speaker"]) == {f"Actor_0{a}" for a in (1, 2, 3, 4)}

    def speaker_accuracy(standardize: str) -> float:
        config = TrainConfig(method="early", features=("audio/egemaps",), split="speaker", standardize=standardize)
        data = prepare_data(fs, config)
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
        folds = StratifiedKFold(4, shuffle=True, random_state=0)
        return float(cross_val_score(model, data.inputs["audio"].x, data.speakers, cv=folds).mean())

    # eGeMAPS tells the four actors apart (0.86 of 64 recordings); after per-speaker standardisation every speaker's
    # features have mean 0 and unit variance, and their means no longer say who speaks (chance is 0.25)
    by_split, by_speaker = speaker_accuracy("global"), speaker_accuracy("speaker")
    assert by_split > 0.8 and by_speaker < 0.45, (by_split, by_speaker)
