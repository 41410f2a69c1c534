"""Finding a model's transformer layers, and the uniform student → teacher map of feature modules."""

from __future__ import annotations

from torch import nn

from modelpress.distillation.losses import uniform_layer_map
from modelpress.errors import BadInputError
from modelpress.pruning.structured import find_attention

__all__ = ["feature_map", "transformer_layers"]


def transformer_layers(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """The ``nn.ModuleList`` of transformer blocks (each holding one BERT-style self-attention, as
    `find_attention` finds them) and its qualified name, e.g. ``("encoder.encoder.layer", ...)`` for
    the MiniLM classifier; None for a model without one."""
    attentions = [m for _, m in find_attention(model)]
    for name, m in model.named_modules():
        if isinstance(m, nn.ModuleList) and len(m) and all(
            sum(a in attentions for a in block.modules()) == 1 for block in m
        ):
            return name, m
    return None


def feature_map(student: nn.Module, teacher: nn.Module,
                layer_map: tuple[tuple[str, str], ...] | None) -> list[tuple[str, str]]:  # fmt: skip
    """``(student module, teacher module)`` pairs whose outputs are matched: ``layer_map`` when given (each
    name must exist), else the transformer layers of both mapped by `uniform_layer_map`.

    Raises BadInputError for a name that is not a module, or for no map on a model without transformer
    layers (CNNs and MLPs need ``layer_map``).
    """
    if layer_map is not None:
        for names, model, who in ((dict(layer_map), student, "student"), (dict(layer_map).values(), teacher, "teacher")):
            mods = dict(model.named_modules())
            missing = [n for n in names if n not in mods]
            if missing:
                raise BadInputError(f"`layer_map` of `Distill` names {missing}, not modules of the {who}. "
                                    f"Fix: use names from the {who}'s named_modules(), e.g. {list(mods)[1:4]}.")
        return list(layer_map)
    found_s, found_t = transformer_layers(student), transformer_layers(teacher)
    if found_s is None or found_t is None:
        raise BadInputError("`hidden` / `attention` of `Distill` need a `layer_map` for models without "
                            "transformer layers. Fix: give layer_map {student module: teacher module}, e.g. "
                            "{layer3: layer3}.")  # fmt: skip
    (ps, ls), (pt, lt) = found_s, found_t
    return [(f"{ps}.{s}", f"{pt}.{t}") for s, t in uniform_layer_map(len(ls), len(lt))]
