"""Per-row benchmark results kept between runs, so a page can be re-rendered from rows run at different
times: ``cache_dir()/bench/<bench>-<row>.json`` (one JSON object per row)."""

from __future__ import annotations

import json
from collections.abc import Iterable

from modelpress.tasks.builtin import cache_dir

__all__ = ["store", "stored"]


def store(bench: str, row: str, result: dict) -> None:
    """Write ``result`` as the stored result of ``row`` of benchmark ``bench`` (replacing an older one)."""
    folder = cache_dir() / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{bench}-{row}.json").write_text(json.dumps(result, indent=1))


def stored(bench: str, rows: Iterable[str]) -> dict[str, dict]:
    """The stored results of those ``rows`` of ``bench`` that have one, by row name."""
    out = {}
    for row in rows:
        f = cache_dir() / "bench" / f"{bench}-{row}.json"
        if f.is_file():
            out[row] = json.loads(f.read_text())
    return out
