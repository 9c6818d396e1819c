"""Tests of emo.fusion.selection: sklearn conformance, selection quality, the exact fast k-NN fitness."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import load_iris, make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from emo.fusion.selection import L1Selector, TreeSelector, ZebraSelector
from emo.fusion.selection.fitness import (
    KNNSubsetFitness,
    SklearnSubsetFitness,
    make_subset_fitness,
    stratified_folds,
)
from emo.fusion.selection.zebra import _binarise, levy_steps

N_INFORMATIVE = 5


@pytest.fixture(scope="module")
def informative_data() -> tuple[np.ndarray, np.ndarray]:
    """300 x 30, the first 5 columns informative, the other 25 pure noise (shuffle=False)."""
    X, y = make_classification(
        n_samples=300,
        n_features=30,
        n_informative=N_INFORMATIVE,
        n_redundant=0,
        n_repeated=0,
        shuffle=False,
        random_state=0,
    )
    return StandardScaler().fit_transform(X), y


# Tiny search settings keep Zebra's ~45 checks at a few seconds. Every applicable check passes, so none is
# listed as expected to fail; sklearn itself skips check_array_api_input unless SCIPY_ARRAY_API=1 is set
# (the selectors are NumPy-only and do not declare array-API support).
@parametrize_with_checks(
    [
        L1Selector(),
        L1Selector(estimator="svm", n_features=1),
        TreeSelector(n_estimators=10, random_state=0),
        TreeSelector(estimator="random_forest", n_estimators=10, n_features=1, random_state=0),
        ZebraSelector(population_size=4, n_iterations=2, random_state=0),
        ZebraSelector(population_size=4, n_iterations=2, transfer="v", opposition=False, levy=False),
    ]
)
def test_sklearn_compatible(estimator, check) -> None:
    check(estimator)


@pytest.mark.parametrize(
    "selector",
    [
        L1Selector(C=0.1),
        TreeSelector(n_estimators=30, random_state=0),
        ZebraSelector(population_size=6, n_iterations=4, random_state=0),
    ],
    ids=["l1", "tree", "zebra"],
)
def test_selector_in_pipeline(selector, informative_data) -> None:
    X_train, X_test, y_train, y_test = train_test_split(
        *informative_data, stratify=informative_data[1], random_state=0
    )
    pipe = Pipeline([("scale", StandardScaler()), ("select", selector), ("clf", LogisticRegression())])
    pipe.fit(X_train, y_train)
    assert pipe.score(X_test, y_test) > 0.7
    step = pipe.named_steps["select"]
    support = step.get_support()
    assert support.dtype == bool and support.any()
    assert pipe.named_steps["clf"].coef_.shape[1] == support.sum()
    n_columns = X_train.shape[1]
    names = pipe[:-1].get_feature_names_out([f"f{i}" for i in range(n_columns)])
    assert list(names) == [f"f{i}" for i in np.flatnonzero(support)]
    # What a run saves: the mask and the scores, as JSON.
    saved = json.loads(json.dumps({"support": support.tolist(), "scores": step.scores_.tolist()}))
    assert len(saved["support"]) == len(saved["scores"]) == n_columns


def test_zebra_finds_informative_columns(informative_data) -> None:
    X, y = informative_data
    selector = ZebraSelector(random_state=0).fit(X, y)
    support = selector.support_
    assert support[:N_INFORMATIVE].sum() >= 4
    assert (~support[N_INFORMATIVE:]).sum() > (X.shape[1] - N_INFORMATIVE) / 2
    assert selector.n_evaluations_ == selector.population_size * (2 * selector.n_iterations + 1)
    assert len(selector.convergence_) == selector.n_iterations_ <= selector.n_iterations
    assert all(isinstance(v, float) for v in selector.convergence_)
    assert np.all(np.diff(selector.convergence_) <= 0)
    assert selector.convergence_[-1] == pytest.approx(selector.best_fitness_)
    size = int(support.sum())
    expected = 0.99 * (1 - selector.best_accuracy_) + 0.01 * size / X.shape[1]
    assert selector.best_fitness_ == pytest.approx(expected)

    # Its subset beats the median random subset of the same size on the same folds.
    fitness = KNNSubsetFitness(X, y, stratified_folds(y, 3, 0))
    rng = np.random.default_rng(1)
    random_masks = np.zeros((200, X.shape[1]), dtype=bool)
    for row in random_masks:
        row[rng.choice(X.shape[1], size, replace=False)] = True
    assert fitness.accuracy(support[None])[0] > np.median(fitness.accuracy(random_masks))


def test_zebra_is_reproducible(informative_data) -> None:
    X, y = informative_data
    params = {"population_size": 8, "n_iterations": 6}
    first = ZebraSelector(random_state=3, **params).fit(X, y)
    again = ZebraSelector(random_state=3, **params).fit(X, y)
    other = ZebraSelector(random_state=4, **params).fit(X, y)
    np.testing.assert_array_equal(first.support_, again.support_)
    assert first.convergence_ == again.convergence_
    assert first.convergence_ != other.convergence_ or not np.array_equal(first.support_, other.support_)


def test_zebra_improvements_are_switchable(informative_data) -> None:
    X, y = informative_data
    params = {"population_size": 10, "n_iterations": 15, "random_state": 0}
    improved = ZebraSelector(**params).fit(X, y)
    plain = ZebraSelector(opposition=False, levy=False, **params).fit(X, y)
    no_levy = ZebraSelector(levy=False, **params).fit(X, y)
    assert plain.support_.any()
    assert plain.n_evaluations_ == improved.n_evaluations_ == 10 * 31
    # Opposition scores 2 x 10 zebras at the start, so the plain ZOA runs every phase of 15 iterations
    # and the improved one stops after phase 1 of the last.
    assert plain.convergence_ != improved.convergence_
    assert no_levy.convergence_ != improved.convergence_ or no_levy.n_cache_hits_ != improved.n_cache_hits_


def test_zebra_v_transfer_and_budget(informative_data) -> None:
    X, y = informative_data
    selector = ZebraSelector(population_size=6, n_iterations=50, max_evaluations=60, transfer="v").fit(X, y)
    assert selector.n_evaluations_ == 60
    assert selector.n_iterations_ < 50
    assert selector.support_.any()


def test_binarise_rules_and_repair() -> None:
    rng = np.random.default_rng(0)
    positions = np.array([[0.5, -0.2, 0.0], [-0.9, -0.1, -0.3]])
    masks = _binarise("s", positions, rng)
    np.testing.assert_array_equal(masks, [[True, False, False], [False, True, False]])  # row 2 repaired
    previous = np.array([[True, True, False], [False, False, True]])
    same = _binarise("v", positions, rng, positions, previous)
    np.testing.assert_array_equal(same, previous)  # no displacement, no flip
    flipped = _binarise("v", positions, rng, positions - 50.0, previous)
    np.testing.assert_array_equal(flipped, ~previous)  # |tanh(50)| == 1: every bit flips


def test_levy_steps_are_heavy_tailed() -> None:
    steps = levy_steps(np.random.default_rng(0), (200_000,))
    gaussian = np.random.default_rng(0).normal(size=200_000) * np.median(np.abs(steps)) / 0.6745
    assert (
        np.mean(np.abs(steps) > 10 * np.median(np.abs(steps)))
        > 20 * np.mean(np.abs(gaussian) > 10 * np.median(np.abs(gaussian))) + 0.01
    )


def test_fast_knn_fitness_equals_cross_val_score() -> None:
    X, y = make_classification(
        n_samples=150, n_features=12, n_informative=4, n_classes=3, n_clusters_per_class=1, random_state=2
    )
    folds = stratified_folds(y, 3, 7)
    fast = KNNSubsetFitness(X, y, folds, n_neighbors=5, n_jobs=2)
    masks = np.random.default_rng(0).random((25, X.shape[1])) < 0.5
    masks[0] = False
    masks[0, 3] = True  # a one-feature mask
    expected = [
        cross_val_score(
            KNeighborsClassifier(n_neighbors=5),
            X[:, m],
            y,
            cv=StratifiedKFold(3, shuffle=True, random_state=7),
        ).mean()
        for m in masks
    ]
    np.testing.assert_allclose(fast.accuracy(masks), expected, rtol=0, atol=1e-12)
    # Masks close to a common one take the incremental path (distances from the batch's majority mask).
    near = np.repeat(masks[1:2], 8, axis=0)
    near[np.arange(1, 8), np.arange(1, 8)] ^= True
    near_expected = [
        cross_val_score(
            KNeighborsClassifier(n_neighbors=5),
            X[:, m],
            y,
            cv=StratifiedKFold(3, shuffle=True, random_state=7),
        ).mean()
        for m in near
    ]
    np.testing.assert_allclose(fast.accuracy(near), near_expected, rtol=0, atol=1e-12)
    # The torch.topk fallback (no numba) gives the same accuracies.
    fallback = KNNSubsetFitness(X, y, folds, n_neighbors=5)
    fallback.compiled = False
    np.testing.assert_allclose(fallback.accuracy(masks), expected, rtol=0, atol=1e-12)
    generic = SklearnSubsetFitness(X, y, folds, KNeighborsClassifier(n_neighbors=5))
    np.testing.assert_allclose(generic.accuracy(masks), expected, rtol=0, atol=1e-12)

    values = fast(masks)
    sizes = masks.sum(axis=1)
    np.testing.assert_allclose(values, 0.99 * (1 - np.array(expected)) + 0.01 * sizes / X.shape[1])
    assert fast(np.zeros((1, X.shape[1]), dtype=bool))[0] == 1.0
    evaluations, hits = fast.n_evaluations, fast.n_cache_hits
    fast(masks[:5])
    assert (fast.n_evaluations, fast.n_cache_hits) == (evaluations + 5, hits + 5)


def test_generic_classifier_path() -> None:
    X, y = load_iris(return_X_y=True)
    assert isinstance(make_subset_fitness(X, y, stratified_folds(y, 3, 0)), KNNSubsetFitness)
    assert isinstance(
        make_subset_fitness(X, y, stratified_folds(y, 3, 0), KNeighborsClassifier(weights="distance")),
        SklearnSubsetFitness,
    )
    selector = ZebraSelector(classifier=GaussianNB(), population_size=4, n_iterations=3, random_state=0)
    selector.fit(X, y)
    mask = selector.support_
    accuracy = cross_val_score(
        GaussianNB(), X[:, mask], y, cv=StratifiedKFold(3, shuffle=True, random_state=0)
    ).mean()
    assert selector.best_accuracy_ == pytest.approx(accuracy)


@pytest.mark.parametrize("estimator", ["logistic", "svm"])
def test_l1_keeps_informative_columns(estimator, informative_data) -> None:
    X, y = informative_data
    sparse = L1Selector(estimator=estimator, C=0.02).fit(X, y)
    assert 1 <= sparse.support_.sum() < X.shape[1] / 2
    assert sparse.support_[:N_INFORMATIVE].sum() >= sparse.support_[N_INFORMATIVE:].sum()
    top = L1Selector(estimator=estimator, n_features=4).fit(X, y)
    assert top.support_.sum() == 4
    assert top.support_[:N_INFORMATIVE].sum() >= 3
    assert top.C_ < L1Selector(estimator=estimator, n_features=10).fit(X, y).C_
    # A penalty so strong that every weight is zero still keeps one feature (the first on the path).
    empty = L1Selector(estimator=estimator, C=1e-6).fit(X, y)
    assert empty.support_.sum() == 1 and np.all(empty.scores_ == 0)


def test_l1_multiclass_and_scaling() -> None:
    X, y = load_iris(return_X_y=True)
    X = X * np.array([1.0, 1000.0, 1.0, 0.001])
    selector = L1Selector(n_features=2).fit(X, y)
    assert selector.coef_.shape == (3, 4)
    assert selector.support_.sum() == 2
    assert np.array_equal(selector.transform(X), X[:, selector.support_])  # original, unscaled columns
    unscaled = L1Selector(n_features=2, standardize=False).fit(X, y)
    assert not np.array_equal(unscaled.coef_, selector.coef_)


@pytest.mark.parametrize("forest", ["extra_trees", "random_forest"])
def test_tree_ranks_informative_columns(forest, informative_data) -> None:
    X, y = informative_data
    selector = TreeSelector(estimator=forest, n_estimators=100, random_state=0).fit(X, y)
    assert np.all(selector.scores_[:N_INFORMATIVE].min() > np.median(selector.scores_[N_INFORMATIVE:]))
    assert selector.support_[:N_INFORMATIVE].sum() >= 4
    assert selector.threshold_ == pytest.approx(selector.scores_.mean())
    top = TreeSelector(estimator=forest, n_features=3, random_state=0).fit(X, y)
    assert top.support_.sum() == 3
    assert set(np.flatnonzero(top.support_)) <= set(range(N_INFORMATIVE))
    strict = TreeSelector(threshold="1.5*median", random_state=0).fit(X, y)
    assert strict.threshold_ == pytest.approx(1.5 * np.median(strict.scores_))
    nothing = TreeSelector(threshold=2.0, random_state=0).fit(X, y)
    assert nothing.support_.sum() == 1 and nothing.support_[np.argmax(nothing.scores_)]


@pytest.mark.parametrize(
    "selector",
    [
        L1Selector(estimator="ridge"),
        L1Selector(n_features=0),
        TreeSelector(threshold="mode"),
        TreeSelector(estimator="boosting"),
        ZebraSelector(transfer="u"),
        ZebraSelector(alpha=1.5),
        ZebraSelector(population_size=1),
    ],
)
def test_invalid_parameters_raise(selector) -> None:
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError):
        selector.fit(X, y)


def _speaker_confounded(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """12 speakers, each mostly one class; 8 columns identify the speaker (and so, through the confound, the
    class of a clip whose speaker was seen), 2 columns carry a weaker class signal shared by every speaker."""
    rng = np.random.default_rng(seed)
    speakers = np.repeat(np.arange(12), 20)
    y = np.where(rng.random(speakers.size) < 0.85, speakers % 2, 1 - speakers % 2)
    identity = rng.normal(0, 3, (12, 8))[speakers] + rng.normal(0, 0.3, (speakers.size, 8))
    signal = (y[:, None] * 1.2 + rng.normal(0, 1, (speakers.size, 2)))
    return np.hstack([identity, signal]), y, speakers.astype(str)


def test_grouped_inner_cv_never_puts_a_speaker_on_both_sides() -> None:
    from emo.fusion.selection.fitness import grouped_folds

    X, y, speakers = _speaker_confounded()
    folds = grouped_folds(y, speakers, 3, 0)
    assert len(folds) == 3
    for train, test in folds:
        assert not set(speakers[train]) & set(speakers[test])
    # speaker cues look predictive under random folds and stop looking so when speakers are held out
    identity = np.zeros(X.shape[1], bool)
    identity[:8] = True
    knn = KNeighborsClassifier()
    random_acc = make_subset_fitness(X, y, stratified_folds(y, 3, 0), knn, 0.99).accuracy(identity[None])[0]
    grouped_acc = make_subset_fitness(X, y, folds, knn, 0.99).accuracy(identity[None])[0]
    assert random_acc > 0.7 and grouped_acc < random_acc - 0.2, (random_acc, grouped_acc)


def test_zebra_with_speaker_groups_prefers_the_shared_signal_to_speaker_cues() -> None:
    X, y, speakers = _speaker_confounded()
    params = dict(population_size=12, n_iterations=15, random_state=0)
    plain = ZebraSelector(**params).fit(X, y)
    grouped = ZebraSelector(**params).fit(X, y, groups=speakers)
    assert plain.cv_groups_ == 0 and grouped.cv_groups_ == 12
    assert grouped.get_support()[8:].all()  # the shared class signal
    assert grouped.get_support()[:8].sum() < plain.get_support()[:8].sum()
