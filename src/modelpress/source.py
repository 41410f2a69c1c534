"""Where a model's architecture comes from, so that an artifact can rebuild it without pickle.

Every model that modelpress builds carries a *source* — a JSON-able dict attached to the root module:

- ``{"kind": "builtin", "name": "lenet-300-100", "kwargs": {...}}`` — a built-in architecture
  (``modelpress.tasks.models.build(name, **kwargs)``, weights random; they come from the artifact);
- ``{"kind": "hf", "config": {...}, "wrapper": ...}`` — a Hugging Face architecture built from its config
  (never the model's remote code);
- ``{"kind": "module", "class": "torch.nn:Linear", "kwargs": {...}}`` — a ``torch.nn`` or modelpress
  module class built with JSON keyword arguments;
- ``{"kind": "callable", "ref": "pkg.module:function", "kwargs": {...}}`` — a user's factory. It is
  recorded like the others, but an artifact's loader calls it only when trusted
  (``modelpress.load(dir, trust_source=True)``, ``--trust-source``), since calling it runs that code.

The first three are data: an artifact can make modelpress build only those.

Module swaps and changed shapes are recorded by the artifact itself, by comparing with a fresh build.
"""

from __future__ import annotations

import copy
import importlib
from typing import Any

from torch import nn

__all__ = ["attach_source", "get_source", "import_ref"]

_ATTR = "_modelpress_source"


def attach_source(model: nn.Module, source: dict[str, Any]) -> nn.Module:
    """Record ``source`` on ``model`` (in place) and return the model."""
    object.__setattr__(model, _ATTR, copy.deepcopy(source))
    return model


def get_source(model: nn.Module) -> dict[str, Any] | None:
    """The source recorded on ``model``, or None when it was built elsewhere."""
    src = getattr(model, _ATTR, None)
    return copy.deepcopy(src) if src is not None else None


def import_ref(ref: str, what: str) -> Any:
    """The object named by ``"package.module:name"`` (``what`` names it in errors, e.g. "model factory").

    Raises BadInputError when ``ref`` has another form or cannot be imported.
    """
    from modelpress.errors import BadInputError

    module_name, _, attr = str(ref).partition(":")
    if not module_name or not attr:
        raise BadInputError(f"{what} {ref!r} must have the form package.module:name.")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise BadInputError(
            f"cannot import the {what} {ref!r} ({e}). Fix: make its package importable "
            "(pip install -e it, or set PYTHONPATH)."
        ) from None
