"""Recording intermediate features with forward hooks, and the learned projections between widths.

A `Tap` hooks the named modules of a model and records, on every forward, each one's output (the
hidden state: first element of a tuple output) and — for attention matching — the query / key
projections of the self-attention inside it, from which `losses.attention_probs` rebuilds the maps. We
rebuild the maps instead of asking the model for them because Hugging Face models return attention
weights only in their eager attention path, and the hooks see any BERT-style block the same way.
"""

from __future__ import annotations

from torch import Tensor, nn

from modelpress.errors import BadInputError
from modelpress.pruning.structured import find_attention

__all__ = ["Tap", "feature_dim", "make_projections", "project"]


def _first(out: object) -> Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out  # type: ignore[return-value]


class Tap:
    """Forward hooks on ``names`` of ``model``; ``hidden[name]`` and ``qk[name] = (q, k, heads)`` hold the
    latest call's tensors. ``close()`` removes every hook (the model is left as it was)."""

    def __init__(self, model: nn.Module, names: list[str], attention: bool) -> None:
        self.hidden: dict[str, Tensor] = {}
        self.qk: dict[str, tuple[Tensor, Tensor, int]] = {}
        self._handles = []
        modules = dict(model.named_modules())
        for name in names:
            block = modules[name]
            self._handles.append(block.register_forward_hook(self._keep_hidden(name)))
            if attention:
                found = find_attention(block)
                if len(found) != 1:
                    raise BadInputError(f"`attention` of `Distill` matches attention maps, but module `{name}` "
                                        f"holds {len(found)} BERT-style self-attentions. Fix: map transformer "
                                        "layers, or set attention: 0.")  # fmt: skip
                att = found[0][1]
                store: dict[str, Tensor] = {}
                self._handles.append(att.query.register_forward_hook(lambda m, i, o, s=store: s.__setitem__("q", o)))
                self._handles.append(att.key.register_forward_hook(self._keep_qk(name, store, att)))

    def _keep_hidden(self, name: str):
        def hook(module: nn.Module, inputs: object, out: object) -> None:
            self.hidden[name] = _first(out)
        return hook

    def _keep_qk(self, name: str, store: dict[str, Tensor], att: nn.Module):
        def hook(module: nn.Module, inputs: object, out: Tensor) -> None:
            self.qk[name] = (store["q"], out, int(att.num_attention_heads))
        return hook

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def feature_dim(t: Tensor) -> int:
    """The width axis of a feature tensor: 1 for conv maps ``(n, C, H, W)``, else the last axis."""
    return 1 if t.dim() == 4 else t.dim() - 1


def project(proj: nn.Module | None, t: Tensor) -> Tensor:
    """``proj`` (a Linear over the width axis) applied to ``t``; ``t`` itself when ``proj`` is None."""
    if proj is None:
        return t
    d = feature_dim(t)
    return proj(t.movedim(d, -1)).movedim(-1, d)


def make_projections(pairs: list[tuple[str, str]], student: dict[str, Tensor],
                     teacher: dict[str, Tensor]) -> nn.ModuleDict:  # fmt: skip
    """One ``Linear(d_student, d_teacher, bias=False)`` per mapped pair whose widths differ, keyed by the
    pair's index (as a string); from one probe forward's features of each model.

    Raises BadInputError when a pair's features differ in more than the width (e.g. spatial size).
    """
    projections = nn.ModuleDict()
    for i, (s_name, t_name) in enumerate(pairs):
        s, t = student[s_name], teacher[t_name]
        ds, dt = s.shape[feature_dim(s)], t.shape[feature_dim(t)]
        rest_s = [x for j, x in enumerate(s.shape) if j != feature_dim(s)]
        rest_t = [x for j, x in enumerate(t.shape) if j != feature_dim(t)]
        if s.dim() != t.dim() or rest_s != rest_t:
            raise BadInputError(f"features of student `{s_name}` {tuple(s.shape)} and teacher `{t_name}` "
                                f"{tuple(t.shape)} differ in more than their width, so no linear projection maps "
                                "one onto the other. Fix: map modules whose outputs have the same size.")  # fmt: skip
        if ds != dt:
            projections[str(i)] = nn.Linear(ds, dt, bias=False)
    return projections
