"""Benchmark results kept in the repository, so a page can be re-rendered from rows run at different
times and on different machines: ``benchmarks/runs/<bench>-<row>.json`` (one JSON object per row, or per
row and seed). They sit beside the code rather than in the model cache because a page's figures must
outlive the machine that measured them: a page re-rendered after only some rows were re-run keeps the
others' figures. `page_sections` / `keep_unrun` also let a renderer keep a section of the page as it stands
whose runs were never stored here (measured before runs were kept in the repository)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["KEPT", "NOT_RUN", "RUNS", "keep_unrun", "kept", "page_sections", "store", "stored", "stored_glob"]

RUNS = Path(__file__).resolve().parent / "runs"
NOT_RUN = "Not run yet."  # a rendered section with no stored runs: heading, blank line, this line
KEPT = "(Kept from the page as it stood: this section's runs are not stored in `benchmarks/runs/`.)"


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


def page_sections(page: Path, skip: Callable[[str], bool] = lambda line: False) -> dict[str, list[str]]:
    """The ``## `` sections of ``page`` as it stands (empty if there is none) by heading line, each without
    its heading and without the lines ``skip`` names (text a renderer adds after a section of its own)."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in page.read_text().splitlines() if page.is_file() else []:
        if line.startswith("## "):
            current = out.setdefault(line, [])
        elif current is not None and not skip(line):
            current.append(line)
    return out


def kept(lines: list[str]) -> list[str]:
    """A section's body as it stood, marked as kept; ``[]`` where it had no figures."""
    figures = "\n".join(x for x in lines if x != KEPT).strip().splitlines()
    return [] if figures in ([], [NOT_RUN]) else [KEPT, "", *figures]


def keep_unrun(body: list[str], old: dict[str, list[str]]) -> list[str]:
    """``body`` with every `NOT_RUN` section replaced by the same section of the page as it stood, where that
    had figures, so re-rendering after a partial re-run on another machine loses nothing."""
    out: list[str] = []
    for i, line in enumerate(body):
        prior = kept(old.get(body[i - 2], [])) if i >= 2 and line == NOT_RUN else []
        out += prior or [line]
    return out
