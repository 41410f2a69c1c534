"""Pruning: weight (masked, stored packed) and neuron / channel / head pruning (physically removed).

``Prune`` is the step's config and ``apply_prune(model, config, ctx)`` its handler. Sensitivity analysis
lives in the submodule: ``from modelpress.pruning.sensitivity import sensitivity``.
"""

from modelpress.pruning.config import Prune
from modelpress.pruning.masks import global_magnitude_masks, magnitude_mask, zhu_gupta_sparsity
from modelpress.pruning.step import apply_prune

__all__ = ["Prune", "apply_prune", "global_magnitude_masks", "magnitude_mask", "zhu_gupta_sparsity"]
