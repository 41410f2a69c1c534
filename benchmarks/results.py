"""Benchmark results kept in the repository, so a page can be re-rendered from rows run at different
times and on different machines: ``benchmarks/runs/<bench>-<row>.json`` (one JSON object per row, or per
row and seed). They sit beside the code rather than in the model cache because a page's figures must
outlive the machine that measured them: a page re-rendered after only some rows were re-run keeps the
others' figures, each with the machine line its run recorded."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

__all__ = ["RUNS", "store", "stored", "stored_glob"]

RUNS = Path(__file__).resolve().parent / "runs"


def store(bench: str, row: str, result: dict) -> None:
    """Write ``result`` as the stored result of ``row`` of benchmark ``bench`` (replacing an older one)."""
    RUNS.mkdir(parents=True, exist_ok=True)
    (RUNS / f"{bench}-{row}.json").write_text(json.dumps(result, indent=1) + "\n")


def stored(bench: str, rows: Iterable[str]) -> dict[str, dict]:
    """The stored results of those ``rows`` of ``bench`` that have one, by row name."""
    out = {}
    for row in rows:
        f = RUNS / f"{bench}-{row}.json"
        if f.is_file():
            out[row] = json.loads(f.read_text())
    return out


def stored_glob(bench: str, pattern: str) -> dict[str, dict]:
    """The stored results of ``bench`` whose row matches the glob ``pattern``, by row name, sorted."""
    prefix = f"{bench}-"
    return {p.stem.removeprefix(prefix): json.loads(p.read_text()) for p in sorted(RUNS.glob(f"{prefix}{pattern}.json"))}
