"""Extraction pipeline: datasets -> decode -> faces -> extractors -> Dask runner -> store writer.

The names below load their modules on first use (``lazy_loader``, which also keeps the function
``emo.pipeline.extract`` from being shadowed by its module): a Dask worker unpickling the runner's tasks
imports what processing a clip needs, not the driver's store writer.
"""

from typing import TYPE_CHECKING

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "config": ["ExtractionConfig"],
        "datasets": ["ADAPTERS", "ClipRecord", "DatasetScan", "scan_dataset"],
        "extract": ["ExtractionReport", "extract"],
        "runner": ["ClusterOptions"],
    },
)

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from emo.pipeline.config import ExtractionConfig as ExtractionConfig
    from emo.pipeline.datasets import ADAPTERS as ADAPTERS
    from emo.pipeline.datasets import ClipRecord as ClipRecord
    from emo.pipeline.datasets import DatasetScan as DatasetScan
    from emo.pipeline.datasets import scan_dataset as scan_dataset
    from emo.pipeline.extract import ExtractionReport as ExtractionReport
    from emo.pipeline.extract import extract as extract
    from emo.pipeline.runner import ClusterOptions as ClusterOptions
