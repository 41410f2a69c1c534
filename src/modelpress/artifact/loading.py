"""`load`: rebuild a model from an artifact folder — checked, strict, and without pickle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from torch import Tensor, nn

from modelpress.artifact.manifest import read_manifest, sha256_bytes
from modelpress.artifact.packing import decode_lossless, zstd_decompress
from modelpress.artifact.rebuild import apply_shapes, build_from_source, import_packed_class, under
from modelpress.errors import BadInputError
from modelpress.source import attach_source

__all__ = ["load", "read_stored"]


def read_stored(folder: Path, manifest: dict[str, Any]) -> dict[str, Tensor]:
    """The raw stored tensors of all data files, after checking each file's SHA-256."""
    files = manifest["files"]
    if not isinstance(files, dict) or not files:
        raise BadInputError(f"the manifest of {str(folder)!r} lists no weights files; the artifact is damaged.")
    stored: dict[str, Tensor] = {}
    for name, info in files.items():
        if Path(name).name != name or name.startswith("."):
            raise BadInputError(f"the manifest names a weights file outside the artifact: {name!r}.")
        p = folder / name
        if not p.is_file():
            raise BadInputError(f"{str(p)!r} is missing; the artifact is incomplete. Fix: save the model again.")
        blob = p.read_bytes()
        if sha256_bytes(blob) != info.get("sha256"):
            raise BadInputError(f"{str(p)!r} does not match the SHA-256 in manifest.json: the file was changed or "
                                "truncated after saving. Fix: save the model again or restore the file.")
        if info.get("compression") == "zstd":
            blob = zstd_decompress(blob)
        elif info.get("compression") is not None:
            raise BadInputError(f"{str(p)!r} uses an unknown compression {info.get('compression')!r}.")
        try:
            stored.update(safetensors_load(blob))
        except (SafetensorError, ValueError, RuntimeError) as e:
            raise BadInputError(f"{str(p)!r} is not a valid safetensors file ({e}).") from None
    return stored


def load(path: str | Path) -> nn.Module:
    """Rebuild the model saved in the artifact folder ``path`` (in eval mode, source attached).

    Rebuilds the architecture from its recorded source, applies the recorded shape changes and module
    swaps, then loads every tensor with ``load_state_dict(strict=True)`` semantics: the result is
    bit-exact to the saved model. Raises BadInputError for a missing folder or manifest, a folder that is
    not an artifact, a format version from a newer modelpress, a changed / truncated data file, missing
    or extra tensors, or a swap class outside modelpress.
    """
    folder = Path(path)
    if folder.name == "manifest.json" and folder.is_file():  # the manifest's own path is accepted too
        folder = folder.parent
    manifest = read_manifest(folder)
    stored = read_stored(folder, manifest)
    tensors = {key: decode_lossless(key, entry, stored) for key, entry in manifest["tensors"].items()}

    try:
        model = build_from_source(manifest["source"])
    except BadInputError:
        raise
    except Exception as e:
        raise BadInputError(f"rebuilding the model from its source {manifest['source']!r} failed: {e}") from e
    try:
        apply_shapes(model, manifest["shapes"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise BadInputError(f"the manifest's shape records are damaged ({e!r}).") from None

    swapped: set[str] = set()
    packed_keys: set[str] = set()
    for swap in manifest["swaps"]:
        cls = import_packed_class(swap.get("class", ""))
        path_ = str(swap.get("path", ""))
        keys = {name: f"{path_}.{name}" if path_ else name for name in swap.get("tensors", [])}
        missing = [k for k in keys.values() if k not in tensors]
        if missing:
            raise BadInputError(f"the weights lack the packed tensors {missing} of `{path_}`.")
        module = cls.unpack({name: tensors[k] for name, k in keys.items()}, swap.get("meta", {}))
        if path_ == "":
            model = module
        else:
            try:
                model.set_submodule(path_, module)
            except AttributeError:
                raise BadInputError(f"the manifest swaps `{path_}`, which the rebuilt model lacks.") from None
        swapped.add(path_)
        packed_keys.update(keys.values())

    extra = set(manifest.get("nonpersistent", []))
    for key in extra:
        path_, _, name = key.rpartition(".")
        if key not in tensors:
            raise BadInputError(f"the weights lack the buffer `{key}`.")
        try:
            module = model.get_submodule(path_)
        except AttributeError:
            raise BadInputError(f"the manifest names buffer `{key}`, which the rebuilt model lacks.") from None
        if name not in module._non_persistent_buffers_set:
            raise BadInputError(f"`{key}` is not a non-persistent buffer of the rebuilt model.")
        module._buffers[name] = tensors[key]

    state = {k: v for k, v in tensors.items() if k not in packed_keys and k not in extra}
    for alias, target in manifest.get("aliases", {}).items():
        if target not in state:
            raise BadInputError(f"tied tensor `{alias}` points at `{target}`, which the weights lack.")
        state[alias] = state[target]
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise BadInputError(f"the weights do not fit the rebuilt model: {e}") from None
    missing = [k for k in result.missing_keys if not under(k.rpartition(".")[0], swapped)]
    if missing or result.unexpected_keys:
        raise BadInputError(f"the artifact's tensors do not match the rebuilt model: missing {missing[:10]}, "
                            f"unexpected {result.unexpected_keys[:10]}. The artifact is damaged or incomplete.")
    attach_source(model, manifest["source"])
    object.__setattr__(model, "_modelpress_loaded_from", str(folder.resolve()))  # so a run won't overwrite it
    return model.eval()
