"""The end-of-run summary of ``emo extract``: counts by status, failures by reason with example clips."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from emo.features_store.info import partial_line, result_console
from emo.pipeline.extract import ExtractionReport

EXAMPLES = 3


def print_summary(report: ExtractionReport, console: Console | None = None) -> None:
    """Print the summary as tables on stdout."""
    console = console or result_console()
    head = (
        f"{report.store}: {report.n_written} clips written"
        f"{f', {report.n_already_done} already there' if report.n_already_done else ''}"
        f" ({report.adapter}, {report.n_clips} clips in the dataset) in {report.seconds:.1f} s"
    )
    if report.interrupted:
        head += " - INTERRUPTED: run the same command again to resume"
    console.print(head, highlight=False)
    for modality, model in report.models.items():
        console.print(f"  {modality}: {model}", highlight=False)
    if report.device:
        console.print(f"  models ran on: {report.device}", highlight=False)
    if report.n_written:
        statuses = Table(title="clip status by modality", title_justify="left")
        statuses.add_column("modality")
        names = sorted({s for c in report.status_counts.values() for s in c})
        for name in names:
            statuses.add_column(name, justify="right")
        for modality, counts in report.status_counts.items():
            statuses.add_row(modality, *(str(counts.get(n, 0)) for n in names))
        console.print(statuses)
    if report.failures:
        failures = Table(title="problems by reason", title_justify="left")
        failures.add_column("reason")
        failures.add_column("clips", justify="right")
        failures.add_column("first clip ids")
        for reason, clips in sorted(report.failures.items(), key=lambda kv: -len(kv[1])):
            failures.add_row(
                reason, str(len(clips)), ", ".join(clips[:EXAMPLES]) + (" ..." if len(clips) > EXAMPLES else "")
            )
        console.print(failures)
    if report.n_partly_decoded:
        partial = {m: {"count": len(ids), "clip_ids": ids} for m, ids in report.partly_decoded.items()}
        console.print(partial_line(partial, EXAMPLES), highlight=False)
    if report.skipped_files:
        skipped = Table(title=f"{len(report.skipped_files)} dataset files not used", title_justify="left")
        skipped.add_column("file")
        skipped.add_column("why")
        for path, why in report.skipped_files[:10]:
            skipped.add_row(path, why)
        if len(report.skipped_files) > 10:
            skipped.add_row("...", f"{len(report.skipped_files) - 10} more (--json lists all)")
        console.print(skipped)
