"""The `Share` step handler: clustering (Deep Compression), hashing (HashedNets) or tying."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from modelpress.context import StepContext, StepLog
from modelpress.errors import BadInputError
from modelpress.select import Target, targets
from modelpress.sharing.coding import stream_entropies
from modelpress.sharing.config import Share
from modelpress.sharing.modules import CLUSTERED_TYPES, HASHED_TYPES, _Clustered, _Hashed
from modelpress.sharing.tying import tie_blocks

__all__ = ["PAPER_STAGES", "apply_share"]

# Han et al. 2016, Table 1 / Fig. 4: cumulative compression after pruning, + weight sharing, + Huffman.
PAPER_STAGES: dict[str, dict[str, float]] = {
    "lenet-300-100": {"pruning": 12.0, "sharing": 32.0, "entropy coding": 40.0},
    "lenet-5": {"pruning": 12.0, "sharing": 33.0, "entropy coding": 39.0},
}
_ACCEPTS = (nn.Linear, nn.Conv2d)


def _eligible(model: nn.Module, config: Share, ctx: StepContext, log: StepLog) -> list[Target]:
    found, skipped = targets(model, ctx.select, _ACCEPTS, step=f"share ({config.method})",
                             replaced_by="a shared-weight layer")
    log.skipped.extend(skipped)
    kept = []
    for t in found:
        n = t.module.weight.numel()
        if isinstance(t.module, nn.Conv2d) and t.module.padding_mode != "zeros":
            log.skip(t.name, f"padding_mode {t.module.padding_mode!r}: the shared-weight conv pads with zeros only")
        elif n < config.min_weights:
            log.skip(t.name, f"{n} weights < min_weights {config.min_weights}: a codebook would cost more")
        else:
            kept.append(t)
    return kept


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.detach().reshape(1, -1).double(), b.detach().reshape(1, -1).double()))


@contextmanager
def _only_trainable(model: nn.Module, modules: list[nn.Module]) -> Iterator[None]:
    """Train only ``modules``' parameters: layers the step declined keep bit-identical weights."""
    keep = {id(p) for m in modules for p in m.parameters()}
    before = {p: p.requires_grad for p in model.parameters()}
    for p in before:
        p.requires_grad_(id(p) in keep)
    try:
        yield
    finally:
        for p, flag in before.items():
            p.requires_grad_(flag)


def _finetune(model: nn.Module, config: Share, ctx: StepContext, modules: list[nn.Module] | None,
              log: StepLog) -> None:
    from modelpress.tasks.train import train, training_task

    if config.epochs == 0:
        return
    task, note = training_task(ctx.require_task(f"share ({config.method}, epochs {config.epochs})"), config.augment)
    if note:
        log.details["augment"] = note
    with _only_trainable(model, modules) if modules is not None else nullcontext():
        if config.distill:
            losses = _distill(model, config, ctx, task)
        else:
            losses = train(model, task.train, task.loss, epochs=config.epochs, lr=config.lr,
                           batch_size=task.batch_size, seed=ctx.seed, progress=ctx.progress)
    log.details["finetune_losses"] = [round(x, 6) for x in losses]
    log.details["finetune"] = "distillation from the reference" if config.distill else "labels"


def _distill(model: nn.Module, config: Share, ctx: StepContext, task: Any) -> list[float]:
    """Fine-tune against the reference's soft targets (the distillation loop of `modelpress.distillation`:
    same training loop, the teacher's logits computed once per example); only trainable parameters move."""
    from modelpress.distillation import Distill, train_student

    if ctx.reference is None:
        raise BadInputError("`distill` of `Share` learns from the model the recipe started from, and none was "
                            "given. Fix: run the step in a recipe (mp.run), or pass reference=teacher to compress_.")
    kd = Distill(alpha=config.alpha, temperature=config.temperature, epochs=config.epochs, lr=config.lr,
                 batch_size=task.batch_size)
    return train_student(model, ctx.reference, task, kd, seed=ctx.seed, progress=ctx.progress).epoch_losses


def _bytes(model: nn.Module) -> int | None:
    from modelpress.measure.size import artifact_bytes
    from modelpress.source import get_source

    if get_source(model) is None:
        return None
    try:
        return artifact_bytes(model)
    except BadInputError:  # a model the artifact cannot store (e.g. a user's custom layer): no stage sizes
        return None


def _reference_bytes(ctx: StepContext) -> int | None:
    if ctx.baseline is not None:
        return int(ctx.baseline.size_bytes)
    return _bytes(ctx.reference) if ctx.reference is not None else None


def _stages(model: nn.Module, swapped: list[_Clustered], bytes_in: int | None, config: Share,
            ctx: StepContext) -> dict[str, Any]:
    """Artifact bytes before the step, with fixed-width indices and entropy-coded, and the cumulative
    ratios to the reference model's artifact beside Han et al.'s where the model is theirs."""
    for m in swapped:
        m.entropy = False
    fixed = _bytes(model)
    for m in swapped:
        m.entropy = True
    coded = _bytes(model)
    for m in swapped:
        m.entropy = config.entropy
    ref = _reference_bytes(ctx)
    from modelpress.source import get_source

    paper = PAPER_STAGES.get((get_source(model) or {}).get("name", ""), {})
    rows = []
    for stage, b in (("pruning", bytes_in), ("sharing", fixed), ("entropy coding", coded)):
        row: dict[str, Any] = {"stage": stage, "bytes": b}
        if ref and b:
            row["ratio"] = round(ref / b, 2)
        if stage in paper:
            row["paper_ratio"] = paper[stage]
        rows.append(row)
    rows[0]["stage"] = "before share (earlier steps: pruning in deep-compression)"
    return {"reference_bytes": ref, "stages": rows,
            "paper": "Han et al. 2016, Deep Compression" if paper else None}


def _cluster(model: nn.Module, config: Share, ctx: StepContext, log: StepLog) -> None:
    found = _eligible(model, config, ctx, log)
    bytes_in = _bytes(model)
    layers: dict[str, dict[str, Any]] = {}
    swapped: list[_Clustered] = []
    for t in found:
        is_conv = isinstance(t.module, nn.Conv2d)
        new = CLUSTERED_TYPES[t.base].from_float(t.module, config.codes_for(is_conv), init=config.init,
                                                 seed=config.seed, entropy=config.entropy, per=config.per)
        layers[t.name] = {"codes": new.codes, "bits": config.bits_for(is_conv), "zero_code": new.zero_code,
                          "per": config.per, "codebook_values": new.codebook.numel(),
                          "weights": t.module.weight.numel(),
                          "zeros": round(float((new.indices == 0).float().mean()) if new.zero_code else 0.0, 6),
                          "cosine_before_finetune": round(_cosine(t.module.weight, new.weight), 6)}
        model.set_submodule(t.name, new)
        log.swap(t.name, t.module, new)
        swapped.append(new)
    if not swapped:
        log.details["note"] = "no Linear / Conv2d layer selected; nothing clustered"
        return
    _finetune(model, config, ctx, swapped, log)
    for m in swapped:
        m.round_codebook(config.codebook)
        m.round_bias(config.bias)
    for name, m in zip(layers, swapped, strict=True):
        _, meta = m.pack()
        layers[name]["streams"] = stream_entropies(m.indices, m.codes, meta["idx"])
        layers[name]["codebook"] = meta["cb"]
    log.details["layers"] = layers
    log.details.update(_stages(model, swapped, bytes_in, config, ctx))
    log.details["artifact_holds"] = "codebook + entropy-coded indices per clustered layer"
    log.details["runtime_holds"] = "decoded weights in standard Linear / Conv2d layers (fp32 values on the codebook)"


def _hash(model: nn.Module, config: Share, ctx: StepContext, log: StepLog) -> None:
    swapped: list[_Hashed] = []
    layers: dict[str, dict[str, Any]] = {}
    for i, t in enumerate(_eligible(model, config, ctx, log)):
        new = HASHED_TYPES[t.base].from_float(t.module, config.ratio, seed=config.seed * 1_000_003 + i)
        layers[t.name] = {"virtual": t.module.weight.numel(), "buckets": new.buckets.numel(), "seed": new.seed,
                          "cosine_before_finetune": round(_cosine(t.module.weight, new.weight), 6)}
        model.set_submodule(t.name, new)
        log.swap(t.name, t.module, new)
        swapped.append(new)
    if not swapped:
        log.details["note"] = "no Linear / Conv2d layer selected; nothing hashed"
        return
    _finetune(model, config, ctx, swapped, log)
    log.details["layers"] = layers
    log.details["artifact_holds"] = "buckets + seed per hashed layer"
    log.details["runtime_holds"] = "decoded virtual weights in standard Linear / Conv2d layers"


def _tie(model: nn.Module, config: Share, ctx: StepContext, log: StepLog) -> None:
    before = sum(p.numel() for p in model.parameters())
    groups = tie_blocks(model, config.blocks, config.unique, config.tie_init)
    _finetune(model, config, ctx, None, log)
    log.details["groups"] = groups
    log.details["params_before"] = before
    log.details["params_after"] = sum(p.numel() for p in model.parameters())  # shared tensors once


def apply_share(model: nn.Module, config: Share, ctx: StepContext) -> StepLog:
    """Share weights in ``model`` in place as ``config`` says; return what was done.

    cluster / hash swap the selected Linear / Conv2d layers (``modelpress.select.targets``) for
    `ClusteredLinear` / `ClusteredConv2d` or `HashedLinear` / `HashedConv2d`, then, with ``epochs``,
    fine-tune only those layers' codebooks / buckets and biases (every other weight stays bit-identical).
    ``details``: ``layers`` {name: codes, cosine to the original weight before fine-tuning, the index
    streams with their coder, bytes and empirical entropy}; for cluster also ``stages`` (artifact bytes
    and cumulative ratio to the reference after pruning, + sharing, + entropy coding, beside Han et al.
    2016's for LeNet-300-100 / LeNet-5). tie: ``groups``, ``params_before`` / ``params_after``.
    Raises BadInputError for a wrong config type, a tie of mismatched blocks, or ``epochs`` without a task.
    """
    if not isinstance(config, Share):
        raise BadInputError(f"`config` of `apply_share` must be a Share; got {type(config).__name__}.")
    log = StepLog("share", config.to_dict())
    was_training = model.training
    {"cluster": _cluster, "hash": _hash, "tie": _tie}[config.method](model, config, ctx, log)
    model.train(was_training)
    return log
