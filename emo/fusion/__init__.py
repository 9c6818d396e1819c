"""Fusion side: data loading from the store, heads, selectors, training, metrics, reports (DESIGN.md §6-7).

The names below load their modules on first use (``lazy_loader``, as :mod:`emo.pipeline` does): the CLI reads
the presets table to build its options without importing torch and scikit-learn (3 s on every ``emo`` command).
"""

from typing import TYPE_CHECKING

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__, submod_attrs={"train": ["TrainResult", "train"], "train_config": ["TrainConfig"]}
)

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from emo.fusion.train import TrainResult as TrainResult
    from emo.fusion.train import train as train
    from emo.fusion.train_config import TrainConfig as TrainConfig
