"""The artifact: safetensors + JSON manifest, packed encodings, ONNX export.

``save(model, path)`` / ``load(path, trust_source=False)`` round-trip a model bit-exactly without
pickle; ``encode(model)`` gives the exact bytes of every file ``save`` writes, in memory;
``bake(model)`` returns a copy whose parametrizations (pruning masks) are folded into plain weights;
``folder_bytes(path)`` is the size on disk. Modules: ``saving``, ``loading``, ``baking``, ``manifest``,
``rebuild`` (sources and structure), ``packed`` (the swap protocol), ``packing`` (pure encodings),
``weights`` (``read_weights`` of .safetensors / .pt), ``onnx`` (``export_onnx``).
"""

from modelpress.artifact import onnx, packing, weights
from modelpress.artifact.baking import bake
from modelpress.artifact.loading import load
from modelpress.artifact.saving import encode, folder_bytes, save

__all__ = ["bake", "encode", "folder_bytes", "load", "onnx", "packing", "save", "weights"]
