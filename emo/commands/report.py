"""``emo report``: the self-contained HTML page of a run or a comparison."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import click

from emo.commands.options import common

log = logging.getLogger("emo")


def write_report(directory: str) -> None:
    from emo.fusion.report_page import write_report

    start = time.perf_counter()
    path = write_report(directory)
    log.info("report: %s (%.0f KB, %.2f s)", path, path.stat().st_size / 1024, time.perf_counter() - start)


@click.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=str))
@common
def report(directory: str, quiet: bool) -> None:
    """(Re)build DIRECTORY/report.html for a run directory of emo fuse or an emo compare output: one
    self-contained page (metrics with intervals, per-class table, confusion matrix, curves, modality weights,
    significance, provenance) to open in a browser."""
    write_report(directory)
    click.echo(str(Path(directory) / "report.html"))
