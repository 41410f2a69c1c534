"""`save`: write a model as an artifact folder (manifest.json + safetensors), never with pickle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_save
from torch import Tensor, nn

from modelpress.artifact.baking import bake
from modelpress.artifact.manifest import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    is_artifact,
    sha256_bytes,
    temp_name,
    write_atomic,
    write_manifest,
)
from modelpress.artifact.packed import PackedModule
from modelpress.artifact.packing import encode_lossless, maybe_zstd
from modelpress.artifact.rebuild import build_from_source, record_structure, under
from modelpress.errors import BadInputError
from modelpress.source import get_source

__all__ = ["WEIGHTS", "folder_bytes", "save"]

WEIGHTS = "weights.safetensors"
_META_ABOVE_BYTES = 256 << 20


def folder_bytes(path: str | Path) -> int:
    """Total size in bytes of the regular files under ``path`` (recursively); a file's own size."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    if not p.is_dir():
        raise BadInputError(f"{str(p)!r} does not exist.")
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and not f.is_symlink())


def _version() -> str:
    import modelpress

    return str(getattr(modelpress, "__version__", "unknown"))


def _check_target(folder: Path, overwrite: bool) -> dict[str, Any] | None:
    """Refuse to write over user files; return the old manifest of an artifact being replaced."""
    if folder.exists() and not folder.is_dir():
        raise BadInputError(f"{str(folder)!r} is a file; an artifact is a folder. Fix: choose another path.")
    if not folder.exists():
        return None
    # Temporary files of a crashed save are ours: remove them before judging the folder.
    for name in (MANIFEST, WEIGHTS, WEIGHTS + ".zst"):
        (folder / temp_name(name)).unlink(missing_ok=True)
    if not any(folder.iterdir()):
        return None
    if not is_artifact(folder):
        raise BadInputError(f"{str(folder)!r} is a non-empty folder that is not a modelpress artifact; refusing "
                            "to write into it. Fix: choose a new or empty folder.")
    if not overwrite:
        raise BadInputError(f"artifact {str(folder)!r} already exists. Fix: pass overwrite=True "
                            "to replace it, or choose another folder.")
    return json.loads((folder / MANIFEST).read_text())


def _json_or_raise(value: Any, what: str) -> None:
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError) as e:
        raise BadInputError(f"{what} must be JSON-able ({e}).") from None


def save(model: nn.Module, path: str | Path, *, steps: list[dict] | None = None,
         overwrite: bool = False) -> Path:
    """Write ``model`` to the folder ``path`` and return it.

    The folder holds ``manifest.json`` (source, structural changes, module swaps, per-tensor encodings,
    ``steps``, SHA-256 of each data file) and ``weights.safetensors`` — or ``weights.safetensors.zst``
    when zstd saves at least 10 %. Every tensor is stored losslessly: bitmask-sparse when that is
    smaller, else dense. The caller's model is not changed (the artifact stores ``bake(model)``).

    Raises BadInputError when the model has no source (it must come from a built-in name,
    ``module:function`` or a Hugging Face folder so that it can be rebuilt without pickle), when it
    holds a changed module that is not a PackedModule, when ``steps`` is not JSON-able, or when
    ``path`` is a non-empty folder that is not an artifact (or an artifact and ``overwrite`` is False).
    """
    folder = Path(path)
    source = get_source(model)
    if source is None:
        raise BadInputError(
            "this model carries no source, so an artifact could not rebuild it without pickle. Fix: build "
            "it with modelpress (a built-in model name, 'package.module:function', or a Hugging Face "
            "folder), or attach one with modelpress.source.attach_source(model, {...}).")
    steps = list(steps or [])
    _json_or_raise(steps, "`steps` of `save`")
    old = _check_target(folder, overwrite)

    baked = bake(model)
    swapped: dict[str, PackedModule] = {}
    for name, m in baked.named_modules():
        if isinstance(m, PackedModule) and not under(name, set(swapped)):
            swapped[name] = m

    stored: dict[str, Tensor] = {}
    entries: dict[str, Any] = {}

    def put(key: str, t: Tensor) -> None:
        tensors, entry = encode_lossless(key, t.detach().cpu())
        clash = [k for k in tensors if k in stored] or ([key] if key in entries else [])
        if clash:
            raise BadInputError(f"two tensors would be stored as {clash[0]!r}; rename a packed tensor.")
        stored.update(tensors)
        entries[key] = entry

    swaps = []
    for path_, m in swapped.items():
        tensors, meta = m.pack()
        _json_or_raise(meta, f"the pack() meta of `{path_}` ({type(m).__name__})")
        for name, t in tensors.items():
            put(f"{path_}.{name}" if path_ else name, t)
        cls = type(m)
        swaps.append({"path": path_, "class": f"{cls.__module__}:{cls.__qualname__}", "meta": meta,
                      "tensors": sorted(tensors)})

    # The comparison build goes on the meta device for big models (no memory); small ones are built on the
    # CPU, because torch's meta kernels cost 2-3 s of one-time warm-up per process (measured: resnet-s
    # 1.8 s on meta vs 0.01 s on the CPU; MiniLM 3.1 s vs 0.3 s).
    big = sum(t.numel() * t.element_size() for t in baked.state_dict().values()) > _META_ABOVE_BYTES
    shapes = record_structure(baked, build_from_source(source, meta=big), set(swapped))

    # Non-persistent buffers are not in the state dict; one whose shape changed would come back as
    # uninitialized memory, so its values are stored too.
    extra: list[str] = []
    for path_, change in shapes.items():
        module = baked.get_submodule(path_)
        for name, spec in change["tensors"].items():
            if spec["kind"] == "buffer" and spec["shape"] is not None and name in module._non_persistent_buffers_set:
                key = f"{path_}.{name}" if path_ else name
                put(key, module._buffers[name])
                extra.append(key)

    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for key, t in baked.state_dict().items():
        if under(key.rpartition(".")[0], set(swapped)):
            continue
        # Tied weights (one tensor under two names) are stored once; safetensors refuses shared storage.
        ident = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if t.numel() and t.device.type != "meta" and ident in seen:
            aliases[key] = seen[ident]
            continue
        seen[ident] = key
        put(key, t)

    data = safetensors_save(stored, metadata={"format": "pt"})
    packed = maybe_zstd(data)
    file_name, blob = (WEIGHTS + ".zst", packed) if packed is not None else (WEIGHTS, data)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "modelpress_version": _version(),
        "torch_version": torch.__version__,
        "source": source,
        "steps": steps,
        "files": {file_name: {"sha256": sha256_bytes(blob), "bytes": len(blob),
                              "compression": "zstd" if packed is not None else None,
                              "uncompressed_bytes": len(data)}},
        "tensors": entries,
        "aliases": aliases,
        "shapes": shapes,
        "swaps": swaps,
        "nonpersistent": extra,
    }

    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / file_name, blob)
    write_manifest(folder, manifest)  # after the data: a manifest names only complete files
    if old is not None:
        # Replace only what the old artifact wrote; other files in the folder are the user's.
        for name in old.get("files", {}):
            if name != file_name and name in (WEIGHTS, WEIGHTS + ".zst"):
                (folder / name).unlink(missing_ok=True)
    return folder
