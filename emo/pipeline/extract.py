"""``extract``: a dataset directory in, a feature store out (DESIGN.md §4), resumable and fault tolerant."""

from __future__ import annotations

import dataclasses
import logging
import math
import platform
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from emo.features_store.clip_result import ClipResult
from emo.features_store.derived import drop_derived
from emo.features_store.location import StoreLocation, parse_location
from emo.features_store.resume import committed_clip_ids, writable_now
from emo.features_store.schema import (
    MODALITIES,
    STATUS_FAILED,
    STATUS_MISSING,
    STATUS_NO_FACE,
    STATUS_OK,
    partly_decoded,
)
from emo.features_store.writer import StoreWriter
from emo.interrupt import deferred_interrupt
from emo.pipeline import weights
from emo.pipeline.config import ExtractionConfig
from emo.pipeline.datasets import DatasetScan, scan_dataset
from emo.pipeline.devices import check_device, embedded_gpu_workers, gpu_workers
from emo.pipeline.extractors import build_extractors, extractor_classes, pin_config
from emo.pipeline.runner import ClusterOptions, ClusterStart, n_workers, run_batches
from emo.pipeline.timing import total

log = logging.getLogger(__name__)

SOFTWARE = (
    "numpy",
    "zarr",
    "numcodecs",
    "dask",
    "distributed",
    "librosa",
    "opensmile",
    "av",
    "torch",
    "torchvision",
    "facenet-pytorch",
    "transformers",
    "scikit-learn",
)


def software_versions() -> dict[str, str]:
    """Versions of Python and the libraries that produce feature values (store provenance)."""
    versions = {"python": platform.python_version()}
    for name in SOFTWARE:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@dataclass
class ExtractionReport:
    """What a run did: counts, statuses and failures by reason (the summary printed at the end)."""

    store: str
    adapter: str
    n_clips: int
    n_already_done: int = 0
    n_written: int = 0
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    status_counts: dict[str, Counter[str]] = field(default_factory=lambda: {m: Counter() for m in MODALITIES})
    failures: dict[str, list[str]] = field(default_factory=dict)  # reason category -> clip ids
    seconds: float = 0.0
    interrupted: bool = False
    models: dict[str, str] = field(default_factory=dict)  # what computed the features (modality -> model)
    device: str = ""  # where the model stages ran
    workers: Counter[str] = field(default_factory=Counter)  # clips computed per Dask worker name

    partly_decoded: dict[str, list[str]] = field(default_factory=lambda: {"audio": [], "video": []})  # ids
    n_with_features: int = 0  # written clips with at least one modality extracted
    #: seconds of compute by stage, summed over the written clips (``emo.pipeline.timing``)
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def n_partly_decoded(self) -> int:
        """Clips with an audio or video stream that decoded only partly (status ok, the rest was kept)."""
        return len({clip for clips in self.partly_decoded.values() for clip in clips})

    @property
    def n_failed(self) -> int:
        """Clips with at least one failed, missing or face-less modality."""
        return len({clip for clips in self.failures.values() for clip in clips})

    def add(self, result: ClipResult, worker: str = "") -> None:
        self.n_written += 1
        if worker:
            self.workers[worker] += 1
        for stage, seconds in result.timings.items():
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds
        statuses = [result.columns.get(f"status_{m}", "") for m in MODALITIES]
        for m, s in zip(MODALITIES, statuses, strict=True):
            self.status_counts[m][s] += 1
        self.n_with_features += any(s == STATUS_OK for s in statuses)
        columns = result.columns
        for modality, clip_ids in self.partly_decoded.items():
            if partly_decoded(
                columns.get(f"status_{modality}", ""),
                columns.get("duration_s", float("nan")),
                columns.get(f"decoded_s_{modality}", float("nan")),
                columns.get(f"decode_errors_{modality}", -1),
            ):
                clip_ids.append(result.clip_id)
        if any(s in (STATUS_FAILED, STATUS_MISSING, STATUS_NO_FACE) for s in statuses):
            for reason in filter(None, str(result.columns.get("error", "")).split("; ")):
                self.failures.setdefault(reason.split(":")[0], []).append(result.clip_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "adapter": self.adapter,
            "n_clips": self.n_clips,
            "n_already_done": self.n_already_done,
            "n_written": self.n_written,
            "n_with_features": self.n_with_features,
            "skipped_files": [{"path": p, "reason": r} for p, r in self.skipped_files],
            "status": {m: dict(c) for m, c in self.status_counts.items()},
            "failures": {k: {"count": len(v), "clip_ids": v} for k, v in self.failures.items()},
            "partly_decoded": {k: {"count": len(v), "clip_ids": v} for k, v in self.partly_decoded.items()},
            "seconds": round(self.seconds, 3),
            "interrupted": self.interrupted,
            "models": self.models,
            "device": self.device,
            "workers": dict(self.workers),
            "stage_seconds": {k: round(v, 3) for k, v in total([self.stage_seconds]).items()},
        }


def models_used(config: ExtractionConfig) -> dict[str, str]:
    """One line per model the configuration uses (what the run says it computed its features with)."""
    out: dict[str, str] = {}
    for cls in extractor_classes(config):
        out |= cls.describe_models(config)
    return out


def _expected_clips(location: StoreLocation, scan: DatasetScan, config_hash: str, overwrite: bool) -> int:
    """How many clips the run will extract, from a peek at the store (0 when its writer would refuse it)."""
    if overwrite:
        return len(scan.records) if writable_now(location) else 0
    done = committed_clip_ids(location, config_hash)
    return 0 if done is None else sum(r.clip_id not in done for r in scan.records)


def _cluster_start(
    stack: ExitStack,
    cluster: ClusterOptions | None,
    n_clips: int,
    device: str,
    needs_models: bool,
    config: ExtractionConfig,
    offline: bool,
) -> ClusterStart | None:
    """Workers for ``n_clips`` clips, starting in the background and closed with ``stack`` (None when there is
    nothing to extract)."""
    if n_clips < 1:
        return None
    options = (cluster or ClusterOptions()).for_clips(n_clips)
    if not options.scheduler and embedded_gpu_workers(device, needs_models):
        options = dataclasses.replace(options, gpu_resource=True)
    start = ClusterStart(options, config, device, needs_models, offline)
    stack.callback(start.close)
    return start


def default_batch_size(n_clips: int, workers: int) -> int:
    """Clips per task: about four tasks per worker for load balance, at most 32 clips per task."""
    return max(1, min(32, math.ceil(n_clips / (4 * workers))))


def extract(
    dataset_dir: str | Path,
    store: str,
    *,
    dataset: str = "auto",
    config: ExtractionConfig | None = None,
    cluster: ClusterOptions | None = None,
    batch_size: int | None = None,
    chunk_rows: int = 256,
    overwrite: bool = False,
    storage_options: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_start: Callable[[DatasetScan, int, str | None], None] | None = None,
    flush_seconds: float = 30.0,
    device: str = "auto",
    offline: bool = False,
) -> ExtractionReport:
    """Extract every clip of ``dataset_dir`` into the store at ``store``.

    Resumes a store written with the same configuration (clips already there are skipped); refuses one
    written with another unless ``overwrite``. ``progress(done, total)`` is called after each clip is
    handed to the writer; ``on_start(scan, n_todo, dashboard_link)`` once the cluster is up. ``device``
    (cpu, cuda, auto) is where the model stages run (``devices.py``). Missing models stop the run before the
    store is touched; the config records the sha256 of every model file (:func:`pin_config`). ``offline`` (or
    ``$HF_HUB_OFFLINE`` here): no model is downloaded, here or on any worker, even one of a ``--scheduler``
    cluster whose environment allows downloads.
    """
    config = config or ExtractionConfig()
    started = time.monotonic()
    offline = offline or weights.offline()
    check_device(device)
    extractor_classes(config)  # unknown tokens are a usage error before anything else
    scan = scan_dataset(dataset_dir, dataset)
    with weights.no_downloads(offline):
        config = pin_config(config)
        extractors = build_extractors(config)
        for ex in extractors:
            ex.preflight()
    needs_models = any(ex.uses_model for ex in extractors)
    location = parse_location(store, storage_options)
    with ExitStack() as stack:
        # Workers start and load their models while this process describes the arrays and opens the store,
        # unless a peek at the store says there is nothing to do or its writer will refuse it.
        expected = _expected_clips(location, scan, config.hash(), overwrite)
        early = _cluster_start(stack, cluster, expected, device, needs_models, config, offline)
        if early is not None:
            # What this process does next (openSMILE's feature names, Zarr) would take a core while the cluster
            # starts (0.6 s later on 2 cores); once it is up, it overlaps the workers' model loading.
            early.wait_connected()
        specs = [spec for ex in extractors for spec in ex.array_specs]
        report = ExtractionReport(
            store=location.display,
            adapter=scan.adapter,
            n_clips=len(scan.records),
            skipped_files=scan.skipped,
            models=models_used(config),
        )
        for modality, model in report.models.items():
            log.info("%s: %s", modality, model)

        def committed(total: int, added: int) -> None:
            log.info("committed %d clips to %s (%d in the store)", added, location.display, total)

        writer = stack.enter_context(
            StoreWriter.open(
                location,
                specs=specs,
                labels=scan.labels,
                dataset=scan.describe(),
                extraction={"config": config.to_dict(), "config_hash": config.hash()},
                software=software_versions(),
                chunk_rows=chunk_rows,
                overwrite=overwrite,
                flush_seconds=flush_seconds,
                on_commit=committed,
            )
        )
        done = writer.done_clip_ids()
        todo = [r for r in scan.records if r.clip_id not in done]
        report.n_already_done = len(scan.records) - len(todo)
        if not todo:
            log.info("all %d clips are already in %s", len(scan.records), location.display)
            report.seconds = time.monotonic() - started
            return report

        for path in drop_derived(writer.group):
            log.warning("%s covered only the clips already in the store and was removed: recompute it after "
                        "this run (emo features ...)", path)

        def on_result(result: ClipResult, worker: str) -> None:
            with deferred_interrupt():  # the report counts exactly the clips the writer has
                writer.add(result)
                report.add(result, worker)
            if progress is not None:
                progress(report.n_written, len(todo))

        start = early or _cluster_start(stack, cluster, len(todo), device, needs_models, config, offline)
        try:  # Ctrl-C while the workers load their models or extract: the rows received so far are committed
            if needs_models and not start.done():
                log.info("waiting for the workers to load their models")
            client, plan = start.result()
            report.device = plan.device if needs_models else ""
            if needs_models:
                log.info("model stages on %s (%s)", plan.device, plan.reason)
            # with GPU routing only the GPU workers take the tasks: size batches for them
            workers = len(gpu_workers(client)) if plan.gpu_resource else n_workers(client)
            size = batch_size or default_batch_size(len(todo), workers)
            if on_start is not None:
                on_start(scan, len(todo), client.dashboard_link)
            run_batches(client, todo, config, size, on_result, plan=plan, offline=offline)
        except KeyboardInterrupt:
            report.interrupted = True
            log.warning("interrupted: committing the clips received and stopping the workers")
        start.release()  # every result is in: the workers shut down while the writer commits the last rows
    report.seconds = time.monotonic() - started
    return report
