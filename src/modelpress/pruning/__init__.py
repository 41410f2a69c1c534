"""Pruning: weight (masked, stored packed) and neuron / channel / head pruning (physically removed).

``Prune`` is the step's config, ``apply_prune(model, config, ctx)`` its handler, ``sensitivity`` prunes
one layer at a time at several ratios and reports the task metric.
"""

from modelpress.pruning.config import Prune
from modelpress.pruning.masks import global_magnitude_masks, magnitude_mask, zhu_gupta_sparsity
from modelpress.pruning.step import apply_prune

__all__ = [
    "Prune",
    "apply_prune",
    "magnitude_mask",
    "global_magnitude_masks",
    "zhu_gupta_sparsity",
    "sensitivity",
    "SensitivityResult",
]


def __getattr__(name: str):
    # sensitivity pulls in matplotlib lazily; import it on first use only.
    if name in ("sensitivity", "SensitivityResult"):
        from modelpress.pruning import sensitivity as _s

        return getattr(_s, name)
    raise AttributeError(name)
