"""The artifact: safetensors + JSON manifest, packed encodings, ONNX export."""
