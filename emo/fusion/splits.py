"""Train / validation / test partitions: speaker-independent, stratified (the papers' 80/20), predefined
(a dataset's own split column, e.g. MELD) and speaker-grouped k-fold."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold, StratifiedShuffleSplit

from emo.errors import UsageError
from emo.fusion.data import FusionData

SPLITS = ("auto", "speaker", "stratified", "predefined")
TEST_FRACTION = 0.2
VAL_FRACTION = 0.1  # of the clips, carved out of the training part
MIN_SPEAKERS = 3


@dataclass
class Split:
    """Row indices of one partition of the labelled clips; ``name`` says which fold / seed it is."""

    name: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    #: "speaker" when no speaker is on two sides: anything cross-validated inside train groups by speaker too
    grouped_by: str = ""

    def sizes(self) -> dict[str, int]:
        return {"train": int(self.train.size), "val": int(self.val.size), "test": int(self.test.size)}


def _has_predefined(data: FusionData) -> bool:
    """Whether the labelled clips carry a dataset's own split (train and test at least, e.g. MELD's CSVs)."""
    names = set(np.char.lower(data.splits[data.labelled].astype(str)).tolist())
    return bool(names & {"train", "training"}) and bool(names & {"test", "testing"})


def explain_protocol(data: FusionData, protocol: str) -> tuple[str, str]:
    """The protocol ``protocol`` stands for on ``data`` and why: ``auto`` is the dataset's predefined split when
    the store has one (MELD's train/dev/test: what every paper reports, and holding out TV characters would put
    one dialogue on both sides), else speaker-independent when at least ``MIN_SPEAKERS`` speakers are known,
    else stratified."""
    if protocol not in SPLITS:
        raise UsageError(f"unknown --split {protocol!r}; choose one of {', '.join(SPLITS)}")
    if protocol != "auto":
        return protocol, "as asked"
    if _has_predefined(data):
        return "predefined", "auto: the store has the dataset's own train/test split"
    speakers = {s for s in data.speakers[data.labelled] if s}
    if len(speakers) >= MIN_SPEAKERS:
        return "speaker", f"auto: {len(speakers)} speakers are known, none of the test speakers is trained on"
    return "stratified", f"auto: fewer than {MIN_SPEAKERS} speakers known, no predefined split"


def resolve_protocol(data: FusionData, protocol: str) -> str:
    """The protocol ``protocol`` stands for on ``data`` (see :func:`explain_protocol`)."""
    return explain_protocol(data, protocol)[0]


def _stratified(y: np.ndarray, rows: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``rows`` into (rest, held out) with ``fraction`` held out, stratified when every class allows it."""
    if fraction <= 0:
        return np.sort(rows), rows[:0]
    counts = np.bincount(y[rows])
    stratify = y[rows] if counts[counts > 0].min() >= 2 else None
    n_out = max(1, int(round(fraction * rows.size)))
    if stratify is not None and n_out < np.count_nonzero(counts):
        stratify = None
    if stratify is None:
        perm = np.random.default_rng(seed).permutation(rows)
        return np.sort(perm[n_out:]), np.sort(perm[:n_out])
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=n_out, random_state=seed)
    keep, out = next(splitter.split(rows, stratify))
    return np.sort(rows[keep]), np.sort(rows[out])


def _speaker_partition(
    speakers: np.ndarray, rows: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held out): whole speakers, shuffled with ``seed``, until ``fraction`` of the clips is held out."""
    if fraction <= 0:
        return rows, rows[:0]
    groups = np.unique(speakers[rows])
    rng = np.random.default_rng(seed)
    order = rng.permutation(groups)
    target = fraction * rows.size
    held: list[str] = []
    count = 0
    for g in order[:-1]:  # always leave at least one speaker
        if count >= target:
            break
        held.append(g)
        count += int(np.sum(speakers[rows] == g))
    out = np.isin(speakers[rows], held)
    return rows[~out], rows[out]


def make_splits(
    data: FusionData, protocol: str, folds: int = 1, seed: int = 0, val_fraction: float | None = None
) -> Iterator[Split]:
    """The partitions of one seed: one split, or ``folds`` speaker-grouped (or stratified) folds.

    ``val_fraction`` of the clips is carved out of the training part for early stopping; by default
    ``VAL_FRACTION`` for ``speaker`` (and ``predefined`` without a dev split), and none for ``stratified``: the
    papers' random 80/20 trains on 80% of the clips for the fixed number of epochs.
    """
    protocol = resolve_protocol(data, protocol)
    if val_fraction is None:
        val_fraction = 0.0 if protocol == "stratified" else VAL_FRACTION
    rows = data.labelled
    if rows.size < 4:
        raise UsageError(f"only {rows.size} labelled clips: too few to train and evaluate")
    y = data.y
    if protocol == "predefined":
        splits = np.char.lower(data.splits[rows].astype(str))
        train = rows[np.isin(splits, ["train", "training"])]
        val = rows[np.isin(splits, ["dev", "val", "valid", "validation"])]
        test = rows[np.isin(splits, ["test", "testing"])]
        if not train.size or not test.size:
            raise UsageError(
                "--split predefined needs clips whose split column says train and test "
                f"(found: {', '.join(sorted(set(splits))) or 'none'})"
            )
        if folds > 1:
            raise UsageError("--folds does not apply to --split predefined")
        if not val.size and val_fraction > 0:
            train, val = _stratified(y, train, val_fraction, seed)
        yield Split("predefined", train, val, test)
        return
    if protocol == "speaker":
        speakers = data.speakers
        known = rows[speakers[rows] != ""]
        if np.unique(speakers[known]).size < MIN_SPEAKERS:
            raise UsageError(
                f"--split speaker needs at least {MIN_SPEAKERS} speakers "
                f"(found {np.unique(speakers[known]).size}); use --split stratified"
            )
        if folds > 1:
            n_speakers = np.unique(speakers[known]).size
            if folds > n_speakers:
                raise UsageError(f"--folds {folds} exceeds the {n_speakers} speakers")
            order = np.random.default_rng(seed).permutation(np.unique(speakers[known]))
            shuffled = {s: i for i, s in enumerate(order)}
            groups = np.array([shuffled[s] for s in speakers[known]])
            for k, (train_i, test_i) in enumerate(GroupKFold(n_splits=folds).split(known, groups=groups)):
                train, val = _speaker_partition(speakers, known[train_i], val_fraction / (1 - 1 / folds), seed + k)
                yield Split(f"fold{k}", np.sort(train), np.sort(val), np.sort(known[test_i]), "speaker")
            return
        rest, test = _speaker_partition(speakers, known, TEST_FRACTION, seed)
        train, val = _speaker_partition(speakers, rest, val_fraction / (1 - TEST_FRACTION), seed + 1)
        yield Split("speaker", np.sort(train), np.sort(val), np.sort(test), "speaker")
        return
    if folds > 1:
        counts = np.bincount(y[rows])
        splitter = (
            StratifiedKFold(folds, shuffle=True, random_state=seed)
            if counts[counts > 0].min() >= folds
            else KFold(folds, shuffle=True, random_state=seed)
        )
        for k, (rest_i, test_i) in enumerate(splitter.split(rows, y[rows])):
            train, val = _stratified(y, rows[rest_i], val_fraction / (1 - 1 / folds), seed + k)
            yield Split(f"fold{k}", train, val, np.sort(rows[test_i]))
        return
    rest, test = _stratified(y, rows, TEST_FRACTION, seed)
    train, val = _stratified(y, rest, val_fraction / (1 - TEST_FRACTION), seed + 1)
    yield Split("stratified", train, val, test)
