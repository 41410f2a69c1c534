"""The built-in reference architectures, built by name with random weights and a source attached.

``build(name, **kwargs)`` returns an ``nn.Module`` whose ``model(*inputs)`` gives logits
``(batch, num_classes)``. Every built model carries ``{"kind": "builtin", "name": ..., "kwargs": ...}``
(:func:`modelpress.source.attach_source`) so that an artifact can rebuild the architecture from JSON;
:func:`rebuild` does that for every source kind modelpress writes.

- ``lenet-300-100``: flatten, Linear 784-300-100-10 with ReLU (266,610 params on 1×28×28).
- ``mlp-800-800``: flatten, Linear 784-800-800-10 with ReLU (1,276,810 params on 1×28×28), optional
  dropout after each hidden layer — the student of Hinton et al. 2015's MNIST distillation experiment.
- ``mlp-1200-1200``: the same at 1200 wide (2,395,210 params on 1×28×28), the width of their teacher.
- ``lenet-5``: the Caffe LeNet of Deep Compression — conv 20 5×5, max-pool 2, conv 50 5×5, max-pool 2,
  fc 500 + ReLU, fc 10 (431,080 params on 1×28×28). Needs inputs of at least 16×16.
- ``resnet-s``: a small residual CNN with batch norm for 28×28 grayscale (3 stages × 2 basic blocks at
  32 / 64 / 128 channels; 696,042 params on 1×28×28).
- ``minilm-l6``: all-MiniLM-L6-v2 + mean pooling + a linear head (:mod:`modelpress.tasks.minilm`).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from modelpress.errors import BadInputError, bad_value
from modelpress.source import attach_source

__all__ = ["MLP800800", "MLP12001200", "MODEL_NAMES", "BasicBlock", "LeNet5", "LeNet300100", "ResNetS", "build", "example_inputs", "rebuild"]

MODEL_NAMES: tuple[str, ...] = (
    "lenet-300-100", "mlp-800-800", "mlp-1200-1200", "lenet-5", "resnet-s", "minilm-l6")
# Keyword arguments a rebuild from an artifact always uses: the artifact holds every weight, so
# pretrained weights are never read only to be overwritten.
_REBUILD_KWARGS: dict[str, dict[str, Any]] = {"minilm-l6": {"pretrained": False}}


def _shape(input_shape: Sequence[int], owner: str) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise bad_value("input_shape", owner, "(channels, height, width) of positive ints", input_shape)
    return shape  # type: ignore[return-value]


def _classes(num_classes: int, owner: str) -> int:
    if int(num_classes) != num_classes or num_classes < 2:
        raise bad_value("num_classes", owner, "an int >= 2", num_classes)
    return int(num_classes)


class LeNet300100(nn.Module):
    """Flatten → fc1 (in→300) → ReLU → fc2 (300→100) → ReLU → fc3 (100→classes).

    Input ``(n, C, H, W)`` float; output logits ``(n, num_classes)``.
    """

    def __init__(self, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10) -> None:
        super().__init__()
        c, h, w = _shape(input_shape, "lenet-300-100")
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(c * h * w, 300)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(300, 100)
        self.relu2 = nn.ReLU()
        self.fc3 = nn.Linear(100, _classes(num_classes, "lenet-300-100"))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc3(self.relu2(self.fc2(self.relu1(self.fc1(self.flatten(x))))))


class _TwoHiddenMLP(nn.Module):
    """Flatten → fc1 (in→H) → ReLU → [dropout] → fc2 (H→H) → ReLU → [dropout] → fc3 (H→classes), with
    the hidden width H = ``HIDDEN`` of the subclass.

    ``dropout`` in [0, 1): the drop probability after each hidden layer (0: none, no Dropout module).
    Input ``(n, C, H, W)`` float; output logits ``(n, num_classes)``.
    """

    HIDDEN = 0
    NAME = ""

    def __init__(self, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10, dropout: float = 0.0) -> None:
        super().__init__()
        c, h, w = _shape(input_shape, self.NAME)
        if not 0 <= dropout < 1:
            raise bad_value("dropout", self.NAME, "a probability in [0, 1)", dropout)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(c * h * w, self.HIDDEN)
        self.relu1 = nn.ReLU()
        self.drop1: nn.Module = nn.Dropout(dropout) if dropout else nn.Identity()
        self.fc2 = nn.Linear(self.HIDDEN, self.HIDDEN)
        self.relu2 = nn.ReLU()
        self.drop2: nn.Module = nn.Dropout(dropout) if dropout else nn.Identity()
        self.fc3 = nn.Linear(self.HIDDEN, _classes(num_classes, self.NAME))

    def forward(self, x: Tensor) -> Tensor:
        x = self.drop1(self.relu1(self.fc1(self.flatten(x))))
        return self.fc3(self.drop2(self.relu2(self.fc2(x))))


class MLP800800(_TwoHiddenMLP):
    """784-800-800-10: Hinton et al. 2015's distillation student (146 MNIST test errors on labels alone,
    74 distilled). See `_TwoHiddenMLP` for the layers and ``dropout``."""

    HIDDEN = 800
    NAME = "mlp-800-800"


class MLP12001200(_TwoHiddenMLP):
    """784-1200-1200-10: the width of Hinton et al. 2015's MNIST teacher (which also had dropout and
    jittered inputs). See `_TwoHiddenMLP` for the layers and ``dropout``."""

    HIDDEN = 1200
    NAME = "mlp-1200-1200"


class LeNet5(nn.Module):
    """Caffe LeNet (Deep Compression's "LeNet-5"): conv1 20@5×5 → pool → conv2 50@5×5 → pool →
    fc1 500 → ReLU → fc2. As in Caffe's ``lenet_train_test.prototxt`` there is no ReLU after the convs.

    Input ``(n, C, H, W)`` with H, W >= 16; output logits ``(n, num_classes)``.
    Raises BadInputError for smaller inputs (e.g. 8×8 digits).
    """

    def __init__(self, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10) -> None:
        super().__init__()
        c, h, w = _shape(input_shape, "lenet-5")
        oh, ow = ((h - 4) // 2 - 4) // 2, ((w - 4) // 2 - 4) // 2
        if oh < 1 or ow < 1:
            raise bad_value(
                "input_shape",
                "lenet-5",
                "at least 16×16 pixels (two 5×5 convs and two 2×2 pools)",
                tuple(input_shape),
                "use lenet-300-100 for small images such as the 8×8 digits task.",
            )
        self.conv1 = nn.Conv2d(c, 20, 5)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(50 * oh * ow, 500)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(500, _classes(num_classes, "lenet-5"))

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool2(self.conv2(self.pool1(self.conv1(x))))
        return self.fc2(self.relu(self.fc1(self.flatten(x))))


class BasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN plus a shortcut (1×1 conv + BN when the shape changes), then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(y + self.shortcut(x))


class ResNetS(nn.Module):
    """A small ResNet for 28×28 grayscale: stem conv3×3 + BN + ReLU, three stages of ``blocks``
    basic blocks at ``widths`` channels with strides 1/2/2, global average pool, fc.

    The default widths 32 / 64 / 128 (twice CIFAR ResNet-20's) are chosen for CPU latency: oneDNN and
    onnxruntime run fp32 convs on AVX-512 in blocks of 16 channels, so a net at 16 / 32 / 64 pruned to
    8 / 24 / 48 channels ran far below peak (measured: latency fell 0.4-0.6× as much as its MACs), while
    the same pruning ratio from 32 / 64 / 128 lands on efficient widths.

    Input ``(n, C, H, W)``; output logits ``(n, num_classes)``.
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        widths: Sequence[int] = (32, 64, 128),
        blocks: int = 2,
    ) -> None:
        super().__init__()
        c, _, _ = _shape(input_shape, "resnet-s")
        widths = tuple(int(w) for w in widths)
        if len(widths) != 3 or min(widths) < 1:
            raise bad_value("widths", "resnet-s", "three positive channel counts", widths)
        if int(blocks) != blocks or blocks < 1:
            raise bad_value("blocks", "resnet-s", "an int >= 1", blocks)
        self.stem = nn.Sequential(
            nn.Conv2d(c, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        stages = []
        cin = widths[0]
        for cout, stride in zip(widths, (1, 2, 2), strict=True):
            stage = [BasicBlock(cin, cout, stride)] + [BasicBlock(cout, cout, 1) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
            cin = cout
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(cin, _classes(num_classes, "resnet-s"))
        for m in self.modules():  # He init for ReLU nets; zero-init the last BN of each block (faster start)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.flatten(self.pool(x)))


def _jsonable(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: [int(x) for x in v] if isinstance(v, (tuple, list)) else v for k, v in kwargs.items()}


def build(name: str, **kwargs: Any) -> nn.Module:
    """A built-in architecture with random weights and its source attached.

    ``kwargs``: ``input_shape`` (C, H, W) and ``num_classes`` for the CNN/MLP models (``widths``,
    ``blocks`` for resnet-s, ``dropout`` for the two MLPs); ``num_classes`` and ``pretrained`` for minilm-l6.
    Raises BadInputError for an unknown name or bad kwargs.
    """
    if name not in MODEL_NAMES:
        raise bad_value("name", "build", f"one of {list(MODEL_NAMES)}", name)
    cls: Any
    if name == "minilm-l6":
        from modelpress.tasks.minilm import build_minilm

        return build_minilm(**kwargs)
    cls = {"lenet-300-100": LeNet300100, "mlp-800-800": MLP800800, "mlp-1200-1200": MLP12001200, "lenet-5": LeNet5,
           "resnet-s": ResNetS}[name]
    try:
        # Record every argument, defaults included, so a rebuild never depends on today's defaults.
        bound = inspect.signature(cls).bind(**kwargs)
    except TypeError as e:
        raise BadInputError(f"bad keyword arguments for model `{name}`: {e}") from e
    bound.apply_defaults()
    model = cls(*bound.args, **bound.kwargs)
    return attach_source(model, {"kind": "builtin", "name": name, "kwargs": _jsonable(dict(bound.arguments))})


def rebuild(source: dict[str, Any]) -> nn.Module:
    """Rebuild an architecture (random weights) from a source dict written by modelpress.

    Handles ``{"kind": "builtin", ...}`` and ``{"kind": "hf", ...}``; raises BadInputError otherwise.
    """
    kind = source.get("kind") if isinstance(source, dict) else None
    if kind == "builtin":
        name = str(source.get("name"))
        kwargs = source.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise bad_value("kwargs", "rebuild", "a JSON object", kwargs)
        return build(name, **{**kwargs, **_REBUILD_KWARGS.get(name, {})})
    if kind == "hf":
        from modelpress.tasks.minilm import from_hf_source

        return from_hf_source(source)
    raise bad_value("source", "rebuild", "a dict with kind 'builtin' or 'hf'", source)


# token ids per example for text models: enough for tracing, short enough to be fast
_TRACE_TOKENS = 16


def example_inputs(source: dict[str, Any] | None) -> tuple[Tensor, ...] | None:
    """A batch of one to trace a model with, from its recorded source (`modelpress.source`): zeros of
    ``input_shape`` ``(1, C, H, W)`` for the built-in image models, ``(input_ids, attention_mask)`` of
    shape ``(1, 16)`` for minilm-l6 and Hugging Face encoders; None when the source does not say."""
    src = source or {}
    if src.get("kind") == "hf" or (src.get("kind") == "builtin" and src.get("name") == "minilm-l6"):
        ids = torch.ones(1, _TRACE_TOKENS, dtype=torch.long)
        return ids, torch.ones_like(ids)
    if src.get("kind") == "builtin":
        return (torch.zeros(1, *src.get("kwargs", {}).get("input_shape", (1, 28, 28))),)
    return None
