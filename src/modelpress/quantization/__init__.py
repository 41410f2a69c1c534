"""Quantization: post-training fp16 / int8 / int4 and quantization-aware training, deployed to onnxruntime.

>>> import modelpress as mp                                                       # doctest: +SKIP
>>> mp.compress_(model, Quantize(mode="int8-static"), task=mp.tasks.get("mnist-5k"))  # doctest: +SKIP

Layers: pure functions (`affine`, `observers`) ← modules (`modules`: QuantLinear, QuantConv2d,
QuantEmbedding, HalfLinear, ...) ← PTQ / QAT / sensitivity ← the step (`step`) and its deployment
(`deploy`, `onnx_rewrite`).
"""

from modelpress.quantization.config import Quantize
from modelpress.quantization.modules import (
    HalfConv2d,
    HalfEmbedding,
    HalfLinear,
    QuantConv2d,
    QuantEmbedding,
    QuantLinear,
    WeightSpec,
)
from modelpress.quantization.step import apply_quantize, deploy_quantize

__all__ = [
    "HalfConv2d",
    "HalfEmbedding",
    "HalfLinear",
    "QuantConv2d",
    "QuantEmbedding",
    "QuantLinear",
    "Quantize",
    "WeightSpec",
    "apply_quantize",
    "deploy_quantize",
]
