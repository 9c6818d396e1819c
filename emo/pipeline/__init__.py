"""Extraction pipeline: datasets -> decode -> faces -> extractors -> Dask runner -> store writer."""

from emo.pipeline.config import ExtractionConfig
from emo.pipeline.datasets import ADAPTERS, ClipRecord, DatasetScan, scan_dataset
from emo.pipeline.extract import ExtractionReport, extract
from emo.pipeline.runner import ClusterOptions

__all__ = [
    "ADAPTERS",
    "ClipRecord",
    "ClusterOptions",
    "DatasetScan",
    "ExtractionConfig",
    "ExtractionReport",
    "extract",
    "scan_dataset",
]
