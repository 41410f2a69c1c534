"""Where a model's architecture comes from, so that an artifact can rebuild it without pickle.

Every model that modelpress builds carries a *source* — a JSON-able dict attached to the root module:

- ``{"kind": "builtin", "name": "lenet-300-100", "kwargs": {...}}`` — a built-in architecture
  (``modelpress.tasks.models.build(name, **kwargs)``, weights random; they come from the artifact);
- ``{"kind": "callable", "ref": "pkg.module:function", "kwargs": {...}}`` — a user's factory;
- ``{"kind": "hf", "config": {...}, "wrapper": ...}`` — a Hugging Face architecture built from its config.

Module swaps and changed shapes are recorded by the artifact itself, by comparing with a fresh build.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

__all__ = ["attach_source", "get_source"]

_ATTR = "_modelpress_source"


def attach_source(model: nn.Module, source: dict[str, Any]) -> nn.Module:
    """Record ``source`` on ``model`` (in place) and return the model."""
    object.__setattr__(model, _ATTR, copy.deepcopy(source))
    return model


def get_source(model: nn.Module) -> dict[str, Any] | None:
    """The source recorded on ``model``, or None when it was built elsewhere."""
    src = getattr(model, _ATTR, None)
    return copy.deepcopy(src) if src is not None else None
