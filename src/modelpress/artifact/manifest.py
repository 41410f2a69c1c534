"""The artifact's `manifest.json`: what it holds, how to check it, how to read it back.

Layout (JSON object)::

    {"format": "modelpress-artifact", "format_version": 1, "modelpress_version": "0.1.0",
     "source": {...modelpress.source...}, "steps": [...step configs...],
     "files": {"weights.safetensors.zst": {"sha256": "...", "bytes": 123, "compression": "zstd"}},
     "tensors": {"fc1.weight": {"encoding": "bitmask", "shape": [300, 784], "dtype": "float32"}, ...},
     "aliases": {"tied.weight": "other.weight"},
     "shapes": {"fc1": {"tensors": {"weight": {"kind": "param", "shape": [..], "dtype": ".."}},
                        "attrs": {"out_features": 150}}},
     "swaps": [{"path": "fc2", "class": "modelpress.quantization.modules:QuantLinear", "meta": {...},
                "tensors": ["scale", "q"]}],
     "nonpersistent": ["block.table"]}

Tensor keys are state-dict names; a swapped module's packed tensors are ``"<path>.<name>"``; a bitmask
tensor is stored as ``"<key>#mask"`` + ``"<key>#values"``. ``nonpersistent`` lists non-persistent buffers
whose shape changed (their values are stored, since the state dict lacks them).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from modelpress.errors import BadInputError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "is_artifact",
    "manifest_bytes",
    "read_manifest",
    "sha256_bytes",
    "temp_name",
    "write_atomic",
]

FORMAT = "modelpress-artifact"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_REQUIRED = ("source", "files", "tensors", "shapes", "swaps")


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def is_artifact(folder: Path) -> bool:
    """Whether ``folder`` holds a manifest.json that says it is a modelpress artifact."""
    try:
        return json.loads((folder / MANIFEST).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """``manifest`` as the bytes of manifest.json: compact, key-sorted JSON (no indentation, no spaces).

    The manifest is counted in the artifact's bytes on disk, and on a small compressed model it is a
    tenth of the folder (a Deep-Compressed LeNet-5: 4.3 kB indented against 2.8 kB compact), so it is
    written compactly; ``python -m json.tool manifest.json`` shows it indented. Readers accept any JSON
    layout, so artifacts written indented by earlier versions load unchanged (same format version).
    """
    return (json.dumps(manifest, separators=(",", ":"), sort_keys=True) + "\n").encode()


def temp_name(name: str) -> str:
    """The temporary file a write of ``name`` goes through (a leftover of a crashed save)."""
    return f".{name}.tmp"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename, so that a crash never leaves a
    half-written file under the real name."""
    tmp = path.with_name(temp_name(path.name))
    tmp.write_bytes(data)
    os.replace(tmp, path)


def read_manifest(folder: Path) -> dict[str, Any]:
    """Read and check the manifest of an artifact folder.

    Raises BadInputError for a missing folder or manifest, invalid JSON, another format, a format
    version newer than this modelpress understands, or missing fields.
    """
    if not folder.is_dir():
        raise BadInputError(f"artifact folder {str(folder)!r} does not exist. "
                            "Fix: pass the folder written by modelpress.save (it holds manifest.json).")
    path = folder / MANIFEST
    if not path.is_file():
        raise BadInputError(f"{str(folder)!r} has no {MANIFEST}, so it is not a modelpress artifact. "
                            "Fix: pass the folder written by modelpress.save.")
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise BadInputError(f"{str(path)!r} is not valid JSON ({e}); the artifact is damaged. "
                            "Fix: save the model again.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise BadInputError(f"{str(path)!r} is not a modelpress artifact manifest "
                            f"(format {got!r}, expected {FORMAT!r}).")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BadInputError(f"{str(path)!r} has an invalid format_version {version!r}; the artifact is damaged.")
    if version > FORMAT_VERSION:
        raise BadInputError(
            f"{str(folder)!r} was written by a newer modelpress (artifact format {version}, written by "
            f"modelpress {manifest.get('modelpress_version', '?')}); this one reads format {FORMAT_VERSION}. "
            "Fix: upgrade modelpress (pip install -U modelpress).")
    missing = [k for k in _REQUIRED if k not in manifest]
    if missing:
        raise BadInputError(f"{str(path)!r} lacks the fields {missing}; the artifact is damaged. "
                            "Fix: save the model again.")
    _check_types(manifest, path)
    return manifest


# field -> (JSON type, type of each value or item, or None); optional fields are checked when present
_FIELDS: dict[str, tuple[type, type | None]] = {
    "source": (dict, None), "files": (dict, dict), "tensors": (dict, dict), "shapes": (dict, dict),
    "swaps": (list, dict), "aliases": (dict, str), "nonpersistent": (list, str), "steps": (list, None),
}


def _check_types(manifest: dict[str, Any], path: Path) -> None:
    """Each field of the JSON type the reader relies on, so that a tampered manifest is one clear error."""
    for name, (kind, item) in _FIELDS.items():
        if name not in manifest:
            continue
        value = manifest[name]
        values = value.values() if isinstance(value, dict) else value
        keys_ok = not isinstance(value, dict) or all(isinstance(k, str) for k in value)
        if not isinstance(value, kind) or not keys_ok or (item is not None and not all(
                isinstance(v, item) for v in values)):
            what = f"a JSON {'object' if kind is dict else 'array'}" + (
                f" of {'objects' if item is dict else 'strings'}" if item is not None else "")
            raise BadInputError(f"field `{name}` of {str(path)!r} must be {what}; got {type(value).__name__} "
                                f"{str(value)[:80]!r}. The artifact is damaged. Fix: save the model again.")
