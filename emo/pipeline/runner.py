"""Running extraction on Dask: an embedded LocalCluster or an existing scheduler, batches of clips per task,
extractors built once per worker, results handed back to the single writer in dataset order."""

from __future__ import annotations

import logging
import os
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from distributed import Client, LocalCluster, WorkerPlugin, as_completed
from distributed.scheduler import KilledWorker

from emo.errors import UsageError
from emo.features_store.writer import ClipResult
from emo.pipeline.config import ExtractionConfig
from emo.pipeline.datasets import ClipRecord
from emo.pipeline.extractors import Extractor, build_extractors
from emo.pipeline.process import failure_result, process_clip

log = logging.getLogger(__name__)

# Per-process cache of set-up extractors, keyed by config hash: a worker builds and warms them up once.
_EXTRACTORS: dict[str, list[Extractor]] = {}


def worker_extractors(config: ExtractionConfig) -> list[Extractor]:
    """This process's extractors for ``config``, built and warmed up on first use."""
    key = config.hash()
    if key not in _EXTRACTORS:
        extractors = build_extractors(config)
        for ex in extractors:
            ex.setup()
        _EXTRACTORS[key] = extractors
    return _EXTRACTORS[key]


class ExtractorSetup(WorkerPlugin):
    """Dask worker plugin: loads and warms up the extractors when a worker starts (or joins later)."""

    def __init__(self, config: ExtractionConfig) -> None:
        self.config = config
        self.name = f"emo-extractors-{config.hash()}"

    def setup(self, worker: Any) -> None:
        worker_extractors(self.config)


def extract_batch(records: Sequence[ClipRecord], config: ExtractionConfig) -> list[ClipResult]:
    """Dask task: process a batch of clips with this worker's extractors."""
    extractors = worker_extractors(config)
    return [process_clip(r, extractors, config) for r in records]


def default_workers() -> int:
    """The machine's cores available to this process."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@dataclass
class ClusterOptions:
    """How to get workers: an existing scheduler address, or an embedded LocalCluster of ``workers``."""

    scheduler: str | None = None
    workers: int | None = None
    dashboard_address: str | None = ":8787"


@contextmanager
def dask_client(options: ClusterOptions) -> Iterator[Client]:
    """A connected Client; an embedded LocalCluster (one thread per worker) is closed on exit."""
    if options.scheduler:
        try:
            client = Client(options.scheduler, timeout="15s")
        except (OSError, TimeoutError) as exc:
            raise UsageError(f"cannot connect to the Dask scheduler at {options.scheduler}: {exc}") from None
        try:
            yield client
        finally:
            client.close()
        return
    n = options.workers or default_workers()
    if n < 1:
        raise UsageError("--workers must be at least 1")
    with warnings.catch_warnings():
        # when 8787 is taken Dask picks another port; the address actually used is logged by the caller
        warnings.filterwarnings("ignore", message="Port .* is already in use")
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=options.dashboard_address,
            silence_logs=logging.ERROR,
        )
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def n_workers(client: Client) -> int:
    return max(1, len(client.scheduler_info(n_workers=-1).get("workers", {})))


def run_batches(
    client: Client,
    records: Sequence[ClipRecord],
    config: ExtractionConfig,
    batch_size: int,
    on_result: Callable[[ClipResult], None],
    window: int | None = None,
) -> None:
    """Process ``records`` in batches on the cluster, calling ``on_result`` in dataset order.

    At most ``window`` batches are in flight or waiting to be handed over, which bounds the driver's memory
    however large the dataset is. A batch whose task fails (a worker died on it more often than Dask allows,
    or the task raised) is split into one task per clip; a clip that still fails alone is returned as failed
    with the reason, so one poison clip cannot sink the run.
    """
    client.register_plugin(ExtractorSetup(config))
    extractors = build_extractors(config)
    batches = [list(records[i : i + batch_size]) for i in range(0, len(records), batch_size)]
    window = window or max(4, 2 * n_workers(client))
    parts: dict[int, dict[int, list[ClipResult] | None]] = {}
    futures: dict[Any, tuple[int, int, list[ClipRecord]]] = {}
    next_submit = next_deliver = 0
    done = as_completed()

    def submit(index: int, start: int, recs: list[ClipRecord]) -> None:
        fut = client.submit(
            extract_batch,
            recs,
            config,
            pure=False,
            retries=1,
            key=f"emo-extract-{index}-{start}-{uuid.uuid4().hex[:8]}",
        )
        futures[fut] = (index, start, recs)
        parts.setdefault(index, {})[start] = None
        done.add(fut)

    def fill_window() -> None:
        nonlocal next_submit
        while next_submit < len(batches) and next_submit - next_deliver < window:
            submit(next_submit, 0, batches[next_submit])
            next_submit += 1

    fill_window()
    try:
        for fut in done:
            index, start, recs = futures.pop(fut)
            try:
                parts[index][start] = fut.result()
            except Exception as exc:  # noqa: BLE001 - KilledWorker or a task error: isolate the clip
                del parts[index][start]
                if len(recs) > 1:
                    log.warning("a batch of %d clips failed (%s); retrying them one by one", len(recs), exc)
                    for j, rec in enumerate(recs):
                        submit(index, start + j, [rec])
                else:
                    log.warning("clip %s failed on the cluster: %s", recs[0].clip_id, exc)
                    parts[index][start] = [failure_result(recs[0], extractors, _task_failure(exc))]
            fut.release()
            while next_deliver in parts and all(v is not None for v in parts[next_deliver].values()):
                for _start, results in sorted(parts.pop(next_deliver).items()):
                    for result in results:
                        on_result(result)
                next_deliver += 1
            fill_window()
    finally:
        for fut in futures:
            fut.cancel()


def _task_failure(exc: BaseException) -> str:
    if isinstance(exc, KilledWorker):
        return "worker died: the worker processing this clip died on every attempt (out of memory or a crash)"
    return f"task error: {type(exc).__name__}: {exc}"
