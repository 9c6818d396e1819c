"""Feature-selection benchmark: emo's ZebraSelector against mealpy 3.0.2's OriginalZOA at equal evaluations.

Both optimisers minimise the same fitness on the same folds of the standardised training split,

    0.99 * (1 - 3-fold stratified CV accuracy of 5-NN on the selected columns) + 0.01 * |S| / |F|,

with the same population and iteration budget. mealpy gets the straightforward objective (one
``cross_val_score`` per candidate, as ENVIRONMENT.md measured it) with ``BinaryVar`` bounds: its objective
receives floats in [0, 2) and the mask is ``x.astype(int) == 1``, i.e. ``BinaryVar.decode``; an empty mask
gets the feature with the largest coordinate, the repair ZebraSelector applies. ZebraSelector scores the
same function with its exact batched k-NN evaluator and a cache of visited masks. Fitness evaluations are
counted on both sides (mealpy's own probe call before the search is not counted). The reported fitness of
every final mask is recomputed with ``cross_val_score`` on the same folds, so the methods are compared on
one yardstick. L1 and tree selectors (defaults) are shown for reference. Test accuracy: 5-NN trained on
the selected training columns, scored on the held-out 25 %.

    .venv/bin/python benchmarks/zebra.py                 # full: 20 zebras x 30 iterations, 3 repeats
    .venv/bin/python benchmarks/zebra.py --quick         # 10 zebras x 10 iterations, 1 repeat
    .venv/bin/python benchmarks/zebra.py --store S.zarr  # also an emo feature store's pooled features

Rows are medians over the repeats (seeds 0, 1, ...; repeats are interleaved across methods so machine load
hits all of them alike); the JSON also holds every repeat. Speed-ups against mealpy: ratio of the median
wall times, ratio of the median CPU times (process time, less sensitive to other processes' load), and
the median of the per-seed wall-time ratios (each pair ran back to back).

Every method runs single-threaded (BLAS, OpenMP and torch limited to one thread) after an untimed warm-up of
each (imports, lazy initialisation): on a shared 2-core machine scikit-learn's multi-threaded k-NN swung
between 15 and 230 ms per evaluation with other processes' load, while single-threaded it stays near 18 ms,
so one thread each is the fair and repeatable comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import environment as common_environment  # noqa: E402
from benchmarks.common import load_average  # noqa: E402
from emo.fusion.selection import L1Selector, TreeSelector, ZebraSelector  # noqa: E402
from emo.fusion.selection.fitness import stratified_folds  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "zebra.json"
ALPHA = 0.99
CV = 3
K = 5
TEST_SIZE = 0.25
#: (population, iterations, repeats) per mode
SETTINGS = {"quick": (10, 10, 1), "full": (20, 30, 3)}
DATASETS: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {
    "breast_cancer": lambda: load_breast_cancer(return_X_y=True),
    "wine": lambda: load_wine(return_X_y=True),
    "digits": lambda: load_digits(return_X_y=True),
}
MEALPY = "mealpy OriginalZOA"
SPEEDUPS = ("speedup_vs_mealpy", "speedup_vs_mealpy_cpu", "speedup_vs_mealpy_paired")
METHODS = (
    MEALPY,
    "emo ZebraSelector (improved)",
    "emo ZebraSelector (plain ZOA)",
    "emo L1Selector",
    "emo TreeSelector",
)


def load_store(path: str, features: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features of an emo feature store (every ``*/pooled`` array unless ``features`` names arrays)
    concatenated per clip, with the clip labels; clips without a label or with a missing value are dropped."""
    from emo.features_store.store import FeatureStore

    store = FeatureStore.open(path)
    paths = features or [p for p in store.feature_paths() if p.endswith("/pooled")]
    if not paths:
        raise SystemExit(f"{path} has no pooled feature arrays; name arrays with --store-features")
    X = np.hstack([store.read(p).reshape(store.n_clips, -1).astype(np.float64) for p in paths])
    y = np.asarray(store.clips()["label"], dtype=np.int64)
    keep = (y >= 0) & np.isfinite(X).all(axis=1)
    return X[keep], y[keep]


def _fitness(X: np.ndarray, y: np.ndarray, folds: list, mask: np.ndarray) -> float:
    accuracy = cross_val_score(KNeighborsClassifier(n_neighbors=K), X[:, mask], y, cv=folds).mean()
    return float(ALPHA * (1.0 - accuracy) + (1.0 - ALPHA) * mask.sum() / X.shape[1])


def _run_mealpy(
    X: np.ndarray, y: np.ndarray, folds: list, population: int, iterations: int, seed: int
) -> tuple[np.ndarray, int]:
    """mealpy's OriginalZOA on BinaryVar bounds, plain cross_val_score objective; (mask, evaluations)."""
    from mealpy import BinaryVar, Problem
    from mealpy.swarm_based.ZOA import OriginalZOA

    calls = 0

    def to_mask(x: np.ndarray) -> np.ndarray:
        mask = np.asarray(x).astype(int) == 1
        if not mask.any():
            mask[int(np.argmax(x))] = True
        return mask

    def objective(x: np.ndarray) -> float:
        nonlocal calls
        calls += 1
        return _fitness(X, y, folds, to_mask(x))

    problem = Problem(bounds=BinaryVar(n_vars=X.shape[1]), minmax="min", obj_func=objective, log_to=None)
    _ = problem.n_objs  # mealpy's one probe call of the objective, before the search
    calls = 0
    model = OriginalZOA(epoch=iterations, pop_size=population)
    best = model.solve(problem, seed=seed)
    return to_mask(best.solution), calls


def _one(
    method: str,
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    population: int,
    iterations: int,
    seed: int,
) -> dict[str, Any]:
    X_train, X_test, y_train, y_test = data
    folds = stratified_folds(y_train, CV, seed)
    evaluations = None
    t0, c0 = time.perf_counter(), time.process_time()
    if method == MEALPY:
        mask, evaluations = _run_mealpy(X_train, y_train, folds, population, iterations, seed)
    else:
        if method.startswith("emo ZebraSelector"):
            plain = "plain" in method
            selector = ZebraSelector(
                population_size=population,
                n_iterations=iterations,
                cv=CV,
                alpha=ALPHA,
                opposition=not plain,
                levy=not plain,
                n_jobs=1,
                random_state=seed,
            )
        elif method == "emo L1Selector":
            selector = L1Selector(random_state=seed)
        else:
            selector = TreeSelector(random_state=seed, n_jobs=1)
        selector.fit(X_train, y_train)
        mask = selector.get_support()
        evaluations = getattr(selector, "n_evaluations_", None)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    knn = KNeighborsClassifier(n_neighbors=K).fit(X_train[:, mask], y_train)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "evaluations": evaluations,
        "fitness": _fitness(X_train, y_train, folds, mask),
        "n_selected": int(mask.sum()),
        "n_features": int(mask.size),
        "test_accuracy": float(knn.score(X_test[:, mask], y_test)),
        "mask": np.flatnonzero(mask).tolist(),
    }


def _split(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=TEST_SIZE, stratify=y, random_state=0)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


def run(
    quick: bool,
    repeats: int | None = None,
    datasets: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] | None = None,
) -> list[dict]:
    """One row per (dataset, method): medians over repeats of wall time, evaluations, fitness, size, test
    accuracy, plus the speed-up against mealpy and every repeat under ``"repeats"``."""
    import torch

    population, iterations, default_repeats = SETTINGS["quick" if quick else "full"]
    repeats = default_repeats if repeats is None else repeats
    splits = {name: _split(*load()) for name, load in (datasets or DATASETS).items()}
    raw: dict[tuple[str, str], list[dict]] = {(d, m): [] for d in splits for m in METHODS}
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            warm_up = _split(*load_wine(return_X_y=True))
            for method in METHODS:
                _one(method, warm_up, 5, 2, 0)
            for seed in range(repeats):
                for name, data in splits.items():
                    for method in METHODS:
                        result = _one(method, data, population, iterations, seed)
                        raw[(name, method)].append(result)
                        print(
                            f"  seed {seed} {name:14s} {method:30s} {result['wall_s']:7.2f} s  "
                            f"fitness {result['fitness']:.4f}",
                            file=sys.stderr,
                            flush=True,
                        )
    finally:
        torch.set_num_threads(torch_threads)
    rows = []
    for name in splits:
        baseline = raw[(name, MEALPY)]
        mealpy_wall = float(np.median([r["wall_s"] for r in baseline]))
        mealpy_cpu = float(np.median([r["cpu_s"] for r in baseline]))
        for method in METHODS:
            results = raw[(name, method)]
            wall = float(np.median([r["wall_s"] for r in results]))
            cpu = float(np.median([r["cpu_s"] for r in results]))
            # Per-seed ratios pair runs made one after the other, so slow drifts in machine load cancel.
            paired = [
                b["wall_s"] / r["wall_s"] for b, r in zip(baseline, results, strict=True) if r["wall_s"] > 0
            ]
            evaluations = [r["evaluations"] for r in results]
            rows.append(
                {
                    "dataset": name,
                    "method": method,
                    "n_train": len(splits[name][2]),
                    "n_features": results[0]["n_features"],
                    "population": population if "Zebra" in method or method == MEALPY else None,
                    "iterations": iterations if "Zebra" in method or method == MEALPY else None,
                    "wall_s": round(wall, 3),
                    "cpu_s": round(cpu, 3),
                    "evaluations": None if evaluations[0] is None else int(np.median(evaluations)),
                    "fitness": round(float(np.median([r["fitness"] for r in results])), 5),
                    "n_selected": float(np.median([r["n_selected"] for r in results])),
                    "test_accuracy": round(float(np.median([r["test_accuracy"] for r in results])), 4),
                    "speedup_vs_mealpy": round(mealpy_wall / wall, 1) if wall > 0 else None,
                    "speedup_vs_mealpy_cpu": round(mealpy_cpu / cpu, 1) if cpu > 0 else None,
                    "speedup_vs_mealpy_paired": round(float(np.median(paired)), 1) if paired else None,
                    "repeats": results,
                }
            )
    return rows


def environment() -> dict[str, Any]:
    """Machine and software facts recorded next to the numbers."""
    return common_environment(("numpy", "scipy", "scikit-learn", "torch", "mealpy"))


def summary(rows: list[dict]) -> list[dict]:
    """The zebra line of ``benchmarks/run.py``: ZebraSelector (improved) vs mealpy at equal evaluations, the
    smallest speed-up (median wall times) over the datasets, and whether its fitness is never worse."""
    emo = "emo ZebraSelector (improved)"
    mealpy = {r["dataset"]: r for r in rows if r["method"] == MEALPY}
    mine = [r for r in rows if r["method"] == emo and r["dataset"] in mealpy]
    if not mine:
        return []
    speedups = [r["speedup_vs_mealpy"] for r in mine]
    not_worse = [r["fitness"] <= mealpy[r["dataset"]]["fitness"] for r in mine]
    parts = "; ".join(
        f"{r['dataset']}: {mealpy[r['dataset']]['wall_s']:.2f} s -> {r['wall_s']:.2f} s "
        f"({r['speedup_vs_mealpy']:.1f}x), fitness {r['fitness']:.4f} vs {mealpy[r['dataset']]['fitness']:.4f}"
        for r in mine
    )
    return [
        {
            "measure": "zebra selection",
            "how": f"{emo} vs {MEALPY} at equal evaluations (population {mine[0]['population']}, "
            f"{mine[0]['iterations']} iterations, median of {len(mine[0]['repeats'])} seeds, 1 thread); {parts}",
            "value": min(speedups),
            "figure": f"{min(speedups):.1f}x (slowest dataset), fitness not worse on {sum(not_worse)}/{len(mine)}",
            "target": ">= 5x faster, fitness not worse",
            "met": min(speedups) >= 5 and all(not_worse),
        }
    ]


def markdown(rows: list[dict]) -> str:
    head = (
        "dataset",
        "method",
        "wall s",
        "cpu s",
        "evaluations",
        "best fitness",
        "n selected",
        "test accuracy",
        "speed-up vs mealpy (wall)",
        "speed-up (cpu)",
        "speed-up (paired wall)",
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = (
            r["dataset"],
            r["method"],
            f"{r['wall_s']:.2f}",
            f"{r['cpu_s']:.2f}",
            "-" if r["evaluations"] is None else str(r["evaluations"]),
            f"{r['fitness']:.4f}",
            f"{r['n_selected']:g} / {r['n_features']}",
            f"{r['test_accuracy']:.4f}",
            *("-" if r[key] is None else f"{r[key]:.1f}x" for key in SPEEDUPS),
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 zebras x 10 iterations, one repeat")
    parser.add_argument("--repeats", type=int, default=None, help="repeats (seeds); default 1 quick, 3 full")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON report path")
    parser.add_argument("--store", default=None, help="also benchmark the pooled features of this store")
    parser.add_argument(
        "--store-features", default=None, help="comma-separated store arrays (default: every */pooled)"
    )
    args = parser.parse_args(argv)
    datasets = dict(DATASETS)
    if args.store:
        features = args.store_features.split(",") if args.store_features else None
        datasets[f"store:{Path(args.store).name}"] = lambda: load_store(args.store, features)
    env_before = environment()
    t0 = time.perf_counter()
    rows = run(args.quick, args.repeats, datasets)
    population, iterations, default_repeats = SETTINGS["quick" if args.quick else "full"]
    report = {
        "benchmark": "zebra",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "quick": args.quick,
        "settings": {
            "population": population,
            "iterations": iterations,
            "repeats": default_repeats if args.repeats is None else args.repeats,
            "alpha": ALPHA,
            "cv": CV,
            "k": K,
            "test_size": TEST_SIZE,
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": env_before,
        "load_average_after": load_average(),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(rows))
    print(
        f"\n{env_before['cpu']}, {env_before['cores']} cores, load average before "
        f"{env_before['load_average']} after {report['load_average_after']}; wrote {args.out}"
    )


if __name__ == "__main__":
    main()
