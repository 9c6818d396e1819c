"""Running extraction on Dask: an embedded LocalCluster or an existing scheduler, batches of clips per task,
extractors built once per worker, results handed back to the single writer in dataset order.

Tasks of configurations with models ask for a ``GPU`` resource when the run uses CUDA (see ``devices.py``);
the worker plugin then loads the models on GPU workers only.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import multiprocessing.resource_tracker
import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import dask
from distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker
from distributed.client import ClosedClientError, FutureCancelledError
from distributed.gc import disable_gc_diagnosis
from distributed.scheduler import KilledWorker

from emo.errors import EmoError, MissingModelError, UsageError
from emo.features_store.clip_result import ClipResult
from emo.pipeline.config import ExtractionConfig
from emo.pipeline.dask_records import InterruptedSync, RecomputedResult, ReconnectCancelled, logs_filtered
from emo.pipeline.datasets import ClipRecord
from emo.pipeline.devices import GPU_RESOURCE, DevicePlan, resolve_device
from emo.pipeline.extractors import Extractor, build_extractors
from emo.pipeline.heap import release_free_memory
from emo.pipeline.process import failure_result, process_clips
from emo.pipeline.timing import record_pending
from emo.pipeline.weights import no_downloads

log = logging.getLogger(__name__)

#: Dask preload of the embedded cluster's workers (leaves Ctrl-C to the driver)
EMBEDDED_WORKER_PRELOAD = "emo.pipeline.embedded_worker"

# Per-process cache of set-up extractors, keyed by config hash and device: a worker builds and warms them up
# once (their models are shared between configurations, see ``worker_resource``).
_EXTRACTORS: dict[tuple[str, str], list[Extractor]] = {}


def worker_extractors(config: ExtractionConfig, device: str = "cpu") -> list[Extractor]:
    """This process's extractors for ``config`` on ``device``, built and warmed up on first use."""
    key = (config.hash(), device)
    if key not in _EXTRACTORS:
        started = time.perf_counter()
        extractors = build_extractors(config, device)
        for ex in extractors:
            ex.setup()
        _EXTRACTORS[key] = extractors
        record_pending("model load", time.perf_counter() - started)  # reported with the next clip processed
    return _EXTRACTORS[key]


class ExtractorSetup(WorkerPlugin):
    """Dask worker plugin: loads and warms up the extractors when a worker starts (or joins later); when the
    run's tasks need a GPU, only on workers advertising one (the others never receive them). ``offline``: a
    model missing on the worker is an error, never a download (``emo extract --offline``)."""

    def __init__(self, config: ExtractionConfig, plan: DevicePlan, offline: bool = False) -> None:
        self.config = config
        self.plan = plan
        self.offline = offline
        self.name = f"emo-extractors-{config.hash()}-{plan.device}-{'gpu' if plan.gpu_resource else 'any'}"

    def setup(self, worker: Any) -> None:
        if self.plan.gpu_resource and not worker.state.total_resources.get(GPU_RESOURCE):
            return
        with no_downloads(self.offline):
            try:
                worker_extractors(self.config, self.plan.device)
            except MissingModelError as e:  # on a --scheduler cluster: another machine than the driver's checked
                where = "a worker" if worker is None else f"worker {worker.name} ({worker.address})"
                raise MissingModelError(f"{where} cannot load its models: {e}") from e
        gc.collect()
        release_free_memory()  # the models' warm-up passes freed their activations
        # A worker process's models and libraries live as long as it does: keep them out of every later garbage
        # collection (each would walk their millions of objects) and out of the one at exit (the worker then
        # stops in 0.5 s, not 2 s). Only here, in a process Dask dedicates to the work, never in a user's.
        gc.freeze()


@dataclass
class TaskResult:
    """What one task sends back: the clips' results and the name of the worker that computed them."""

    worker: str
    results: list[ClipResult]


class ClusterLost(EmoError):
    """The run lost its Dask scheduler, or its tasks were cancelled or their results could not be fetched: no
    clip is marked failed for it; the clips received are written and a re-run of the same command resumes."""


#: Dask event topic: a task of ``extract_batch`` started running (message: its key); see ``run_batches``.
STARTED_TOPIC = "emo-extract-started"
#: How often a clip is submitted again after its workers died while it was only queued on them.
MAX_REQUEUES = 3


def extract_batch(
    records: Sequence[ClipRecord], config: ExtractionConfig, device: str = "cpu", offline: bool = False
) -> TaskResult:
    """Dask task: process a batch of clips with this worker's extractors (loaded without downloads when
    ``offline``)."""
    worker = get_worker()
    worker.log_event(STARTED_TOPIC, worker.get_current_task())
    with no_downloads(offline):
        extractors = worker_extractors(config, device)
    return TaskResult(worker=str(worker.name), results=process_clips(records, extractors, config))


def default_workers() -> int:
    """The machine's cores available to this process."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@dataclass
class ClusterOptions:
    """How to get workers: an existing scheduler address, or an embedded LocalCluster of ``workers``, which
    advertise a ``GPU`` resource each with ``gpu_resource`` (set by ``extract`` for a CUDA run; dask-cuda's
    LocalCUDACluster, one worker pinned per GPU, is not a dependency: these workers share the visible GPUs)."""

    scheduler: str | None = None
    workers: int | None = None
    dashboard_address: str | None = ":8787"
    gpu_resource: bool = False

    def for_clips(self, n_clips: int) -> ClusterOptions:
        """These options for a run of ``n_clips``: an embedded cluster gets no more workers than clips (an idle
        worker would still load every model); an existing scheduler is used as it is."""
        if self.scheduler or n_clips < 1:
            return self
        wanted = self.workers or default_workers()
        return dataclasses.replace(self, workers=min(wanted, n_clips)) if wanted >= 1 else self


@contextmanager
def dask_client(options: ClusterOptions) -> Iterator[Client]:
    """A connected Client; an embedded LocalCluster (one thread per worker) is closed on exit, its workers
    before its scheduler (``LocalCluster.close``), so no worker outlives the scheduler it reports to."""
    if options.scheduler:
        try:
            client = Client(options.scheduler, timeout="15s")
        except (OSError, TimeoutError) as exc:
            raise UsageError(f"cannot connect to the Dask scheduler at {options.scheduler}: {exc}") from None
        with logs_filtered({"distributed.client": ReconnectCancelled(), "tornado.application": InterruptedSync()}):
            try:
                yield client
            finally:
                client.close()
        return
    n = options.workers or default_workers()
    if n < 1:
        raise UsageError("--workers must be at least 1")
    # Dask's nanny gives workers MALLOC_TRIM_THRESHOLD_=65536, which also freezes glibc's mmap threshold at
    # 128 KiB: every large tensor of MTCNN and the backbone is then a fresh mmap whose page faults cost more
    # than the convolutions (see benchmarks/extraction.py). Our workers keep glibc's adaptive defaults.
    glibc_defaults = dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None})
    # The workers' scratch directories go in a workspace of this run's own, removed with the cluster. In Dask's
    # shared default (<tmp>/dask-scratch-space) a worker starting in another process (a second run, a teammate's
    # job) purges the directory of a worker killed here while that worker's nanny removes it too, and the loser
    # logs an ERROR ("Failed to remove ...": seen under a test suite running beside the fault tests).
    scratch = tempfile.mkdtemp(prefix="emo-dask-", dir=dask.config.get("temporary-directory", None) or None)
    try:
        with warnings.catch_warnings(), glibc_defaults, _sigint_blocked():
            # when 8787 is taken Dask picks another port; the address actually used is logged by the caller
            warnings.filterwarnings("ignore", message="Port .* is already in use")
            cluster = LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                dashboard_address=options.dashboard_address,
                silence_logs=logging.ERROR,
                resources={GPU_RESOURCE: 1} if options.gpu_resource else None,
                preload=[*dask.config.get("distributed.worker.preload"), EMBEDDED_WORKER_PRELOAD],
                local_directory=scratch,
            )
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    # The scheduler started in this process hooks a Python callback into every garbage collection (Dask's GC
    # diagnosis, which only logs, at levels silenced above). A Ctrl-C whose KeyboardInterrupt lands in that
    # callback is printed as "Exception ignored" and lost: the run would go on as if nothing was pressed.
    disable_gc_diagnosis(force=True)
    client = Client(cluster)
    filters = {
        "distributed.client": ReconnectCancelled(),
        "distributed.scheduler": RecomputedResult(),
        "tornado.application": InterruptedSync(),
    }
    with logs_filtered(filters):
        try:
            yield client
        finally:
            with _quiet(("distributed", "asyncio")):
                # Stopping workers that are still loading models or running a task (Ctrl-C, an error) makes the
                # scheduler log its failed calls to them, with tracebacks: noise once the run has said how it ended.
                client.close()
                cluster.close()
            shutil.rmtree(scratch, ignore_errors=True)


@contextmanager
def _sigint_blocked() -> Iterator[None]:
    """SIGINT blocked in this thread for the block. The cluster's threads, started here, keep the mask and the
    worker processes they spawn are born with it: a Ctrl-C that reaches a worker before its preload ignores the
    signal (``embedded_worker``) stays pending, then is discarded, instead of killing it with a traceback
    half-way through its imports. On the main thread a Ctrl-C pressed meanwhile is delivered when the block
    ends."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks (and no process groups to signal)
        yield
        return
    # multiprocessing starts its resource tracker with the first spawned process and then unblocks SIGINT in
    # the spawning thread, whatever its mask was: started here, before the block, it is already running then
    multiprocessing.resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def _quiet(loggers: Sequence[str]) -> Iterator[None]:
    """Raise these loggers (and their children of unset level) to CRITICAL for the block, then restore them."""
    saved = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


class ClusterStart:
    """Connects to the cluster (or starts the embedded one), resolves the device plan and has every worker load
    the run's extractors (:class:`ExtractorSetup`; workers joining later load them on arrival), on a
    background thread: workers start and load their models while the driver describes the arrays and opens
    the store. :meth:`result` waits and raises what the start raised; :meth:`release` begins the shutdown
    and :meth:`close` finishes it, without waiting for models still loading. ``offline``: the workers load
    their models without downloading any."""

    def __init__(
        self,
        options: ClusterOptions,
        config: ExtractionConfig,
        device: str,
        needs_models: bool,
        offline: bool = False,
    ) -> None:
        self._stack = ExitStack()
        self._client: Client | None = None
        self._ready: tuple[Client, DevicePlan] | None = None
        self._error: BaseException | None = None
        self._closing = threading.Event()
        self._connected = threading.Event()
        self._close_lock = threading.Lock()
        self._close_thread: threading.Thread | None = None
        self._close_error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._start,
            args=(options, config, device, needs_models, offline),
            name="emo-cluster-start",
            daemon=True,
        )
        self._thread.start()

    def _start(
        self, options: ClusterOptions, config: ExtractionConfig, device: str, needs_models: bool, offline: bool
    ) -> None:
        try:
            try:
                self._client = client = self._stack.enter_context(dask_client(options))
            finally:
                self._connected.set()
            if self._closing.is_set():
                return
            plan = resolve_device(client, device, needs_models)
            client.register_plugin(ExtractorSetup(config, plan, offline))
            self._ready = (client, plan)
        except BaseException as exc:  # noqa: BLE001 - handed to the driver's thread by result()
            self._error = exc

    def wait_connected(self) -> None:
        """Wait until the client is connected (the embedded cluster's workers are up), or the start failed; the
        workers then load their models."""
        self._connected.wait()

    def connected(self) -> bool:
        """Whether the client is connected (or the start failed before it could be)."""
        return self._connected.is_set()

    def done(self) -> bool:
        """Whether the start has finished (ready or failed): :meth:`result` then returns at once."""
        return not self._thread.is_alive()

    def result(self) -> tuple[Client, DevicePlan]:
        """The client and the device plan, once every worker has its extractors."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._ready is None:
            raise ClusterLost("the cluster was closed before it was ready")
        return self._ready

    def release(self) -> None:
        """Start shutting the workers down on a background thread and return: the driver commits the last rows
        to the store meanwhile. :meth:`close` waits for it."""
        self._closer()

    def close(self) -> None:
        """Close the client and the embedded cluster, whether the start finished, failed or is still running."""
        self._closer().join()
        if self._close_error is not None:
            raise self._close_error

    def _closer(self) -> threading.Thread:
        with self._close_lock:
            if self._close_thread is None:
                self._close_thread = threading.Thread(target=self._shut_down, name="emo-cluster-close", daemon=True)
                self._close_thread.start()
            return self._close_thread

    def _shut_down(self) -> None:
        self._closing.set()
        try:
            if self._thread.is_alive() and self._client is not None:
                with suppress(Exception):  # the pending plugin registration fails at once instead of loading models
                    self._client.close()
            self._thread.join()
            self._stack.close()
        except BaseException as exc:  # noqa: BLE001 - raised by close() in the driver's thread
            self._close_error = exc


def n_workers(client: Client) -> int:
    return max(1, len(client.scheduler_info(n_workers=-1).get("workers", {})))


def run_batches(
    client: Client,
    records: Sequence[ClipRecord],
    config: ExtractionConfig,
    batch_size: int,
    on_result: Callable[[ClipResult, str], None],
    window: int | None = None,
    plan: DevicePlan | None = None,
    offline: bool = False,
) -> None:
    """Process ``records`` in batches on the cluster, calling ``on_result(result, worker_name)`` in dataset order.

    At most ``window`` batches are in flight or waiting to be handed over, which bounds the driver's memory
    however large the dataset is. A batch whose task fails (a worker died on it more often than Dask allows,
    or the task raised) is split into one task per clip; a clip that still fails alone is returned as failed
    with the reason, so one poison clip cannot sink the run.

    Workers load their extractors on their first task when :class:`ClusterStart` has not already had them do so
    (without downloading any model when ``offline``).

    Dask blames a dead worker on every task assigned to it (``KilledWorker`` after ``allowed-failures`` + 1
    deaths), including tasks that were only queued behind the one that killed it. Tasks announce when they
    start running (``STARTED_TOPIC`` events), so a clip is marked failed only if it was running each time; one
    that was merely waiting is submitted again (at most ``MAX_REQUEUES`` times).
    """
    plan = plan or DevicePlan()
    live: set[str] = set()  # keys of this run's tasks not yet handled
    started: Counter[str] = Counter()  # key -> how often it started running (workers die, tasks rerun)
    requeued: Counter[str] = Counter()  # clip id -> submissions after dying only queued

    def on_started(event: tuple[float, Any]) -> None:  # runs in the client's event loop, in message order
        if event[1] in live:
            started[event[1]] += 1

    client.subscribe_topic(STARTED_TOPIC, on_started)
    extractors = build_extractors(config)
    batches = [list(records[i : i + batch_size]) for i in range(0, len(records), batch_size)]
    window = window or max(4, 2 * n_workers(client))
    parts: dict[int, dict[int, list[tuple[ClipResult, str]] | None]] = {}
    futures: dict[Any, tuple[int, int, list[ClipRecord]]] = {}
    next_submit = next_deliver = 0
    done = as_completed()

    def submit(index: int, start: int, recs: list[ClipRecord]) -> None:
        key = f"emo-extract-{index}-{start}-{uuid.uuid4().hex[:8]}"
        live.add(key)
        fut = client.submit(
            extract_batch,
            recs,
            config,
            plan.device,
            offline,
            pure=False,
            retries=1,
            key=key,
            resources=plan.resources,
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
            live.discard(fut.key)
            ran = started.pop(fut.key, 0)
            try:
                task = fut.result()
                parts[index][start] = [(result, task.worker) for result in task.results]
            except Exception as exc:  # noqa: BLE001 - KilledWorker or a task error: isolate the clip
                if isinstance(exc, FutureCancelledError) or fut.status != "error":
                    # not the task's error (cancelled, or the result could not be fetched): the cluster's
                    raise ClusterLost(_cluster_lost(exc)) from None
                del parts[index][start]
                clip = recs[0].clip_id
                if len(recs) > 1:
                    log.warning("a batch of %d clips failed (%s); retrying them one by one", len(recs), exc)
                    for j, rec in enumerate(recs):
                        submit(index, start + j, [rec])
                elif isinstance(exc, KilledWorker) and ran <= exc.allowed_failures and requeued[clip] < MAX_REQUEUES:
                    # some of the workers that died had it only in their queue: not its fault, run it again
                    requeued[clip] += 1
                    log.info("clip %s was queued on workers that died; submitting it again", clip)
                    submit(index, start, recs)
                else:
                    log.warning("clip %s failed on the cluster: %s", clip, exc)
                    parts[index][start] = [(failure_result(recs[0], extractors, _task_failure(exc, ran)), "")]
            fut.release()
            while next_deliver in parts and all(v is not None for v in parts[next_deliver].values()):
                for _start, results in sorted(parts.pop(next_deliver).items()):
                    for result, worker in results:
                        on_result(result, worker)
                next_deliver += 1
            fill_window()
    except ClosedClientError as exc:  # a submission after the client gave up on the scheduler
        raise ClusterLost(_cluster_lost(exc)) from None
    finally:
        with suppress(Exception):  # the client is closed when the scheduler is gone: nothing left to cancel
            client.unsubscribe_topic(STARTED_TOPIC)
            for fut in futures:
                fut.cancel()


def _cluster_lost(exc: BaseException) -> str:
    cause = exc.reason if isinstance(exc, FutureCancelledError) else f"{type(exc).__name__}: {exc}"
    return (
        f"lost contact with the Dask cluster ({cause or 'tasks cancelled'}); the clips received "
        "before are kept in the store: run the same command again to resume"
    )


def _task_failure(exc: BaseException, ran: int) -> str:
    if isinstance(exc, KilledWorker) and ran > exc.allowed_failures:
        attempts = f"{ran} attempt{'s' if ran > 1 else ''}, out of memory or a crash"
        return f"worker died: the worker processing this clip died on every attempt ({attempts})"
    if isinstance(exc, KilledWorker):
        return f"worker died: workers kept dying while this clip was queued on them ({MAX_REQUEUES + 1} attempts)"
    return f"task error: {type(exc).__name__}: {exc}"
