"""Output folders that never touch a user's files: a marker lists what modelpress wrote, with hashes.

Every output folder modelpress creates (``compress --out DIR``, ``demo --out DIR``) holds
``.modelpress.json``::

    {"format": "modelpress-output", "version": 1, "complete": false, "started": "2026-...",
     "finished": null, "command": "modelpress compress ...",
     "files": {"report.json": {"sha256": "...", "bytes": 1234}, "model/manifest.json": {...}},
     "writing": ["model.onnx"]}

A later run replaces a file only when the marker lists it and its bytes still hash to the listed
SHA-256 (or when an earlier run that did not finish was writing it, listed under ``writing``); anything
else in the way is refused before any work starts. A folder without a marker must be empty. The
marker says ``"complete": false`` from the start of a run until its last file is written, so a run
stopped by Ctrl-C or an error leaves the folder marked incomplete, and the next run says so.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modelpress.errors import BadInputError

__all__ = ["MARKER", "OutputFolder", "check_folder", "sha256_file"]

MARKER = ".modelpress.json"
_FORMAT = "modelpress-output"
_FIX = "Fix: choose a new or empty folder for `--out`, or move your files out of it."


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of the file at ``path``, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _read_marker(folder: Path) -> dict[str, Any] | None:
    """The folder's marker, or None when it has none. Raises BadInputError for a damaged one."""
    path = folder / MARKER
    if not path.is_file():
        return None
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BadInputError(f"the modelpress marker `{path}` cannot be read ({e}). {_FIX}") from None
    if not isinstance(marker, dict) or marker.get("format") != _FORMAT or not isinstance(marker.get("files"), dict):
        raise BadInputError(f"`{path}` is not a modelpress output marker. {_FIX}")
    return marker


def _files_at(folder: Path, name: str) -> list[str]:
    """The files (relative to ``folder``, with '/') at output ``name``: the file itself or all under a folder."""
    p = folder / name
    if p.is_symlink() or p.is_file():
        return [name]
    if p.is_dir():
        return sorted(str(f.relative_to(folder).as_posix()) for f in p.rglob("*") if f.is_file() or f.is_symlink())
    return []


def _listed(folder: Path, rel: str, marker: dict[str, Any]) -> bool:
    """Whether the marker lists the file ``rel`` and its bytes still hash to the listed SHA-256."""
    entry = marker["files"].get(rel)
    path = folder / rel
    return (isinstance(entry, dict) and not path.is_symlink() and path.is_file()
            and sha256_file(path) == entry.get("sha256"))


def _half_written(rel: str, marker: dict[str, Any]) -> bool:
    """Whether a run that stopped was writing ``rel`` (it checked first that the path was free or its own)."""
    return marker.get("complete") is False and any(
        rel == w or rel.startswith(w.rstrip("/") + "/") for w in marker.get("writing", []))


def _ours(folder: Path, rel: str, marker: dict[str, Any]) -> bool:
    """Whether the file ``rel`` is one modelpress wrote and nobody changed since."""
    return _listed(folder, rel, marker) or _half_written(rel, marker)


def _check_writable(folder: Path, out: Path) -> None:
    """Create and remove a probe file in ``folder`` (``out`` or the existing folder above it): permissions,
    read-only mounts and full disks all show up here, where ``os.access`` misses the last two."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".modelpress-probe-", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        where = f"`--out` folder `{out}` is not writable" if folder == out else (
            f"`--out` folder `{out}` cannot be created: `{folder}` is not writable")
        raise BadInputError(f"{where} ({e.strerror or e}). Fix: choose a folder you can write to.") from None


def check_folder(folder: str | Path, outputs: tuple[str, ...]) -> str | None:
    """Check, before any work, that a run may write ``outputs`` (names relative to ``folder``) there.

    Returns a note for the user when the folder holds a run that did not finish, else None. Raises
    BadInputError when ``folder`` is a file, is not writable (or cannot be created), is non-empty without
    a modelpress marker, or holds a file at one of ``outputs`` that the marker does not list or that
    changed since modelpress wrote it.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise BadInputError(f"`--out` must be a folder; `{folder}` is a file. Fix: choose another path.")
    if not folder.exists():
        parent = next(p for p in folder.absolute().parents if p.exists())
        if not parent.is_dir():
            raise BadInputError(f"`--out` folder `{folder}` cannot be created: `{parent}` is a file. "
                                "Fix: choose another path.")
        _check_writable(parent, folder)
        return None
    _check_writable(folder, folder)
    marker = _read_marker(folder)
    if marker is None:
        found = sorted(p.name for p in folder.iterdir())
        if found:
            raise BadInputError(
                f"`--out` folder `{folder}` is not empty ({', '.join(found[:5])}{' ...' if len(found) > 5 else ''}) "
                f"and was not written by modelpress (no {MARKER}); refusing to write into it. {_FIX}")
        return None
    for name in outputs:
        for rel in _files_at(folder, name):
            if not _ours(folder, rel, marker):
                why = "was changed since modelpress wrote it" if rel in marker["files"] else "was not written by modelpress"
                raise BadInputError(f"`--out` folder `{folder}` holds `{rel}`, which {why}; refusing to replace "
                                    f"it. Fix: move `{rel}` away, or choose a new or empty folder for `--out`.")
    if marker.get("complete") is False:
        return (f"note: `{folder}` holds an earlier run that did not finish (started {marker.get('started', '?')}); "
                "its files are replaced.")
    return None


class OutputFolder:
    """An output folder being written: created with an incomplete marker, files recorded as written.

    >>> out = OutputFolder.open("out/x", ("report.json",))   # checks, creates, marks incomplete
    >>> with out.write("report.json"): ...                   # listed as being written, then hashed
    >>> out.finish()                                          # removes stale outputs, marks complete
    """

    def __init__(self, path: Path, outputs: tuple[str, ...], marker: dict[str, Any], note: str | None) -> None:
        self.path, self.outputs, self.note = path, outputs, note
        self._marker, self._written = marker, set()

    @classmethod
    def open(cls, folder: str | Path, outputs: tuple[str, ...], *, command: str | None = None) -> OutputFolder:
        """`check_folder`, then create the folder and write its marker with ``"complete": false``."""
        path = Path(folder)
        note = check_folder(path, outputs)
        old = _read_marker(path) if path.is_dir() else None
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise BadInputError(f"`--out` folder `{path}` cannot be created ({e.strerror or e}). "
                                "Fix: choose a folder you can write to.") from None
        if old is not None and old.get("complete") is False:
            # a stopped run's half-written files (a weights file without its manifest) would make the
            # artifact's own save refuse the folder after all the work: they are garbage, remove them now
            for rel in (r for n in outputs for r in _files_at(path, n)):
                if _half_written(rel, old) and not _listed(path, rel, old):
                    (path / rel).unlink()
        files = {k: v for k, v in (old or {}).get("files", {}).items() if (path / k).is_file()}
        marker = {"format": _FORMAT, "version": 1, "complete": False, "started": _now(), "finished": None,
                  "command": command, "files": files, "writing": []}
        out = cls(path, outputs, marker, note)
        out._save()
        return out

    def writing(self, *names: str) -> None:
        """Record that ``names`` (files or folders) are about to be written, so a stopped run can be replaced."""
        self._marker["writing"] = sorted(set(self._marker["writing"]) | set(names))
        self._save()

    def wrote(self, *names: str) -> None:
        """Record the hashes of the files now at ``names`` (a folder: every file under it)."""
        for name in names:
            for rel in _files_at(self.path, name):
                p = self.path / rel
                self._marker["files"][rel] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                self._written.add(rel)
        self._save()

    @contextlib.contextmanager
    def write(self, *names: str) -> Iterator[Path]:
        """``with out.write("report.json"): ...``: `writing` before the block, `wrote` after it succeeds
        (after an exception the names stay listed as being written, so the next run may replace them)."""
        self.writing(*names)
        yield self.path
        self.wrote(*names)

    def finish(self) -> None:
        """Remove earlier outputs this run did not write again (a stale model.onnx), then mark complete."""
        for rel in sorted(self._marker["files"]):
            if rel not in self._written and any(rel == n or rel.startswith(n + "/") for n in self.outputs):
                (self.path / rel).unlink(missing_ok=True)
                del self._marker["files"][rel]
        for name in self.outputs:
            p = self.path / name
            if p.is_dir() and not any(p.rglob("*")):
                shutil.rmtree(p)
        self._marker.update(complete=True, finished=_now(), writing=[])
        self._save()

    def _save(self) -> None:
        tmp = self.path / f".{MARKER}.tmp"
        tmp.write_text(json.dumps(self._marker, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.path / MARKER)
