"""Reading a bare weights file (a state dict) without ever unpickling arbitrary objects."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
from torch import Tensor, nn

from modelpress.errors import BadInputError

__all__ = ["check_finite", "check_shapes", "read_weights"]

_FIX = ("Fix: save the weights as a state dict (`torch.save(model.state_dict(), 'model.pt')`) "
        "or as safetensors (`safetensors.torch.save_file(model.state_dict(), 'model.safetensors')`).")
# Checkpoints often wrap the state dict one level down under one of these keys.
_WRAPPERS = ("state_dict", "model_state_dict", "model")


def _is_tensor_dict(obj: object) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())


def _reason(e: Exception) -> str:
    """The informative line of torch's weights-only refusal (it names the refused global), not its advice
    to retry with weights_only=False."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return f"it contains the Python object `{found.group(1)}`, which is not plain tensor data"
    # Drop torch's boilerplate (the advice to retry unsafely, the docs link); keep the actual cause.
    noise = ("Weights only load failed", "Check the documentation", "Please file an issue", "(1)", "(2)")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(noise)]
    return lines[0].split(". ")[0][:300].rstrip(".") if lines else "the file is not a torch.save file or is damaged"


def check_finite(tensors: dict[str, Tensor], where: str) -> None:
    """Refuse weights holding NaN or Inf: a model loaded with them computes garbage without a sign.

    ``where`` names the file or artifact in the message. Raises BadInputError naming the first tensor
    with non-finite values, how many it holds, and how many tensors are affected.
    """
    bad = []
    for name, t in tensors.items():
        if (t.is_floating_point() or t.is_complex()) and t.numel() and not bool(torch.isfinite(t).all()):
            bad.append((name, int((~torch.isfinite(t)).sum()), t.numel()))
    if bad:
        name, count, total = bad[0]
        more = f" ({len(bad) - 1} more tensors too)" if len(bad) > 1 else ""
        raise BadInputError(f"tensor `{name}` in {where} holds {count} non-finite values (NaN or Inf) of "
                            f"{total}{more}. Fix: load weights saved before training diverged, or repair them.")


def check_shapes(model: nn.Module, state: dict[str, Tensor], where: str) -> None:
    """Refuse tensors of ``state`` whose shape differs from the same tensor of ``model``.

    One line naming the tensor and both shapes (torch's own error is several lines, and its first line
    names neither). Raises BadInputError for the first mismatch.
    """
    for key, e in model.state_dict().items():  # in the model's order: the first layer that differs
        t = state.get(key)
        if t is not None and tuple(e.shape) != tuple(t.shape):
            raise BadInputError(f"tensor `{key}` in {where} has shape {list(t.shape)}, but the model "
                                f"({type(model).__name__}) expects {list(e.shape)}. Fix: use weights saved "
                                "from this architecture.")


def _state_of(obj: object) -> dict[str, Tensor] | None:
    if _is_tensor_dict(obj):
        return dict(obj)  # type: ignore[arg-type]
    if isinstance(obj, dict):
        for key in _WRAPPERS:
            if _is_tensor_dict(obj.get(key)):
                return dict(obj[key])
    return None


def read_weights(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict ``{name: tensor}`` from ``.safetensors`` or ``.pt`` / ``.pth``.

    ``.pt`` / ``.pth`` files are read only with ``torch.load(weights_only=True)``: its restricted
    unpickler builds tensors and plain containers and refuses every other object, so a malicious file
    cannot run code. A checkpoint holding the state dict under ``state_dict``, ``model_state_dict`` or
    ``model`` is unwrapped. Raises BadInputError for a missing file, another suffix, a pickle that
    ``weights_only`` refuses, content that is not a ``{str: Tensor}`` dict (naming what was found), or
    a tensor with NaN / Inf values (`check_finite`).
    """
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"weights file {str(p)!r} does not exist.")
    suffix = p.suffix.lower()
    if suffix == ".safetensors":
        # safetensors: a JSON header plus raw buffers — nothing to execute, by design.
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(p))
        except (SafetensorError, OSError, ValueError) as e:
            raise BadInputError(f"{str(p)!r} is not a valid safetensors file ({e}).") from None
        check_finite(state, repr(str(p)))
        return state
    if suffix not in (".pt", ".pth"):
        raise BadInputError(f"{str(p)!r}: weights must be .safetensors, .pt or .pth; got {suffix or 'no suffix'!r}. "
                            + _FIX)
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError, EOFError) as e:
        raise BadInputError(f"{str(p)!r} could not be read safely with torch.load(weights_only=True): "
                            f"{_reason(e)}. modelpress never unpickles arbitrary objects. " + _FIX) from None
    state = _state_of(obj)
    if state is not None:
        check_finite(state, repr(str(p)))
        return state
    if isinstance(obj, dict):
        kinds = sorted({type(v).__name__ for v in obj.values()})
        found = f"a dict with keys {sorted(map(str, obj))[:8]} and values of type {kinds}"
    else:
        found = f"a {type(obj).__name__}"
    raise BadInputError(f"{str(p)!r} holds {found}, not a state dict of tensors. " + _FIX)
