"""Feature selectors for fused features (DESIGN.md section 7): scikit-learn transformers that keep a subset.

* :class:`L1Selector` -- non-zero weights of an L1-penalised logistic regression or linear SVM (seed 002).
* :class:`TreeSelector` -- extra-trees / random-forest importances, threshold or top-k (seed 002).
* :class:`ZebraSelector` -- wrapper search with the Improved Zebra Optimization Algorithm (seed 001).

All three are ``SelectorMixin`` estimators (``fit``, ``transform``, ``get_support``,
``get_feature_names_out``, usable in a ``Pipeline``), fit on the training split only, and expose the boolean
``support_`` mask and per-feature ``scores_`` that a run saves as JSON.
"""

# importing a selector module registers it: adding a selector is its module plus its name here
from emo.fusion.selection import l1, tree, zebra  # noqa: F401
from emo.fusion.selection._common import SELECTORS
from emo.fusion.selection.l1 import L1Selector
from emo.fusion.selection.tree import TreeSelector
from emo.fusion.selection.zebra import ZebraSelector

__all__ = ["SELECTORS", "L1Selector", "TreeSelector", "ZebraSelector", "make_selector"]


def make_selector(name: str, seed: int) -> object:
    """A new, unfitted selector registered as ``name``, seeded with the run's ``seed``."""
    return SELECTORS.lookup(name)(random_state=seed)
