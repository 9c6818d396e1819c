"""What the extraction of one clip hands to the store writer.

Its own module so that a Dask worker, which builds these and never writes a store, imports neither Zarr nor
pandas.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ClipResult:
    """Everything extracted for one clip: its clip-table values and its feature arrays by store path."""

    columns: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    #: seconds of compute by stage (``emo.pipeline.timing``), measured where the clip was processed; not stored
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def clip_id(self) -> str:
        return str(self.columns["clip_id"])
