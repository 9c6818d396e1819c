"""Every measure of issue 7 side by side, in one run on this machine: a Markdown table on stdout and a JSON
report under ``benchmarks/results/``.

    .venv/bin/python benchmarks/run.py            # the full measurement (about an hour on 2 cores)
    .venv/bin/python benchmarks/run.py --quick    # a few minutes: smaller inputs, fewer repeats
    .venv/bin/python benchmarks/run.py --only store_read,decode

Benchmarks (one module each; ``run(quick) -> rows``, ``summary(rows) -> measures``): extraction (speed-up
against a sequential per-video loop, parallel efficiency, orchestration + store overhead), decode, faces,
fusion_epoch, store_read, memory, zebra, accuracy (RAVDESS speech; skipped when the recordings are absent).
The JSON holds every raw row, the medians, the machine (cores, CPU model, memory), the load average before and
after each benchmark, library versions and the git commit (and whether the working tree had uncommitted
changes). Speed is measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS, git_state, load_average, log, machine, versions  # noqa: E402

#: Run order: the long multi-process measures first, while the machine is as it was when the run started.
BENCHMARKS = (
    "extraction", "decode", "faces", "face_tracking", "fusion_epoch", "store_read", "memory", "zebra", "accuracy",
)  # fmt: skip


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(measures: list[dict]) -> str:
    lines = ["| measure | how | figure reached | target | met? |", "| --- | --- | --- | --- | --- |"]
    for m in measures:
        met = {True: "yes", False: "**no**", None: "n/a"}[m["met"]]
        cells = (m["measure"], m["how"], m["figure"], m["target"], met)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs and fewer repeats (a few minutes)")
    parser.add_argument("--only", help=f"comma-separated benchmarks among: {', '.join(BENCHMARKS)}")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",")] if args.only else list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose among {', '.join(BENCHMARKS)}")
    command = " ".join(["python", "benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])])
    report: dict[str, Any] = {
        "command": command,
        "quick": args.quick,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "load_average_before": load_average(),
        "versions": versions(),
        "git": git_state(),
        "benchmarks": {},
        "measures": [],
    }
    started = time.perf_counter()
    failed = False
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        entry: dict[str, Any] = {"load_average_before": load_average()}
        log(f"{name}: start (load average {entry['load_average_before']})")
        t0 = time.perf_counter()
        try:
            rows = module.run(args.quick)
            measures = module.summary(rows)
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not lose the others' numbers
            failed = True
            traceback.print_exc()
            rows, measures = [], []
            entry["error"] = f"{type(exc).__name__}: {exc}"
            report["measures"].append(
                {"measure": name, "how": "failed", "value": None, "figure": entry["error"], "target": "", "met": None}
            )
        entry.update(
            seconds=round(time.perf_counter() - t0, 1), load_average_after=load_average(), rows=rows, measures=measures
        )
        if hasattr(module, "details") and rows:
            entry["details"] = module.details(rows)
        report["benchmarks"][name] = entry
        report["measures"] += measures
        log(f"{name}: done in {entry['seconds']:.0f} s (load average {entry['load_average_after']})")
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["load_average_after"] = load_average()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = RESULTS / f"run-{stamp}{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    shutil.copyfile(out, RESULTS / "latest.json")
    m = report["machine"]
    print(table(report["measures"]))
    print(
        f"\n`{command}` on {m['cpu']} ({m['cores']} cores), commit {(report['git']['commit'] or '?')[:10]}"
        f"{' + uncommitted changes' if report['git']['dirty'] else ''}; load average before "
        f"{report['load_average_before']}, after {report['load_average_after']}; {report['seconds'] / 60:.1f} min; "
        f"wrote {out.relative_to(RESULTS.parents[1])}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
