"""Fusion side: data loading from the store, heads, selectors, training, metrics, reports (DESIGN.md §6-7)."""

from emo.fusion.train import TrainConfig, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
