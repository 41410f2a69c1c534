"""`load`: rebuild a model from an artifact folder — checked, strict, and without pickle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from torch import Tensor, nn

from modelpress.artifact.manifest import read_manifest, sha256_bytes
from modelpress.artifact.packed import PackedModule
from modelpress.artifact.packing import decode_lossless, zstd_decompress
from modelpress.artifact.rebuild import apply_shapes, build_from_source, import_packed_class
from modelpress.artifact.weights import check_finite, check_shapes
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
        if Path(name).name != name or name.startswith(".") or "/" in name or "\\" in name:
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


def _depth(path: str) -> int:
    return 0 if path == "" else path.count(".") + 1


def _apply_swaps(model: nn.Module, swaps: list[dict[str, Any]], tensors: dict[str, Tensor]
                 ) -> tuple[nn.Module, set[str], set[str]]:
    """Unpack every swap, outermost first, and set it at its path (the root is replaced for path "").

    A deeper swap replaces a child that the swap above it rebuilt. Returns the model, the swapped paths
    and the keys of the packed tensors used.
    """
    swapped: set[str] = set()
    packed_keys: set[str] = set()
    for swap in sorted(swaps, key=lambda s: _depth(str(s.get("path", "")))):
        cls = import_packed_class(swap.get("class", ""))
        path_ = str(swap.get("path", ""))
        names = swap.get("tensors", [])
        meta = swap.get("meta", {})
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or not isinstance(meta, dict):
            raise BadInputError(f"the swap record of `{path_}` is damaged (tensors must be a list of names, "
                                "meta an object).")
        keys = {name: f"{path_}.{name}" if path_ else name for name in names}
        missing = [k for k in keys.values() if k not in tensors]
        if missing:
            raise BadInputError(f"the weights lack the packed tensors {missing} of `{path_}`.")
        module = cls.unpack({name: tensors[k] for name, k in keys.items()}, meta)
        if not isinstance(module, PackedModule):
            raise BadInputError(f"{cls.__name__}.unpack returned {type(module).__name__}, not a module.")
        if path_ == "":
            model = module
        else:
            try:
                model.set_submodule(path_, module, strict=True)
            except AttributeError:
                raise BadInputError(f"the manifest swaps `{path_}`, which the rebuilt model lacks.") from None
        swapped.add(path_)
        packed_keys.update(keys.values())
    return model, swapped, packed_keys


def _set_nonpersistent(model: nn.Module, keys: set[str], tensors: dict[str, Tensor]) -> None:
    for key in keys:
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


def _retie(model: nn.Module, aliases: dict[str, str]) -> None:
    """Make each alias the very tensor it was saved as (tied weights stay tied, whatever the rebuild)."""
    for alias, target in aliases.items():
        (a_path, _, a_name), (t_path, _, t_name) = alias.rpartition("."), target.rpartition(".")
        a_mod, t_mod = model.get_submodule(a_path), model.get_submodule(t_path)
        if a_name in a_mod._parameters and t_name in t_mod._parameters:
            a_mod._parameters[a_name] = t_mod._parameters[t_name]
        elif a_name in a_mod._buffers and t_name in t_mod._buffers:
            a_mod._buffers[a_name] = t_mod._buffers[t_name]


def _load_state(model: nn.Module, manifest: dict[str, Any], tensors: dict[str, Tensor], skip: set[str],
                swapped: set[str], where: str) -> None:
    state = {k: v for k, v in tensors.items() if k not in skip}
    aliases = manifest.get("aliases", {})
    for alias, target in aliases.items():
        if target not in state:
            raise BadInputError(f"tied tensor `{alias}` points at `{target}`, which the weights lack.")
        state[alias] = state[target]
    check_shapes(model, state, where)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise BadInputError(f"the weights do not fit the rebuilt model: {' '.join(str(e).split())}") from None
    # A swap's own tensors come from its unpack; everything else, its plain children included, must be here.
    missing = [k for k in result.missing_keys if k.rpartition(".")[0] not in swapped]
    if missing or result.unexpected_keys:
        raise BadInputError(f"the artifact's tensors do not match the rebuilt model: missing {missing[:10]}, "
                            f"unexpected {result.unexpected_keys[:10]}. The artifact is damaged or incomplete.")
    _retie(model, aliases)


def _build(folder: Path, manifest: dict[str, Any], trust_source: bool) -> nn.Module:
    stored = read_stored(folder, manifest)
    tensors = {key: decode_lossless(key, entry, stored) for key, entry in manifest["tensors"].items()}
    del stored
    check_finite(tensors, f"the artifact {str(folder)!r}")
    try:
        model = build_from_source(manifest["source"], trust_source=trust_source)
    except BadInputError:
        raise
    except Exception as e:
        raise BadInputError(f"rebuilding the model from its source {manifest['source']!r} failed: "
                            f"{type(e).__name__}: {' '.join(str(e).split())[:300]}") from e
    try:
        apply_shapes(model, manifest["shapes"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise BadInputError(f"the manifest's shape records are damaged ({e!r}).") from None
    model, swapped, packed_keys = _apply_swaps(model, manifest["swaps"], tensors)
    extra = set(manifest.get("nonpersistent", []))
    _set_nonpersistent(model, extra, tensors)
    _load_state(model, manifest, tensors, packed_keys | extra, swapped, f"the artifact {str(folder)!r}")
    return model


def load(path: str | Path, *, trust_source: bool = False) -> nn.Module:
    """Rebuild the model saved in the artifact folder ``path`` (in eval mode, source attached).

    Rebuilds the architecture from its recorded source, applies the recorded shape changes and module
    swaps (outermost first, then the swaps inside them), then loads every tensor with
    ``load_state_dict(strict=True)`` semantics; tied tensors come back as one tensor. The result is
    bit-exact to the saved model. The source is data: a built-in model, a Hugging Face config (no
    remote code) or a torch.nn / modelpress module class; a user's ``module:function`` source is called
    only with ``trust_source=True``, since it runs that code.

    Raises BadInputError for a missing folder or manifest, a folder that is not an artifact, a damaged
    or tampered manifest, a format version from a newer modelpress, a changed / truncated data file, a
    ``module:function`` source without ``trust_source``, NaN / Inf weights, a tensor of the wrong shape,
    missing or extra tensors, or a swap class outside modelpress.
    """
    folder = Path(path)
    if folder.name == "manifest.json" and folder.is_file():  # the manifest's own path is accepted too
        folder = folder.parent
    manifest = read_manifest(folder)
    try:
        model = _build(folder, manifest, trust_source)
    except BadInputError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError, OverflowError) as e:
        # A tampered manifest can reach any reader with values of the wrong kind: one message, no traceback.
        raise BadInputError(f"the artifact {str(folder)!r} is damaged ({type(e).__name__}: "
                            f"{' '.join(str(e).split())[:200]}). Fix: save the model again.") from None
    attach_source(model, manifest["source"])
    object.__setattr__(model, "_modelpress_loaded_from", str(folder.resolve()))  # so a run won't overwrite it
    return model.eval()
