"""The terminal progress bar of ``emo extract``: clips done / total, rate, ETA, and the dashboard address."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from emo.pipeline.datasets import DatasetScan

log = logging.getLogger(__name__)


class RateColumn(ProgressColumn):
    """Clips per second over rich's speed window."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f} clips/s" if speed else "- clips/s")


class ExtractionProgress:
    """Context manager wiring ``extract``'s callbacks to a rich progress bar on stderr (or to nothing)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task = None

    def __enter__(self) -> ExtractionProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def start(self, scan: DatasetScan, n_todo: int, dashboard: str | None) -> None:
        done = len(scan.records) - n_todo
        log.info(
            "dataset: %s (%s), %d clips, %d to extract%s%s",
            scan.root,
            scan.adapter,
            len(scan.records),
            n_todo,
            f", {done} already in the store" if done else "",
            f", {len(scan.skipped)} files skipped (see the summary)" if scan.skipped else "",
        )
        if dashboard:
            log.info("Dask dashboard: %s", dashboard)
        if not self.enabled:
            return
        self._progress = Progress(
            TextColumn("extracting"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("clips"),
            RateColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task("extract", total=n_todo)

    def update(self, done: int, total: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=total)
