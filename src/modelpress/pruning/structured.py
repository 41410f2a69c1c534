"""Structured pruning: remove whole neurons, channels, attention heads and FFN neurons.

We build on torch-pruning's `DependencyGraph` (tp 1.6.1, checked on torch 2.13 here) because it traces
the model and couples every tensor that must shrink together — a conv's BatchNorm, all convolutions
joined by residual additions, concatenations, the next layer's input channels, and q/k/v/output of an
attention block — and then physically slices the weights. We keep our own driver on top of it (rather
than tp's ``MetaPruner``) so that the fraction removed per layer is exact, global ranking, rounding and
per-layer overrides follow `Prune`'s meaning, the model's outputs are never pruned, and groups that
touch a module tp cannot handle are skipped and reported instead of corrupting the model.

Three steps: :func:`plan_structured` (score and choose), then :func:`apply_plan` (remove — the result
is a smaller dense model) or :func:`zero_plan` (zero the same channels in place — the equivalent
masked model, used by the tests to check outputs agree).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import Tensor, nn
from torch.nn.utils import parametrize

from modelpress.context import Skipped
from modelpress.pruning.config import Prune
from modelpress.pruning.masks import WeightMask, lowest_mask, n_pruned
from modelpress.select import Selector, targets

__all__ = ["StructuredPlan", "Unit", "apply_plan", "find_attention", "plan_structured", "zero_plan"]

# Module types torch-pruning has pruning functions for (parameters living in any other module type
# make us skip every group that touches them).
_TP_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm,
    nn.modules.instancenorm._InstanceNorm, nn.Embedding, nn.PReLU,
)  # fmt: skip
_TAYLOR_BATCHES = 4  # batches of the task's train split whose summed gradients score channels


@dataclass
class Unit:
    """One prunable set of coupled channels, rooted at the output of module ``name``.

    ``kind``: "channel" / "neuron" / "ffn" (units are channels) or "head" (units are heads of
    ``head_size`` channels each). ``size``: units before pruning; ``remove``: unit indices to remove.
    """

    name: str
    kind: str
    module: nn.Module
    size: int
    head_size: int = 1
    scores: Tensor | None = None
    sparsity: float = 0.0
    remove: list[int] = field(default_factory=list)
    attention: nn.Module | None = None

    @property
    def channel_idxs(self) -> list[int]:
        """Indices of the root's output channels to remove."""
        h = self.head_size
        return sorted(i * h + j for i in self.remove for j in range(h))

    @property
    def fn(self) -> Callable:
        if isinstance(self.module, nn.modules.conv._ConvNd):
            return tp.prune_conv_out_channels
        return tp.prune_linear_out_channels


@dataclass
class StructuredPlan:
    """What :func:`plan_structured` chose: units, skipped modules, and the graph that applies them."""

    graph: Any
    units: list[Unit]
    skipped: list[Skipped]
    notes: list[str] = field(default_factory=list)

    def kept(self) -> dict[str, dict[str, int]]:
        """Per unit: ``{"kind", "before", "after"}`` (after = units kept)."""
        return {u.name: {"kind": u.kind, "before": u.size, "after": u.size - len(u.remove)} for u in self.units}


def find_attention(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """BERT-style self-attention modules: Linear ``query``/``key``/``value`` and int attributes
    ``num_attention_heads`` and ``attention_head_size`` (Hugging Face BERT, RoBERTa, MiniLM, ...)."""
    found = []
    for name, m in model.named_modules():
        if all(isinstance(getattr(m, a, None), nn.Linear) for a in ("query", "key", "value")) and all(
            isinstance(getattr(m, a, None), int) for a in ("num_attention_heads", "attention_head_size")
        ):
            found.append((name, m))
    return found


def _ffn_linears(model: nn.Module) -> list[tuple[str, nn.Module]]:
    # The FFN's first Linear in Hugging Face encoders lives in a `*Intermediate` module as `dense`.
    return [
        (f"{n}.dense" if n else "dense", m.dense)
        for n, m in model.named_modules()
        if type(m).__name__.endswith("Intermediate") and isinstance(getattr(m, "dense", None), nn.Linear)
    ]


def _blocked(model: nn.Module) -> tuple[dict[int, str], dict[int, str]]:
    """Modules and parameters tp must not touch: ``{id: why}`` for modules, ``{id(param): module}``."""
    mods: dict[int, str] = {}
    params: dict[int, str] = {}
    for name, m in model.named_modules():
        own = list(m.parameters(recurse=False))
        if parametrize.is_parametrized(m):
            kinds = {type(p).__name__ for ps in m.parametrizations.values() for p in ps}
            if kinds - {WeightMask.__name__}:
                mods[id(m)] = f"parametrized by {sorted(kinds)}; torch-pruning cannot slice it"
        elif own and not isinstance(m, _TP_TYPES):
            mods[id(m)] = f"custom module type {type(m).__name__}: torch-pruning has no pruner for it"
        for p in own:
            params[id(p)] = name
    return mods, params


def _group_problem(graph, group, blocked: dict[int, str], param_owner: dict[int, str],
                   modules: dict[str, nn.Module]) -> tuple[str, str] | None:  # fmt: skip
    """``("outputs", "")`` if the group reaches the model's outputs, ``(module, why)`` if it touches a
    blocked module (or a parameter of one), else None."""
    names = {id(m): n for n, m in modules.items()}
    for dep, _ in group:
        node = dep.target
        # A node with no consumers produces a model output (tp adds an OUTPUT node only when the
        # output passes through a further op): pruning its channels would change the output shape.
        shrinks = graph.is_out_channel_pruning_fn(dep.handler)
        if node.type == tp.ops.OPTYPE.OUTPUT or (shrinks and not node.outputs):
            return ("outputs", "")
        if node.type == tp.ops.OPTYPE.PARAMETER:
            owner = param_owner.get(id(node.module), "?")
            why = blocked.get(id(modules.get(owner)), "a bare parameter torch-pruning cannot place")
            return (owner, why)
        if id(node.module) in blocked:
            return (names.get(id(node.module), "?"), blocked[id(node.module)])
    return None


def _importance(criterion: str) -> Callable:
    # normalizer=None: raw scores; we normalise ourselves for global ranking.
    if criterion == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2, normalizer=None)
    if criterion == "bn_scale":
        return tp.importance.BNScaleImportance(normalizer=None)
    if criterion == "taylor":
        return tp.importance.GroupTaylorImportance(normalizer=None)
    return tp.importance.GroupMagnitudeImportance(p=1, normalizer=None)


def _taylor_grads(model: nn.Module, task: Any) -> None:
    """Accumulate ∂L/∂w over a few training batches (eval mode: BatchNorm statistics stay put)."""
    model.zero_grad(set_to_none=True)
    with torch.enable_grad():
        for i, (inputs, targets) in enumerate(task.train.batches(task.batch_size)):
            if i >= _TAYLOR_BATCHES:
                break
            task.loss(model(*inputs), targets).backward()


def _score(unit: Unit, group, criterion: str, notes: list[str]) -> Tensor:
    imp = _importance(criterion)(group)
    if (imp is None or len(imp) == 0) and criterion == "bn_scale":
        notes.append(f"{unit.name}: no BatchNorm in its group; ranked by L1 instead of bn_scale")
        imp = _importance("l1")(group)
    if imp is None or len(imp) == 0:
        imp = torch.zeros(unit.size * unit.head_size)
    imp = imp.detach().float().cpu()
    return imp.view(unit.size, unit.head_size).mean(1) if unit.head_size > 1 else imp


def _count(size: int, n_remove: int, round_to: int) -> int:
    """Units to remove given ``n_remove`` wanted: the kept count rounded to a multiple of ``round_to``
    (nearest; at least ``round_to``, at most ``size``), and at least one unit kept."""
    kept = size - n_remove
    if round_to > 1 and size > round_to:
        kept = min(size, max(round_to, round_to * int(kept / round_to + 0.5)))
    return size - max(kept, 1)


def _lowest_indices(scores: Tensor, k: int) -> list[int]:
    """The positions of the ``k`` lowest scores (ties by position), ascending."""
    return (~lowest_mask(scores, k)).nonzero().flatten().tolist()


def plan_structured(model: nn.Module, config: Prune, example_inputs: tuple[Tensor, ...], *,
                    select: Selector | None = None, task: Any = None) -> StructuredPlan:  # fmt: skip
    """Score the units of ``model`` and choose which to remove; changes nothing yet.

    ``example_inputs``: a batch for tracing (the model is traced in eval mode). ``task`` is needed for
    ``criterion="taylor"``. Units whose root module ``select`` rejects are left alone.
    """
    was_training = model.training
    model.eval()
    blocked, param_owner = _blocked(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tp warns about unwrapped parameters; we report them ourselves
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)
    modules = dict(model.named_modules())
    accept = (lambda n, m: True) if select is None else select
    candidates: list[Unit] = []
    pre_skipped: list[Skipped] = []
    if config.structure == "head":
        for name, att in find_attention(model):
            if accept(name, att) or accept(f"{name}.query", att.query):
                candidates.append(Unit(name, "head", att.query, att.num_attention_heads, att.attention_head_size,
                                       sparsity=config.sparsity_for(name), attention=att))  # fmt: skip
        for name, m in model.named_modules():
            if isinstance(m, nn.MultiheadAttention) and accept(name, m):
                pre_skipped.append(Skipped(name, "nn.MultiheadAttention packs q/k/v in one tensor; head "
                                                 "pruning handles BERT-style attention (query/key/value)"))  # fmt: skip
        if config.ffn_sparsity > 0:
            for name, lin in _ffn_linears(model):
                if accept(name, lin):
                    s = config.sparsity_for(name, default=config.ffn_sparsity)
                    candidates.append(Unit(name, "ffn", lin, lin.out_features, sparsity=s))
    else:
        kind = nn.Linear if config.structure == "neuron" else nn.modules.conv._ConvNd
        found, not_handled = targets(model, select, (kind,), step=f"{config.structure} pruning")
        # layers of other standard types are pruned as members of the groups they sit in; a custom
        # layer that no group reaches is still reported
        pre_skipped += [s for s in not_handled if not isinstance(modules.get(s.module), _TP_TYPES)]
        for t in found:
            m = t.module
            if hasattr(m, "transposed") and m.transposed:
                pre_skipped.append(Skipped(t.name, "transposed convolutions are not channel-pruned"))
                continue
            size = m.out_features if isinstance(m, nn.Linear) else m.out_channels
            candidates.append(Unit(t.name, config.structure, m, size, sparsity=config.sparsity_for(t.name)))
    if config.criterion == "taylor":
        if task is None:
            from modelpress.errors import bad_value

            raise bad_value("criterion", "Prune", "given a task for 'taylor' (gradients need data)", "taylor",
                            "pass task= or use criterion 'l1'.")  # fmt: skip
        _taylor_grads(model, task)
    units: list[Unit] = []
    skipped: list[Skipped] = list(pre_skipped)
    notes: list[str] = []
    seen: set[int] = set()
    for unit in candidates:
        if id(unit.module) in seen:
            continue
        group = graph.get_pruning_group(unit.module, unit.fn, list(range(unit.size * unit.head_size)))
        for dep, _ in group:
            if graph.is_out_channel_pruning_fn(dep.handler) and isinstance(dep.target.module, nn.Module):
                seen.add(id(dep.target.module))
        problem = _group_problem(graph, group, blocked, param_owner, modules)
        if problem is not None:
            if problem[0] != "outputs":  # the model's outputs are never pruned, silently by design
                skipped.append(Skipped(problem[0], f"{problem[1]} (so `{unit.name}` was not pruned)"))
            continue
        unit.scores = _score(unit, group, config.criterion, notes)
        units.append(unit)
    if config.criterion == "taylor":
        model.zero_grad(set_to_none=True)
    _choose(units, config)
    model.train(was_training)
    dedup: dict[str, Skipped] = {}
    for s in skipped[len(pre_skipped):] + skipped[:len(pre_skipped)]:  # a group's reason is the specific one
        dedup.setdefault(s.module, s)
    return StructuredPlan(graph, units, list(dedup.values()), notes)


def _choose(units: list[Unit], config: Prune) -> None:
    """Fill ``unit.remove``: per layer, or by one threshold over normalised scores (scope "global";
    heads, FFN neurons and channels are ranked separately, units with a per_layer override locally)."""
    overridden = {u.name for u in units if config.override_for(u.name) is not None}
    local = [u for u in units if config.scope == "layer" or u.name in overridden]
    for u in local:
        rt = 1 if u.kind == "head" else config.round_to
        u.remove = _lowest_indices(u.scores, _count(u.size, n_pruned(u.size, u.sparsity), rt))
    rest = [u for u in units if u not in local]
    for kind in {u.kind for u in rest}:
        pool = [u for u in rest if u.kind == kind]
        s = config.ffn_sparsity if kind == "ffn" else config.sparsity
        normed = [u.scores / u.scores.mean().clamp(min=1e-12) for u in pool]
        flat = torch.cat(normed)
        k = n_pruned(flat.numel(), s)
        if k == 0:
            continue
        cut = ~lowest_mask(flat, k)
        start = 0
        for u, sc in zip(pool, normed, strict=True):
            n_cut = int(cut[start : start + u.size].sum())
            start += u.size
            rt = 1 if u.kind == "head" else config.round_to
            u.remove = _lowest_indices(sc, _count(u.size, n_cut, rt))


def apply_plan(plan: StructuredPlan) -> None:
    """Physically remove the planned units (the model shrinks; heads update their module attributes)."""
    for u in plan.units:
        if not u.remove:
            continue
        group = plan.graph.get_pruning_group(u.module, u.fn, u.channel_idxs)
        group.prune()
        if u.attention is not None:
            # tp slices q/k/v/output but does not know the head count: update it so forward reshapes
            # correctly (transformers 5.x BERT uses attention_head_size in view(); all_head_size and
            # num_attention_heads are kept consistent for anyone who reads them). The shared config
            # object is left alone: head counts may now differ per layer.
            att = u.attention
            att.num_attention_heads = u.size - len(u.remove)
            if hasattr(att, "all_head_size"):
                att.all_head_size = att.num_attention_heads * att.attention_head_size


@torch.no_grad()
def zero_plan(plan: StructuredPlan) -> None:
    """Zero, in place, every weight the plan would remove — the masked model equivalent to
    :func:`apply_plan`'s (outputs agree to float rounding)."""
    for u in plan.units:
        if not u.remove:
            continue
        group = plan.graph.get_pruning_group(u.module, u.fn, u.channel_idxs)
        for dep, idxs in group:
            m = dep.target.module
            if not plan.graph.is_out_channel_pruning_fn(dep.handler) or not isinstance(m, nn.Module):
                continue
            ix = torch.as_tensor([int(i) for i in idxs], dtype=torch.long)
            if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm)):
                if getattr(m, "weight", None) is not None:
                    m.weight[ix] = 0
                if getattr(m, "bias", None) is not None:
                    m.bias[ix] = 0
